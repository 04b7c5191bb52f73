//! End-to-end tests: real components built from tests/guests, run in the real
//! host against real HTTP servers on loopback.

mod api;
mod api_console;
mod api_contract;
mod api_scenario;
mod authors;
mod authors_rust;
mod azure_devops;
mod browser;
mod browser_smoke;
mod chat;
mod cli;
mod common;
mod confluence;
mod console;
mod credentials;
mod custom_rest;
mod egress;
// The egress tests again, through wasi:http instead of the one-call send.
#[allow(clippy::duplicate_mod)]
#[path = "egress.rs"]
mod egress_wasi_http;
mod floors;
mod hostile;
mod idp;
mod loading;
mod oauth;
mod oauth_idp;
mod openai;
mod operate;
mod operation_json;
mod pack;
mod readme;
mod scale_out;
mod scoping;
mod secrets;
mod service;
mod servicenow;
mod signing;
mod sync_complete;
mod walkthrough;
mod wasi_deny;
mod world;
