//! In-memory copies of the records every plugin call reads (its connection,
//! its plugin, its sealed credential), each kept next to the
//! `config_version` counter it was read at.
//!
//! Triggers (migration 0004) bump the counter on every change to those
//! tables, from any process, so one read of one row decides whether a copy
//! is still current. That read replaces a query, a JSON decode and several
//! page reads per record: the profile of a call at 64 concurrent callers
//! had these reads at a fifth of the process's CPU (then with the audit
//! log's commits in the same file invalidating this connection's page cache
//! after every request; the log has its own file now).
//!
//! Only reads outside a transaction are cached. Inside one, the counter can
//! count changes that are later rolled back, so a copy made there could
//! later be mistaken for current.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::StoreError;
use super::sql::{Db, DbExt, params};

/// Most records one cache holds; past it the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// The counter the config-changing triggers bump.
pub fn config_version(conn: &dyn Db) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT n FROM config_version WHERE id = 1",
        params![],
        |r| r.get(0),
    )
}

/// Records of one kind by key, each with the counter it was read at.
pub struct RecordCache<V> {
    entries: Mutex<HashMap<String, (i64, Arc<V>)>>,
}

impl<V> Default for RecordCache<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> std::fmt::Debug for RecordCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("RecordCache").field("entries", &n).finish()
    }
}

/// The counter as one read saw it, for looking up several records at once
/// (a call's connection, its plugin) with one read of the counter.
///
/// Inside a transaction it holds nothing and every lookup reads the record.
/// A record read after the counter is cached at that (possibly older)
/// counter, so a change committed in between only costs one more read.
#[derive(Debug, Clone, Copy)]
pub struct ConfigVersion(Option<i64>);

impl ConfigVersion {
    /// The counter now, read on `conn` (nothing inside a transaction).
    pub fn read(conn: &dyn Db) -> Result<Self, StoreError> {
        if conn.in_transaction() {
            return Ok(Self(None));
        }
        config_version(conn).map(|n| Self(Some(n)))
    }

    /// A counter read by the caller outside a transaction, in the same
    /// statement as something else it needs (the vault's ledger tag).
    pub fn known(n: i64) -> Self {
        Self(Some(n))
    }
}

impl<V> RecordCache<V> {
    /// The record under `key`: the cached copy when nothing changed since it
    /// was read, otherwise `read`'s answer (cached when it succeeds).
    pub fn get_or_read<E: From<StoreError>>(
        &self,
        conn: &dyn Db,
        key: &str,
        read: impl FnOnce(&dyn Db) -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        self.get_at(conn, ConfigVersion::read(conn)?, key, read)
    }

    /// [`RecordCache::get_or_read`] at a counter the caller read on `conn`.
    pub fn get_at<E>(
        &self,
        conn: &dyn Db,
        version: ConfigVersion,
        key: &str,
        read: impl FnOnce(&dyn Db) -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let version = match version.0 {
            Some(n) if !conn.in_transaction() => n,
            _ => return read(conn).map(Arc::new),
        };
        if let Some((at, value)) = self.entries.lock().unwrap().get(key)
            && *at == version
        {
            return Ok(value.clone());
        }
        let value = Arc::new(read(conn)?);
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.to_string(), (version, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::testing::TestStore;

    fn count_reads(
        store: &Store,
        cache: &RecordCache<String>,
        key: &str,
        reads: &mut u32,
    ) -> String {
        store
            .read(|c| {
                cache.get_or_read(c, key, |c| {
                    *reads += 1;
                    c.query_row(
                        "SELECT version FROM plugins WHERE id = ?1",
                        params![key],
                        |r| r.get::<String>(0),
                    )
                })
            })
            .unwrap()
            .as_ref()
            .clone()
    }

    fn set_version(store: &Store, version: &str) {
        store
            .write(|tx| {
                tx.execute(
                    "UPDATE plugins SET version = ?1 WHERE id = 'p'",
                    params![version],
                )
            })
            .unwrap();
    }

    /// Plugin `p` at version `first`.
    fn insert_plugin(store: &Store) {
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO plugins (id, version, sha256, manifest, approved_grant, \
                     installed_at, updated_at) \
                     VALUES ('p', 'first', 'x', '{}', '[]', 'now', 'now')",
                    params![],
                )
            })
            .unwrap();
    }

    crate::store::testing::on_both_backends!(a_copy_is_served_until_any_process_changes_the_tables);
    crate::store::testing::on_both_backends!(records_looked_up_at_one_read_of_the_counter);

    /// A call reads its connection and its plugin at one read of the
    /// counter: a change committed between that read and a record's read is
    /// cached at the older counter, so the next lookup reads it again.
    fn records_looked_up_at_one_read_of_the_counter(store: &TestStore) {
        insert_plugin(store);
        let cache = RecordCache::default();
        let other = store.reopen();
        let read_version = |c: &dyn Db| {
            c.query_row(
                "SELECT version FROM plugins WHERE id = 'p'",
                params![],
                |r| r.get::<String>(0),
            )
        };
        let seen = store
            .read(|c| {
                let at = ConfigVersion::read(c)?;
                // Another server changes the plugin after the counter was read.
                set_version(&other, "second");
                cache.get_at(c, at, "p", read_version)
            })
            .unwrap();
        assert_eq!(seen.as_str(), "second");
        let mut reads = 0;
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "second");
        assert_eq!(
            reads, 1,
            "the copy cached at the older counter is read again"
        );
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "second");
        assert_eq!(reads, 1, "then served from memory");
    }

    fn a_copy_is_served_until_any_process_changes_the_tables(store: &TestStore) {
        insert_plugin(store);
        let cache = RecordCache::default();
        let mut reads = 0;
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "first");
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "first");
        assert_eq!(reads, 1, "the second lookup is served from memory");

        // Another process or server (its own store on the same database)
        // changes it: the next lookup reads again and sees the change.
        let other = store.reopen();
        set_version(&other, "second");
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "second");
        assert_eq!(reads, 2);

        // A change rolled back inside a transaction is never cached.
        let _ = store.write(|tx| {
            tx.execute(
                "UPDATE plugins SET version = 'rolled-back' WHERE id = 'p'",
                params![],
            )?;
            let seen = cache
                .get_or_read(tx, "p", |c| {
                    c.query_row(
                        "SELECT version FROM plugins WHERE id = 'p'",
                        params![],
                        |r| r.get::<String>(0),
                    )
                })
                .unwrap();
            assert_eq!(seen.as_str(), "rolled-back");
            Err::<(), _>(StoreError::Conflict("roll back".into()))
        });
        set_version(&other, "third");
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "third");
        assert_eq!(count_reads(store, &cache, "p", &mut reads), "third");
        assert_eq!(reads, 3);
    }
}
