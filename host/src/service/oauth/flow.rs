//! Starting an authorisation (PKCE S256, single-use expiring `state`) and
//! finishing it from the callback (state checked in constant time, code
//! exchanged with the verifier, tokens sealed, connection activated).

use base64::Engine as _;
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, Scope};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::STATE_LIFETIME;
use crate::credential::oauth::exchange::{self, AuditMeta};
use crate::credential::oauth::overrides::EffectiveEndpoints;
use crate::credential::oauth::{OAuthContext, OAuthError, sanitize};
use crate::manifest::{AuthKind, OAuth2Spec};
use crate::service::{Airlock, ServiceError};
use crate::store::connections::{self as repo, ConnectionRecord, ConnectionStatus};
use crate::store::oauth::{OAuthStateRecord, insert_oauth_state, take_oauth_state};
use crate::vault::PKCE_VERIFIER_FIELD;

/// A started authorisation: send the user to `authorization_url`.
#[derive(Debug, Clone)]
pub struct OAuthStart {
    /// The connection's name.
    pub connection: String,
    /// The provider's authorize URL with client id, scopes, PKCE challenge
    /// and `state`: open it in the user's browser.
    pub authorization_url: String,
    /// The `state` value (also in the URL); only its SHA-256 is stored.
    pub state: String,
    /// Where the provider sends the browser back; the callback must arrive
    /// there (the token request repeats it).
    pub redirect_uri: String,
    /// RFC 3339; the callback is refused after this.
    pub expires_at: String,
    /// The endpoints this authorisation uses, with where each came from:
    /// show them to the operator with the URL.
    pub endpoints: EffectiveEndpoints,
}

/// What a successful callback did.
#[derive(Debug, Clone)]
pub struct CallbackOutcome {
    /// The authorised connection as stored now: `active`, unless it was
    /// paused (a paused connection stays paused).
    pub connection: ConnectionRecord,
}

/// `http://127.0.0.1:<port>/callback`.
pub fn redirect_uri(port: u16) -> String {
    format!("http://127.0.0.1:{port}/callback")
}

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formatting a time")
}

impl Airlock {
    pub(super) fn oauth_spec(
        &self,
        record: &ConnectionRecord,
    ) -> Result<(OAuth2Spec, String), ServiceError> {
        if record.auth_kind != AuthKind::Oauth2 {
            return Err(OAuthError::NotOAuth(record.name.clone()).into());
        }
        let plugin = self
            .store()
            .read(|c| crate::store::plugins::get_plugin(c, &record.plugin_id))?;
        let spec = plugin
            .manifest
            .auth
            .oauth2
            .clone()
            .ok_or_else(|| OAuthError::NoEndpoints(plugin.id.clone()))?;
        Ok((spec, plugin.version))
    }

    /// Start authorising `connection` with the callback on the configured
    /// loopback port: see [`Airlock::oauth_start_on`].
    pub fn oauth_start(&self, connection: &str) -> Result<OAuthStart, ServiceError> {
        self.oauth_start_on(connection, self.oauth_callback_port())
    }

    /// Start authorising `connection`, redirecting back to
    /// `http://127.0.0.1:<port>/callback`: a fresh PKCE verifier (sealed by
    /// the vault, bound to the state's hash) and a random single-use `state`
    /// that expires after [`STATE_LIFETIME`].
    pub fn oauth_start_on(&self, connection: &str, port: u16) -> Result<OAuthStart, ServiceError> {
        self.oauth_start_redirect(connection, &redirect_uri(port))
    }

    /// Start authorising `connection` with the provider sending the user
    /// back to `redirect` (the management API's own callback route, which
    /// finishes the flow with [`Airlock::oauth_callback`]).
    pub fn oauth_start_redirect(
        &self,
        connection: &str,
        redirect: &str,
    ) -> Result<OAuthStart, ServiceError> {
        let record = self.connection(connection)?;
        let (spec, _) = self.oauth_spec(&record)?;
        let ctx = self.oauth_context();
        let app = ctx.app_credentials(&record, &spec)?;
        let eps = ctx.endpoints_for(&record, &spec)?;
        let redirect = redirect.to_string();
        let client = exchange::client(&app, &eps, Some(&redirect)).map_err(|reason| {
            OAuthError::Endpoint {
                plugin: record.plugin_id.clone(),
                reason,
            }
        })?;

        let state =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.clone()))
            .set_pkce_challenge(challenge);
        for scope in &spec.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (k, v) in &spec.extra_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let (url, _) = request.url();

        let hash = state_hash(&state);
        let now = time::OffsetDateTime::now_utc();
        let expires_at = rfc3339(now + STATE_LIFETIME);
        self.store.transact(|tx| {
            let (key_version, sealed) = self.vault.seal_blob_in(
                &**tx,
                &hash,
                PKCE_VERIFIER_FIELD,
                verifier.secret().as_bytes(),
            )?;
            insert_oauth_state(
                tx,
                &OAuthStateRecord {
                    state_hash: hash.clone(),
                    connection_id: record.id.clone(),
                    key_version,
                    verifier: sealed,
                    redirect_uri: redirect.clone(),
                    created_at: rfc3339(now),
                    expires_at: expires_at.clone(),
                },
            )?;
            Ok::<_, ServiceError>(())
        })?;
        Ok(OAuthStart {
            connection: record.name,
            authorization_url: url.to_string(),
            state,
            redirect_uri: redirect,
            expires_at,
            endpoints: eps.effective(),
        })
    }

    /// Finish an authorisation from the callback's query string
    /// (`code=...&state=...`, or `error=...`) that arrived at `redirect_uri`.
    /// The state is consumed whatever happens next. Nothing is exchanged
    /// unless the state was started for this very `redirect_uri` and a
    /// present `iss` names the connection's provider (RFC 9207); on success
    /// the tokens are sealed and the connection is active.
    pub async fn oauth_callback(
        &self,
        query: &str,
        redirect_uri: &str,
    ) -> Result<CallbackOutcome, ServiceError> {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (record, verifier) = self.take_state(get("state"))?;
        // The state belongs to the flow that created it: a callback that
        // reaches another listener or route (another connection's CLI
        // listener, this server's route for a CLI flow) is not its answer.
        if record.redirect_uri != redirect_uri {
            return Err(OAuthError::Callback(format!(
                "this callback arrived at {redirect_uri}, but its authorisation was started for \
                 {}; nothing was exchanged; start the OAuth flow again",
                record.redirect_uri
            ))
            .into());
        }
        let conn = self.connection(&record.connection_id)?;
        let (spec, version) = self.oauth_spec(&conn)?;
        let ctx = self.oauth_context();
        let eps = ctx.endpoints_for(&conn, &spec)?;
        if let Some(iss) = get("iss") {
            eps.check_issuer(&conn.plugin_id, iss)?;
        }
        if let Some(error) = get("error") {
            return Err(OAuthError::Denied {
                error: sanitize(error),
                description: get("error_description").map(sanitize),
            }
            .into());
        }
        let code = get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OAuthError::Callback("the callback carries no `code`".into()))?;
        let app = ctx.app_credentials(&conn, &spec)?;
        let client =
            exchange::client(&app, &eps, Some(&record.redirect_uri)).map_err(|reason| {
                OAuthError::Endpoint {
                    plugin: conn.plugin_id.clone(),
                    reason,
                }
            })?;
        let verifier_text = Zeroizing::new(
            String::from_utf8(verifier.to_vec())
                .map_err(|_| OAuthError::Callback("the stored verifier is corrupt".into()))?,
        );
        let meta = AuditMeta {
            plugin_id: conn.plugin_id.clone(),
            plugin_version: version,
            connection_id: conn.id.clone(),
        };
        let http = exchange::AuditedHttp { ctx: &ctx, meta };
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier_text.to_string()))
            .request_async(&http)
            .await
            .map_err(|e| OAuthError::Token {
                connection: conn.name.clone(),
                reason: exchange::describe(e).message().to_string(),
            })?;
        store_and_activate(self, &ctx, &conn, &tokens, &eps.token)?;
        Ok(CallbackOutcome {
            connection: self.connection(&conn.id)?,
        })
    }

    /// Consume the started authorisation a callback's `state` names (looked
    /// up by hash, then compared in constant time) and open its PKCE
    /// verifier. Unknown, used and expired states are refused alike.
    fn take_state(
        &self,
        state: Option<&str>,
    ) -> Result<(OAuthStateRecord, Zeroizing<Vec<u8>>), ServiceError> {
        let state = state.filter(|s| !s.is_empty()).ok_or_else(|| {
            OAuthError::Callback(
                "the callback carries no `state`; start the OAuth flow again".into(),
            )
        })?;
        let hash = state_hash(state);
        let unknown = || {
            OAuthError::Callback(
                "unknown or already used `state`; start the OAuth flow again".into(),
            )
        };
        let (record, verifier) = self
            .store
            .transact(|tx| {
                let Some(record) = take_oauth_state(tx, &hash)? else {
                    return Ok::<_, ServiceError>(None);
                };
                if !bool::from(record.state_hash.as_bytes().ct_eq(hash.as_bytes())) {
                    return Ok(None);
                }
                let verifier = self.vault.open_blob_in(
                    &**tx,
                    &record.state_hash,
                    PKCE_VERIFIER_FIELD,
                    record.key_version,
                    &record.verifier,
                );
                Ok(Some((record, verifier)))
            })?
            .ok_or_else(unknown)?;
        let expires = time::OffsetDateTime::parse(
            &record.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| unknown())?;
        if expires <= time::OffsetDateTime::now_utc() {
            return Err(OAuthError::Callback(
                "this authorisation expired; start the OAuth flow again".into(),
            )
            .into());
        }
        Ok((record, verifier?))
    }
}

fn store_and_activate(
    airlock: &Airlock,
    ctx: &OAuthContext,
    conn: &ConnectionRecord,
    tokens: &oauth2::basic::BasicTokenResponse,
    token_endpoint: &url::Url,
) -> Result<(), ServiceError> {
    airlock.store.transact(|tx| {
        exchange::store_tokens(ctx, tx, &conn.id, tokens, false, token_endpoint)?;
        if conn.status == ConnectionStatus::NeedsReauth {
            repo::set_status(tx, &conn.id, ConnectionStatus::Active)?;
        }
        Ok::<_, ServiceError>(())
    })
}
