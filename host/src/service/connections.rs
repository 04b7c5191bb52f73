//! Connections: a plugin, its settings, its credential (sealed in the vault)
//! and its scope. The credential is read from the vault for each outbound
//! request bound to receive it, so removing a connection or rotating keys
//! takes effect for calls already in flight.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use secrecy::SecretString;

use super::{Airlock, ServiceError, oauth};
use crate::connection::{BASE_URL_SETTING, Connection};
use crate::credential::{self, CredentialSource, VaultCredential, field};
use crate::manifest::AuthKind;
use crate::net::{Origin, cleartext_advice, may_carry_credential};
use crate::runtime::types::ConnectionReport;
use crate::store::ConfigVersion;
use crate::store::connections::{
    self as repo, AuthConfig, ConnectionFilter, ConnectionRecord, ConnectionStatus, Scope,
};
use crate::store::plugins::PluginRecord;
use crate::vault::SecretOwner;

/// How a new connection authenticates, secrets included. Secrets are sealed
/// into the vault and dropped; nothing keeps them in plaintext.
pub enum AuthInput {
    /// No credential: nothing is added to the plugin's requests, and no
    /// `base-url` is required.
    None,
    /// User + password, or email + API token; an empty user is allowed
    /// (Azure DevOps PATs).
    Basic {
        /// The user or email; stored in plain with the connection.
        username: String,
        /// The password or API token; sealed.
        password: SecretString,
    },
    /// A custom header with a prefix, e.g. `x-api-key` with `""` or
    /// `Authorization` with `"Bearer "`.
    ApiKey {
        /// The header name. For a plugin that names a header setting it is
        /// written into that setting (and must agree with a value given
        /// there); empty leaves the setting and its default to decide.
        header: String,
        /// Text before the key in the header value, trailing space
        /// included; written into the plugin's prefix setting when it names
        /// one. `None` keeps the plugin's default prefix (empty for a
        /// plugin that names no prefix setting); `Some("")` sends the bare
        /// key.
        prefix: Option<String>,
        /// The API key; sealed.
        key: SecretString,
    },
    /// `Authorization: Bearer <token>` (PATs).
    Bearer {
        /// The token; sealed.
        token: SecretString,
    },
    /// OAuth2; tokens arrive through the authorisation flow. The connection
    /// may carry its own app credentials.
    OAuth2 {
        /// This connection's own OAuth app client id; `None` uses the
        /// plugin's app ([`Airlock::set_oauth_app`]) or the environment
        /// variables the manifest names.
        client_id: Option<String>,
        /// The client secret of that app, sealed; `None` for public
        /// clients. Used only with `client_id`.
        client_secret: Option<SecretString>,
    },
}

impl fmt::Debug for AuthInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthInput::None => "AuthInput::None",
            AuthInput::Basic { .. } => "AuthInput::Basic([redacted])",
            AuthInput::ApiKey { .. } => "AuthInput::ApiKey([redacted])",
            AuthInput::Bearer { .. } => "AuthInput::Bearer([redacted])",
            AuthInput::OAuth2 { .. } => "AuthInput::OAuth2([redacted])",
        })
    }
}

impl AuthInput {
    pub(super) fn kind(&self) -> AuthKind {
        match self {
            AuthInput::None => AuthKind::None,
            AuthInput::Basic { .. } => AuthKind::Basic,
            AuthInput::ApiKey { .. } => AuthKind::ApiKey,
            AuthInput::Bearer { .. } => AuthKind::Bearer,
            AuthInput::OAuth2 { .. } => AuthKind::Oauth2,
        }
    }
}

/// Everything needed to create a connection.
#[derive(Debug)]
pub struct NewConnection {
    /// Unique name the operator calls it by: 1-128 printable characters.
    pub name: String,
    /// The installed plugin it runs.
    pub plugin_id: String,
    /// Setting values by name, checked against the plugin's schema
    /// (defaults fill the rest). A `base-url` is required unless `auth` is
    /// [`AuthInput::None`]: the credential is bound to its origin.
    pub settings: BTreeMap<String, String>,
    /// The credential; its kind must be one the plugin offers.
    pub auth: AuthInput,
    /// Which projects it serves: global, or one or more named projects.
    pub scope: Scope,
}

/// Headers a custom API-key header may not be: they route or frame the
/// request, or carry other credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
    "proxy-authorization",
    "upgrade",
];

fn validate_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "connection name {name:?} must be 1-128 printable characters"
        )));
    }
    Ok(())
}

/// Reconcile the header and prefix an API-key [`AuthInput`] names with the
/// plugin's settings for them: a header given with the credential is
/// written into the settings (its prefix too), unless the settings already
/// say something else. An empty header leaves the settings (and their
/// defaults) to decide.
fn api_key_settings(
    settings: &mut BTreeMap<String, String>,
    spec: &crate::manifest::ApiKeySpec,
    header: &str,
    prefix: Option<&str>,
) -> Result<(), ServiceError> {
    if header.trim().is_empty() {
        return Ok(());
    }
    let mut put = |name: &str, value: &str, same: fn(&str, &str) -> bool| match settings.get(name) {
        Some(existing) if !same(existing, value) => Err(ServiceError::Invalid(format!(
            "the API key's header settings disagree: setting `{name}` is {existing:?} but \
                 the credential names {value:?}; give one of them"
        ))),
        _ => {
            settings.insert(name.to_string(), value.to_string());
            Ok(())
        }
    };
    put(&spec.header_setting, header.trim(), |a, b| {
        a.trim().eq_ignore_ascii_case(b.trim())
    })?;
    if let (Some(name), Some(prefix)) = (&spec.prefix_setting, prefix) {
        put(name, prefix, |a, b| a == b)?;
    }
    Ok(())
}

/// Refuse an auth kind the plugin does not declare, `none` included: a
/// plugin that needs a credential fails every call without one, so the
/// mistake is named when the connection is made, not at its first call.
fn check_auth_kind(plugin: &PluginRecord, kind: AuthKind) -> Result<(), ServiceError> {
    let offered = &plugin.manifest.auth.kinds;
    if offered.contains(&kind) {
        return Ok(());
    }
    let names: Vec<&str> = offered.iter().map(|k| k.as_str()).collect();
    let needs = if kind == AuthKind::None {
        "needs a credential"
    } else {
        "does not accept it"
    };
    Err(ServiceError::Invalid(format!(
        "plugin `{}` {needs}: auth kind `{}` is not among those it declares ({}); \
         choose one of them",
        plugin.id,
        kind.as_str(),
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )))
}

/// The settings a new connection stores: the API key's header settings
/// reconciled, checked against the plugin's schema with defaults applied,
/// and a `base-url` wherever a credential must be bound to an origin.
fn connection_settings(
    plugin: &PluginRecord,
    name: &str,
    auth: &AuthInput,
    mut given: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ServiceError> {
    if let (AuthInput::ApiKey { header, prefix, .. }, Some(spec)) =
        (auth, &plugin.manifest.auth.api_key)
    {
        api_key_settings(&mut given, spec, header, prefix.as_deref())?;
    }
    let settings = crate::manifest::settings::validate(&plugin.manifest, &given)?;
    if auth.kind() != AuthKind::None && !settings.contains_key(BASE_URL_SETTING) {
        return Err(ServiceError::Invalid(format!(
            "connection `{name}` needs a `base-url` setting: its credential is bound to that origin"
        )));
    }
    Ok(settings)
}

/// Refuse a credential bound to a plain-http origin that is neither loopback
/// nor allowed by the operator: every request would carry it in clear text.
fn check_cleartext(
    name: &str,
    settings: &BTreeMap<String, String>,
    allowed: &[Origin],
) -> Result<(), ServiceError> {
    let Some(url) = settings.get(BASE_URL_SETTING) else {
        return Ok(());
    };
    let origin = Origin::parse(url)
        .map_err(|e| ServiceError::Invalid(format!("setting `base-url` = {url:?}: {e}")))?;
    if may_carry_credential(&origin, allowed) {
        return Ok(());
    }
    Err(ServiceError::Invalid(format!(
        "connection `{name}` would send its credential in clear text to {origin}: {}",
        cleartext_advice(&origin)
    )))
}

fn check_scope(scope: &Scope) -> Result<(), ServiceError> {
    if let Scope::Projects(projects) = scope
        && (projects.is_empty() || projects.iter().any(|p| p.trim().is_empty()))
    {
        return Err(ServiceError::Invalid(
            "a project-scoped connection needs at least one non-empty project name".into(),
        ));
    }
    Ok(())
}

/// A new connection's stored auth settings and its secrets by vault field.
type SealParts = (AuthConfig, Vec<(&'static str, SecretString)>);

/// A connection checked and ready to store: its record and the secrets to
/// seal under their vault field names.
pub(super) struct PlannedConnection {
    pub(super) record: ConnectionRecord,
    pub(super) secrets: Vec<(&'static str, SecretString)>,
}

/// What a connection's auth input becomes: the non-secret part stored with
/// the record, and the secrets to seal under their vault field names.
pub(super) fn seal_parts(
    auth: AuthInput,
    plugin: &PluginRecord,
    settings: &BTreeMap<String, String>,
) -> Result<SealParts, ServiceError> {
    let mut config = AuthConfig::default();
    let mut secrets = Vec::new();
    match auth {
        AuthInput::None => {}
        AuthInput::Basic { username, password } => {
            config.username = Some(username);
            secrets.push((field::PASSWORD, password));
        }
        AuthInput::ApiKey {
            header,
            prefix,
            key,
        } => {
            let (name, prefix) =
                api_key_header(plugin, settings, header, prefix.unwrap_or_default())?;
            config.header = Some(name.as_str().to_string());
            config.prefix = Some(prefix);
            secrets.push((field::API_KEY, key));
        }
        AuthInput::Bearer { token } => secrets.push((field::TOKEN, token)),
        AuthInput::OAuth2 {
            client_id,
            client_secret,
        } => {
            config.username = client_id;
            if let Some(s) = client_secret {
                secrets.push((field::CLIENT_SECRET, s));
            }
        }
    }
    Ok((config, secrets))
}

/// The header and prefix an API key is sent with. A plugin that names its
/// header and prefix settings gets them from there (defaults included), so
/// the stored settings and the injected header always agree.
fn api_key_header(
    plugin: &PluginRecord,
    settings: &BTreeMap<String, String>,
    header: String,
    prefix: String,
) -> Result<(HeaderName, String), ServiceError> {
    let (header, prefix) = match &plugin.manifest.auth.api_key {
        Some(spec) => (
            settings
                .get(&spec.header_setting)
                .cloned()
                .unwrap_or_default(),
            spec.prefix_setting
                .as_ref()
                .and_then(|p| settings.get(p))
                .cloned()
                .unwrap_or_default(),
        ),
        None => (header, prefix),
    };
    if header.trim().is_empty() {
        return Err(ServiceError::Invalid(format!(
            "api-key auth needs the name of the header carrying the key \
             (e.g. `--header x-api-key`); plugin `{}` does not name one in its settings",
            plugin.id
        )));
    }
    Ok((key_header(&header)?, prefix))
}

/// `header` as the name an API key is sent in: a valid header name that
/// neither routes nor frames the request nor carries another credential.
pub(super) fn key_header(header: &str) -> Result<HeaderName, ServiceError> {
    let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
        ServiceError::Invalid(format!("{header:?} is not a valid HTTP header name"))
    })?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(ServiceError::Invalid(format!(
            "`{name}` cannot carry an API key"
        )));
    }
    Ok(name)
}

/// Refuse a connection that cannot be used right now.
fn check_usable(record: &ConnectionRecord) -> Result<(), ServiceError> {
    match record.status {
        ConnectionStatus::Active => Ok(()),
        ConnectionStatus::Paused => Err(ServiceError::Paused {
            name: record.name.clone(),
        }),
        ConnectionStatus::NeedsReauth => Err(ServiceError::NeedsReauth {
            name: record.name.clone(),
        }),
    }
}

impl Airlock {
    /// Create a connection: settings validated against the plugin's schema,
    /// secrets sealed, all in one transaction.
    pub fn add_connection(&self, new: NewConnection) -> Result<ConnectionRecord, ServiceError> {
        let planned = self.plan_connection(new)?;
        self.store_connection(planned)
    }

    /// Everything checked about a new connection, and the record and the
    /// secrets it would store; nothing written yet.
    pub(super) fn plan_connection(
        &self,
        new: NewConnection,
    ) -> Result<PlannedConnection, ServiceError> {
        validate_name(&new.name)?;
        let plugin = self
            .store
            .read(|c| crate::store::plugins::get_plugin(c, &new.plugin_id))?;
        let kind = new.auth.kind();
        check_auth_kind(&plugin, kind)?;
        let settings = connection_settings(&plugin, &new.name, &new.auth, new.settings)?;
        if kind != AuthKind::None {
            check_cleartext(
                &new.name,
                &settings,
                self.runtime.cleartext_credential_origins(),
            )?;
        }
        check_scope(&new.scope)?;
        let (auth_config, secrets) = seal_parts(new.auth, &plugin, &settings)?;
        let now = crate::store::now();
        let record = ConnectionRecord {
            id: crate::store::new_id(),
            name: new.name,
            plugin_id: plugin.id,
            settings,
            auth_kind: kind,
            auth_config,
            scope: new.scope,
            status: if kind == AuthKind::Oauth2 {
                ConnectionStatus::NeedsReauth
            } else {
                ConnectionStatus::Active
            },
            created_at: now.clone(),
            updated_at: now,
        };
        Ok(PlannedConnection { record, secrets })
    }

    /// Write a planned connection and seal its secrets in one transaction.
    pub(super) fn store_connection(
        &self,
        planned: PlannedConnection,
    ) -> Result<ConnectionRecord, ServiceError> {
        let PlannedConnection { record, secrets } = planned;
        let owner = SecretOwner::Connection(record.id.clone());
        self.store.transact(|tx| {
            repo::insert_connection(tx, &record)?;
            for (name, secret) in &secrets {
                self.vault.seal_secret(tx, &owner, name, secret)?;
            }
            Ok::<_, ServiceError>(())
        })?;
        Ok(record)
    }

    /// Connections matching `filter`, ordered by name.
    pub fn connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<ConnectionRecord>, ServiceError> {
        Ok(self.store.read(|c| repo::list_connections(c, filter))?)
    }

    /// The connection whose id, or else whose name, is `id_or_name`;
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) when none.
    pub fn connection(&self, id_or_name: &str) -> Result<ConnectionRecord, ServiceError> {
        let record = self.store.read(|c| {
            self.records
                .connections
                .get_or_read(c, id_or_name, |c| repo::get_connection(c, id_or_name))
        })?;
        Ok(record.as_ref().clone())
    }

    fn set_status(
        &self,
        id_or_name: &str,
        status: ConnectionStatus,
    ) -> Result<ConnectionRecord, ServiceError> {
        let mut record = self.connection(id_or_name)?;
        self.store
            .write(|tx| repo::set_status(tx, &record.id, status))?;
        record.status = status;
        Ok(record)
    }

    /// Pause a connection: calls through it are refused with
    /// [`ServiceError::Paused`] until it is resumed. Its secrets are kept.
    pub fn pause_connection(&self, id_or_name: &str) -> Result<ConnectionRecord, ServiceError> {
        self.set_status(id_or_name, ConnectionStatus::Paused)
    }

    /// Resume a connection. An OAuth2 connection without an access token
    /// becomes `needs-reauth` instead of `active`.
    pub fn resume_connection(&self, id_or_name: &str) -> Result<ConnectionRecord, ServiceError> {
        let record = self.connection(id_or_name)?;
        if record.auth_kind == AuthKind::Oauth2
            && self
                .vault
                .open_secret(
                    &SecretOwner::Connection(record.id.clone()),
                    field::ACCESS_TOKEN,
                )?
                .is_none()
        {
            return self.set_status(id_or_name, ConnectionStatus::NeedsReauth);
        }
        self.set_status(id_or_name, ConnectionStatus::Active)
    }

    /// Delete a connection and destroy its secrets.
    pub fn remove_connection(&self, id_or_name: &str) -> Result<(), ServiceError> {
        let record = self.connection(id_or_name)?;
        let owner = SecretOwner::Connection(record.id.clone());
        self.store.transact(|tx| {
            self.vault.delete_secrets(tx, &owner)?;
            repo::delete_connection(tx, &record.id)?;
            Ok::<_, ServiceError>(())
        })?;
        Ok(())
    }

    /// The connection of `plugin_id` that serves `project`: a project-scoped
    /// one before a global one.
    pub fn resolve(
        &self,
        plugin_id: &str,
        project: &str,
    ) -> Result<ConnectionRecord, ServiceError> {
        Ok(self
            .store
            .read(|c| repo::resolve_for_project(c, plugin_id, project))?)
    }

    /// The connection whose id, or else whose name, is `id_or_name`, and
    /// its plugin's install record: what every call starts from, read with
    /// one look at the store's change counter (see [`ConfigVersion`]).
    pub(super) fn call_records(
        &self,
        id_or_name: &str,
    ) -> Result<(Arc<ConnectionRecord>, Arc<PluginRecord>), ServiceError> {
        Ok(self.store.read(|c| {
            let version = ConfigVersion::read(c)?;
            let record = self
                .records
                .connections
                .get_at(c, version, id_or_name, |c| {
                    repo::get_connection(c, id_or_name)
                })?;
            let installed = self.plugin_record(c, version, &record.plugin_id)?;
            Ok((record, installed))
        })?)
    }

    /// The loaded plugin and the runtime view of a connection, refusing
    /// connections that cannot be used right now.
    pub fn prepare_call(
        &self,
        record: &ConnectionRecord,
        project: Option<&str>,
    ) -> Result<(Arc<crate::runtime::Plugin>, Connection), ServiceError> {
        let installed = self.installed_record(&record.plugin_id)?;
        self.prepare_installed(record, &installed, project)
    }

    /// [`Airlock::prepare_call`] with the plugin's install record read
    /// already (by [`Airlock::call_records`]).
    pub(super) fn prepare_installed(
        &self,
        record: &ConnectionRecord,
        installed: &PluginRecord,
        project: Option<&str>,
    ) -> Result<(Arc<crate::runtime::Plugin>, Connection), ServiceError> {
        check_usable(record)?;
        let plugin = self.load_installed(&record.plugin_id, installed)?;
        let source = self.stored_credential(record, installed)?;
        self.connection_view(record, project, (installed, plugin), source)
    }

    /// Where a stored connection's credential comes from at call time: the
    /// OAuth token life-cycle, or the vault; `None` for auth kind `none`.
    fn stored_credential(
        &self,
        record: &ConnectionRecord,
        installed: &PluginRecord,
    ) -> Result<Option<Arc<dyn CredentialSource>>, ServiceError> {
        Ok(match record.auth_kind {
            AuthKind::None => None,
            AuthKind::Oauth2 => {
                let spec = installed
                    .manifest
                    .auth
                    .oauth2
                    .clone()
                    .ok_or_else(|| oauth::OAuthError::NoEndpoints(record.plugin_id.clone()))?;
                Some(Arc::new(credential::oauth::OAuthCredential::new(
                    self.oauth_context(),
                    record.clone(),
                    spec,
                    installed.version.clone(),
                )))
            }
            _ => Some(Arc::new(VaultCredential {
                vault: self.vault.clone(),
                kind: record.auth_kind,
                config: record.auth_config.clone(),
                connection: record.name.clone(),
            })),
        })
    }

    /// The runtime view of `record` with its credential from `source`, bound
    /// to the origins the plugin's approved grant lets it reach.
    pub(super) fn connection_view(
        &self,
        record: &ConnectionRecord,
        project: Option<&str>,
        (installed, plugin): (&PluginRecord, Arc<crate::runtime::Plugin>),
        source: Option<Arc<dyn CredentialSource>>,
    ) -> Result<(Arc<crate::runtime::Plugin>, Connection), ServiceError> {
        let mut conn = Connection::new(record.id.clone(), record.name.clone())
            .with_settings(record.settings.clone());
        conn.project = project.map(String::from);
        let Some(source) = source else {
            return Ok((plugin, conn));
        };
        let header = match record.auth_kind {
            AuthKind::ApiKey => {
                let h = record.auth_config.header.as_deref().unwrap_or_default();
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ServiceError::Internal(format!(
                        "connection `{}` has an invalid API-key header {h:?} stored",
                        record.name
                    ))
                })?
            }
            _ => http::header::AUTHORIZATION,
        };
        let origins = conn
            .base_origin()
            .and_then(|base| {
                credential::bound_origins(base, &installed.approved_grant, record.auth_kind)
            })
            .map_err(|e| {
                ServiceError::Internal(format!(
                    "connection `{}`: cannot bind its credential: {e}",
                    record.name
                ))
            })?;
        Ok((plugin, conn.with_credential_for(header, origins, source)))
    }

    /// Run the plugin's `test-connection` against a connection.
    pub async fn test_connection(
        &self,
        id_or_name: &str,
    ) -> Result<ConnectionReport, ServiceError> {
        let (record, installed) = self.call_records(id_or_name)?;
        let started = std::time::Instant::now();
        let result = async {
            let (plugin, conn) = self.prepare_installed(&record, &installed, None)?;
            Ok::<_, ServiceError>(self.runtime.test_connection(&plugin, &conn).await?)
        }
        .await;
        self.record_call(&record, started, &result);
        result
    }

    /// Change a connection's settings: each `Some` sets a value, each `None`
    /// removes it (the plugin's default applies again); the result is
    /// validated against the plugin's schema.
    ///
    /// The origin of `base-url` cannot change while the connection carries a
    /// credential: the credential is bound to that origin, and moving it
    /// would send a secret somewhere its owner never chose. Such a
    /// connection is re-created with its credential instead.
    pub fn update_connection_settings(
        &self,
        id_or_name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<ConnectionRecord, ServiceError> {
        let record = self.connection(id_or_name)?;
        let plugin = self
            .store
            .read(|c| crate::store::plugins::get_plugin(c, &record.plugin_id))?;
        let mut given = record.settings.clone();
        for (name, value) in changes {
            match value {
                Some(v) => given.insert(name.clone(), v.clone()),
                None => given.remove(name),
            };
        }
        let settings = crate::manifest::settings::validate(&plugin.manifest, &given)?;
        // Compared as parsed origins (the crate's one normaliser); a value
        // that does not parse was refused by the schema check above, and a
        // stored one that does not is no origin a credential can follow.
        let origin =
            |s: &BTreeMap<String, String>| s.get(BASE_URL_SETTING).map(|u| Origin::parse(u));
        let (before, after) = (origin(&record.settings), origin(&settings));
        if record.auth_kind != AuthKind::None && before != after {
            return Err(ServiceError::Invalid(format!(
                "connection `{}` carries a credential bound to {}; its base-url cannot move to another origin. \
                 Remove the connection and add it again with its credential",
                record.name,
                match before {
                    Some(Ok(origin)) => origin.to_string(),
                    _ => "its origin".into(),
                }
            )));
        }
        let mut auth = record.auth_config.clone();
        if record.auth_kind == AuthKind::ApiKey {
            // The settings that name the key's header and prefix are the
            // one source of both: re-derive them, refusing a header that
            // cannot carry a key.
            let (header, prefix) = api_key_header(
                &plugin,
                &settings,
                auth.header.clone().unwrap_or_default(),
                auth.prefix.clone().unwrap_or_default(),
            )?;
            auth.header = Some(header.as_str().to_string());
            auth.prefix = Some(prefix);
        }
        self.store
            .write(|tx| repo::update_settings_and_auth(tx, &record.id, &settings, &auth))?;
        self.connection(&record.id)
    }
}
