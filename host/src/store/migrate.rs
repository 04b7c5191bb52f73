//! Numbered migrations, applied in order at start-up and recorded in
//! `schema_migrations`. Each runs in its own transaction together with its
//! record, so a failing migration leaves the database as it was. SQLite and
//! PostgreSQL have their own lists (`migrations/` and
//! `migrations/postgres/`), numbered on their own; a database recording a
//! version past the end of its list was written by a newer airlock and is
//! refused untouched.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::postgres::{MIGRATION_LOCK, PgPool};
use super::sql::{Db, DbExt, Tx, params};
use super::{StoreError, now};

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; applied in increasing order.
    pub version: u32,
    /// A short name, recorded beside the number.
    pub name: &'static str,
    /// The SQL; its SHA-256 is recorded and checked on every start.
    pub sql: &'static str,
}

/// Every SQLite migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "conversations",
        sql: include_str!("../../../migrations/0002_conversations.sql"),
    },
    Migration {
        version: 3,
        name: "api_tokens",
        sql: include_str!("../../../migrations/0003_api_tokens.sql"),
    },
    Migration {
        version: 4,
        name: "config_version",
        sql: include_str!("../../../migrations/0004_config_version.sql"),
    },
    Migration {
        version: 5,
        name: "project_scoped_state",
        sql: include_str!("../../../migrations/0005_project_scoped_state.sql"),
    },
    Migration {
        version: 6,
        name: "oauth_endpoint_overrides",
        sql: include_str!("../../../migrations/0006_oauth_endpoint_overrides.sql"),
    },
    Migration {
        version: 7,
        name: "plugin_signatures",
        sql: include_str!("../../../migrations/0007_plugin_signatures.sql"),
    },
    Migration {
        version: 8,
        name: "shared_servers",
        sql: include_str!("../../../migrations/0008_shared_servers.sql"),
    },
];

/// Every PostgreSQL migration this build knows, in order.
pub const MIGRATIONS_POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "audit_project_index",
        sql: include_str!("../../../migrations/postgres/0002_audit_project_index.sql"),
    },
];

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// What is left to apply, after checking the recorded versions: `Err` for
/// a newer database or a changed migration.
fn pending<'m>(
    db: &dyn Db,
    database: &str,
    migrations: &'m [Migration],
) -> Result<Vec<&'m Migration>, StoreError> {
    let supported = migrations.last().map_or(0, |m| m.version);
    let found: u32 = db.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        params![],
        |r| r.get(0),
    )?;
    if found > supported {
        return Err(StoreError::TooNew {
            database: database.to_string(),
            found,
            supported,
        });
    }
    let mut todo = Vec::new();
    for m in migrations {
        let recorded: Option<String> = db.query_opt(
            "SELECT checksum FROM schema_migrations WHERE version = ?1",
            params![m.version],
            |r| r.get(0),
        )?;
        match recorded {
            Some(sum) if sum == checksum(m.sql) => {}
            Some(_) => {
                return Err(StoreError::MigrationMismatch {
                    version: m.version,
                    name: m.name,
                });
            }
            None => todo.push(m),
        }
    }
    Ok(todo)
}

/// Apply `m` and record it, inside the caller's transaction.
fn apply(tx: &Tx<'_>, m: &Migration) -> Result<(), StoreError> {
    let fail = |source| StoreError::Migration {
        version: m.version,
        name: m.name,
        source: Box::new(source),
    };
    tx.execute_batch(m.sql).map_err(fail)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![m.version, m.name, checksum(m.sql), now()],
    )
    .map_err(fail)?;
    tracing::info!(version = m.version, name = m.name, "applied migration");
    Ok(())
}

/// Bring the SQLite database `conn` up to the last of `migrations`.
pub fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    Db::execute_batch(&*conn, CREATE_TABLE)?;
    let todo = pending(&*conn, &path.display().to_string(), migrations)?;
    for m in todo {
        let fail = |source: rusqlite::Error| StoreError::Migration {
            version: m.version,
            name: m.name,
            source: Box::new(source.into()),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        apply(&Tx(&*tx), m)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

/// Bring the PostgreSQL database up to the last of `migrations`, holding a
/// lock every server takes first, so servers starting together migrate once
/// and none runs against a half-migrated schema.
pub(super) fn migrate_postgres(pool: &PgPool, migrations: &[Migration]) -> Result<(), StoreError> {
    pool.transact_locked(Some(MIGRATION_LOCK), |tx| {
        tx.execute_batch(CREATE_TABLE)?;
        Ok::<_, StoreError>(())
    })?;
    pool.transact_locked(Some(MIGRATION_LOCK), |tx| {
        let todo = pending(&**tx, pool.shown(), migrations)?;
        // All pending migrations in one transaction (PostgreSQL's DDL is
        // transactional): a failure leaves the database as it was.
        for m in todo {
            apply(tx, m)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn applies_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, MIGRATIONS).unwrap();
        migrate(&mut conn, &path, MIGRATIONS).unwrap();
        let t = tables(&conn);
        assert!(t.contains(&"connections".to_string()) && t.contains(&"audit_log".to_string()));
        let n: u32 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as u32);
    }

    #[test]
    fn a_failing_migration_leaves_the_database_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, MIGRATIONS).unwrap();
        let before = tables(&conn);
        let last = MIGRATIONS.last().unwrap().version;
        let mut broken = MIGRATIONS.to_vec();
        broken.push(Migration {
            version: last + 1,
            name: "half",
            // The first statement succeeds, the second fails.
            sql: "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);",
        });
        let err = migrate(&mut conn, &path, &broken).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "migration {} (half) failed and was rolled back",
                last + 1
            )),
            "{err}"
        );
        assert_eq!(tables(&conn), before);
        let max: u32 = conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(max, last);
    }

    /// A data directory as version 4 left it: one global connection with
    /// plugin state and a conversation, both keyed by the connection only.
    fn version_4_data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::DB_FILE);
        let mut conn = crate::store::open_connection(&path).unwrap();
        let v4 = &MIGRATIONS[..MIGRATIONS.iter().position(|m| m.version == 5).unwrap()];
        migrate(&mut conn, &path, v4).unwrap();
        conn.execute_batch(
            "INSERT INTO plugins (id, version, sha256, manifest, approved_grant, installed_at, updated_at)
             VALUES ('p', '1.0.0', 'x', '{}', '[]', 't', 't');
             INSERT INTO connections (id, name, plugin_id, settings, auth_kind, is_global, status, created_at, updated_at)
             VALUES ('c1', 'shared', 'p', '{}', 'none', 1, 'active', 't', 't');
             INSERT INTO plugin_state VALUES
                ('c1', 'session', 'old', 't'),
                ('c1', 'conversation/k1/session', 's1', 't');
             INSERT INTO conversations VALUES ('k1', 'c1', 'hi', 't', 't');
             INSERT INTO conversation_messages VALUES ('k1', 1, 'user', 'hi', NULL, 't');",
        )
        .unwrap();
        dir
    }

    #[test]
    fn version_5_puts_existing_state_and_conversations_in_the_no_project_scope() {
        use crate::plugin_state::{PluginState, StateScope};
        use crate::store::conversations::{self, ProjectFilter};
        use crate::store::{Store, StorePluginState};

        let dir = version_4_data_dir();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let state = StorePluginState::new(store.clone());
        let none = StateScope::new("c1", None);
        assert_eq!(state.get(none, "session").unwrap().as_deref(), Some("old"));
        for project in ["x", ""] {
            let scope = StateScope::new("c1", Some(project));
            assert_eq!(state.get(scope, "session").unwrap(), None, "{project:?}");
        }
        // The old keys count against the no-project scope's limit only.
        state.set(none, "session", "new", 2).unwrap();
        assert!(state.set(none, "third", "v", 2).is_err());
        state
            .set(StateScope::new("c1", Some("x")), "third", "v", 2)
            .unwrap();

        let k1 = store
            .read(|c| conversations::get_conversation(c, "k1", &ProjectFilter::of(None)))
            .unwrap();
        assert_eq!(k1.project, None);
        assert_eq!(
            store
                .read(|c| conversations::messages(c, "k1"))
                .unwrap()
                .len(),
            1
        );
        let for_x =
            store.read(|c| conversations::get_conversation(c, "k1", &ProjectFilter::of(Some("x"))));
        assert!(matches!(for_x, Err(StoreError::NoMatch(_))), "{for_x:?}");
        // Deleting it takes its state from the scope it now lives in.
        store
            .write(|tx| conversations::delete_conversation(tx, "k1", &ProjectFilter::Any))
            .unwrap();
        assert_eq!(state.get(none, "conversation/k1/session").unwrap(), None);
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, MIGRATIONS).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (99, 'future', 'x', '2030-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn, &path, MIGRATIONS).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("upgrade airlock"));
    }

    mod postgres {
        use super::super::*;
        use crate::store::{PgTarget, Store};

        fn fresh() -> (PgTarget, String) {
            let pg = airlock_test_artifacts::postgres::shared();
            let url = pg.database();
            let name = url.rsplit('/').next().unwrap().to_string();
            (PgTarget::parse(&url).unwrap(), name)
        }

        fn versions(name: &str) -> String {
            airlock_test_artifacts::postgres::shared().psql(
                name,
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
            )
        }

        /// Every version this build knows, as [`versions`] prints them.
        fn all_versions() -> String {
            let all: Vec<String> = MIGRATIONS_POSTGRES
                .iter()
                .map(|m| m.version.to_string())
                .collect();
            all.join(",")
        }

        /// The README's "a filter by project still uses it" on PostgreSQL:
        /// the planner proves `project = $1` implies the partial index's
        /// `project IS NOT NULL` (sequential scans off, so the tiny table
        /// does not decide the plan).
        #[test]
        fn the_audit_project_filter_uses_the_partial_index() {
            let (target, name) = fresh();
            Store::open_postgres(&target).unwrap();
            let plan = airlock_test_artifacts::postgres::shared().psql(
                &name,
                "SET enable_seqscan = off; EXPLAIN SELECT seq FROM audit_log \
                 WHERE kind = 'request' AND project = 'x' ORDER BY seq DESC",
            );
            assert!(plan.contains("audit_log_project"), "{plan}");
        }

        #[test]
        fn servers_starting_together_migrate_once() {
            let (target, name) = fresh();
            let opened: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..3)
                    .map(|_| s.spawn(|| Store::open_postgres(&target).map(|_| ())))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for result in opened {
                result.unwrap();
            }
            assert_eq!(versions(&name).trim(), all_versions());
            // Opening again applies nothing and changes nothing.
            Store::open_postgres(&target).unwrap();
            assert_eq!(versions(&name).trim(), all_versions());
        }

        #[test]
        fn a_failing_migration_leaves_the_database_as_it_was() {
            let (target, name) = fresh();
            Store::open_postgres(&target).unwrap();
            let last = MIGRATIONS_POSTGRES.last().unwrap().version;
            let mut broken = MIGRATIONS_POSTGRES.to_vec();
            broken.push(Migration {
                version: last + 1,
                name: "half",
                sql: "CREATE TABLE half_done (x BIGINT); INSERT INTO no_such_table VALUES (1);",
            });
            let err = Store::open_postgres_with(&target, &broken).unwrap_err();
            assert!(
                err.to_string().contains(&format!(
                    "migration {} (half) failed and was rolled back",
                    last + 1
                )),
                "{err}"
            );
            let pg = airlock_test_artifacts::postgres::shared();
            assert_eq!(
                pg.psql(
                    &name,
                    "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'"
                )
                .trim(),
                "0"
            );
            assert_eq!(versions(&name).trim(), all_versions());
        }

        #[test]
        fn a_newer_database_is_refused_untouched() {
            let (target, name) = fresh();
            Store::open_postgres(&target).unwrap();
            let pg = airlock_test_artifacts::postgres::shared();
            pg.psql(
                &name,
                "INSERT INTO schema_migrations VALUES (99, 'future', 'x', '2030-01-01T00:00:00Z')",
            );
            let before = pg.psql(
                &name,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            );
            let err = Store::open_postgres(&target).unwrap_err();
            assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
            let message = err.to_string();
            assert!(message.contains("upgrade airlock"), "{message}");
            assert!(message.contains(&name), "names the database: {message}");
            let after = pg.psql(
                &name,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            );
            assert_eq!(before, after);
        }

        /// The README: a committed audit row survives a crash of the
        /// database server, even where the database defaults to
        /// asynchronous commits.
        #[test]
        fn commits_are_synchronous_whatever_the_database_says() {
            use crate::store::{DbExt, sql::params};
            let (target, name) = fresh();
            let pg = airlock_test_artifacts::postgres::shared();
            pg.psql(
                &name,
                &format!("ALTER DATABASE {name} SET synchronous_commit = off"),
            );
            assert_eq!(pg.psql(&name, "SHOW synchronous_commit").trim(), "off");
            let store = Store::open_postgres(&target).unwrap();
            let setting: String = store
                .read(|c| c.query_row("SHOW synchronous_commit", params![], |r| r.get(0)))
                .unwrap();
            assert_eq!(setting, "on");
        }

        #[test]
        fn an_unreachable_database_is_a_clear_error_without_the_password() {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let target = PgTarget::parse(&format!(
                "postgres://airlock:s3cret@127.0.0.1:{port}/nothing"
            ))
            .unwrap();
            let err = Store::open_postgres(&target).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, StoreError::Unavailable { .. }), "{message}");
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
            assert!(message.contains("without restarting airlock"), "{message}");
        }
    }
}
