//! The store: everything airlock keeps, in one database behind one
//! interface ([`sql::Db`]) with two implementations. SQLite, one file in
//! the data directory opened with WAL, foreign keys, a busy timeout and
//! fsync on commit, is the embedded default; PostgreSQL ([`postgres`]) lets
//! several servers share connections, vault, tokens and audit log. Both are
//! migrated at start-up from their own numbered migrations, recorded, and a
//! database a newer airlock wrote is refused untouched.
//!
//! Writes go through [`Store::write`], one writer at a time: SQLite opens
//! the transaction with `BEGIN IMMEDIATE`, PostgreSQL takes an advisory lock
//! every server shares. Each concern owns the SQL of its tables: the vault
//! (`key_versions`, `secrets`, `vault_meta`) and the repositories in this
//! module (everything else). With SQLite the audit log has a file of its own
//! (`crate::audit::file`). The records every plugin call reads are served
//! from [`RecordCache`]s while the `config_version` counter says no process
//! (no server) changed them.

mod cache;
mod migrate;
pub mod postgres;
pub mod sql;

pub mod connections;
pub mod conversations;
pub mod leases;
pub mod oauth;
pub mod plugin_files;
pub mod plugin_state;
pub mod plugins;
pub mod sync;
pub mod tokens;
pub mod trust;

pub use plugin_state::StorePluginState;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

pub use cache::{ConfigVersion, RecordCache};
pub use migrate::{MIGRATIONS, MIGRATIONS_POSTGRES, Migration, migrate};
pub use postgres::{PgPool, PgTarget};
pub use sql::{Backend, Db, DbExt, Tx};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "airlock.db";

/// How long a connection waits on another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database airlock keeps its data in, parsed once at the edge from
/// `--database` / `AIRLOCK_DATABASE` (absent: SQLite in the data directory).
#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    /// `airlock.db` in the data directory.
    Sqlite,
    /// A PostgreSQL database several servers share.
    Postgres(Box<PgTarget>),
}

impl DatabaseUrl {
    /// Parse `--database`: `postgres://...`, or `sqlite` for the default.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "sqlite" {
            return Ok(Self::Sqlite);
        }
        PgTarget::parse(s)
            .map(|t| Self::Postgres(Box::new(t)))
            .map_err(|e| format!("--database `{}`: {e}", shown_url(s)))
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// `s` with any password replaced, for messages about a URL that did not
/// parse.
fn shown_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) if s.contains('@') => "(a URL with credentials, not shown)".into(),
        Err(_) => s.to_string(),
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created (or made private).
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened or its pragmas set.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The shared database does not answer (down, restarting, unreachable).
    #[error(
        "database {database} is unavailable ({reason}); nothing was changed, and calls \
         succeed again once it is back, without restarting airlock"
    )]
    Unavailable {
        /// The database URL without its password.
        database: String,
        /// What the driver said.
        reason: String,
    },
    #[error(
        "database {database} has schema version {found}, but this airlock supports up to \
         {supported}: it was written by a newer airlock; upgrade airlock (the database is \
         left untouched)"
    )]
    /// The database's schema is newer than this build knows; it is not touched.
    TooNew {
        /// The database (file path or URL without password).
        database: String,
        /// The schema version the database records.
        found: u32,
        /// The newest schema version this build has migrations for.
        supported: u32,
    },
    /// A migration failed; its transaction was rolled back.
    #[error("migration {version} ({name}) failed and was rolled back: {source}")]
    Migration {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: &'static str,
        /// The database's error.
        #[source]
        source: Box<StoreError>,
    },
    #[error(
        "migration {version} ({name}) recorded in the database differs from this airlock's \
         copy: the database was migrated by a different build"
    )]
    /// An applied migration's recorded checksum differs from this build's SQL.
    MigrationMismatch {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: &'static str,
    },
    /// The named thing (e.g. "connection `x`") does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Nothing matched a lookup; the message says what exists.
    #[error("{0}")]
    NoMatch(String),
    /// The write clashes with what is stored (a taken name, a thing still in
    /// use); the message says what to do.
    #[error("{0}")]
    Conflict(String),
    /// A stored value does not decode (bad JSON, an unknown enum value).
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    /// A query that must return a row returned none (a store bug, or a row
    /// another process deleted).
    #[error("the database returned no row where one was expected")]
    NoRows,
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Any other PostgreSQL error.
    #[error("database error: {}", postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// The database. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Sqlite {
        path: PathBuf,
        conn: Mutex<Connection>,
    },
    Postgres(Arc<PgPool>),
}

impl Store {
    /// Open (creating if needed) `<data_dir>/airlock.db` and migrate it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        crate::dirs::create_private_dir(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = open_connection(&path)?;
        migrate(&mut conn, &path, MIGRATIONS)?;
        Ok(Self {
            inner: Inner::Sqlite {
                path,
                conn: Mutex::new(conn),
            },
        })
    }

    /// Connect to a shared PostgreSQL database and migrate it (servers
    /// starting together migrate once).
    pub fn open_postgres(target: &PgTarget) -> Result<Self, StoreError> {
        Self::open_postgres_with(target, MIGRATIONS_POSTGRES)
    }

    /// [`Store::open_postgres`] with a given migration list (tests).
    pub fn open_postgres_with(
        target: &PgTarget,
        migrations: &[Migration],
    ) -> Result<Self, StoreError> {
        let pool = Arc::new(PgPool::connect(target.clone())?);
        migrate::migrate_postgres(&pool, migrations)?;
        Ok(Self {
            inner: Inner::Postgres(pool),
        })
    }

    /// Open the database `url` names; SQLite lives in `data_dir`.
    pub fn open_url(url: &DatabaseUrl, data_dir: &Path) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite => Self::open(data_dir),
            DatabaseUrl::Postgres(target) => Self::open_postgres(target),
        }
    }

    /// Which engine holds the data.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Sqlite { path, .. } => Some(path),
            Inner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool; `None` on SQLite.
    pub fn postgres(&self) -> Option<&Arc<PgPool>> {
        match &self.inner {
            Inner::Sqlite { .. } => None,
            Inner::Postgres(pool) => Some(pool),
        }
    }

    /// Where the data is, for messages: the file, or the URL without its
    /// password.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Sqlite { path, .. } => path.display().to_string(),
            Inner::Postgres(pool) => pool.shown().to_string(),
        }
    }

    /// Read outside a transaction.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.read_with(f)
    }

    /// [`Store::read`] for callers with their own error type.
    pub fn read_with<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.inner {
            Inner::Sqlite { conn, .. } => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                f(&*conn)
            }
            Inner::Postgres(pool) => pool.read(f),
        }
    }

    /// Run `f` in a write transaction, committed (and made durable) when it
    /// returns `Ok`, rolled back otherwise.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.transact(f)
    }

    /// [`Store::write`] for callers with their own error type (e.g. a
    /// service composing store and vault writes in one transaction).
    pub fn transact<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.inner {
            Inner::Sqlite { conn, .. } => {
                let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let out = f(&Tx(&*tx))?;
                tx.commit().map_err(StoreError::from)?;
                Ok(out)
            }
            Inner::Postgres(pool) => pool.transact(f),
        }
    }
}

/// A connection with airlock's pragmas: WAL, foreign keys, busy timeout,
/// `synchronous=FULL` so a committed write survives power loss, and
/// `secure_delete` so deleted data does not linger in free pages.
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open)?;
    // Deleted rows (old ciphertexts, wrapped keys) are overwritten with zeros
    // rather than left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(open)?;
    Ok(conn)
}

/// The one timestamp format of every column (and of the audit log): RFC
/// 3339 UTC with exactly six fractional digits, fixed width, so text order
/// is time order.
pub(crate) const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// Current time in [`TIME_FORMAT`].
pub fn now() -> String {
    time_after(Duration::ZERO)
}

/// The time `after` from now, in [`TIME_FORMAT`].
pub fn time_after(after: Duration) -> String {
    (time::OffsetDateTime::now_utc() + after)
        .format(TIME_FORMAT)
        .expect("formatting the current time")
}

/// A random 128-bit id as lower-case hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::params;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(text_orders_byte_by_byte_on_both_engines);

    /// The test PostgreSQL has an English collation (case and punctuation
    /// weighed late); the schema's `COLLATE "C"` keeps SQLite's byte order.
    fn text_orders_byte_by_byte_on_both_engines(store: &TestStore) {
        let names = [
            "b",
            "B",
            "a_c",
            "a-b",
            "ab",
            "Z",
            "é",
            "2026-01-01T10:00:00Z",
        ];
        for name in names {
            store
                .write(|tx| leases::acquire(tx, name, "h", Duration::from_secs(60)))
                .unwrap()
                .unwrap();
        }
        let listed: Vec<String> = store
            .read(|c| {
                c.query_map("SELECT name FROM leases ORDER BY name", params![], |r| {
                    r.get(0)
                })
            })
            .unwrap();
        let mut bytewise: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        bytewise.sort();
        assert_eq!(listed, bytewise);
        let after: Vec<String> = store
            .read(|c| {
                c.query_map(
                    "SELECT name FROM leases WHERE name > ?1 ORDER BY name",
                    params!["a-b"],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(after, ["a_c", "ab", "b", "é"]);
    }

    #[test]
    fn database_urls_parse_once_and_hide_passwords() {
        assert!(matches!(
            DatabaseUrl::parse("").unwrap(),
            DatabaseUrl::Sqlite
        ));
        assert!(matches!(
            DatabaseUrl::parse("sqlite").unwrap(),
            DatabaseUrl::Sqlite
        ));
        let pg = DatabaseUrl::parse("postgres://a:pw@localhost:5432/airlock").unwrap();
        assert!(matches!(pg, DatabaseUrl::Postgres(_)));
        assert!(!format!("{pg:?}").contains("pw"));
        let err = DatabaseUrl::parse("mysql://a:topsecret@h/db").unwrap_err();
        assert!(err.contains("use postgres://"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
        let err =
            DatabaseUrl::parse("postgres://a:topsecret@h/db?sslmode=verify-full").unwrap_err();
        assert!(!err.contains("topsecret") && err.contains("TLS"), "{err}");
    }
}

/// Stores for tests that run against both engines: [`testing::TestStore`]
/// and the `on_both_backends!` macro.
#[cfg(test)]
pub(crate) mod testing;
