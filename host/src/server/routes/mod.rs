//! One file per route group; each adds its routes to the registry.

pub mod audit;
pub mod chat;
pub mod connections;
pub mod meta;
pub mod oauth;
pub mod plugins;
pub mod sync;

use super::error::ApiError;

/// Run blocking library work (compiling a plugin, fsyncing SQLite writes of
/// a large batch) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a background task failed: {e}")))?
}
