//! Small per-connection key/value state plugins keep between calls (a chat
//! session id, a discovered cloud id). Never secrets: plugins can read it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("connection state is full ({max} keys); delete keys before adding more")]
    Full { max: usize },
    #[error("connection state cannot be stored: {0}")]
    Store(String),
}

/// Where plugin state lives: SQLite in a full host, memory in tests.
pub trait PluginState: Send + Sync + std::fmt::Debug {
    fn get(&self, connection_id: &str, key: &str) -> Result<Option<String>, StateError>;
    /// Set a key; refuses a new key when the connection already has `max_keys`.
    fn set(
        &self,
        connection_id: &str,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<(), StateError>;
    fn delete(&self, connection_id: &str, key: &str) -> Result<(), StateError>;
}

#[derive(Debug, Default)]
pub struct MemoryPluginState {
    map: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl MemoryPluginState {
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
