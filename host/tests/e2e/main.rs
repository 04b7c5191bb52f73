//! End-to-end tests: real components built from tests/guests, run in the real
//! host against real HTTP servers on loopback.

mod api;
mod api_scenario;
mod azure_devops;
mod cli;
mod common;
mod confluence;
mod egress;
mod hostile;
mod loading;
mod oauth;
mod operate;
mod secrets;
mod service;
mod servicenow;
mod world;
