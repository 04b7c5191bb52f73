//! What a call runs against: a connection's identity, its non-secret settings,
//! the origins its credential is bound to, and where the credential comes from.
//!
//! The credential itself never leaves the host: [`Credential`] renders only
//! to an outbound header, and its `Debug` is redacted.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::egress::{Origin, RuleError};

/// The setting every HTTP plugin reads for its upstream; its origin is granted
/// and the credential is bound to it.
pub const BASE_URL_SETTING: &str = "base-url";

/// A connection as the runtime sees it for one call.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub name: String,
    /// The project the call was resolved for, if any.
    pub project: Option<String>,
    /// Non-secret settings the plugin can read.
    pub settings: BTreeMap<String, String>,
    /// How the credential is attached, if the connection has one.
    pub auth: AuthBinding,
    /// A JSON object written to the audit record of every outbound request
    /// made with this view of the connection (e.g. the redaction counts of
    /// a chat call). Never a secret or a redacted value.
    pub audit_detail: Option<String>,
}

/// How a connection authenticates, without the secret.
#[derive(Debug, Clone, Default)]
pub enum AuthBinding {
    #[default]
    None,
    /// Credentials come from `source`, are added only for requests to one of
    /// `origins`, in `header` (which the plugin may therefore not set).
    Header {
        header: HeaderName,
        origins: Vec<Origin>,
        source: Arc<dyn CredentialSource>,
    },
}

impl Connection {
    /// A connection with no credential.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            project: None,
            settings: BTreeMap::new(),
            auth: AuthBinding::None,
            audit_detail: None,
        }
    }

    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Bind a credential to the origin of the `base-url` setting, which must
    /// already be set.
    pub fn with_credential(
        self,
        header: HeaderName,
        source: Arc<dyn CredentialSource>,
    ) -> Result<Self, RuleError> {
        let origin = self.base_origin()?.ok_or(RuleError::NoHost)?;
        Ok(self.with_credential_for(header, vec![origin], source))
    }

    /// Bind a credential to explicit origins.
    pub fn with_credential_for(
        mut self,
        header: HeaderName,
        origins: Vec<Origin>,
        source: Arc<dyn CredentialSource>,
    ) -> Self {
        self.auth = AuthBinding::Header {
            header,
            origins,
            source,
        };
        self
    }

    /// Origin of the `base-url` setting, when the connection has one.
    pub fn base_origin(&self) -> Result<Option<Origin>, RuleError> {
        self.settings
            .get(BASE_URL_SETTING)
            .map(|u| Origin::parse(u))
            .transpose()
    }

    /// The header carrying the credential, which the guest may not set.
    pub fn auth_header(&self) -> Option<&HeaderName> {
        match &self.auth {
            AuthBinding::None => None,
            AuthBinding::Header { header, .. } => Some(header),
        }
    }
}

/// A secret ready to be put on an outbound request.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Basic base64(user:password)`; an empty user is allowed
    /// (Azure DevOps PATs).
    Basic {
        username: String,
        password: SecretString,
    },
    /// `Authorization: Bearer <token>` (PATs, OAuth access tokens).
    Bearer { token: SecretString },
    /// A custom header with an optional prefix, e.g. `x-api-key: <key>` or
    /// `Authorization: Bearer <key>`.
    ApiKey {
        header: HeaderName,
        prefix: String,
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

/// Why a credential could not be produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error("connection {connection} has no stored credential; add one before calling it")]
    Missing { connection: String },
    #[error("credential for connection {connection} cannot be read: {reason}")]
    Unavailable { connection: String, reason: String },
    #[error("credential for connection {connection} does not form a valid HTTP header")]
    InvalidHeader { connection: String },
    /// The provider refused the connection's grant (`invalid_grant`, or no
    /// refresh token left): only a new authorisation helps.
    #[error(
        "connection `{connection}` needs re-authorisation ({reason}); reconnect it with \
         `airlock oauth connect {connection}`"
    )]
    NeedsReauth { connection: String, reason: String },
    /// Refreshing the credential failed for a reason that may pass.
    #[error("refreshing the credential of connection `{connection}` failed: {reason}")]
    RefreshFailed { connection: String, reason: String },
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
