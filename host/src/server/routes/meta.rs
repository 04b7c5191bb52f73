//! The API's own description (`/api/v1/openapi.json`), `/metrics`, and the
//! JSON answers for unknown routes and methods.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::ApiError;
use crate::server::openapi::describe::{Described, Schemas};
use crate::server::openapi::{DocResponse, Operation, Routes};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::GET,
            path: "/api/v1/openapi.json",
            id: "getOpenApi",
            tag: "meta",
            summary: "This document",
            access: Access::Role(Role::User),
            returns: "OpenAPI 3.1 document",
            errors: &[],
        },
        openapi,
    )
    .add(
        Operation {
            method: Method::GET,
            path: "/metrics",
            id: "getMetrics",
            tag: "meta",
            summary: "Prometheus metrics: calls, errors, latency and egress denials per plugin and connection",
            access: Access::Role(Role::Operator),
            returns: "Prometheus text format 0.0.4",
            errors: &[],
        },
        metrics,
    )
}

/// The served OpenAPI document.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Document(serde_json::Value);

impl JsonSchema for Document {
    fn schema_name() -> Cow<'static, str> {
        "OpenApiDocument".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "An OpenAPI 3.1 document",
            "required": ["openapi", "info", "paths"],
            "properties": {
                "openapi": { "type": "string", "pattern": "^3\\.1\\." },
                "info": { "type": "object" },
                "paths": { "type": "object" }
            }
        })
    }
}

async fn openapi(State(state): State<AppState>) -> Json<Document> {
    Json(Document(state.openapi().clone()))
}

/// Metrics in Prometheus' text format.
struct Metrics(String);

impl IntoResponse for Metrics {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            self.0,
        )
            .into_response()
    }
}

impl DocResponse for Metrics {
    fn describe(_: &mut Schemas, doc: &mut Described) {
        doc.success
            .entry(200)
            .or_default()
            .push(("text/plain", serde_json::json!({ "type": "string" })));
    }
}

async fn metrics(State(state): State<AppState>, principal: Principal) -> Result<Metrics, ApiError> {
    principal.require_unrestricted("reading host-wide metrics")?;
    Ok(Metrics(state.airlock().metrics().render()))
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
