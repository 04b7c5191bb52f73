//! `POST /api/v1/connections/{id}/invoke/{interface}/{operation}`: run any
//! operation a connection's plugin exports, JSON in and out; and
//! `GET /api/v1/connections/{id}/operations`: which operations those are,
//! with their JSON Schemas and an example input each.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connections::{usable, usable_for};
use super::{CALL_ERRORS, NO_CONNECTION, blocking};
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
    .add(
        Operation {
            method: Method::GET,
            path: "/api/v1/connections/{id}/operations",
            id: "listConnectionOperations",
            tag: "invoke",
            summary: "The operations a connection's plugin exports, with their input and output \
                      JSON Schemas and an example input",
            access: Access::Role(Role::User),
            returns: "The operations, in the order of the operation table (interface by \
                      interface)",
            errors: &[
                NO_CONNECTION,
                (
                    409,
                    "the plugin's file changed on disk since it was approved (`plugin_tampered`)",
                ),
            ],
        },
        operations,
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

/// A JSON Schema (draft 2020-12), self-contained (no `$ref` outside it).
fn json_schema_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "A JSON Schema (draft 2020-12) without references outside itself"
    })
}

/// An example input.
fn example_input(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "An example input that this operation's input schema accepts"
    })
}

/// One operation a connection's plugin exports.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ConnectionOperation")]
struct OperationView {
    /// The exported interface (`tickets`), the `{interface}` of the invoke
    /// route.
    interface: String,
    /// The operation (`create`), the `{operation}` of the invoke route.
    operation: String,
    /// What the operation takes: the JSON form of its WIT argument.
    #[schemars(schema_with = "json_schema_object")]
    input: Value,
    /// What it answers.
    #[schemars(schema_with = "json_schema_object")]
    output: Value,
    /// An input it accepts.
    #[schemars(schema_with = "example_input")]
    example: Value,
}

/// The operations of [`crate::runtime::operation_schemas`] whose interface
/// is in `exported`, with their example inputs.
fn exported_operations(exported: &[crate::runtime::Interface]) -> Vec<OperationView> {
    let examples = crate::runtime::json::EXAMPLES;
    crate::runtime::operation_schemas()
        .into_iter()
        .filter_map(|op| {
            let (interface, operation) = op.operation.split_once('.')?;
            exported
                .iter()
                .any(|i| i.name() == interface)
                .then(|| OperationView {
                    interface: interface.to_string(),
                    operation: operation.to_string(),
                    input: op.input.to_value(),
                    output: op.output.to_value(),
                    // Every operation has one, and each parses (the
                    // runtime's tests hold both); `{}` otherwise.
                    example: examples
                        .iter()
                        .find(|(name, _)| *name == op.operation)
                        .and_then(|(_, json)| serde_json::from_str(json).ok())
                        .unwrap_or_else(|| Value::Object(Default::default())),
                })
        })
        .collect()
}

async fn operations(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<OperationView>>, ApiError> {
    let record = usable(&state, &principal, &id)?;
    let airlock = state.airlock().clone();
    // Loading the installed plugin may compile it (CPU-bound, seconds).
    let plugin = blocking(move || Ok(airlock.loaded_plugin(&record.plugin_id)?)).await?;
    let exported: Vec<_> = plugin.interfaces().iter().copied().collect();
    Ok(Json(exported_operations(&exported)))
}
