//! The operator's side of OAuth2: starting an authorisation (PKCE S256, a
//! single-use expiring `state`), finishing it from the callback, the
//! loopback callback listener the CLI uses, and where the flow goes (the
//! plugin's organisation app and endpoint overrides, `endpoints`). The token life-cycle these
//! build on (token requests, storage, refresh) is
//! [`crate::credential`]'s.

mod callback;
mod endpoints;
mod flow;

pub use crate::credential::oauth::overrides::{EffectiveEndpoints, EndpointField, EndpointSource};
pub use crate::credential::oauth::{
    EndpointOverrides, OAuthError, OverrideError, REFRESH_MARGIN_SECS,
};
pub use crate::store::oauth::EndpointTexts;
pub use callback::{CallbackListener, DEFAULT_CALLBACK_PORT, callback_page};
pub use flow::{CallbackOutcome, OAuthStart};

/// How long a started authorisation stays usable.
pub const STATE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
