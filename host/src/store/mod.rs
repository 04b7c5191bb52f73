//! The SQLite store: one database file in the data directory, opened with
//! WAL, foreign keys, a busy timeout and fsync on commit, migrated at start-up.
//!
//! Writes go through [`Store::write`], which opens the transaction with
//! `BEGIN IMMEDIATE` so a writer never fails half-way on a lock upgrade.
//! Each concern owns the SQL of its tables: the vault (`key_versions`,
//! `secrets`, `vault_meta`) and the repositories in this module (everything
//! else). The audit log has a file of its own (`crate::audit::file`); the
//! `audit_log` table migration 0001 creates here held it in older versions
//! and is moved out and dropped at start-up. The records every plugin call reads
//! are served from [`RecordCache`]s while the `config_version` counter
//! says no process changed them.

mod cache;
mod migrate;

pub mod connections;
pub mod conversations;
pub mod oauth;
pub mod plugin_state;
pub mod plugins;
pub mod sync;
pub mod tokens;
pub mod trust;

pub use plugin_state::SqlitePluginState;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Params, Transaction, TransactionBehavior};

pub use cache::RecordCache;
pub use migrate::{MIGRATIONS, Migration, migrate};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "airlock.db";

/// How long a connection waits on another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error(
        "database {path} has schema version {found}, but this airlock supports up to \
         {supported}: it was written by a newer airlock; upgrade airlock (the database is \
         left untouched)"
    )]
    /// The database's schema is newer than this build knows; it is not touched.
    TooNew {
        /// The database file.
        path: PathBuf,
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
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
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
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The database. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
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
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read with the shared connection.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }

    /// Run `f` in a `BEGIN IMMEDIATE` transaction, committed (and fsynced)
    /// when it returns `Ok`, rolled back otherwise.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

impl Store {
    /// [`Store::write`] for callers with their own error type (e.g. a
    /// service composing store and vault writes in one transaction).
    pub fn transact<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
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

/// Current time as RFC 3339 UTC with fixed microsecond precision, the format
/// every timestamp column uses: fixed width, so text order is time order.
pub fn now() -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .expect("formatting the current time")
}

/// Whether `sql` (a `SELECT 1 ...` query) returns at least one row.
///
/// The repositories check for a row before writing so they can answer with
/// their own `NotFound` or `Conflict` message instead of SQLite's constraint
/// error; each caller keeps its message and this keeps the query.
pub(crate) fn exists(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(sql, params, |_| Ok(()))
        .optional()?
        .is_some())
}

/// A random 128-bit id as lower-case hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_says_whether_a_row_matches() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT, v TEXT); INSERT INTO t VALUES ('a', 'x');")
            .unwrap();
        let sql = "SELECT 1 FROM t WHERE k = ?1 AND v = ?2";
        assert!(exists(&conn, sql, ["a", "x"]).unwrap());
        assert!(!exists(&conn, sql, ["a", "y"]).unwrap());
        assert!(exists(&conn, "SELECT 1 FROM t LIMIT 1", []).unwrap());
        conn.execute("DELETE FROM t", []).unwrap();
        assert!(!exists(&conn, "SELECT 1 FROM t LIMIT 1", []).unwrap());
    }

    #[test]
    fn exists_passes_sql_errors_on() {
        let conn = Connection::open_in_memory().unwrap();
        let err = exists(&conn, "SELECT 1 FROM missing", []).unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
    }
}
