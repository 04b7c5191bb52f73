//! A connection's credential after it is created: replaced in place (same
//! id, so its sync cursors, conversations and plugin state stay), and tried
//! against the service before a new connection is saved.
//!
//! A replacement keeps the connection's auth kind: changing how a
//! connection authenticates changes what it may reach with which secret, so
//! that is a new connection. The replaced ciphertext is deleted in the same
//! transaction (the store runs with `secure_delete`, and the vault's ledger
//! refuses a copy put back), and the change is an `event` row in the audit
//! chain naming the fields replaced, never their values.

use std::sync::Arc;

use secrecy::SecretString;

use super::connections::PlannedConnection;
use super::{Airlock, AuthInput, NewConnection, ServiceError};
use crate::audit::OperatorEvent;
use crate::credential::{self, CredentialSource, StaticCredential, field};
use crate::manifest::AuthKind;
use crate::runtime::types::ConnectionReport;
use crate::store::connections::{self as repo, AuthConfig, ConnectionRecord};
use crate::vault::SecretOwner;

/// The secrets a replacement seals, by vault field, and the vault fields it
/// deletes (an OAuth app turned public drops its client secret).
struct Replacement {
    config: AuthConfig,
    seal: Vec<(&'static str, SecretString)>,
    delete: Vec<&'static str>,
}

impl Airlock {
    /// Replace the credential of connection `id_or_name` in place: `auth`
    /// must be of the connection's auth kind. `actor` names who asked
    /// (`cli:<user>`, `token:<name>`) for the audit row.
    pub async fn replace_credential(
        &self,
        id_or_name: &str,
        auth: AuthInput,
        actor: &str,
    ) -> Result<ConnectionRecord, ServiceError> {
        let record = self.connection(id_or_name)?;
        let plugin = self
            .store
            .read(|c| crate::store::plugins::get_plugin(c, &record.plugin_id))?;
        let replacement = replacement(&record, plugin.manifest.auth.api_key.is_some(), auth)?;
        let owner = SecretOwner::Connection(record.id.clone());
        self.store.transact(|tx| {
            for (name, secret) in &replacement.seal {
                self.vault.seal_secret(tx, &owner, name, secret)?;
            }
            for name in &replacement.delete {
                self.vault.delete_secret(tx, &owner, name)?;
            }
            repo::update_settings_and_auth(tx, &record.id, &record.settings, &replacement.config)?;
            Ok::<_, ServiceError>(())
        })?;
        let fields: Vec<&str> = replacement
            .seal
            .iter()
            .map(|(name, _)| *name)
            .chain(replacement.delete.iter().copied())
            .collect();
        self.audit
            .record_event(&OperatorEvent {
                time: std::time::SystemTime::now(),
                actor: actor.to_string(),
                plugin_id: record.plugin_id.clone(),
                connection_id: record.id.clone(),
                action: "credential-replaced",
                detail: serde_json::json!({ "fields": fields }),
            })
            .await?;
        self.connection(&record.id)
    }

    /// Create a connection only if the plugin's `test-connection` passes
    /// with the given credential, tried from memory before anything is
    /// stored. The test's requests are audited like any call's.
    pub async fn add_connection_tested(
        &self,
        new: NewConnection,
    ) -> Result<(ConnectionRecord, ConnectionReport), ServiceError> {
        let name = new.name.clone();
        if self.connection(&name).is_ok() {
            return Err(crate::store::StoreError::Conflict(format!(
                "a connection named `{name}` already exists"
            ))
            .into());
        }
        let planned = self.plan_connection(new)?;
        let source = unsaved_credential(&planned)?;
        let started = std::time::Instant::now();
        let result = async {
            let (installed, plugin) = self.installed_plugin(&planned.record.plugin_id)?;
            let (plugin, conn) =
                self.connection_view(&planned.record, None, (&installed, plugin), source)?;
            Ok::<_, ServiceError>(self.runtime.test_connection(&plugin, &conn).await?)
        }
        .await;
        self.record_call(&planned.record, started, &result);
        let report = result.map_err(|e| ServiceError::NotSaved {
            name,
            source: Box::new(e),
        })?;
        Ok((self.store_connection(planned)?, report))
    }
}

/// What replacing `record`'s credential with `auth` writes.
fn replacement(
    record: &ConnectionRecord,
    header_in_settings: bool,
    auth: AuthInput,
) -> Result<Replacement, ServiceError> {
    if auth.kind() != record.auth_kind {
        return Err(ServiceError::Invalid(format!(
            "connection `{}` authenticates with `{}`, not `{}`: give a new `{}` credential \
             (a connection that should authenticate another way is removed and added again)",
            record.name,
            record.auth_kind.as_str(),
            auth.kind().as_str(),
            record.auth_kind.as_str(),
        )));
    }
    let mut config = record.auth_config.clone();
    let (seal, delete) = match auth {
        AuthInput::None => {
            return Err(ServiceError::Invalid(format!(
                "connection `{}` has no credential to replace (auth kind `none`)",
                record.name
            )));
        }
        AuthInput::Basic { username, password } => {
            config.username = Some(username);
            (vec![(field::PASSWORD, password)], vec![])
        }
        AuthInput::ApiKey {
            header,
            prefix,
            key,
        } => {
            api_key_layout(record, header_in_settings, &mut config, header, prefix)?;
            (vec![(field::API_KEY, key)], vec![])
        }
        AuthInput::Bearer { token } => (vec![(field::TOKEN, token)], vec![]),
        AuthInput::OAuth2 {
            client_id,
            client_secret,
        } => {
            let Some(client_id) = client_id.filter(|id| !id.trim().is_empty()) else {
                return Err(ServiceError::Invalid(format!(
                    "connection `{}`: an OAuth2 credential to replace is the connection's own \
                     app: give its client id (and its client secret unless it is a public client)",
                    record.name
                )));
            };
            config.username = Some(client_id);
            match client_secret {
                Some(secret) => (vec![(field::CLIENT_SECRET, secret)], vec![]),
                None => (vec![], vec![field::CLIENT_SECRET]),
            }
        }
    };
    Ok(Replacement {
        config,
        seal,
        delete,
    })
}

/// The header and prefix a replaced API key goes in. Where the plugin's
/// settings name them they stay the settings' business (one source of
/// truth); otherwise a given header or prefix replaces the stored one.
fn api_key_layout(
    record: &ConnectionRecord,
    header_in_settings: bool,
    config: &mut AuthConfig,
    header: String,
    prefix: Option<String>,
) -> Result<(), ServiceError> {
    let header = header.trim();
    if header_in_settings {
        if !header.is_empty() || prefix.is_some() {
            return Err(ServiceError::Invalid(format!(
                "connection `{}` takes its API key's header and prefix from its settings; \
                 change those settings instead of giving them with the key",
                record.name
            )));
        }
        return Ok(());
    }
    if !header.is_empty() {
        config.header = Some(super::connections::key_header(header)?.as_str().to_string());
    }
    if let Some(prefix) = prefix {
        config.prefix = Some(prefix);
    }
    Ok(())
}

/// The credential of a connection not yet saved, from the secrets it would
/// seal; `None` for auth kind `none`. An OAuth2 connection has no token
/// before its authorisation, so it cannot be tested before it is saved.
fn unsaved_credential(
    planned: &PlannedConnection,
) -> Result<Option<Arc<dyn CredentialSource>>, ServiceError> {
    let record = &planned.record;
    if record.auth_kind == AuthKind::Oauth2 {
        return Err(ServiceError::Invalid(format!(
            "connection `{}` cannot be tested before it is saved: an OAuth2 connection has \
             no token until its authorisation completes. Add it without the test, \
             authorise it, then test it",
            record.name
        )));
    }
    let Some(name) = credential::secret_field(record.auth_kind) else {
        return Ok(None);
    };
    let secret = planned
        .secrets
        .iter()
        .find(|(field, _)| *field == name)
        .map(|(_, secret)| secret.clone())
        .ok_or_else(|| {
            ServiceError::Internal(format!(
                "connection `{}`: no `{name}` among the secrets to seal",
                record.name
            ))
        })?;
    let credential =
        credential::assemble(record.auth_kind, &record.auth_config, secret, &record.name)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(Some(StaticCredential::new(credential)))
}
