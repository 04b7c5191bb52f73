//! Capability-gated outbound HTTP for one plugin call: the host's own
//! `send_request`, the [`WasiHttpHooks`](wasmtime_wasi_http::WasiHttpHooks)
//! implementation stored in each call's wasmtime data.
//!
//! The stages every request a plugin makes goes through, in order, each a
//! function with unit tests of its own (no Wasm needed):
//!
//! 1. request budget ([`admit`]: `take_request_budget`);
//! 2. target, parsed once with [`Target`](crate::net::Target)
//!    (`parse_target`);
//! 3. headers: forbidden names, then header-section size (`check_headers`);
//! 4. grant check (`check_grant`);
//! 5. body cap (`read_body`);
//! 6. credential, only for the connection's bound origins
//!    (`credential_for`);
//! 7. send with retries ([`wire`]: `send_with_retries`): each send its own
//!    audit record, begun before the request leaves (a failed write sends
//!    nothing); pooled [`crate::net`] client, which resolves, filters
//!    addresses and connects to the address it checked; a 401 to a request
//!    carrying the connection's credential resends once with a refreshed one
//!    when its source can refresh; a 429/503 `Retry-After` resends an
//!    idempotent request when the wait fits the call's deadline, each such
//!    resend taking from the request budget;
//! 8. response caps ([`response`]: `cap_response`): header section, declared
//!    `content-length`, and the streamed body; the injected credential is
//!    masked wherever the answer echoes it ([`scrub`]).
//!
//! [`send`] runs them, for requests through wasi:http and for whole ones
//! ([`CallEgress::send_whole`], the `airlock:plugin/outbound` interface)
//! alike; a refusal in stages 1–6, or a resend over the budget,
//! is written to the audit log as denied. Redirects are returned to the
//! guest, never followed.

mod admit;
mod call;
#[cfg(test)]
mod fakes;
mod response;
pub(crate) mod scrub;
mod send;
mod wire;

pub use call::{CallTracker, EgressShared};
pub use send::{CallEgress, WholeError};
