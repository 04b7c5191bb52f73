//! The API's one error shape, `{ "error": { "code", "message" } }`, the
//! mapping from library errors to HTTP statuses, and extractors whose
//! rejections (malformed JSON, oversized bodies, bad paths) use that shape
//! instead of axum's plain-text defaults.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::runtime::types::PluginError;
use crate::service::oauth::OAuthError;
use crate::service::{ServiceError, TrustError};
use crate::store::StoreError;

/// An error answer: an HTTP status, a stable machine-readable code and a
/// message for people. Messages come from the library's errors, which
/// never contain secrets.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// The stable code clients match on (`not_found`, `needs_reauth`, ...).
    pub code: &'static str,
    /// What went wrong and what to do next, for people.
    pub message: String,
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401 `unauthorized`: no, malformed, unknown or revoked token. The
    /// answer carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`: the token's role or project restriction does not
    /// allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 `invalid_request`: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 500 `internal`: a failure inside the host.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The status and code of a plugin's typed error: upstream trouble is a
/// gateway problem (502/504), the caller's mistakes keep their meaning.
fn plugin_status(error: &PluginError) -> (StatusCode, &'static str) {
    match error {
        PluginError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "plugin_invalid_input"),
        PluginError::Unauthorized(_) => (StatusCode::BAD_GATEWAY, "upstream_unauthorized"),
        PluginError::Forbidden(_) => (StatusCode::BAD_GATEWAY, "upstream_forbidden"),
        PluginError::NotFound(_) => (StatusCode::NOT_FOUND, "upstream_not_found"),
        PluginError::Conflict(_) => (StatusCode::CONFLICT, "upstream_conflict"),
        PluginError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"),
        PluginError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
        PluginError::EgressDenied(_) => (StatusCode::FORBIDDEN, "egress_denied"),
        PluginError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        PluginError::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
        PluginError::Internal(_) => (StatusCode::BAD_GATEWAY, "plugin_internal"),
    }
}

/// A failure inside the host: logged here, answered 500 `internal`.
fn internal(e: &ServiceError) -> (StatusCode, &'static str) {
    tracing::error!(error = %e, "internal error answering an API request");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use crate::runtime::CallError;
        let (status, code) = match &e {
            ServiceError::Store(StoreError::NotFound(_) | StoreError::NoMatch(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            ServiceError::Store(StoreError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            // The shared database is down or restarting: nothing was done,
            // and the same request succeeds once it is back.
            ServiceError::Store(StoreError::Unavailable { .. })
            | ServiceError::OAuth(OAuthError::Store(StoreError::Unavailable { .. })) => {
                tracing::warn!(error = %e, "database unavailable answering an API request");
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ServiceError::Invalid(_) | ServiceError::Settings(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            ServiceError::Load(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin"),
            ServiceError::Signature { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_signature")
            }
            ServiceError::Trust(TrustError::Unsigned { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unsigned_plugin")
            }
            ServiceError::Trust(TrustError::Untrusted { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "untrusted_plugin")
            }
            ServiceError::NeedsApproval { .. } => (StatusCode::CONFLICT, "needs_approval"),
            ServiceError::Paused { .. } => (StatusCode::CONFLICT, "connection_paused"),
            ServiceError::NeedsReauth { .. } => (StatusCode::CONFLICT, "needs_reauth"),
            ServiceError::Tampered { .. } => (StatusCode::CONFLICT, "plugin_tampered"),
            ServiceError::SyncStalled { .. } => (StatusCode::BAD_GATEWAY, "sync_stalled"),
            ServiceError::NotSaved { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "connection_test_failed")
            }
            ServiceError::OAuth(OAuthError::Store(_) | OAuthError::Vault(_)) => internal(&e),
            ServiceError::OAuth(_) => (StatusCode::BAD_REQUEST, "oauth_error"),
            ServiceError::Call(call) => match call {
                CallError::Plugin { error, .. } => plugin_status(error),
                CallError::NotExported { .. } | CallError::UnknownOperation { .. } => {
                    (StatusCode::NOT_FOUND, "unknown_operation")
                }
                CallError::BadInput { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
                CallError::Connection { .. } => (StatusCode::BAD_REQUEST, "connection_unusable"),
                // Never started (the connection was busy for its whole
                // deadline): the caller may retry, unlike a call the plugin
                // ran into a limit.
                CallError::Limit {
                    limit: crate::runtime::LimitKind::ConnectionCalls,
                    ..
                } => (StatusCode::TOO_MANY_REQUESTS, "connection_busy"),
                CallError::Limit { .. } => (StatusCode::BAD_GATEWAY, "plugin_limit_exceeded"),
                CallError::Trap { .. } | CallError::Instantiate { .. } => {
                    (StatusCode::BAD_GATEWAY, "plugin_crashed")
                }
            },
            ServiceError::Store(_)
            | ServiceError::Vault(_)
            | ServiceError::Audit(_)
            | ServiceError::Internal(_)
            | ServiceError::Io { .. } => internal(&e),
        };
        let message = match api_step(&e) {
            Some(step) => format!("{e}; {step}"),
            None => e.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

/// The API request that fixes `e`, where one does: messages say what to do
/// in the caller's terms (the CLI adds its own commands).
fn api_step(e: &ServiceError) -> Option<String> {
    match e {
        ServiceError::Paused { name } => Some(format!("POST /api/v1/connections/{name}/resume")),
        ServiceError::NeedsReauth { name } => {
            Some(format!("POST /api/v1/connections/{name}/oauth/start"))
        }
        ServiceError::Trust(TrustError::Untrusted { id, public_key, .. }) => Some(format!(
            "trust the key with POST /api/v1/trust/keys {{\"name\": \"...\", \"key\": \"{public_key}\", \"plugin\": \"{id}\"}}"
        )),
        _ => None,
    }
}

/// A rejection's status with the API's shape.
fn rejection(status: StatusCode, text: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    ApiError::new(status, code, text)
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than this server accepts".to_string()
        } else {
            format!("malformed JSON body: {}", r.body_text())
        };
        rejection(status, text)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than this server accepts".to_string()
        } else {
            r.body_text()
        };
        rejection(status, text)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        rejection(r.status(), format!("bad query string: {}", r.body_text()))
    }
}

/// `axum::Json` whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(axum::Json::<T>::from_request(req, state).await?.0))
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Self(
            axum::extract::Path::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Self(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

/// The raw body (a plugin upload) whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(bytes::Bytes::from_request(req, state).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(e: ServiceError) -> (StatusCode, &'static str) {
        let api = ApiError::from(e);
        (api.status, api.code)
    }

    #[test]
    fn internal_failures_are_500_and_caller_mistakes_400() {
        assert_eq!(
            mapped(ServiceError::Internal("stored header is corrupt".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(
            mapped(ServiceError::Invalid("name is empty".into())),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let store = StoreError::NotFound("connection `x`".into());
        assert_eq!(
            mapped(ServiceError::OAuth(OAuthError::Store(
                StoreError::Conflict("x".into())
            ))),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(
            mapped(ServiceError::Store(store)),
            (StatusCode::NOT_FOUND, "not_found")
        );
        assert_eq!(
            mapped(ServiceError::OAuth(OAuthError::Callback("no state".into()))),
            (StatusCode::BAD_REQUEST, "oauth_error")
        );
        let stalled = ServiceError::SyncStalled {
            plugin: "p".into(),
            connection: "c".into(),
            pages: 3,
        };
        assert!(stalled.to_string().contains("after 3 pages"), "{stalled}");
        assert_eq!(mapped(stalled), (StatusCode::BAD_GATEWAY, "sync_stalled"));
    }

    #[test]
    fn a_database_that_is_down_is_503_and_says_so() {
        let down = || StoreError::Unavailable {
            database: "postgres://airlock:***@db:5432/airlock".into(),
            reason: "connection refused".into(),
        };
        let api = ApiError::from(ServiceError::Store(down()));
        assert_eq!(
            (api.status, api.code),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        );
        assert!(
            api.message.contains("without restarting airlock"),
            "{}",
            api.message
        );
        assert_eq!(
            mapped(ServiceError::OAuth(OAuthError::Store(down()))),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        );
    }

    #[test]
    fn a_call_a_busy_connection_never_started_is_429_and_a_stopped_one_502() {
        use crate::runtime::{CallError, LimitKind};
        let limit = |limit| {
            ServiceError::Call(CallError::Limit {
                plugin: "plugin p@1".into(),
                connection: "c".into(),
                operation: "connector.test-connection",
                limit,
                detail: String::new(),
            })
        };
        assert_eq!(
            mapped(limit(LimitKind::ConnectionCalls)),
            (StatusCode::TOO_MANY_REQUESTS, "connection_busy")
        );
        assert_eq!(
            mapped(limit(LimitKind::Result)),
            (StatusCode::BAD_GATEWAY, "plugin_limit_exceeded")
        );
    }
}
