//! The audit log's own database file, `audit.db` next to `airlock.db`: its
//! schema, and the move of a log written before it had a file of its own.
//!
//! The log lives apart from the store because every audit commit on a
//! shared file invalidated the page cache of the store's connection, so the
//! reads every call makes (its connection, plugin and credential, and the
//! `config_version` check in front of each) went back to the file after
//! each commit. Apart, the log's WAL, checkpoints and growth also leave the
//! configuration database alone, and the log can be archived on its own.

use std::path::Path;

use rusqlite::Connection;

use super::AuditError;
use super::chain::CONTENT_COLUMNS;
use crate::store::{Migration, migrate, open_connection};

/// File name of the audit log inside the data directory.
pub const AUDIT_FILE: &str = "audit.db";

/// The audit file's migrations, recorded in its own `schema_migrations`.
pub const AUDIT_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit_log",
        sql: include_str!("../../../migrations/audit/0001_audit_log.sql"),
    },
    Migration {
        version: 2,
        name: "project_index",
        sql: include_str!("../../../migrations/audit/0002_project_index.sql"),
    },
];

fn failure(path: &Path, e: &dyn std::fmt::Display) -> AuditError {
    AuditError(format!("cannot open audit log {}: {e}", path.display()))
}

/// Open (creating if needed) the audit file at `path` and migrate it.
pub fn open_file(path: &Path) -> Result<Connection, AuditError> {
    let mut conn = open_connection(path).map_err(|e| failure(path, &e))?;
    migrate(&mut conn, path, AUDIT_MIGRATIONS).map_err(|e| failure(path, &e))?;
    Ok(conn)
}

/// Whether `conn`'s database has an `audit_log` table.
fn has_log_table(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log')",
        [],
        |r| r.get(0),
    )
}

/// Move the rows of `store_db`'s `audit_log` table (the log of an airlock
/// from before `audit.db`) into `audit_db`, unchanged, and drop the table
/// there; how many rows were moved. Nothing to move is not an error.
///
/// The copy commits first and skips rows whose `seq` is already present,
/// then the table is dropped: a crash in between leaves both copies, and
/// the next open finishes the move without duplicating a row. The chain's
/// hashes cover content only, not the file, so the moved log verifies as
/// before.
pub fn move_from_store(store_db: &Path, audit_db: &Path) -> Result<u64, AuditError> {
    let fail = |e: &dyn std::fmt::Display| {
        AuditError(format!(
            "cannot move the audit log from {} to {}: {e}; the rows stay where they \
             are, and the next start tries again",
            store_db.display(),
            audit_db.display()
        ))
    };
    let store = open_connection(store_db).map_err(|e| fail(&e))?;
    if !has_log_table(&store).map_err(|e| fail(&e))? {
        return Ok(0);
    }
    let mut audit = open_file(audit_db)?;
    audit
        .execute("ATTACH DATABASE ?1 AS store", [store_db.to_string_lossy()])
        .map_err(|e| fail(&e))?;
    let columns = format!("seq, {}, prev_hash, hash", CONTENT_COLUMNS.join(", "));
    let moved = (|| {
        let tx = audit.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            &format!(
                "INSERT OR IGNORE INTO main.audit_log ({columns}) \
                 SELECT {columns} FROM store.audit_log ORDER BY seq"
            ),
            [],
        )?;
        tx.commit()?;
        Ok::<_, rusqlite::Error>(n)
    })()
    .map_err(|e| fail(&e))?;
    audit
        .execute("DETACH DATABASE store", [])
        .map_err(|e| fail(&e))?;
    // `secure_delete` is on for the store: the freed pages are zeroed.
    store
        .execute_batch("DROP TABLE IF EXISTS audit_log")
        .map_err(|e| fail(&e))?;
    if moved > 0 {
        tracing::info!(
            target: "airlock::audit",
            "moved {moved} audit rows from {} to {}",
            store_db.display(),
            audit_db.display()
        );
    }
    Ok(moved as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditSink;
    use crate::audit::chain::verify;
    use crate::audit::writer::test_support::{open, outcome, record};
    use crate::store::Store;

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// `n` requests with their outcomes, written by today's writer to a
    /// scratch file and copied into `conn`'s `audit_log` (the table is the
    /// same in every version).
    async fn copy_log_into(conn: &Connection, n: usize) {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join(AUDIT_FILE);
        let audit = open(&path);
        for i in 0..n {
            let id = audit.begin(&record(i)).await.unwrap();
            audit.finish(id, &outcome(i));
        }
        drop(audit);
        conn.execute("ATTACH DATABASE ?1 AS scratch", [path.to_string_lossy()])
            .unwrap();
        conn.execute_batch(
            "INSERT INTO main.audit_log SELECT * FROM scratch.audit_log; DETACH DATABASE scratch;",
        )
        .unwrap();
    }

    /// `n` requests with their outcomes in `store_db`'s `audit_log`, where
    /// an older airlock wrote them: written to a scratch audit file by
    /// today's writer (the table is the same), then copied over.
    async fn legacy_log(store_db: &Path, n: usize) -> Vec<(i64, String)> {
        let conn = open_connection(store_db).unwrap();
        copy_log_into(&conn, n).await;
        let mut stmt = conn
            .prepare("SELECT seq, hash FROM audit_log ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// An audit file written before migration 0002 (the project index over
    /// every request row) is upgraded in place: rows and chain unchanged,
    /// the index partial, a project filter served by it, the chain
    /// continued.
    #[tokio::test]
    async fn a_file_from_before_the_partial_project_index_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let mut conn = open_connection(&path).unwrap();
        migrate(&mut conn, &path, &AUDIT_MIGRATIONS[..1]).unwrap();
        drop(conn);
        let conn = open_connection(&path).unwrap();
        copy_log_into(&conn, 4).await;
        let index_sql = |conn: &Connection| -> String {
            conn.query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'audit_log_project'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(!index_sql(&conn).contains("IS NOT NULL"));

        let audit = open(&path);
        assert!(index_sql(&conn).contains("project IS NOT NULL"));
        assert_eq!(count(&conn, "audit_log"), 8);
        assert!(verify(&conn).unwrap().is_ok());
        assert_eq!(audit.begin(&record(9)).await.unwrap().0, 9);
        drop(audit);
        assert!(verify(&conn).unwrap().is_ok());
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT seq FROM audit_log \
                 WHERE kind = 'request' AND project = 'x' ORDER BY seq DESC",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("audit_log_project"), "{plan}");
    }

    #[tokio::test]
    async fn an_older_log_moves_unchanged_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit_db = dir.path().join(AUDIT_FILE);
        let before = legacy_log(store.sqlite_path().unwrap(), 5).await;
        assert_eq!(before.len(), 10);

        assert_eq!(
            move_from_store(store.sqlite_path().unwrap(), &audit_db).unwrap(),
            10
        );
        let conn = open_connection(&audit_db).unwrap();
        let after: Vec<(i64, String)> = conn
            .prepare("SELECT seq, hash FROM audit_log ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(after, before);
        assert!(verify(&conn).unwrap().is_ok());
        let store_conn = open_connection(store.sqlite_path().unwrap()).unwrap();
        assert!(
            !has_log_table(&store_conn).unwrap(),
            "the store keeps no audit_log table"
        );

        // The writer continues the moved chain; moving again finds nothing.
        let audit = open(&audit_db);
        assert_eq!(audit.begin(&record(9)).await.unwrap().0, 11);
        drop(audit);
        assert!(verify(&conn).unwrap().is_ok());
        assert_eq!(
            move_from_store(store.sqlite_path().unwrap(), &audit_db).unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_move_cut_short_after_the_copy_finishes_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit_db = dir.path().join(AUDIT_FILE);
        legacy_log(store.sqlite_path().unwrap(), 3).await;
        // The copy committed, the drop did not happen (a crash between).
        let conn = open_file(&audit_db).unwrap();
        conn.execute(
            &format!(
                "ATTACH DATABASE '{}' AS store",
                store.sqlite_path().unwrap().display()
            ),
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO main.audit_log SELECT * FROM store.audit_log WHERE seq <= 4",
            [],
        )
        .unwrap();
        conn.execute("DETACH DATABASE store", []).unwrap();

        assert_eq!(
            move_from_store(store.sqlite_path().unwrap(), &audit_db).unwrap(),
            2
        );
        assert_eq!(count(&conn, "audit_log"), 6);
        assert!(verify(&conn).unwrap().is_ok());
    }

    #[test]
    fn a_store_without_a_log_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let audit_db = dir.path().join(AUDIT_FILE);
        let store = Store::open(dir.path()).unwrap();
        open_connection(store.sqlite_path().unwrap())
            .unwrap()
            .execute_batch("DROP TABLE audit_log")
            .unwrap();
        assert_eq!(
            move_from_store(store.sqlite_path().unwrap(), &audit_db).unwrap(),
            0
        );
        assert!(!audit_db.exists(), "nothing to move creates nothing");
    }
}
