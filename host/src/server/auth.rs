//! Who is calling and what they may do: the bearer token is looked up by
//! its hash, its role checked against the route's required role, and its
//! project restriction checked by the handlers against the connection (or
//! filter) they act on.
//!
//! Project rules, for a token restricted to project `p`:
//! - using a connection (invoke, chat) needs a connection available to `p`
//!   (global, or scoped to `p`), and the call is made for project `p`;
//! - managing a connection (update, delete, test, pause, resume, OAuth,
//!   sync, reading it) needs a connection scoped to `p` alone: a global or
//!   shared connection serves other projects too, so it is not `p`'s to
//!   change;
//! - plugins, audit verification and metrics are host-wide: refused;
//! - listings are narrowed to `p`.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::store::connections::{ConnectionRecord, Scope};
use crate::store::tokens::{Role, TokenRecord};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: only the OAuth callback, which its single-use `state`
    /// protects.
    Public,
    /// A live token with at least this role.
    Role(Role),
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The live token the request carried (role, project restriction).
    pub token: TokenRecord,
}

impl Principal {
    /// The project the token is restricted to.
    pub fn project(&self) -> Option<&str> {
        self.token.project.as_deref()
    }

    fn denied(&self, what: &str) -> ApiError {
        ApiError::forbidden(format!(
            "token `{}` is restricted to project `{}`: {what}",
            self.token.name,
            self.project().unwrap_or_default()
        ))
    }

    /// Host-wide actions (plugins, audit verification, metrics) need a token
    /// without a project restriction.
    pub fn require_unrestricted(&self, what: &str) -> Result<(), ApiError> {
        match self.project() {
            None => Ok(()),
            Some(_) => Err(self.denied(&format!("{what} needs an unrestricted token"))),
        }
    }

    /// May the token use (invoke, chat) this connection?
    pub fn check_use(&self, record: &ConnectionRecord) -> Result<(), ApiError> {
        match self.project() {
            Some(p) if !record.scope.includes(p) => Err(self.denied(&format!(
                "connection `{}` is not available to it",
                record.name
            ))),
            _ => Ok(()),
        }
    }

    /// May the token manage (change, read, delete) this connection?
    pub fn check_manage(&self, record: &ConnectionRecord) -> Result<(), ApiError> {
        match (self.project(), &record.scope) {
            (None, _) => Ok(()),
            (Some(p), Scope::Projects(ps)) if ps.len() == 1 && ps[0] == p => Ok(()),
            (Some(_), _) => Err(self.denied(&format!(
                "connection `{}` ({}) is not scoped to that project alone",
                record.name, record.scope
            ))),
        }
    }

    /// The project a request acts for: the token's own when restricted (a
    /// different one asked for is refused), else what was asked for.
    pub fn project_for(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match (self.project(), requested) {
            (None, requested) => Ok(requested),
            (Some(p), None) => Ok(Some(p.to_string())),
            (Some(p), Some(r)) if r == p => Ok(Some(r)),
            (Some(_), Some(r)) => Err(self.denied(&format!("it cannot act for project `{r}`"))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("this route needs a bearer token"))
    }
}

/// The token in `Authorization: Bearer <token>`.
fn bearer(parts: &http::HeaderMap) -> Result<&str, ApiError> {
    let value = parts
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing `Authorization: Bearer <token>`; create a token with `airlock token create`",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

/// Middleware: authenticate the token and check the route's role. Routes
/// the router does not know (404/405 answers) still need a live token, so
/// the API cannot be mapped without one.
pub async fn authenticate(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = matched
        .as_ref()
        .and_then(|m| state.access(req.method(), m.as_str()));
    let required = match access {
        Some(Access::Public) => return next.run(req).await,
        Some(Access::Role(role)) => Some(role),
        None => None,
    };
    let token = match bearer(req.headers()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let record = match state.airlock().authenticate_token(token) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return ApiError::unauthorized("unknown or revoked token").into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(required) = required
        && record.role < required
    {
        return ApiError::forbidden(format!(
            "token `{}` has role {}; this route needs {required}",
            record.name, record.role
        ))
        .into_response();
    }
    req.extensions_mut().insert(Principal { token: record });
    next.run(req).await
}
