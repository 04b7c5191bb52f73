//! Small key/value state plugins keep between calls (a chat session id, a
//! discovered cloud id). Never secrets: plugins can read it.
//!
//! State belongs to a [`StateScope`]: one connection, for one project or
//! for the calls made without a project. A global connection serves every
//! project, so keying by connection alone would let a call for one project
//! read what a call for another left; the project is part of the key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Why plugin state could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A new key was refused: the scope already has `max` keys. The plugin
    /// should delete keys first (replacing a key is always allowed).
    #[error("connection state is full ({max} keys); delete keys before adding more")]
    Full {
        /// The key limit ([`Limits::state_keys`](crate::Limits::state_keys)).
        max: usize,
    },
    /// The backing store failed, or the connection no longer exists; the
    /// text says why.
    #[error("connection state cannot be stored: {0}")]
    Store(String),
}

/// Whose state a call reads and writes: one connection, for one project.
/// Calls made without a project (`project: None`) share a scope of their
/// own, distinct from every project's, the empty-named one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateScope<'a> {
    /// The connection's id.
    pub connection_id: &'a str,
    /// The project the call is made for; `None` for calls without one.
    pub project: Option<&'a str>,
}

impl<'a> StateScope<'a> {
    /// The scope of `connection_id` for `project` (`None`: no project).
    pub fn new(connection_id: &'a str, project: Option<&'a str>) -> Self {
        Self {
            connection_id,
            project,
        }
    }
}

/// Where plugin state lives: the store (SQLite or PostgreSQL) in a full
/// host, memory in tests.
pub trait PluginState: Send + Sync + std::fmt::Debug {
    /// The value of `key` in the scope's state; `None` if unset.
    fn get(&self, scope: StateScope<'_>, key: &str) -> Result<Option<String>, StateError>;
    /// Set a key; refuses a new key when the scope already has `max_keys`.
    fn set(
        &self,
        scope: StateScope<'_>,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError>;
    /// Remove a key; removing one that is not set is not an error.
    fn delete(&self, scope: StateScope<'_>, key: &str) -> Result<(), StateError>;
}

/// The owned form of a [`StateScope`], as a map key.
type ScopeKey = (String, Option<String>);

fn scope_key(scope: StateScope<'_>) -> ScopeKey {
    (
        scope.connection_id.to_string(),
        scope.project.map(String::from),
    )
}

/// Plugin state in memory, lost when dropped: for tests, and embedders
/// that keep no state between runs.
#[derive(Debug, Default)]
pub struct MemoryPluginState {
    map: Mutex<HashMap<ScopeKey, BTreeMap<String, String>>>,
}

impl MemoryPluginState {
    /// Empty state for every scope.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PluginState for MemoryPluginState {
    fn get(&self, scope: StateScope<'_>, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .map
            .lock()
            .unwrap()
            .get(&scope_key(scope))
            .and_then(|m| m.get(key).cloned()))
    }

    fn set(
        &self,
        scope: StateScope<'_>,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError> {
        let mut map = self.map.lock().unwrap();
        let entries = map.entry(scope_key(scope)).or_default();
        if !entries.contains_key(key) && entries.len() >= max_keys {
            return Err(StateError::Full { max: max_keys });
        }
        entries.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn delete(&self, scope: StateScope<'_>, key: &str) -> Result<(), StateError> {
        if let Some(m) = self.map.lock().unwrap().get_mut(&scope_key(scope)) {
            m.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_project_and_no_project_keep_their_own_keys() {
        let state = MemoryPluginState::new();
        let scopes = [
            StateScope::new("c1", Some("x")),
            StateScope::new("c1", Some("y")),
            StateScope::new("c1", Some("")),
            StateScope::new("c1", None),
            StateScope::new("c2", Some("x")),
        ];
        for (i, scope) in scopes.iter().enumerate() {
            assert_eq!(state.get(*scope, "k").unwrap(), None, "{scope:?}");
            state.set(*scope, "k", &i.to_string(), 1).unwrap();
        }
        for (i, scope) in scopes.iter().enumerate() {
            assert_eq!(state.get(*scope, "k").unwrap(), Some(i.to_string()));
        }
        state.delete(scopes[0], "k").unwrap();
        assert_eq!(state.get(scopes[0], "k").unwrap(), None);
        assert_eq!(state.get(scopes[1], "k").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn the_key_limit_is_per_scope() {
        let state = MemoryPluginState::new();
        let x = StateScope::new("c1", Some("x"));
        state.set(x, "a", "1", 1).unwrap();
        assert_eq!(
            state.set(x, "b", "2", 1).unwrap_err(),
            StateError::Full { max: 1 }
        );
        // Another project's calls are not starved by x's keys.
        state.set(StateScope::new("c1", None), "b", "2", 1).unwrap();
        state.set(x, "a", "1b", 1).unwrap();
    }
}
