//! OAuth over the API: start an authorisation (answers the provider's URL
//! and the `state`), and the callback the provider sends the browser back
//! to. The callback is the one route without a token: it is protected by
//! the single-use, expiring `state` that only the start handed out.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::connections::managed;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiPath};
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::POST,
            path: "/api/v1/connections/{id}/oauth/start",
            tag: "oauth",
            summary: "Start authorising an OAuth2 connection: send the user to authorization_url",
            access: Access::Role(Role::Operator),
            body: RequestBody::None,
            success: (
                200,
                "authorization_url, state, redirect_uri (this server's callback) and expires_at",
            ),
            query: &[],
        },
        start,
    )
    .add(
        Operation {
            method: Method::GET,
            path: "/api/v1/oauth/callback",
            tag: "oauth",
            summary: "The provider's redirect back (no token: protected by the single-use state)",
            access: Access::Public,
            body: RequestBody::None,
            success: (
                200,
                "An HTML page for the browser, or JSON when Accept asks for it",
            ),
            query: &[
                ("code", "Authorization code"),
                ("state", "The state handed out by start"),
                ("error", "The provider's refusal"),
            ],
        },
        callback,
    )
}

async fn start(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let started = state
        .airlock()
        .oauth_start_redirect(&record.id, &state.oauth_redirect_uri())?;
    Ok(Json(json!({
        "connection": started.connection,
        "authorization_url": started.authorization_url,
        "state": started.state,
        "redirect_uri": started.redirect_uri,
        "expires_at": started.expires_at,
    })))
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = state
        .airlock()
        .oauth_callback(
            query.as_deref().unwrap_or_default(),
            &state.oauth_redirect_uri(),
        )
        .await;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return match result {
            Ok(outcome) => Json(json!({ "connection": outcome.connection })).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let (status, page) = crate::service::oauth::callback_page(&result);
    (status, Html(page)).into_response()
}
