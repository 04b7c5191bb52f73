//! Capability-gated outbound HTTP: the host's own `send_request`.
//!
//! The data path for every request a plugin makes:
//! parse once ([`Target`]) → request budget → forbidden headers → grant check
//! → body cap → credential (only for the connection's bound origins) → audit
//! record → pooled client, whose connector resolves, filters addresses and
//! connects to the address it checked → response caps. Redirects are returned
//! to the guest, never followed.

mod addr;
mod client;
mod rules;
mod send;

pub use addr::{ALLOW_PRIVATE_ENV, AddressDenied, AddressPolicy, AllowListError};
pub use client::{ConnectError, HttpClient, build_client};
pub use rules::{EgressRule, Origin, RuleError, Scheme, Target};
pub use send::{CallEgress, CallTracker, EgressShared};
