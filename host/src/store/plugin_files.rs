//! The pinned bytes of installed plugin files (`plugin_files`), keyed by
//! their SHA-256: what a server compiles a plugin from when its own data
//! directory does not hold the file (another server installed it). Readers
//! check the bytes against the pinned hash before using them.

use super::StoreError;
use super::sql::{Db, DbExt, Tx, params};

/// Keep `bytes` under `sha256` (the hex SHA-256 the caller computed);
/// storing the same file again changes nothing.
pub fn put(tx: &Tx<'_>, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO plugin_files (sha256, bytes) VALUES (?1, ?2)
         ON CONFLICT (sha256) DO NOTHING",
        params![sha256, bytes],
    )?;
    Ok(())
}

/// The bytes kept under `sha256`, if any.
pub fn get(conn: &dyn Db, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_opt(
        "SELECT bytes FROM plugin_files WHERE sha256 = ?1",
        params![sha256],
        |r| r.get(0),
    )
}

/// Forget the bytes under `sha256` unless an installed plugin still pins
/// them.
pub fn remove_unused(tx: &Tx<'_>, sha256: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM plugin_files WHERE sha256 = ?1
         AND NOT EXISTS (SELECT 1 FROM plugins WHERE sha256 = ?1)",
        params![sha256],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(bytes_are_kept_once_and_removed_when_unpinned);

    fn bytes_are_kept_once_and_removed_when_unpinned(store: &TestStore) {
        let bytes = vec![0u8, 1, 2, 255];
        store.write(|tx| put(tx, "abc", &bytes)).unwrap();
        store.write(|tx| put(tx, "abc", b"other")).unwrap();
        assert_eq!(store.read(|c| get(c, "abc")).unwrap(), Some(bytes.clone()));
        assert_eq!(store.read(|c| get(c, "nope")).unwrap(), None);
        // Another server on the same database sees them.
        let other = store.reopen();
        assert_eq!(other.read(|c| get(c, "abc")).unwrap(), Some(bytes));
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO plugins (id, version, sha256, manifest, approved_grant, \
                     installed_at, updated_at) VALUES ('p', '1', 'abc', '{}', '[]', 't', 't')",
                    params![],
                )
            })
            .unwrap();
        store.write(|tx| remove_unused(tx, "abc")).unwrap();
        assert!(
            store.read(|c| get(c, "abc")).unwrap().is_some(),
            "still pinned"
        );
        store
            .write(|tx| tx.execute("DELETE FROM plugins", params![]))
            .unwrap();
        store.write(|tx| remove_unused(tx, "abc")).unwrap();
        assert_eq!(store.read(|c| get(c, "abc")).unwrap(), None);
    }
}
