//! The bottom floor of the data path: where a request may go and how it gets
//! there, with no knowledge of plugins, connections or credentials.
//!
//! - [`Origin`], [`Target`] and [`EgressRule`]: URLs parsed once into
//!   normalised types (the crate's one URL normaliser), and the allow-list
//!   rules a grant is made of.
//! - [`AddressPolicy`]: which resolved addresses may be reached (only globally
//!   routable ones unless the operator allows a range).
//! - [`may_carry_credential`]: a credential never travels over plain http
//!   but to a loopback host or an origin the operator names.
//! - [`HttpClient`]: the pooled client whose connector resolves names, filters
//!   the addresses and connects only to an address it checked; it never
//!   follows redirects.
//!
//! The per-call policy on top (budgets, grants, credential injection, audit)
//! is [`crate::egress`].

mod addr;
mod cleartext;
mod client;
mod rules;

pub use addr::{ALLOW_PRIVATE_ENV, AddressPolicy, AllowListError};
pub use cleartext::{
    CLEARTEXT_CREDENTIALS_ENV, cleartext_advice, may_carry_credential, parse_cleartext_origins,
};
pub use client::{ConnectError, HttpClient, build_client};
pub use rules::{EgressRule, Origin, RuleError, Scheme, Target};
