//! Small per-connection key/value state plugins keep between calls (a chat
//! session id, a discovered cloud id). Never secrets: plugins can read it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Why plugin state could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A new key was refused: the connection already has `max` keys. The
    /// plugin should delete keys first (replacing a key is always allowed).
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

/// Where plugin state lives: SQLite in a full host, memory in tests.
pub trait PluginState: Send + Sync + std::fmt::Debug {
    /// The value of `key` in the connection's state; `None` if unset.
    fn get(&self, connection_id: &str, key: &str) -> Result<Option<String>, StateError>;
    /// Set a key; refuses a new key when the connection already has `max_keys`.
    fn set(
        &self,
        connection_id: &str,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError>;
    /// Remove a key; removing one that is not set is not an error.
    fn delete(&self, connection_id: &str, key: &str) -> Result<(), StateError>;
}

/// Plugin state in memory, lost when dropped: for tests, and embedders
/// that keep no state between runs.
#[derive(Debug, Default)]
pub struct MemoryPluginState {
    map: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl MemoryPluginState {
    /// Empty state for every connection.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PluginState for MemoryPluginState {
    fn get(&self, connection_id: &str, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .map
            .lock()
            .unwrap()
            .get(connection_id)
            .and_then(|m| m.get(key).cloned()))
    }

    fn set(
        &self,
        connection_id: &str,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError> {
        let mut map = self.map.lock().unwrap();
        let entries = map.entry(connection_id.to_string()).or_default();
        if !entries.contains_key(key) && entries.len() >= max_keys {
            return Err(StateError::Full { max: max_keys });
        }
        entries.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn delete(&self, connection_id: &str, key: &str) -> Result<(), StateError> {
        if let Some(m) = self.map.lock().unwrap().get_mut(connection_id) {
            m.remove(key);
        }
        Ok(())
    }
}
