//! Credentials: what the host puts on an outbound request for a connection,
//! and where it comes from. The plugin never sees any of it.
//!
//! - [`Credential`]: a secret ready to render as one header; its `Debug` is
//!   redacted and its header value is marked sensitive.
//! - [`CredentialSource`]: asked once per outbound request that is bound to
//!   receive a credential. [`StaticCredential`] holds one in memory (tests,
//!   embedders that keep secrets themselves); the vault source reads the
//!   connection's sealed secret per request; the internal `oauth` module
//!   runs the OAuth2 token life-cycle (stored token, refresh before expiry
//!   and after a 401, single-flight per connection), whose operator side is
//!   [`crate::service::oauth`].
//! - [`field`]: the one list of vault field names connection secrets use.
//! - Which origins receive a credential: the connection's `base-url` origin
//!   and the approved egress entries that declare the auth kind.

pub mod field;
pub(crate) mod oauth;
mod vault_source;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::manifest::{AuthKind, EgressSpec};
use crate::net::{Origin, RuleError};

pub(crate) use vault_source::{VaultCredential, assemble, secret_field};

/// A secret ready to be put on an outbound request.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Basic base64(user:password)`; an empty user is allowed
    /// (Azure DevOps PATs).
    Basic {
        /// The user (or email) half of the pair; may be empty.
        username: String,
        /// The password or API token half.
        password: SecretString,
    },
    /// `Authorization: Bearer <token>` (PATs, OAuth access tokens).
    Bearer {
        /// The token, sent after `Bearer `.
        token: SecretString,
    },
    /// A custom header with an optional prefix, e.g. `x-api-key: <key>` or
    /// `Authorization: Bearer <key>`.
    ApiKey {
        /// The header the key is sent in.
        header: HeaderName,
        /// Text put before the key in the header value (`""` for none,
        /// `"Bearer "` with a trailing space for a bearer-style key).
        prefix: String,
        /// The key itself.
        key: SecretString,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
            Credential::Bearer { .. } => f.write_str("Bearer([redacted])"),
            Credential::ApiKey { header, .. } => f
                .debug_struct("ApiKey")
                .field("header", header)
                .field("key", &"[redacted]")
                .finish(),
        }
    }
}

/// Why a credential could not be produced. The request that needed it is
/// not sent: it is audited as denied and the plugin gets an error carrying
/// this message. `connection` is always the connection's name.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The vault holds no secret for the connection (an OAuth2 connection
    /// not yet authorised, a secret deleted, or auth kind `none`). Add the
    /// credential (or authorise) before calling.
    #[error("connection {connection} has no stored credential; add one before calling it")]
    Missing {
        /// The connection's name.
        connection: String,
    },
    /// The secret exists but could not be read or opened (store or vault
    /// failure, e.g. a retired key). A host problem, not the caller's.
    #[error("credential for connection {connection} cannot be read: {reason}")]
    Unavailable {
        /// The connection's name.
        connection: String,
        /// What failed, without any secret.
        reason: String,
    },
    /// The connection's stored API-key header is not a valid HTTP header
    /// name. Re-create the connection with a valid header.
    #[error("credential for connection {connection} does not form a valid HTTP header")]
    InvalidHeader {
        /// The connection's name.
        connection: String,
    },
    /// The provider refused the connection's grant (`invalid_grant`, or no
    /// refresh token left): only a new authorisation helps. The connection
    /// is marked `needs-reauth`.
    #[error(
        "connection `{connection}` needs re-authorisation ({reason}): run its OAuth flow again"
    )]
    NeedsReauth {
        /// The connection's name.
        connection: String,
        /// The provider's answer, sanitised.
        reason: String,
    },
    /// Refreshing the credential failed for a reason that may pass (network,
    /// provider outage); a later call may succeed.
    #[error("refreshing the credential of connection `{connection}` failed: {reason}")]
    RefreshFailed {
        /// The connection's name.
        connection: String,
        /// Why the refresh failed, without any secret.
        reason: String,
    },
}

impl Credential {
    /// The header this credential is sent in.
    pub fn header_name(&self) -> HeaderName {
        match self {
            Credential::Basic { .. } | Credential::Bearer { .. } => http::header::AUTHORIZATION,
            Credential::ApiKey { header, .. } => header.clone(),
        }
    }

    /// Render the header value, marked sensitive so HTTP stacks never log it.
    pub fn header_value(&self) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        use base64::Engine as _;
        let text = zeroize::Zeroizing::new(match self {
            Credential::Basic { username, password } => {
                let raw =
                    zeroize::Zeroizing::new(format!("{username}:{}", password.expose_secret()));
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                )
            }
            Credential::Bearer { token } => format!("Bearer {}", token.expose_secret()),
            Credential::ApiKey { prefix, key, .. } => format!("{prefix}{}", key.expose_secret()),
        });
        let mut value = HeaderValue::from_str(&text)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Where credentials come from: the vault in production, memory in tests.
/// Asked once per outbound request that is bound to receive one.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credential to put on the next request of `connection_id` (the
    /// connection's id, as in [`crate::Connection::id`]).
    fn credential<'a>(
        &'a self,
        connection_id: &'a str,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>>;

    /// Whether [`CredentialSource::refresh`] can produce a new credential
    /// (OAuth2). When it can, a request that carried a credential and was
    /// answered `401` is refreshed and sent once more.
    fn can_refresh(&self) -> bool {
        false
    }

    /// A fresh credential after the upstream refused `rejected` (`401`).
    /// Implementations refresh at most once per connection at a time: when
    /// another caller already replaced `rejected`, they return the newer
    /// credential without asking the provider again. The default cannot
    /// refresh.
    fn refresh<'a>(
        &'a self,
        connection_id: &'a str,
        rejected: &'a Credential,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        let _ = rejected;
        Box::pin(async move {
            Err(CredentialError::RefreshFailed {
                connection: connection_id.to_string(),
                reason: "this credential cannot be refreshed".into(),
            })
        })
    }
}

/// A fixed credential held in memory, for tests and embedders that manage
/// secrets themselves.
pub struct StaticCredential(Credential);

impl StaticCredential {
    /// A source that answers `credential` for every connection, ready to
    /// pass to [`crate::Connection::with_credential`].
    pub fn new(credential: Credential) -> Arc<Self> {
        Arc::new(Self(credential))
    }
}

impl fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticCredential").field(&self.0).finish()
    }
}

impl CredentialSource for StaticCredential {
    fn credential<'a>(
        &'a self,
        _connection_id: &'a str,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        let cloned = self.0.clone();
        Box::pin(async move { Ok(cloned) })
    }
}

/// The origins a connection's credential is injected into: its `base-url`
/// origin, and each approved egress entry that declares it takes this kind
/// of credential (e.g. Atlassian's API gateway for OAuth tokens).
pub(crate) fn bound_origins(
    base: Option<&Origin>,
    approved: &[EgressSpec],
    kind: AuthKind,
) -> Result<Vec<Origin>, RuleError> {
    let mut origins: Vec<Origin> = base.into_iter().cloned().collect();
    for spec in approved.iter().filter(|e| e.carries_credential(kind)) {
        let origin = &spec.rule().origin;
        if !origins.contains(origin) {
            origins.push(origin.clone());
        }
    }
    if origins.is_empty() {
        return Err(RuleError::NoHost);
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = [
            Credential::Basic {
                username: "me".into(),
                password: SecretString::from("CANARY-1"),
            },
            Credential::Bearer {
                token: SecretString::from("CANARY-2"),
            },
            Credential::ApiKey {
                header: HeaderName::from_static("x-api-key"),
                prefix: String::new(),
                key: SecretString::from("CANARY-3"),
            },
        ];
        for c in &creds {
            let dbg = format!("{c:?} {:?}", StaticCredential(c.clone()));
            assert!(!dbg.contains("CANARY"), "{dbg}");
            let value = c.header_value().unwrap();
            assert!(value.is_sensitive());
            assert!(!format!("{value:?}").contains("CANARY"));
        }
    }

    #[test]
    fn renders_each_kind() {
        let basic = Credential::Basic {
            username: String::new(),
            password: SecretString::from("pat"),
        };
        // Azure DevOps PAT: empty user.
        assert_eq!(basic.header_value().unwrap(), "Basic OnBhdA==");
        let key = Credential::ApiKey {
            header: HeaderName::from_static("x-api-key"),
            prefix: String::new(),
            key: SecretString::from("k"),
        };
        assert_eq!(key.header_name(), "x-api-key");
        assert_eq!(key.header_value().unwrap(), "k");
    }
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    fn spec(url: &str, credential: &[AuthKind]) -> EgressSpec {
        EgressSpec::new(url, vec![], "", credential.to_vec()).unwrap()
    }

    fn hosts(origins: &[Origin]) -> Vec<&str> {
        origins.iter().map(|o| o.host()).collect()
    }

    #[test]
    fn credential_goes_to_base_url_and_declared_origins_for_that_kind_only() {
        let base = Origin::parse("https://acme.example/").unwrap();
        let grant = [
            spec("https://api.atlassian.com", &[AuthKind::Oauth2]),
            spec("https://cdn.example.com/assets", &[]),
            spec("https://acme.example/other", &[AuthKind::Oauth2]),
        ];
        let oauth = bound_origins(Some(&base), &grant, AuthKind::Oauth2).unwrap();
        assert_eq!(hosts(&oauth), ["acme.example", "api.atlassian.com"]);
        let basic = bound_origins(Some(&base), &grant, AuthKind::Basic).unwrap();
        assert_eq!(hosts(&basic), ["acme.example"]);
    }

    #[test]
    fn without_any_origin_the_credential_cannot_be_bound() {
        assert!(bound_origins(None, &[], AuthKind::Bearer).is_err());
        let grant = [spec("https://api.atlassian.com", &[AuthKind::Oauth2])];
        let oauth = bound_origins(None, &grant, AuthKind::Oauth2).unwrap();
        assert_eq!(hosts(&oauth), ["api.atlassian.com"]);
    }
}
