//! The vault credential source: a connection's sealed secret (password, API
//! key or token), opened for each request bound to receive it, so removing
//! the connection or rotating keys takes effect for calls already in flight.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use http::HeaderName;

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
            let field = match self.kind {
                AuthKind::Basic => field::PASSWORD,
                AuthKind::ApiKey => field::API_KEY,
                AuthKind::Bearer => field::TOKEN,
                AuthKind::Oauth2 => field::ACCESS_TOKEN,
                AuthKind::None => {
                    return Err(CredentialError::Missing {
                        connection: self.connection.clone(),
                    });
                }
            };
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
            Ok(match self.kind {
                AuthKind::Basic => Credential::Basic {
                    username: self.config.username.clone().unwrap_or_default(),
                    password: secret,
                },
                AuthKind::ApiKey => Credential::ApiKey {
                    header: HeaderName::from_bytes(
                        self.config.header.as_deref().unwrap_or_default().as_bytes(),
                    )
                    .map_err(|_| CredentialError::InvalidHeader {
                        connection: self.connection.clone(),
                    })?,
                    prefix: self.config.prefix.clone().unwrap_or_default(),
                    key: secret,
                },
                _ => Credential::Bearer { token: secret },
            })
        })
    }
}
