//! One file per route group; each adds its routes to the registry. The
//! error statuses several groups share are here.

pub mod audit;
pub mod chat;
pub mod connections;
pub mod conversations;
pub mod invoke;
pub mod meta;
pub mod oauth;
pub mod plugins;
pub mod sync;
pub mod tokens;
pub mod trust;

use super::error::ApiError;
use super::openapi::Failure;

/// What a route naming a connection answers when there is none.
pub(crate) const NO_CONNECTION: Failure = (404, "no such connection (`not_found`)");

/// The errors of a route that only looks a connection up.
pub(crate) const CONNECTION_ERRORS: &[Failure] = &[NO_CONNECTION];

/// What a route that calls a connection's plugin may answer (see
/// [`ApiError`]'s mapping of call errors).
pub(crate) const CALL_ERRORS: &[Failure] = &[
    (
        400,
        "the input does not fit the operation or the plugin refused it (`invalid_input`, \
         `plugin_invalid_input`), or the connection cannot be used (`connection_unusable`)",
    ),
    (
        403,
        "the plugin asked for a destination its grant does not allow (`egress_denied`)",
    ),
    (
        404,
        "no such connection (`not_found`), operation (`unknown_operation`) or upstream object \
         (`upstream_not_found`)",
    ),
    (
        409,
        "the connection is paused (`connection_paused`) or needs re-authorisation \
         (`needs_reauth`), its plugin needs approval (`needs_approval`) or changed on disk \
         (`plugin_tampered`), or upstream reports a conflict (`upstream_conflict`)",
    ),
    (
        429,
        "the connection was busy for the whole deadline (`connection_busy`), or upstream \
         rate-limits (`upstream_rate_limited`)",
    ),
    (501, "the plugin does not support this (`unsupported`)"),
    (
        502,
        "upstream refused or failed (`upstream_unauthorized`, `upstream_forbidden`, \
         `upstream_error`), or the plugin failed (`plugin_crashed`, `plugin_internal`, \
         `plugin_limit_exceeded`)",
    ),
    (504, "upstream did not answer in time (`upstream_timeout`)"),
];

/// Run blocking library work (compiling a plugin, fsyncing SQLite writes of
/// a large batch) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a background task failed: {e}")))?
}
