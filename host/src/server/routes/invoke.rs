//! `POST /api/v1/connections/{id}/invoke/{interface}/{operation}`: run any
//! operation a connection's plugin exports, JSON in and out.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CALL_ERRORS;
use super::connections::usable_for;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::server::openapi::{Operation, Routes};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::POST,
            path: "/api/v1/connections/{id}/invoke/{interface}/{operation}",
            id: "invokeOperation",
            tag: "invoke",
            summary: "Invoke an exported operation (e.g. tickets/create) with a JSON input",
            access: Access::Role(Role::User),
            returns: "The operation's output, as JSON",
            errors: CALL_ERRORS,
        },
        invoke,
    )
}

#[derive(Debug, Deserialize, JsonSchema)]
struct InvokeQuery {
    /// Project the call is made for (a restricted token's own project by
    /// default).
    project: Option<String>,
}

/// An operation's input: the JSON form of its WIT argument.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct OperationInput(Value);

impl JsonSchema for OperationInput {
    fn schema_name() -> Cow<'static, str> {
        "OperationInput".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The operation's input: a JSON object with the WIT argument record's \
                            fields in snake_case (`null` or `{}` for an operation without \
                            arguments). The plugin's `inspect` lists its operations.",
            "type": ["object", "null"]
        })
    }
}

/// An operation's output: the JSON form of its WIT result.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct OperationOutput(Value);

impl JsonSchema for OperationOutput {
    fn schema_name() -> Cow<'static, str> {
        "OperationOutput".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The operation's result in JSON: a record as an object with \
                            snake_case fields, a list as an array, nothing as `null`.",
            "type": ["object", "array", "string", "boolean", "integer", "null"]
        })
    }
}

async fn invoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, interface, operation)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<InvokeQuery>,
    ApiJson(OperationInput(input)): ApiJson<OperationInput>,
) -> Result<Json<OperationOutput>, ApiError> {
    let (record, project) = usable_for(&state, &principal, &id, q.project)?;
    let output = state
        .airlock()
        .call(
            &record.id,
            &format!("{interface}.{operation}"),
            input,
            project.as_deref(),
        )
        .await?;
    Ok(Json(OperationOutput(output)))
}
