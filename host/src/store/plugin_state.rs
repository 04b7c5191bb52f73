//! [`PluginState`] backed by the `plugin_state` table, keyed by
//! (connection, project, key); a NULL project is the no-project scope.
//! Every query compares the project with `IS NOT DISTINCT FROM`, which
//! matches NULL to NULL (in SQLite and PostgreSQL alike), so the one
//! statement serves both kinds of scope.

use std::sync::Arc;

use super::sql::{DbExt, params};
use super::{Store, StoreError, now};
use crate::plugin_state::{PluginState, StateError, StateScope};

/// Plugin state kept in the store (SQLite or PostgreSQL). Removed with its
/// connection.
#[derive(Debug, Clone)]
pub struct StorePluginState {
    store: Arc<Store>,
}

impl StorePluginState {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

fn store_error(e: StoreError) -> StateError {
    StateError::Store(e.to_string())
}

impl PluginState for StorePluginState {
    fn get(&self, scope: StateScope<'_>, key: &str) -> Result<Option<String>, StateError> {
        self.store
            .read(|conn| {
                conn.query_opt(
                    "SELECT value FROM plugin_state
                     WHERE connection_id = ?1 AND project IS NOT DISTINCT FROM ?2 AND key = ?3",
                    params![scope.connection_id, scope.project, key],
                    |r| r.get(0),
                )
            })
            .map_err(store_error)
    }

    fn set(
        &self,
        scope: StateScope<'_>,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError> {
        let (connection_id, project) = (scope.connection_id, scope.project);
        let stored = self
            .store
            .write(|tx| {
                let connection_exists = tx.exists(
                    "SELECT 1 FROM connections WHERE id = ?1",
                    params![connection_id],
                )?;
                if !connection_exists {
                    return Err(StoreError::NotFound(format!(
                        "connection `{connection_id}`"
                    )));
                }
                let replacing = tx.exists(
                    "SELECT 1 FROM plugin_state
                     WHERE connection_id = ?1 AND project IS NOT DISTINCT FROM ?2 AND key = ?3",
                    params![connection_id, project, key],
                )?;
                // No upsert: its conflict target cannot name both unique
                // indexes (projects' and the no-project scope's), and the
                // write transaction already knows which case this is.
                if replacing {
                    tx.execute(
                        "UPDATE plugin_state SET value = ?4, updated_at = ?5
                         WHERE connection_id = ?1 AND project IS NOT DISTINCT FROM ?2 AND key = ?3",
                        params![connection_id, project, key, value, now()],
                    )?;
                    return Ok(true);
                }
                let keys: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM plugin_state
                     WHERE connection_id = ?1 AND project IS NOT DISTINCT FROM ?2",
                    params![connection_id, project],
                    |r| r.get(0),
                )?;
                if usize::try_from(keys).unwrap_or(usize::MAX) >= max_keys {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO plugin_state (connection_id, project, key, value, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![connection_id, project, key, value, now()],
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

    fn delete(&self, scope: StateScope<'_>, key: &str) -> Result<(), StateError> {
        self.store
            .write(|tx| {
                tx.execute(
                    "DELETE FROM plugin_state
                     WHERE connection_id = ?1 AND project IS NOT DISTINCT FROM ?2 AND key = ?3",
                    params![scope.connection_id, scope.project, key],
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
    use crate::store::plugins::testing::install;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        set_get_replace_delete_in_every_kind_of_scope,
        max_keys_refuses_new_keys_but_not_replacements,
        keys_are_per_connection_and_project,
        one_row_per_key_and_scope_is_enforced_by_the_schema,
        unknown_connections_are_refused_clearly,
        state_goes_with_its_connection,
        another_server_sees_the_same_state
    );

    fn setup(store: &TestStore) -> (StorePluginState, String) {
        install(store, "jira");
        let c = ConnectionRecord::new("work", "jira", AuthKind::Bearer);
        store.write(|tx| insert_connection(tx, &c)).unwrap();
        (StorePluginState::new(store.store.clone()), c.id)
    }

    /// The scopes of one connection: two projects, the empty-named one and
    /// no project.
    fn scopes(id: &str) -> [StateScope<'_>; 4] {
        [
            StateScope::new(id, Some("x")),
            StateScope::new(id, Some("y")),
            StateScope::new(id, Some("")),
            StateScope::new(id, None),
        ]
    }

    fn set_get_replace_delete_in_every_kind_of_scope(store: &TestStore) {
        let (state, id) = setup(store);
        for scope in scopes(&id) {
            assert_eq!(state.get(scope, "k").unwrap(), None);
            state.set(scope, "k", "v1", 4).unwrap();
            assert_eq!(state.get(scope, "k").unwrap().as_deref(), Some("v1"));
            state.set(scope, "k", "v2", 4).unwrap();
            assert_eq!(state.get(scope, "k").unwrap().as_deref(), Some("v2"));
            state.delete(scope, "k").unwrap();
            assert_eq!(state.get(scope, "k").unwrap(), None);
            state.delete(scope, "k").unwrap();
        }
    }

    fn max_keys_refuses_new_keys_but_not_replacements(store: &TestStore) {
        let (state, id) = setup(store);
        for scope in [StateScope::new(&id, Some("x")), StateScope::new(&id, None)] {
            state.set(scope, "a", "1", 2).unwrap();
            state.set(scope, "b", "2", 2).unwrap();
            assert_eq!(
                state.set(scope, "c", "3", 2).unwrap_err(),
                StateError::Full { max: 2 }
            );
            assert_eq!(state.get(scope, "c").unwrap(), None);
            state.set(scope, "a", "1b", 2).unwrap();
            assert_eq!(state.get(scope, "a").unwrap().as_deref(), Some("1b"));
            state.delete(scope, "b").unwrap();
            state.set(scope, "c", "3", 2).unwrap();
            assert_eq!(
                state.set(scope, "d", "4", 0).unwrap_err(),
                StateError::Full { max: 0 }
            );
        }
    }

    fn keys_are_per_connection_and_project(store: &TestStore) {
        let (state, id) = setup(store);
        let other = ConnectionRecord::new("other", "jira", AuthKind::Bearer);
        store.write(|tx| insert_connection(tx, &other)).unwrap();
        let all: Vec<StateScope<'_>> = scopes(&id).into_iter().chain(scopes(&other.id)).collect();
        for (i, scope) in all.iter().enumerate() {
            // One key each: a full scope does not stop the others.
            state.set(*scope, "k", &i.to_string(), 1).unwrap();
        }
        for (i, scope) in all.iter().enumerate() {
            assert_eq!(state.get(*scope, "k").unwrap(), Some(i.to_string()));
        }
        state.delete(all[0], "k").unwrap();
        assert_eq!(state.get(all[0], "k").unwrap(), None);
        assert_eq!(state.get(all[1], "k").unwrap().as_deref(), Some("1"));
        assert_eq!(state.get(all[3], "k").unwrap().as_deref(), Some("3"));
    }

    fn one_row_per_key_and_scope_is_enforced_by_the_schema(store: &TestStore) {
        let (_state, id) = setup(store);
        let insert = |project: Option<&str>| {
            store.write(|tx| {
                tx.execute(
                    "INSERT INTO plugin_state (connection_id, project, key, value, updated_at)
                     VALUES (?1, ?2, 'k', 'v', 't')",
                    params![id, project],
                )?;
                Ok(())
            })
        };
        for project in [Some("x"), None] {
            insert(project).unwrap();
            assert!(insert(project).is_err(), "{project:?} twice");
        }
    }

    fn unknown_connections_are_refused_clearly(store: &TestStore) {
        let (state, _id) = setup(store);
        let err = state
            .set(StateScope::new("nope", Some("x")), "k", "v", 4)
            .unwrap_err();
        assert_eq!(
            err,
            StateError::Store("connection `nope` not found".to_string())
        );
        assert_eq!(
            err.to_string(),
            "connection state cannot be stored: connection `nope` not found"
        );
    }

    fn state_goes_with_its_connection(store: &TestStore) {
        let (state, id) = setup(store);
        for scope in scopes(&id) {
            state.set(scope, "k", "v", 4).unwrap();
        }
        store.write(|tx| delete_connection(tx, &id)).unwrap();
        for scope in scopes(&id) {
            assert_eq!(state.get(scope, "k").unwrap(), None);
        }
        let left: i64 = store
            .read(|c| c.query_row("SELECT COUNT(*) FROM plugin_state", params![], |r| r.get(0)))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// Two processes (or two servers on one PostgreSQL database) share one
    /// connection's state, and its key limit.
    fn another_server_sees_the_same_state(store: &TestStore) {
        let (state, id) = setup(store);
        let other = StorePluginState::new(Arc::new(store.reopen()));
        for scope in [StateScope::new(&id, Some("x")), StateScope::new(&id, None)] {
            state.set(scope, "a", "1", 2).unwrap();
            assert_eq!(other.get(scope, "a").unwrap().as_deref(), Some("1"));
            other.set(scope, "b", "2", 2).unwrap();
            assert_eq!(
                state.set(scope, "c", "3", 2).unwrap_err(),
                StateError::Full { max: 2 }
            );
            other.delete(scope, "a").unwrap();
            assert_eq!(state.get(scope, "a").unwrap(), None);
        }
    }
}
