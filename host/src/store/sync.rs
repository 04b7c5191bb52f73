//! Sync runs (`sync_runs`) and the records they pulled (`sync_records`).
//!
//! The host commits each page's records together with the page's cursor in
//! one transaction ([`commit_page`]), so after a failure the next run resumes
//! from the last committed page ([`last_cursor`]).

use serde::Serialize;

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, new_id, now};

/// One sync of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SyncRun {
    /// Random hex id.
    pub id: String,
    /// The connection synced.
    pub connection_id: String,
    /// A full sync from the beginning, rather than from the last cursor.
    pub full: bool,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC; `None` while running.
    pub finished_at: Option<String>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Cursor of the run's last committed page that returned one.
    pub cursor: Option<String>,
    /// Pages committed.
    pub pages: u32,
    /// Records written (an update of an existing record counts).
    pub records: u64,
    /// Why a failed run failed.
    pub error: Option<String>,
}

/// A synced record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SyncRecordRow {
    /// The plugin's name for the record's type (e.g. `work-item`, `page`).
    pub kind: String,
    /// The record's id upstream, unique within its kind and connection.
    pub record_id: String,
    /// When upstream last changed it, as the plugin reported.
    pub updated_at: Option<String>,
    /// The record as a JSON document.
    pub data: String,
}

/// `full` is quoted: FULL is a reserved word in PostgreSQL.
const RUN_COLUMNS: &str =
    r#"id, connection_id, "full", started_at, finished_at, status, cursor, pages, records, error"#;

/// Start a run for `connection_id`.
pub fn start_run(tx: &Tx<'_>, connection_id: &str, full: bool) -> Result<SyncRun, StoreError> {
    ensure_connection(&**tx, connection_id)?;
    let run = SyncRun {
        id: new_id(),
        connection_id: connection_id.to_string(),
        full,
        started_at: now(),
        finished_at: None,
        status: "running".to_string(),
        cursor: None,
        pages: 0,
        records: 0,
        error: None,
    };
    tx.execute(
        r#"INSERT INTO sync_runs (id, connection_id, "full", started_at, status)
           VALUES (?1, ?2, ?3, ?4, 'running')"#,
        params![run.id, run.connection_id, run.full, run.started_at],
    )?;
    Ok(run)
}

/// Commit one page of run `run_id`: upsert its records (by connection, kind
/// and record id), count the page and its records, and store `next_cursor`
/// (`None` keeps the run's previous cursor). Atomic with whatever else the
/// caller's transaction does.
pub fn commit_page(
    tx: &Tx<'_>,
    run_id: &str,
    connection_id: &str,
    records: &[SyncRecordRow],
    next_cursor: Option<&str>,
) -> Result<(), StoreError> {
    let (owner, status) = run_owner_and_status(&**tx, run_id)?;
    if owner != connection_id {
        return Err(StoreError::Conflict(format!(
            "sync run `{run_id}` belongs to connection `{owner}`, not `{connection_id}`"
        )));
    }
    if status != "running" {
        return Err(StoreError::Conflict(format!(
            "sync run `{run_id}` has already finished ({status}); start a new run"
        )));
    }
    for r in records {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&r.data) {
            return Err(StoreError::Conflict(format!(
                "sync record `{}` of kind `{}` is not a JSON document ({e}); the page was not \
                 stored",
                r.record_id, r.kind
            )));
        }
    }
    let synced_at = now();
    for r in records {
        tx.execute(
            "INSERT INTO sync_records
                 (connection_id, kind, record_id, updated_at, data, run_id, synced_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (connection_id, kind, record_id) DO UPDATE SET
                 updated_at = excluded.updated_at,
                 data = excluded.data,
                 run_id = excluded.run_id,
                 synced_at = excluded.synced_at",
            params![
                connection_id,
                r.kind,
                r.record_id,
                r.updated_at,
                r.data,
                run_id,
                synced_at
            ],
        )?;
    }
    tx.execute(
        "UPDATE sync_runs
         SET pages = pages + 1, records = records + ?2, cursor = COALESCE(?3, cursor)
         WHERE id = ?1",
        params![run_id, records.len(), next_cursor],
    )?;
    Ok(())
}

/// Mark every run of `connection_id` still `running` as failed with
/// `error`: runs whose server stopped before finishing them (the caller
/// holds the connection's sync lease, so none of them is really running).
/// How many there were.
pub fn fail_interrupted(tx: &Tx<'_>, connection_id: &str, error: &str) -> Result<u64, StoreError> {
    tx.execute(
        "UPDATE sync_runs SET finished_at = ?2, status = 'failed', error = ?3
         WHERE connection_id = ?1 AND status = 'running'",
        params![connection_id, now(), error],
    )
}

/// Mark run `run_id` finished, succeeded or failed (with `error`).
pub fn finish_run(
    tx: &Tx<'_>,
    run_id: &str,
    succeeded: bool,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let (_, status) = run_owner_and_status(&**tx, run_id)?;
    if status != "running" {
        return Err(StoreError::Conflict(format!(
            "sync run `{run_id}` has already finished ({status})"
        )));
    }
    tx.execute(
        "UPDATE sync_runs SET finished_at = ?2, status = ?3, error = ?4 WHERE id = ?1",
        params![
            run_id,
            now(),
            if succeeded { "succeeded" } else { "failed" },
            error
        ],
    )?;
    Ok(())
}

/// The cursor to resume `connection_id` from: that of the most recent run
/// that committed one, whether or not the run later failed.
pub fn last_cursor(conn: &dyn Db, connection_id: &str) -> Result<Option<String>, StoreError> {
    ensure_connection(conn, connection_id)?;
    // Runs are ordered by insertion (rowid), not by `started_at`: timestamps
    // within one second do not sort reliably as text.
    conn.query_opt(
        "SELECT cursor FROM sync_runs
         WHERE connection_id = ?1 AND cursor IS NOT NULL
         ORDER BY rowid DESC LIMIT 1",
        params![connection_id],
        |r| r.get(0),
    )
}

/// The latest `limit` runs of `connection_id`, newest first.
pub fn list_runs(
    conn: &dyn Db,
    connection_id: &str,
    limit: usize,
) -> Result<Vec<SyncRun>, StoreError> {
    ensure_connection(conn, connection_id)?;
    conn.query_map(
        &format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE connection_id = ?1
             ORDER BY rowid DESC LIMIT ?2"
        ),
        params![connection_id, limit],
        run_from_row,
    )
}

/// Records of `connection_id`, ordered by kind and record id, paged.
pub fn list_records(
    conn: &dyn Db,
    connection_id: &str,
    limit: usize,
    offset: usize,
) -> Result<Vec<SyncRecordRow>, StoreError> {
    ensure_connection(conn, connection_id)?;
    conn.query_map(
        "SELECT kind, record_id, updated_at, data FROM sync_records
         WHERE connection_id = ?1
         ORDER BY kind, record_id LIMIT ?2 OFFSET ?3",
        params![connection_id, limit, offset],
        |r| {
            Ok(SyncRecordRow {
                kind: r.get(0)?,
                record_id: r.get(1)?,
                updated_at: r.get(2)?,
                data: r.get(3)?,
            })
        },
    )
}

fn ensure_connection(conn: &dyn Db, connection_id: &str) -> Result<(), StoreError> {
    if conn.exists(
        "SELECT 1 FROM connections WHERE id = ?1",
        params![connection_id],
    )? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!(
            "connection `{connection_id}`"
        )))
    }
}

fn run_owner_and_status(conn: &dyn Db, run_id: &str) -> Result<(String, String), StoreError> {
    conn.query_opt(
        "SELECT connection_id, status FROM sync_runs WHERE id = ?1",
        params![run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .ok_or_else(|| StoreError::NotFound(format!("sync run `{run_id}`")))
}

fn run_from_row(r: &Row) -> Result<SyncRun, StoreError> {
    Ok(SyncRun {
        id: r.get(0)?,
        connection_id: r.get(1)?,
        full: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        status: r.get(5)?,
        cursor: r.get(6)?,
        pages: r.get(7)?,
        records: r.get(8)?,
        error: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AuthKind;
    use crate::store::connections::{ConnectionRecord, delete_connection, insert_connection};
    use crate::store::plugins::testing::install;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        a_run_commits_pages_and_finishes,
        a_failed_run_keeps_the_cursor_of_its_last_committed_page,
        pages_are_checked,
        unknown_connections_are_not_found,
        runs_and_records_go_with_their_connection
    );

    /// Plugin `jira` and one connection in `store`; the connection's id.
    fn setup(store: &TestStore) -> String {
        install(store, "jira");
        let c = ConnectionRecord::new("work", "jira", AuthKind::Bearer);
        store.write(|tx| insert_connection(tx, &c)).unwrap();
        c.id
    }

    fn rec(kind: &str, id: &str, data: &str) -> SyncRecordRow {
        SyncRecordRow {
            kind: kind.to_string(),
            record_id: id.to_string(),
            updated_at: Some("2025-01-01T00:00:00Z".to_string()),
            data: data.to_string(),
        }
    }

    fn a_run_commits_pages_and_finishes(store: &TestStore) {
        let conn_id = setup(store);
        let run = store.write(|tx| start_run(tx, &conn_id, true)).unwrap();
        assert_eq!(run.status, "running");
        assert!(run.full);

        store
            .write(|tx| {
                commit_page(
                    tx,
                    &run.id,
                    &conn_id,
                    &[
                        rec("issue", "2", r#"{"n":2}"#),
                        rec("issue", "1", r#"{"n":1}"#),
                    ],
                    Some("c1"),
                )
            })
            .unwrap();
        store
            .write(|tx| {
                commit_page(
                    tx,
                    &run.id,
                    &conn_id,
                    &[
                        rec("issue", "1", r#"{"n":"one"}"#),
                        rec("comment", "9", "[]"),
                    ],
                    None,
                )
            })
            .unwrap();
        store
            .write(|tx| finish_run(tx, &run.id, true, None))
            .unwrap();

        let runs = store.read(|c| list_runs(c, &conn_id, 10)).unwrap();
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(r.id, run.id);
        assert_eq!(r.status, "succeeded");
        assert!(r.finished_at.is_some());
        assert_eq!((r.pages, r.records), (2, 4));
        assert_eq!(r.cursor.as_deref(), Some("c1"), "None keeps the cursor");
        assert_eq!(r.error, None);
        assert_eq!(
            store.read(|c| last_cursor(c, &conn_id)).unwrap().as_deref(),
            Some("c1")
        );

        let rows = store.read(|c| list_records(c, &conn_id, 10, 0)).unwrap();
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.record_id.as_str(), r.data.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("comment", "9", "[]"),
                ("issue", "1", r#"{"n":"one"}"#),
                ("issue", "2", r#"{"n":2}"#),
            ]
        );
        let page = store.read(|c| list_records(c, &conn_id, 1, 1)).unwrap();
        assert_eq!(page, [rows[1].clone()]);

        let err = store
            .write(|tx| finish_run(tx, &run.id, false, Some("again")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let err = store
            .write(|tx| commit_page(tx, &run.id, &conn_id, &[], Some("late")))
            .unwrap_err();
        assert!(err.to_string().contains("already finished"), "{err}");
    }

    fn a_failed_run_keeps_the_cursor_of_its_last_committed_page(store: &TestStore) {
        let conn_id = setup(store);
        assert_eq!(store.read(|c| last_cursor(c, &conn_id)).unwrap(), None);

        let first = store.write(|tx| start_run(tx, &conn_id, true)).unwrap();
        store
            .write(|tx| commit_page(tx, &first.id, &conn_id, &[rec("a", "1", "{}")], Some("p1")))
            .unwrap();
        store
            .write(|tx| finish_run(tx, &first.id, true, None))
            .unwrap();

        let second = store.write(|tx| start_run(tx, &conn_id, false)).unwrap();
        store
            .write(|tx| commit_page(tx, &second.id, &conn_id, &[rec("a", "2", "{}")], Some("p2")))
            .unwrap();
        // The next page's transaction fails half-way and rolls back.
        let err = store
            .write(|tx| {
                commit_page(tx, &second.id, &conn_id, &[rec("a", "3", "{}")], Some("p3"))?;
                Err::<(), _>(StoreError::Conflict("simulated failure".into()))
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "simulated failure");
        store
            .write(|tx| finish_run(tx, &second.id, false, Some("HTTP 500")))
            .unwrap();

        assert_eq!(
            store.read(|c| last_cursor(c, &conn_id)).unwrap().as_deref(),
            Some("p2")
        );
        // A later run that fails before committing anything changes nothing.
        let third = store.write(|tx| start_run(tx, &conn_id, false)).unwrap();
        store
            .write(|tx| finish_run(tx, &third.id, false, Some("timeout")))
            .unwrap();
        assert_eq!(
            store.read(|c| last_cursor(c, &conn_id)).unwrap().as_deref(),
            Some("p2")
        );

        let runs = store.read(|c| list_runs(c, &conn_id, 10)).unwrap();
        let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [&third.id, &second.id, &first.id]);
        assert_eq!(runs[1].status, "failed");
        assert_eq!(runs[1].error.as_deref(), Some("HTTP 500"));
        assert_eq!((runs[1].pages, runs[1].records), (1, 1));
        assert_eq!(store.read(|c| list_runs(c, &conn_id, 1)).unwrap().len(), 1);

        let records = store.read(|c| list_records(c, &conn_id, 10, 0)).unwrap();
        assert_eq!(records.len(), 2, "the rolled-back page left no records");
    }

    fn pages_are_checked(store: &TestStore) {
        let conn_id = setup(store);
        let run = store.write(|tx| start_run(tx, &conn_id, false)).unwrap();

        let err = store
            .write(|tx| commit_page(tx, &run.id, &conn_id, &[rec("a", "1", "{nope")], Some("x")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("`1` of kind `a`"), "{err}");

        let err = store
            .write(|tx| commit_page(tx, &run.id, "other", &[], None))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        let err = store
            .write(|tx| commit_page(tx, "missing", &conn_id, &[], None))
            .unwrap_err();
        assert_eq!(err.to_string(), "sync run `missing` not found");
        let err = store
            .write(|tx| finish_run(tx, "missing", true, None))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    fn unknown_connections_are_not_found(store: &TestStore) {
        setup(store);
        let err = store.write(|tx| start_run(tx, "nope", true)).unwrap_err();
        assert_eq!(err.to_string(), "connection `nope` not found");
        assert!(store.read(|c| last_cursor(c, "nope")).is_err());
        assert!(store.read(|c| list_runs(c, "nope", 5)).is_err());
        assert!(store.read(|c| list_records(c, "nope", 5, 0)).is_err());
    }

    fn runs_and_records_go_with_their_connection(store: &TestStore) {
        let conn_id = setup(store);
        let run = store.write(|tx| start_run(tx, &conn_id, true)).unwrap();
        store
            .write(|tx| commit_page(tx, &run.id, &conn_id, &[rec("a", "1", "{}")], Some("c")))
            .unwrap();
        store.write(|tx| delete_connection(tx, &conn_id)).unwrap();
        let counts: (u32, u32) = store
            .read(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM sync_runs), (SELECT COUNT(*) FROM sync_records)",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert_eq!(counts, (0, 0));
    }
}
