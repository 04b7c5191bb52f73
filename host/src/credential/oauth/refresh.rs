//! The OAuth2 credential source: the stored access token, refreshed before
//! it expires or after the upstream refused it, once per connection however
//! many calls need it at the same moment, on this server (a lock per
//! connection) and across servers sharing the database (a lease in it).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use oauth2::RefreshToken;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::exchange::{self, AuditMeta, ExchangeError};
use super::{OAuthContext, REFRESH_MARGIN_SECS, unix_now, unix_now_ms};
use crate::credential::{Credential, CredentialError, CredentialSource, field};
use crate::manifest::OAuth2Spec;
use crate::store::StoreError;
use crate::store::connections::{self as repo, ConnectionRecord, ConnectionStatus};
use crate::store::leases;
use crate::vault::SecretOwner;

/// How long a refresh may hold the connection's lease before another
/// server takes it over (the holder died): longer than a token request may
/// take.
const REFRESH_LEASE: Duration = Duration::from_secs(30);
/// How often a server waiting for another's refresh looks again.
const REFRESH_LEASE_POLL: Duration = Duration::from_millis(25);

/// What waiting for the refresh lease gave.
enum Taken<'a> {
    /// Another caller or server refreshed meanwhile: its token.
    Replaced(SecretString),
    /// The lease: this caller refreshes.
    Lease(RefreshLease<'a>),
}

/// A held refresh lease; released on drop unless the token transaction
/// released it already.
struct RefreshLease<'a> {
    credential: &'a OAuthCredential,
    name: String,
    holder: &'a str,
    /// Set once the token transaction released it: no second write.
    released: bool,
}

impl Drop for RefreshLease<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let released = self
            .credential
            .ctx
            .store
            .write(|tx| leases::release(tx, &self.name, self.holder));
        if let Err(e) = released {
            tracing::warn!(
                connection = %self.credential.record.name,
                "releasing the refresh lease failed (it runs out on its own): {e}"
            );
        }
    }
}

/// Reads the access token from the vault for each request and refreshes it.
pub(crate) struct OAuthCredential {
    ctx: Arc<OAuthContext>,
    record: ConnectionRecord,
    spec: OAuth2Spec,
    plugin_version: String,
}

impl fmt::Debug for OAuthCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthCredential")
            .field("connection", &self.record.name)
            .finish_non_exhaustive()
    }
}

/// The stored access token and its expiry (Unix seconds), if any.
struct Stored {
    access: SecretString,
    expires_at: Option<i64>,
    /// Unix ms from when it is due; absent for tokens stored before it was.
    refresh_at_ms: Option<i64>,
}

impl OAuthCredential {
    pub fn new(
        ctx: Arc<OAuthContext>,
        record: ConnectionRecord,
        spec: OAuth2Spec,
        plugin_version: String,
    ) -> Self {
        Self {
            ctx,
            record,
            spec,
            plugin_version,
        }
    }

    fn owner(&self) -> SecretOwner {
        SecretOwner::Connection(self.record.id.clone())
    }

    fn unavailable(&self, reason: impl fmt::Display) -> CredentialError {
        CredentialError::Unavailable {
            connection: self.record.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn load(&self) -> Result<Option<Stored>, CredentialError> {
        let vault = &self.ctx.vault;
        let owner = self.owner();
        // One read transaction: the token and its expiry were written together.
        let read = self.ctx.store.read(|c| {
            let access = vault.open_secret_in(c, &owner, field::ACCESS_TOKEN);
            let expires = vault.open_secret_in(c, &owner, field::EXPIRES_AT);
            let refresh_at = vault.open_secret_in(c, &owner, field::REFRESH_AT);
            Ok::<_, StoreError>((access, expires, refresh_at))
        });
        let (access, expires, refresh_at) = read.map_err(|e| self.unavailable(e))?;
        let Some(access) = access.map_err(|e| self.unavailable(e))? else {
            return Ok(None);
        };
        let expires_at = expires
            .map_err(|e| self.unavailable(e))?
            .and_then(|s| s.expose_secret().parse::<i64>().ok());
        let refresh_at_ms = refresh_at
            .map_err(|e| self.unavailable(e))?
            .and_then(|s| s.expose_secret().parse::<i64>().ok());
        Ok(Some(Stored {
            access,
            expires_at,
            refresh_at_ms,
        }))
    }

    fn fresh(stored: &Stored) -> bool {
        match stored.refresh_at_ms {
            Some(due) => unix_now_ms() < due,
            None => stored
                .expires_at
                .is_none_or(|t| t - REFRESH_MARGIN_SECS > unix_now()),
        }
    }

    fn needs_reauth(&self, reason: &str) -> CredentialError {
        // Best effort: the call fails with the same message either way.
        if let Err(e) = self
            .ctx
            .store
            .write(|tx| repo::set_status(tx, &self.record.id, ConnectionStatus::NeedsReauth))
        {
            tracing::warn!(connection = %self.record.name, "marking needs-reauth failed: {e}");
        }
        CredentialError::NeedsReauth {
            connection: self.record.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// The refresh token goes only to the token endpoint that issued it:
    /// when the endpoint in force differs (an override or setting changed
    /// since the authorisation), the connection needs a new one. Tokens
    /// stored before the endpoint was recorded are let through once.
    fn check_token_endpoint(&self, current: &url::Url) -> Result<(), CredentialError> {
        let issued_by = self
            .ctx
            .vault
            .open_secret(&self.owner(), field::TOKEN_ENDPOINT)
            .map_err(|e| self.unavailable(e))?;
        match issued_by {
            Some(issued) if issued.expose_secret() != current.as_str() => {
                Err(self.needs_reauth(&format!(
                    "its tokens were issued by {} but its token endpoint is now {current}; the \
                     refresh token is not sent to another endpoint, so authorise it again",
                    issued.expose_secret()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether the stored token is no longer `stale`: another caller (or
    /// server) refreshed it; then the newer one.
    fn replaced(&self, stale: &SecretString) -> Result<Option<SecretString>, CredentialError> {
        let current = self.load()?.ok_or_else(|| CredentialError::Missing {
            connection: self.record.name.clone(),
        })?;
        let same = stale
            .expose_secret()
            .as_bytes()
            .ct_eq(current.access.expose_secret().as_bytes());
        Ok((!bool::from(same)).then_some(current.access))
    }

    /// The connection's refresh lease, shared by every server on the
    /// database: taken when free (or run out: its holder died), else waited
    /// for while the stored token is watched. When the token is replaced
    /// meanwhile, that one is the answer and no refresh is made, so however
    /// many servers find the token due at once, one refresh reaches the
    /// identity provider and its rotated refresh token is stored once.
    async fn take_lease(&self, stale: &SecretString) -> Result<Taken<'_>, CredentialError> {
        let name = format!("oauth-refresh:{}", self.record.id);
        let holder = self.ctx.lease_holder.as_str();
        let give_up = std::time::Instant::now() + REFRESH_LEASE + REFRESH_LEASE_POLL * 20;
        loop {
            let got = self
                .ctx
                .store
                .write(|tx| leases::acquire(tx, &name, holder, REFRESH_LEASE))
                .map_err(|e| self.unavailable(e))?;
            let lease = got.is_ok().then(|| RefreshLease {
                credential: self,
                name: name.clone(),
                holder,
                released: false,
            });
            // Looked at after the lease: a refresh that ended just before
            // it was taken is seen here.
            if let Some(access) = self.replaced(stale)? {
                return Ok(Taken::Replaced(access));
            }
            if let Some(lease) = lease {
                return Ok(Taken::Lease(lease));
            }
            if std::time::Instant::now() > give_up {
                return Err(CredentialError::RefreshFailed {
                    connection: self.record.name.clone(),
                    reason: "another airlock server holds its refresh and has not finished; \
                             try again"
                        .into(),
                });
            }
            tokio::time::sleep(REFRESH_LEASE_POLL).await;
        }
    }

    /// Refresh under the connection's lock, replacing `stale`: the access
    /// token the caller found due (expired or about to) or saw refused. After
    /// acquiring the lock the stored token is looked at again; when another
    /// caller already replaced `stale`, that newer token is used. Comparing
    /// with the token the caller saw, not with the clock, keeps this one
    /// refresh per connection even when a fresh token's lifetime is shorter
    /// than the refresh margin.
    async fn refresh_once(&self, stale: &SecretString) -> Result<SecretString, CredentialError> {
        let lock = self.ctx.lock_for(&self.record.id);
        let _guard = lock.lock().await;
        let lease = match self.take_lease(stale).await? {
            Taken::Replaced(access) => return Ok(access),
            Taken::Lease(lease) => lease,
        };
        let mut lease = lease;

        let refresh = self
            .ctx
            .vault
            .open_secret(&self.owner(), field::REFRESH_TOKEN)
            .map_err(|e| self.unavailable(e))?;
        let Some(refresh) = refresh else {
            return Err(self.needs_reauth("its access token expired and there is no refresh token"));
        };
        let app = self
            .ctx
            .app_credentials(&self.record, &self.spec)
            .map_err(|e| self.unavailable(e))?;
        let eps = self
            .ctx
            .endpoints_for(&self.record, &self.spec)
            .map_err(|e| self.unavailable(e))?;
        self.check_token_endpoint(&eps.token)?;
        let client = exchange::client(&app, &eps, None).map_err(|e| self.unavailable(e))?;
        let meta = AuditMeta {
            plugin_id: self.record.plugin_id.clone(),
            plugin_version: self.plugin_version.clone(),
            connection_id: self.record.id.clone(),
        };
        let ctx = &*self.ctx;
        let http = exchange::AuditedHttp { ctx, meta };
        let token = RefreshToken::new(refresh.expose_secret().to_string());
        let result = client
            .exchange_refresh_token(&token)
            .request_async(&http)
            .await;
        let tokens = match result {
            Ok(t) => t,
            Err(e) => {
                return Err(match exchange::describe(e) {
                    ExchangeError::InvalidGrant(_) => {
                        self.needs_reauth("the provider refused its refresh token: invalid_grant")
                    }
                    ExchangeError::Other(reason) => CredentialError::RefreshFailed {
                        connection: self.record.name.clone(),
                        reason,
                    },
                });
            }
        };
        // The new access token and a rotated refresh token in one
        // transaction, which also ends the lease.
        self.ctx
            .store
            .transact(|tx| {
                exchange::store_tokens(&self.ctx, tx, &self.record.id, &tokens, true, &eps.token)?;
                leases::release(tx, &lease.name, lease.holder)?;
                Ok::<_, super::OAuthError>(())
            })
            .map_err(|e| self.unavailable(e))?;
        lease.released = true;
        tracing::info!(connection = %self.record.name, "OAuth access token refreshed");
        Ok(SecretString::from(
            oauth2::TokenResponse::access_token(&tokens)
                .secret()
                .as_str(),
        ))
    }
}

impl CredentialSource for OAuthCredential {
    fn credential<'a>(
        &'a self,
        _connection_id: &'a str,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        Box::pin(async move {
            let stored = self.load()?.ok_or_else(|| CredentialError::Missing {
                connection: self.record.name.clone(),
            })?;
            let token = if Self::fresh(&stored) {
                stored.access
            } else {
                self.refresh_once(&stored.access).await?
            };
            Ok(Credential::Bearer { token })
        })
    }

    fn can_refresh(&self) -> bool {
        true
    }

    fn refresh<'a>(
        &'a self,
        _connection_id: &'a str,
        rejected: &'a Credential,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        Box::pin(async move {
            let rejected = match rejected {
                Credential::Bearer { token } => Some(token),
                _ => None,
            };
            let rejected = rejected
                .ok_or_else(|| self.unavailable("the rejected credential is not a bearer token"))?;
            let token = self.refresh_once(rejected).await?;
            Ok(Credential::Bearer { token })
        })
    }
}
