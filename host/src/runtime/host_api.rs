//! `airlock:plugin/host`: what a plugin may ask the host for. No secret is
//! reachable from here; sizes crossing the boundary are capped.

use super::bindings::airlock::plugin::host::{self, CallContext, LogLevel};
use super::bindings::types::PluginError;
use super::call_data::HostCtx;
use crate::plugin_state::StateScope;

/// Longest state key.
const MAX_STATE_KEY: usize = 256;

impl HostCtx {
    fn cap<'a>(&self, text: &'a str) -> &'a str {
        let max = self.limits.hostcall_data_bytes;
        if text.len() <= max {
            return text;
        }
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }

    /// The state this call sees: its connection's, for its project (or
    /// the no-project scope), so a global connection's projects never share
    /// keys.
    fn state_scope(&self) -> StateScope<'_> {
        StateScope::new(&self.connection.id, self.connection.project.as_deref())
    }
}

impl host::Host for HostCtx {
    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let truncated = message.len() > self.limits.hostcall_data_bytes;
        let text = self.cap(&message);
        let (plugin, connection) = (&self.plugin_id, &self.connection.name);
        let suffix = if truncated { " [truncated]" } else { "" };
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "airlock::guest", plugin = %plugin, connection = %connection, "{text}{suffix}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "airlock::guest", plugin = %plugin, connection = %connection, "{text}{suffix}")
            }
            LogLevel::Info => {
                tracing::info!(target: "airlock::guest", plugin = %plugin, connection = %connection, "{text}{suffix}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "airlock::guest", plugin = %plugin, connection = %connection, "{text}{suffix}")
            }
            LogLevel::Error => {
                tracing::error!(target: "airlock::guest", plugin = %plugin, connection = %connection, "{text}{suffix}")
            }
        }
        Ok(())
    }

    async fn context(&mut self) -> wasmtime::Result<CallContext> {
        Ok(CallContext {
            plugin_id: self.plugin_id.clone(),
            connection_id: self.connection.id.clone(),
            connection_name: self.connection.name.clone(),
            project: self.connection.project.clone(),
        })
    }

    async fn setting(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.connection.settings().get(&name).cloned())
    }

    async fn settings(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .connection
            .settings()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn state_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        match self.state.get(self.state_scope(), &key) {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::warn!(plugin = %self.plugin_id, connection = %self.connection.name, "state read failed: {e}");
                Ok(None)
            }
        }
    }

    async fn state_set(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        if key.is_empty() || key.len() > MAX_STATE_KEY {
            return Ok(Err(PluginError::InvalidInput(format!(
                "state keys must be 1 to {MAX_STATE_KEY} bytes"
            ))));
        }
        if value.len() > self.limits.hostcall_data_bytes {
            return Ok(Err(PluginError::InvalidInput(format!(
                "state value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                self.limits.hostcall_data_bytes
            ))));
        }
        Ok(self
            .state
            .set(self.state_scope(), &key, &value, self.limits.state_keys)
            .map_err(|e| PluginError::InvalidInput(e.to_string())))
    }

    async fn state_delete(&mut self, key: String) -> wasmtime::Result<()> {
        if let Err(e) = self.state.delete(self.state_scope(), &key) {
            tracing::warn!(plugin = %self.plugin_id, connection = %self.connection.name, "state delete failed: {e}");
        }
        Ok(())
    }
}

impl super::bindings::types::Host for HostCtx {}
