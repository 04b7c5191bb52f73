//! The vault credential source: a connection's sealed secret (password, API
//! key or token), opened for each request bound to receive it, so removing
//! the connection or rotating keys takes effect for calls already in flight.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use http::HeaderName;
use secrecy::SecretString;

use super::{Credential, CredentialError, CredentialSource, field};
use crate::manifest::AuthKind;
use crate::store::connections::AuthConfig;
use crate::vault::{SecretOwner, Vault};

/// Reads a connection's credential from the vault for each request.
pub(crate) struct VaultCredential {
    pub vault: Arc<Vault>,
    pub kind: AuthKind,
    pub config: AuthConfig,
    /// The connection's name, for messages.
    pub connection: String,
}

impl fmt::Debug for VaultCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultCredential")
            .field("connection", &self.connection)
            .field("kind", &self.kind)
            .finish()
    }
}

impl CredentialSource for VaultCredential {
    fn credential<'a>(
        &'a self,
        connection_id: &'a str,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        Box::pin(async move {
            let owner = SecretOwner::Connection(connection_id.to_string());
            let field = secret_field(self.kind).ok_or_else(|| CredentialError::Missing {
                connection: self.connection.clone(),
            })?;
            let secret = self
                .vault
                .open_secret(&owner, field)
                .map_err(|e| CredentialError::Unavailable {
                    connection: self.connection.clone(),
                    reason: e.to_string(),
                })?
                .ok_or_else(|| CredentialError::Missing {
                    connection: self.connection.clone(),
                })?;
            assemble(self.kind, &self.config, secret, &self.connection)
        })
    }
}

/// The vault field holding the secret of auth kind `kind`; `None` for
/// `none`.
pub(crate) fn secret_field(kind: AuthKind) -> Option<&'static str> {
    match kind {
        AuthKind::Basic => Some(field::PASSWORD),
        AuthKind::ApiKey => Some(field::API_KEY),
        AuthKind::Bearer => Some(field::TOKEN),
        AuthKind::Oauth2 => Some(field::ACCESS_TOKEN),
        AuthKind::None => None,
    }
}

/// The credential of auth kind `kind` from its stored non-secret part and
/// its secret (an OAuth2 access token goes as a bearer token).
pub(crate) fn assemble(
    kind: AuthKind,
    config: &AuthConfig,
    secret: SecretString,
    connection: &str,
) -> Result<Credential, CredentialError> {
    Ok(match kind {
        AuthKind::Basic => Credential::Basic {
            username: config.username.clone().unwrap_or_default(),
            password: secret,
        },
        AuthKind::ApiKey => Credential::ApiKey {
            header: HeaderName::from_bytes(config.header.as_deref().unwrap_or_default().as_bytes())
                .map_err(|_| CredentialError::InvalidHeader {
                    connection: connection.to_string(),
                })?,
            prefix: config.prefix.clone().unwrap_or_default(),
            key: secret,
        },
        _ => Credential::Bearer { token: secret },
    })
}
