//! Capability-gated outbound HTTP for one plugin call: the host's own
//! `send_request`, the [`WasiHttpHooks`](wasmtime_wasi_http::WasiHttpHooks)
//! implementation stored in each call's wasmtime data.
//!
//! The stages every request a plugin makes goes through, each a function of
//! [`send`] with unit tests of its own:
//! request budget → parse once ([`Target`](crate::net::Target)) → forbidden
//! headers and header size → grant check → body cap → credential (only for
//! the connection's bound origins) → audit record → send with retries
//! (pooled [`crate::net`] client, which resolves, filters addresses and
//! connects to the address it checked) → response caps. Redirects are
//! returned to the guest, never followed.

mod send;

pub use send::{CallEgress, CallTracker, EgressShared};
