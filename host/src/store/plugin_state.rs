//! [`PluginState`] backed by the `plugin_state` table.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, exists, now};
use crate::plugin_state::{PluginState, StateError};

/// Plugin state kept in SQLite. Removed with its connection.
#[derive(Debug, Clone)]
pub struct SqlitePluginState {
    store: Arc<Store>,
}

impl SqlitePluginState {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

fn store_error(e: StoreError) -> StateError {
    StateError::Store(e.to_string())
}

impl PluginState for SqlitePluginState {
    fn get(&self, connection_id: &str, key: &str) -> Result<Option<String>, StateError> {
        self.store
            .read(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT value FROM plugin_state WHERE connection_id = ?1 AND key = ?2",
                        [connection_id, key],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .map_err(store_error)
    }

    fn set(
        &self,
        connection_id: &str,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError> {
        let stored = self
            .store
            .write(|tx| {
                let connection_exists = exists(
                    tx,
                    "SELECT 1 FROM connections WHERE id = ?1",
                    [connection_id],
                )?;
                if !connection_exists {
                    return Err(StoreError::NotFound(format!(
                        "connection `{connection_id}`"
                    )));
                }
                let replacing = exists(
                    tx,
                    "SELECT 1 FROM plugin_state WHERE connection_id = ?1 AND key = ?2",
                    [connection_id, key],
                )?;
                if !replacing {
                    let keys: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM plugin_state WHERE connection_id = ?1",
                        [connection_id],
                        |r| r.get(0),
                    )?;
                    if usize::try_from(keys).unwrap_or(usize::MAX) >= max_keys {
                        return Ok(false);
                    }
                }
                tx.execute(
                    "INSERT INTO plugin_state (connection_id, key, value, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (connection_id, key) DO UPDATE SET
                         value = excluded.value,
                         updated_at = excluded.updated_at",
                    params![connection_id, key, value, now()],
                )?;
                Ok(true)
            })
            .map_err(store_error)?;
        if stored {
            Ok(())
        } else {
            Err(StateError::Full { max: max_keys })
        }
    }

    fn delete(&self, connection_id: &str, key: &str) -> Result<(), StateError> {
        self.store
            .write(|tx| {
                tx.execute(
                    "DELETE FROM plugin_state WHERE connection_id = ?1 AND key = ?2",
                    [connection_id, key],
                )?;
                Ok(())
            })
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AuthKind;
    use crate::store::connections::{ConnectionRecord, delete_connection, insert_connection};
    use crate::store::plugins::testing::{install, open_store};

    fn setup() -> (tempfile::TempDir, Arc<Store>, SqlitePluginState, String) {
        let (dir, store) = open_store();
        install(&store, "jira");
        let c = ConnectionRecord::new("work", "jira", AuthKind::Bearer);
        store.write(|tx| insert_connection(tx, &c)).unwrap();
        let store = Arc::new(store);
        let state = SqlitePluginState::new(store.clone());
        (dir, store, state, c.id)
    }

    #[test]
    fn set_get_replace_delete() {
        let (_dir, _store, state, id) = setup();
        assert_eq!(state.get(&id, "k").unwrap(), None);
        state.set(&id, "k", "v1", 4).unwrap();
        assert_eq!(state.get(&id, "k").unwrap().as_deref(), Some("v1"));
        state.set(&id, "k", "v2", 4).unwrap();
        assert_eq!(state.get(&id, "k").unwrap().as_deref(), Some("v2"));
        state.delete(&id, "k").unwrap();
        assert_eq!(state.get(&id, "k").unwrap(), None);
        state.delete(&id, "k").unwrap();
    }

    #[test]
    fn max_keys_refuses_new_keys_but_not_replacements() {
        let (_dir, _store, state, id) = setup();
        state.set(&id, "a", "1", 2).unwrap();
        state.set(&id, "b", "2", 2).unwrap();
        assert_eq!(
            state.set(&id, "c", "3", 2).unwrap_err(),
            StateError::Full { max: 2 }
        );
        assert_eq!(state.get(&id, "c").unwrap(), None);
        state.set(&id, "a", "1b", 2).unwrap();
        assert_eq!(state.get(&id, "a").unwrap().as_deref(), Some("1b"));
        state.delete(&id, "b").unwrap();
        state.set(&id, "c", "3", 2).unwrap();
        assert_eq!(
            state.set(&id, "d", "4", 0).unwrap_err(),
            StateError::Full { max: 0 }
        );
    }

    #[test]
    fn keys_are_per_connection() {
        let (_dir, store, state, id) = setup();
        let other = ConnectionRecord::new("other", "jira", AuthKind::Bearer);
        store.write(|tx| insert_connection(tx, &other)).unwrap();
        state.set(&id, "k", "mine", 1).unwrap();
        state.set(&other.id, "k", "theirs", 1).unwrap();
        assert_eq!(state.get(&id, "k").unwrap().as_deref(), Some("mine"));
        assert_eq!(
            state.get(&other.id, "k").unwrap().as_deref(),
            Some("theirs")
        );
    }

    #[test]
    fn unknown_connections_are_refused_clearly() {
        let (_dir, _store, state, _id) = setup();
        let err = state.set("nope", "k", "v", 4).unwrap_err();
        assert_eq!(
            err,
            StateError::Store("connection `nope` not found".to_string())
        );
        assert_eq!(
            err.to_string(),
            "connection state cannot be stored: connection `nope` not found"
        );
    }

    #[test]
    fn state_goes_with_its_connection() {
        let (_dir, store, state, id) = setup();
        state.set(&id, "k", "v", 4).unwrap();
        store.write(|tx| delete_connection(tx, &id)).unwrap();
        assert_eq!(state.get(&id, "k").unwrap(), None);
    }
}
