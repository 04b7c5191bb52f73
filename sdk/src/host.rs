//! What the host offers besides outbound HTTP: logging, who is calling, the
//! connection's non-secret settings and a little state per connection and
//! project.
//!
//! There is deliberately no way to read a secret: the host adds credentials
//! to outbound requests itself, after its egress check.

use crate::__bindings::base::airlock::plugin::host as wit;
use crate::types::{CallContext, LogLevel, PluginError};

/// Write to the host's log, tagged with the plugin and connection. The host
/// truncates messages longer than its hostcall data cap.
pub fn log(level: LogLevel, message: &str) {
    wit::log(level, message);
}

/// [`log`] at [`LogLevel::Trace`].
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// [`log`] at [`LogLevel::Debug`].
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// [`log`] at [`LogLevel::Info`].
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// [`log`] at [`LogLevel::Warn`].
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// [`log`] at [`LogLevel::Error`].
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Who is calling: the plugin, the connection and the project, never the
/// credential.
pub fn context() -> CallContext {
    wit::context()
}

/// One non-secret connection setting by name (`base-url`, `space-key`...),
/// as validated against the manifest's settings schema. See also
/// [`setting_required`](crate::setting_required).
pub fn setting(name: &str) -> Option<String> {
    wit::setting(name)
}

/// All non-secret settings of the connection, as `(name, value)` pairs.
pub fn settings() -> Vec<(String, String)> {
    wit::settings()
}

/// A value stored by [`state_set`] for this connection and the call's
/// project (see [`context`]), in this or an earlier call. A call for another
/// project, or one without a project, has state of its own and does not see
/// it.
pub fn state_get(key: &str) -> Option<String> {
    wit::state_get(key)
}

/// Store a small value for this connection and the call's project. Keys and
/// values are bounded by the host's limits (the key count per connection
/// and project); exceeding them is an `InvalidInput` error.
pub fn state_set(key: &str, value: &str) -> Result<(), PluginError> {
    wit::state_set(key, value)
}

/// Forget a value stored by [`state_set`].
pub fn state_delete(key: &str) {
    wit::state_delete(key);
}
