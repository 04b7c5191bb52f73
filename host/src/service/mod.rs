//! `Airlock`: the library API an application embeds. Opens a data directory
//! (SQLite store, vault, audit log, compiled-component cache) and offers the
//! operations the CLI and the management API are built on: install plugins,
//! manage connections, call plugins, chat, sync, run OAuth2 flows ([`oauth`]),
//! manage API tokens, rotate keys, read the audit trail.

mod call;
mod chat;
mod connections;
mod credentials;
pub mod oauth;
mod plugins;
mod sync;
mod tokens;
mod trust;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use crate::store::connections::{
    AuthConfig, ConnectionFilter, ConnectionRecord, ConnectionStatus, Scope,
};
pub use crate::store::conversations::{
    ChatOptions, ConversationRecord, MessageRecord, MessageRole, ProjectFilter,
};
pub use crate::store::oauth::OAuthAppRecord;
pub use crate::store::plugins::PluginRecord;
pub use crate::store::sync::{SyncRecordRow, SyncRun};
pub use crate::store::tokens::{Role, TokenRecord};
pub use chat::{ChatAnswer, ChatEvent, ChatEvents, ChatInput, MAX_MESSAGE_BYTES};
pub use connections::{AuthInput, NewConnection};
pub use plugins::{CapabilityChange, ChangeKind, ChangeSubject, InstallPlan};
pub use sync::DEFAULT_PAGE_SIZE;
pub use tokens::NewToken;
pub use trust::{Signer, TrustError, TrustPolicy, TrustedKey};

use crate::audit::{AuditDurability, AuditEntry, AuditError, AuditFilter, AuditLog, VerifyReport};
use crate::credential::oauth::OAuthContext;
use crate::limits::Limits;
use crate::net::{
    AddressPolicy, AllowListError, CLEARTEXT_CREDENTIALS_ENV, Origin, RuleError,
    parse_cleartext_origins,
};
use crate::runtime::{CallError, LoadError, Plugin, Runtime, RuntimeConfig};
use crate::store::StorePluginState;
use crate::store::{DatabaseUrl, RecordCache, Store, StoreError};
use crate::vault::{KeySource, Vault, VaultError};

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "AIRLOCK_DATA_DIR";

/// Environment variable naming the database (`postgres://...`); unset or
/// `sqlite`: `airlock.db` in the data directory.
pub const DATABASE_ENV: &str = "AIRLOCK_DATABASE";

/// Environment variable setting [`AirlockConfig::sync_lease`] in seconds.
pub const SYNC_LEASE_ENV: &str = "AIRLOCK_SYNC_LEASE_SECS";

/// [`AirlockConfig::sync_lease`] unless set.
pub const DEFAULT_SYNC_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

/// Environment variable setting the OAuth callback port.
pub const OAUTH_PORT_ENV: &str = "AIRLOCK_OAUTH_PORT";

/// How to open an [`Airlock`].
#[derive(Debug)]
pub struct AirlockConfig {
    /// The data directory: database, audit log, key file, installed
    /// plugins and compiled-component cache. Created when missing.
    pub data_dir: PathBuf,
    /// Where the data is kept: SQLite in the data directory (the default),
    /// or a PostgreSQL database several servers share, which then holds the
    /// audit log too; `AIRLOCK_DATABASE` when set.
    pub database: DatabaseUrl,
    /// Where the master key comes from; `None` reads the environment
    /// (`AIRLOCK_MASTER_KEY`, `AIRLOCK_MASTER_PASSPHRASE`) or uses the key
    /// file next to the data.
    pub key_source: Option<KeySource>,
    /// Bounds on every plugin call (time, memory, sizes); also the connect
    /// timeout and limits of OAuth token requests. Default: [`Limits::default`].
    pub limits: Limits,
    /// Which addresses outbound requests (plugins' and token requests) may
    /// reach after DNS. Default: public addresses only, plus what
    /// `AIRLOCK_EGRESS_ALLOW_PRIVATE` allows.
    pub address_policy: AddressPolicy,
    /// What a committed audit row survives (process crash by default, or
    /// power loss at the cost of an fsync per commit).
    pub audit_durability: AuditDurability,
    /// Pre-reserve instance slots for fast instantiation instead of
    /// allocating per call. Default `true`.
    pub pooling: bool,
    /// Most plugin calls in flight at once (the instance pool's size).
    /// Default 256.
    pub max_concurrent_calls: u32,
    /// Loopback port of the OAuth callback listener
    /// (`http://127.0.0.1:<port>/callback`); `AIRLOCK_OAUTH_PORT`, else 8765.
    pub oauth_callback_port: u16,
    /// Origins that may receive a credential over plain http although they
    /// are not loopback; `AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS`, else none.
    pub cleartext_credential_origins: Vec<Origin>,
    /// How long a running sync holds its connection's lease without
    /// committing a page before another server may take the sync over (its
    /// server died). `AIRLOCK_SYNC_LEASE_SECS`, else 2 minutes: longer than
    /// any one page may take.
    pub sync_lease: std::time::Duration,
}

/// An environment setting [`AirlockConfig::new`] could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `AIRLOCK_EGRESS_ALLOW_PRIVATE` has an entry that is not a range.
    #[error(transparent)]
    AllowList(#[from] AllowListError),
    /// `AIRLOCK_DATABASE` is not a database URL airlock can use.
    #[error("invalid {DATABASE_ENV}: {0}")]
    Database(String),
    /// `AIRLOCK_SYNC_LEASE_SECS` is not a whole number of seconds from 1.
    #[error("invalid {SYNC_LEASE_ENV} `{0}`: expected whole seconds, at least 1 (default 120)")]
    SyncLease(String),
    /// `AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS` has an entry that is not an
    /// http(s) origin.
    #[error(
        "invalid {CLEARTEXT_CREDENTIALS_ENV}: {0}; expected comma-separated origins like \
         http://intranet.example:8080"
    )]
    Cleartext(RuleError),
}

impl AirlockConfig {
    /// Defaults for `data_dir`, with the egress allow-list read from
    /// `AIRLOCK_EGRESS_ALLOW_PRIVATE` and the cleartext-credential origins
    /// from `AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        Ok(Self {
            data_dir: data_dir.into(),
            database: match std::env::var(DATABASE_ENV) {
                Ok(url) => DatabaseUrl::parse(&url).map_err(ConfigError::Database)?,
                Err(_) => DatabaseUrl::Sqlite,
            },
            key_source: None,
            limits: Limits::default(),
            address_policy: AddressPolicy::from_env()?,
            audit_durability: AuditDurability::default(),
            pooling: true,
            max_concurrent_calls: 256,
            oauth_callback_port: std::env::var(OAUTH_PORT_ENV)
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(oauth::DEFAULT_CALLBACK_PORT),
            cleartext_credential_origins: match std::env::var(CLEARTEXT_CREDENTIALS_ENV) {
                Ok(list) => parse_cleartext_origins(&list).map_err(ConfigError::Cleartext)?,
                Err(_) => Vec::new(),
            },
            sync_lease: match std::env::var(SYNC_LEASE_ENV) {
                Ok(secs) => secs
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s >= 1)
                    .map(std::time::Duration::from_secs)
                    .ok_or(ConfigError::SyncLease(secs))?,
                Err(_) => DEFAULT_SYNC_LEASE,
            },
        })
    }

    /// `$AIRLOCK_DATA_DIR`, else `$XDG_DATA_HOME/airlock`, else
    /// `$HOME/.local/share/airlock`, else `./airlock-data`.
    pub fn default_data_dir() -> PathBuf {
        let env = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env(DATA_DIR_ENV)
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("airlock")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/airlock")))
            .unwrap_or_else(|| PathBuf::from("airlock-data"))
    }
}

/// Why an operation failed. Messages name the thing and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The database: [`StoreError::NotFound`] / [`StoreError::NoMatch`] for
    /// an unknown id or name (API 404), [`StoreError::Conflict`] for a name
    /// already taken, a plugin still in use or an ambiguous project
    /// resolution (409); anything else is a host failure (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault: the master key is missing or wrong (when opening),
    /// sealing or opening a secret failed, or a key version cannot be
    /// retired (active, still in use, unknown). The message says which.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The audit log could not be opened, read or verified: a host
    /// failure.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A plugin file was refused when installed or loaded (not a
    /// component, bad manifest, missing exports). Fix or replace the file.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Connection settings do not fit the plugin's schema (unknown,
    /// missing or invalid setting); the message names it.
    #[error(transparent)]
    Settings(#[from] crate::manifest::settings::SettingsError),
    /// A plugin call failed: the plugin's own typed error, an unknown
    /// operation, bad input, a limit hit or a crash.
    #[error(transparent)]
    Call(#[from] CallError),
    /// An OAuth2 flow step failed; see [`oauth::OAuthError`].
    #[error(transparent)]
    OAuth(#[from] oauth::OAuthError),
    /// A plugin file's signature is malformed, not its last section, or
    /// does not verify over its bytes: the file is refused whatever the
    /// trust policy says.
    #[error("plugin `{id}` is refused: {error}")]
    Signature {
        /// The plugin's id.
        id: String,
        /// What is wrong with its signature.
        error: crate::signing::SignatureError,
    },
    /// The trust policy refused a plugin: `require-signature` is on and the
    /// file is unsigned, or signed by a key not trusted for its id.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The caller's request is not acceptable as given (a name, a value, a
    /// combination); the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// A failure inside the host, not the caller's mistake: a stored record
    /// that no longer makes sense, a runtime that cannot start. The message
    /// names what and where; the API answers 500 `internal`.
    #[error("{0}")]
    Internal(String),
    /// A plugin's sync never advanced its cursor while saying there was more,
    /// or ran past the page cap of one run. The pages committed so far are
    /// kept; a plugin bug, not the caller's.
    #[error(
        "plugin `{plugin}` keeps answering has-more without advancing its cursor; \
         the sync of `{connection}` was stopped after {pages} pages"
    )]
    SyncStalled {
        /// The plugin's id.
        plugin: String,
        /// The connection's name.
        connection: String,
        /// Pages fetched (and committed) before the run was stopped.
        pages: u32,
    },
    /// [`Airlock::install`] without approval of a new or changed file: show
    /// `changes` to the operator and install again with approval.
    #[error(
        "plugin `{id}` is not installed with this file: approve its capabilities first \
         (changes: {})", .changes.join("; ")
    )]
    NeedsApproval {
        /// The plugin's id.
        id: String,
        /// What the file changes, one line each (as in
        /// [`InstallPlan::changes`]).
        changes: Vec<String>,
    },
    /// A connection added with a test was not saved because the test
    /// failed; `source` says how. Fix the credential or settings and add it
    /// again.
    #[error("connection `{name}` was not saved: its test failed: {source}")]
    NotSaved {
        /// The connection's name.
        name: String,
        /// Why the test failed.
        #[source]
        source: Box<ServiceError>,
    },
    /// The connection is paused; resume it before calling it.
    #[error("connection `{name}` is paused; resume it before calling it")]
    Paused {
        /// The connection's name.
        name: String,
    },
    /// The OAuth2 connection has no usable grant (never authorised, or the
    /// provider refused its refresh token): run the OAuth flow again.
    #[error("connection `{name}` needs re-authorisation: run its OAuth flow again to connect it")]
    NeedsReauth {
        /// The connection's name.
        name: String,
    },
    /// The installed `.wasm` on disk no longer hashes to the SHA-256 pinned
    /// at install: it was changed or corrupted. Nothing of it is run.
    #[error(
        "the installed file of plugin `{id}` ({path}) no longer matches its pinned SHA-256; \
         reinstall the plugin and approve it again"
    )]
    Tampered {
        /// The plugin's id.
        id: String,
        /// The installed file that no longer matches.
        path: PathBuf,
    },
    /// A file of the data directory could not be read or written (an
    /// installed plugin file). A host failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// An open airlock data directory.
pub struct Airlock {
    data_dir: PathBuf,
    key_source: String,
    store: Arc<Store>,
    vault: Arc<Vault>,
    audit: Arc<AuditLog>,
    runtime: Arc<Runtime>,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    records: Records,
    oauth: Arc<OAuthContext>,
    oauth_port: u16,
    metrics: Arc<crate::metrics::Metrics>,
    sync_lease: std::time::Duration,
}

/// The records every call reads, cached while the store says nothing changed.
#[derive(Debug, Default)]
struct Records {
    connections: RecordCache<ConnectionRecord>,
    plugins: RecordCache<PluginRecord>,
}

impl std::fmt::Debug for Airlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Airlock")
            .field("data_dir", &self.data_dir)
            .field("key_source", &self.key_source)
            .finish_non_exhaustive()
    }
}

impl Airlock {
    /// Open (or create) the data directory and the database: migrate the
    /// database, unlock the vault (a wrong master key fails here, before
    /// anything is written), open the audit log (in `audit.db`, moving there
    /// a log an older airlock kept in `airlock.db`; or in the shared
    /// PostgreSQL database) and start the runtime.
    pub fn open(config: AirlockConfig) -> Result<Self, ServiceError> {
        let store = Arc::new(Store::open_url(&config.database, &config.data_dir)?);
        let source = match config.key_source {
            Some(s) => s,
            None => KeySource::from_env(&config.data_dir)?,
        };
        let vault = Arc::new(Vault::open(store.clone(), &source)?);
        let audit = open_audit(&store, &config.data_dir, config.audit_durability)?;
        // Token requests go through a filtering client of their own, under
        // the same address policy and audited to the same log as plugins'.
        let oauth = Arc::new(OAuthContext::new(
            store.clone(),
            vault.clone(),
            crate::net::build_client(
                Arc::new(config.address_policy.clone()),
                config.limits.connect_timeout,
            ),
            audit.clone(),
            config.limits.clone(),
            config.cleartext_credential_origins.clone(),
        ));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let runtime = Runtime::new(RuntimeConfig {
            limits: config.limits,
            cache_dir: Some(config.data_dir.join("cache")),
            artifact_key: Some(crate::runtime::ArtifactKey::from_bytes(
                vault.derive_key("compiled-cache"),
            )),
            address_policy: config.address_policy,
            cleartext_credential_origins: config.cleartext_credential_origins.clone(),
            pooling: config.pooling,
            max_concurrent_calls: config.max_concurrent_calls,
            audit: audit.clone(),
            state: Arc::new(StorePluginState::new(store.clone())),
            metrics: metrics.clone(),
        })
        .map_err(|e| ServiceError::Internal(format!("cannot start the runtime: {e:#}")))?;
        Ok(Self {
            data_dir: config.data_dir,
            key_source: vault.describe_source().to_string(),
            store,
            vault,
            audit,
            runtime: Arc::new(runtime),
            loaded: Mutex::new(HashMap::new()),
            records: Records::default(),
            oauth,
            oauth_port: config.oauth_callback_port,
            metrics,
            sync_lease: config.sync_lease,
        })
    }

    /// Lines to print at start-up: where the data is, where the key comes
    /// from (never the key), and any loosened egress rule.
    pub fn startup_summary(&self) -> Vec<String> {
        let mut lines = vec![
            format!("data directory: {}", self.data_dir.display()),
            format!(
                "database: {} ({})",
                self.store.describe(),
                self.store.backend()
            ),
            format!("master key: {}", self.key_source),
        ];
        let policy = self.runtime.address_policy();
        if !policy.allowed().is_empty() {
            lines.push(format!(
                "WARNING: plugins may reach non-public addresses: {policy} ({})",
                crate::net::ALLOW_PRIVATE_ENV
            ));
        }
        lines
    }

    /// The data directory this was opened on.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(crate) fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Re-encrypt every secret under a new key version, in one transaction;
    /// returns the new version.
    pub fn rotate_keys(&self) -> Result<u32, ServiceError> {
        Ok(self.vault.rotate()?)
    }

    /// Destroy key version `version`, which must be neither active nor used.
    pub fn retire_key(&self, version: u32) -> Result<(), ServiceError> {
        Ok(self.vault.retire(version)?)
    }

    /// Every key version, with what it seals.
    pub fn key_versions(&self) -> Result<Vec<crate::vault::KeyVersionInfo>, ServiceError> {
        Ok(self.vault.versions()?)
    }

    /// The plugin runtime, for typed operations on a [`Airlock::prepare_call`]
    /// result (see the crate's embedding example).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The audit log every outbound request is recorded in.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Calls, errors, latency and egress denials of this host's plugins.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    pub(crate) fn oauth_context(&self) -> Arc<OAuthContext> {
        self.oauth.clone()
    }

    /// The configured OAuth callback port.
    pub fn oauth_callback_port(&self) -> u16 {
        self.oauth_port
    }

    /// Check the audit log's hash chain.
    pub fn verify_audit(&self) -> Result<VerifyReport, ServiceError> {
        // Outcome rows are committed lazily; `read` commits them first.
        Ok(self.audit.read(crate::audit::verify)?)
    }

    /// Recorded requests matching `filter`, newest first.
    pub fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, ServiceError> {
        Ok(self.audit.read(|db| crate::audit::list(db, filter))?)
    }

    /// Operator changes on record (credentials replaced), newest first: of
    /// one connection (id or name) or all; at most `limit`.
    pub fn list_audit_events(
        &self,
        connection: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::audit::EventEntry>, ServiceError> {
        let connection_id = connection.map(|c| self.connection(c)).transpose()?;
        let id = connection_id.as_ref().map(|c| c.id.as_str());
        Ok(self.audit.read(|db| crate::audit::events(db, id, limit))?)
    }
}

/// The audit log beside the store: `audit.db` in the data directory for
/// SQLite (moving there a log an older airlock kept in `airlock.db`), the
/// shared database's `audit_log` table for PostgreSQL.
fn open_audit(
    store: &Store,
    data_dir: &Path,
    durability: AuditDurability,
) -> Result<Arc<AuditLog>, ServiceError> {
    if let Some(pool) = store.postgres() {
        return Ok(AuditLog::open_postgres(pool.clone(), durability)?);
    }
    let audit_path = data_dir.join(crate::audit::AUDIT_FILE);
    if let Some(store_db) = store.sqlite_path() {
        crate::audit::file::move_from_store(store_db, &audit_path)?;
    }
    Ok(AuditLog::open(&audit_path, durability)?)
}
