//! The API's own description (`/api/v1/openapi.json`), `/metrics`, and the
//! JSON answers for unknown routes and methods.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;

use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::ApiError;
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::GET,
            path: "/api/v1/openapi.json",
            tag: "meta",
            summary: "This document",
            access: Access::Role(Role::User),
            body: RequestBody::None,
            success: (200, "OpenAPI 3.1 document"),
            query: &[],
        },
        openapi,
    )
    .add(
        Operation {
            method: Method::GET,
            path: "/metrics",
            tag: "meta",
            summary: "Prometheus metrics: calls, errors, latency and egress denials per plugin and connection",
            access: Access::Role(Role::Operator),
            body: RequestBody::None,
            success: (200, "Prometheus text format 0.0.4"),
            query: &[],
        },
        metrics,
    )
}

async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi().clone())
}

async fn metrics(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.require_unrestricted("reading host-wide metrics")?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.airlock().metrics().render(),
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the routes are listed in /api/v1/openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /api/v1/openapi.json",
    )
}
