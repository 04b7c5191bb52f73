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

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        per_operation(
            generator,
            "Input",
            "The operation's input: the JSON form of its WIT argument (snake_case fields; `null` \
             or `{}` for an operation without arguments). The input of \
             `{interface}/{operation}` is the component named after both in PascalCase with \
             `Input` (`tickets/create`: `TicketsCreateInput`).",
        )
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

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        per_operation(
            generator,
            "Output",
            "The operation's result in JSON. The output of `{interface}/{operation}` is the \
             component named after both in PascalCase with `Output` (`tickets/create`: \
             `TicketsCreateOutput`).",
        )
    }
}

/// `tickets.get-page` + `Input`: `TicketsGetPageInput`.
pub fn component_name(operation: &str, suffix: &str) -> String {
    let mut name = String::new();
    for word in operation.split(['.', '-']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name + suffix
}

/// Any one operation's input (or output): each operation's own schema,
/// from the operation JSON contract, goes into the generator's definitions
/// (the document's components) under [`component_name`], and the route's
/// schema is any of them.
fn per_operation(generator: &mut SchemaGenerator, suffix: &str, description: &str) -> Schema {
    let prefix = format!("#{}/", generator.settings().definitions_path);
    let mut refs = Vec::new();
    for op in crate::runtime::operation_schemas() {
        let mut schema = if suffix == "Input" {
            op.input
        } else {
            op.output
        };
        // Each is a root schema of its own; in the document it is not.
        schema.remove("$schema");
        let name = component_name(op.operation, suffix);
        refs.push(serde_json::json!({ "$ref": format!("{prefix}{name}") }));
        generator.definitions_mut().insert(name, schema.to_value());
    }
    let mut schema = json_schema!({ "anyOf": refs });
    schema.insert("description".into(), description.into());
    schema
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
