//! Where a plugin's OAuth flow goes: the organisation app of a plugin
//! (client credentials and endpoint overrides for all its connections) and
//! a connection's own endpoint overrides, set by the operator and shown with
//! where each endpoint comes from.
//!
//! Setting an override is itself the operator's acknowledgement (only an
//! operator can): no second confirmation is asked. The effective endpoints
//! are shown by `airlock oauth endpoints`, `oauth app show`, `connection
//! add` and `oauth connect` (before the browser opens), a connection's
//! change is an audit event, and tokens are bound to the token endpoint
//! that issued them, so a changed endpoint never receives an older refresh
//! token (the connection needs a new authorisation instead).

use secrecy::SecretString;

use crate::audit::OperatorEvent;
use crate::credential::field;
use crate::credential::oauth::overrides::{EffectiveEndpoints, Templates};
use crate::credential::oauth::{EndpointOverrides, OAuthError, endpoints};
use crate::manifest::OAuth2Spec;
use crate::service::{Airlock, ServiceError};
use crate::store::oauth::{self as repo, EndpointTexts, OAuthAppRecord};
use crate::vault::SecretOwner;

impl Airlock {
    /// Check endpoint overrides given by the operator (see
    /// [`EndpointOverrides::parse`]) under this host's clear-text rule.
    pub fn parse_oauth_endpoints(
        &self,
        authorize_url: Option<&str>,
        token_url: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<EndpointOverrides, ServiceError> {
        let cleartext = self.runtime.cleartext_credential_origins();
        EndpointOverrides::parse(authorize_url, token_url, issuer, cleartext)
            .map_err(|e| OAuthError::Override(e).into())
    }

    /// Register (or replace, as a whole) the organisation-level OAuth app of
    /// a plugin: its client id, its client secret sealed by the vault (none:
    /// a public client), and the endpoints that replace the manifest's for
    /// every connection of the plugin without its own (empty: the
    /// manifest's).
    pub fn set_oauth_app(
        &self,
        plugin_id: &str,
        client_id: &str,
        client_secret: Option<&SecretString>,
        endpoints: &EndpointOverrides,
    ) -> Result<OAuthAppRecord, ServiceError> {
        if client_id.trim().is_empty() {
            return Err(ServiceError::Invalid("the OAuth client id is empty".into()));
        }
        self.store.transact(|tx| {
            let plugin = crate::store::plugins::get_plugin(&**tx, plugin_id)?;
            if !endpoints.is_empty() && plugin.manifest.auth.oauth2.is_none() {
                return Err(OAuthError::NoEndpoints(plugin_id.to_string()).into());
            }
            let id = repo::upsert_oauth_app(tx, plugin_id, client_id, endpoints.texts())?;
            let owner = SecretOwner::OAuthApp(id);
            match client_secret {
                Some(s) => self
                    .vault
                    .seal_secret(tx, &owner, field::CLIENT_SECRET, s)?,
                None => {
                    self.vault.delete_secret(tx, &owner, field::CLIENT_SECRET)?;
                }
            }
            Ok::<_, ServiceError>(())
        })?;
        self.oauth_app(plugin_id)?
            .ok_or_else(|| ServiceError::Internal("the OAuth app just written is gone".into()))
    }

    /// The organisation-level OAuth app of a plugin, if one is registered.
    pub fn oauth_app(&self, plugin_id: &str) -> Result<Option<OAuthAppRecord>, ServiceError> {
        Ok(self.store.read(|c| repo::get_oauth_app(c, plugin_id))?)
    }

    /// The plugin's manifest endpoints (templates, placeholders unfilled)
    /// under its app's overrides: what a connection without its own
    /// overrides starts from.
    pub fn plugin_oauth_endpoints(
        &self,
        plugin_id: &str,
    ) -> Result<EffectiveEndpoints, ServiceError> {
        let spec = self.plugin_oauth_spec(plugin_id)?;
        let app = self
            .oauth_app(plugin_id)?
            .map(|a| a.endpoints)
            .unwrap_or_default();
        let t = Templates::resolve(&spec, &app, &EndpointTexts::default());
        Ok(EffectiveEndpoints {
            authorize_url: t.authorize.template,
            authorize_url_from: t.authorize.source,
            token_url: t.token.template,
            token_url_from: t.token.source,
            issuer_from: t.issuer.as_ref().map(|i| i.source),
            issuer: t.issuer.map(|i| i.template),
        })
    }

    /// The endpoints connection `id_or_name` uses now, placeholders filled
    /// and checked, each with where it comes from.
    pub fn oauth_endpoints(&self, id_or_name: &str) -> Result<EffectiveEndpoints, ServiceError> {
        let record = self.connection(id_or_name)?;
        let (spec, _) = self.oauth_spec(&record)?;
        Ok(self
            .oauth_context()
            .endpoints_for(&record, &spec)?
            .effective())
    }

    /// Replace the endpoint overrides of connection `id_or_name` (empty:
    /// back to the app's or the manifest's). The result must resolve for
    /// the connection's settings, or nothing is written. Recorded as an
    /// audit event by `actor`. Tokens issued by another token endpoint are
    /// not refreshed there: the connection needs `airlock oauth connect`.
    pub async fn set_oauth_endpoints(
        &self,
        id_or_name: &str,
        overrides: &EndpointOverrides,
        actor: &str,
    ) -> Result<EffectiveEndpoints, ServiceError> {
        let record = self.connection(id_or_name)?;
        let (spec, _) = self.oauth_spec(&record)?;
        let app = self
            .oauth_app(&record.plugin_id)?
            .map(|a| a.endpoints)
            .unwrap_or_default();
        let templates = Templates::resolve(&spec, &app, overrides.texts());
        let cleartext = self.runtime.cleartext_credential_origins();
        let effective =
            endpoints(&record.plugin_id, &templates, &record.settings, cleartext)?.effective();
        self.store
            .write(|tx| repo::set_connection_endpoints(tx, &record.id, overrides.texts()))?;
        self.audit
            .record_event(&OperatorEvent {
                time: std::time::SystemTime::now(),
                actor: actor.to_string(),
                plugin_id: record.plugin_id.clone(),
                connection_id: record.id.clone(),
                action: "oauth-endpoints-set",
                detail: serde_json::json!({
                    "overrides": overrides.texts(),
                    "effective": effective,
                }),
            })
            .await?;
        Ok(effective)
    }

    fn plugin_oauth_spec(&self, plugin_id: &str) -> Result<OAuth2Spec, ServiceError> {
        let plugin = self
            .store
            .read(|c| crate::store::plugins::get_plugin(c, plugin_id))?;
        Ok(plugin
            .manifest
            .auth
            .oauth2
            .ok_or_else(|| OAuthError::NoEndpoints(plugin_id.to_string()))?)
    }
}
