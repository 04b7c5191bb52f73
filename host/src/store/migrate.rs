//! Numbered migrations from `migrations/`, applied in order at start-up and
//! recorded in `schema_migrations`. Each runs in its own transaction together
//! with its record, so a failing migration leaves the database as it was.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::{StoreError, now};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
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
];

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Bring `conn` up to the last of `migrations`.
pub fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            checksum   TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )",
    )?;
    let supported = migrations.last().map_or(0, |m| m.version);
    let found: u32 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if found > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for m in migrations {
        let recorded: Option<String> = conn
            .query_row(
                "SELECT checksum FROM schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .ok();
        match recorded {
            Some(sum) if sum == checksum(m.sql) => continue,
            Some(_) => {
                return Err(StoreError::MigrationMismatch {
                    version: m.version,
                    name: m.name,
                });
            }
            None => {}
        }
        let fail = |source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, checksum(m.sql), now()],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
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
}
