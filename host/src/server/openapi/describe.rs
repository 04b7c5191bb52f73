//! What a handler's types say about its route: the request (query
//! parameters and body) from its extractors' types, the success answers
//! from its return type, as JSON Schemas generated with `schemars`.
//!
//! [`Routes::add`](super::Routes::add) requires every argument of a
//! handler to implement [`DocArg`] and its output to implement
//! [`DocResponse`], so a handler whose answer has no schema, or that reads
//! a body or query the document would not describe, does not compile.

use std::collections::BTreeMap;
use std::future::Future;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::server::auth::Principal;
use crate::server::error::{ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery};

/// An error status a route may answer and what it means there (the codes).
pub type Failure = (u16, &'static str);

/// What a handler's types document about its route.
#[derive(Debug, Default)]
pub struct Described {
    /// The request body: media type and schema.
    pub body: Option<(&'static str, Value)>,
    /// OpenAPI parameter objects of the query string.
    pub query: Vec<Value>,
    /// Success answers by status: media types with their schemas (none for
    /// an empty answer).
    pub success: BTreeMap<u16, Vec<(&'static str, Value)>>,
    /// Error statuses the extractors answer (malformed bodies and queries).
    pub errors: Vec<Failure>,
}

/// The schema generators of one document. Named types become
/// `#/components/schemas/<name>`; answers are described as serialized and
/// requests as deserialized (defaults, optional fields).
pub struct Schemas {
    output: SchemaGenerator,
    input: SchemaGenerator,
    /// For query strings, whose parameters are listed one by one and so
    /// cannot point into the components.
    inline: SchemaGenerator,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas").finish_non_exhaustive()
    }
}

impl Default for Schemas {
    fn default() -> Self {
        // JSON Schema 2020-12 is OpenAPI 3.1's dialect.
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Self {
            output: settings.clone().for_serialize().into_generator(),
            input: settings.clone().for_deserialize().into_generator(),
            inline: settings
                .with(|s| s.inline_subschemas = true)
                .for_deserialize()
                .into_generator(),
        }
    }
}

impl Schemas {
    /// The schema of `T` as answered (a `$ref` for named types).
    pub fn output<T: JsonSchema>(&mut self) -> Value {
        self.output.subschema_for::<T>().to_value()
    }

    /// The schema of `T` as accepted in a body (a `$ref` for named types).
    pub fn input<T: JsonSchema>(&mut self) -> Value {
        self.input.subschema_for::<T>().to_value()
    }

    /// The fields of `T` as query parameters, typed as `T` parses them.
    pub fn query<T: JsonSchema>(&mut self) -> Vec<Value> {
        let root = self.inline.root_schema_for::<T>().to_value();
        let required: Vec<&str> = root["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = root["properties"].as_object() else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, schema)| {
                let mut schema = without_null(schema.clone());
                let description = schema
                    .as_object_mut()
                    .and_then(|s| s.remove("description"))
                    .unwrap_or(Value::Null);
                let mut param = json!({
                    "name": name, "in": "query",
                    "required": required.contains(&name.as_str()),
                    "schema": schema,
                });
                if description.is_string() {
                    param["description"] = description;
                }
                param
            })
            .collect()
    }

    /// Every named schema, for `components.schemas`. A name generated
    /// differently for answers and requests is an error: the document
    /// would describe one of them wrongly.
    pub fn into_components(mut self) -> Result<Map<String, Value>, String> {
        let mut all = self.output.take_definitions(true);
        for (name, schema) in self.input.take_definitions(true) {
            match all.get(&name) {
                Some(existing) if *existing != schema => {
                    return Err(format!(
                        "schema `{name}` differs between requests and answers; give one of the \
                         types another name with #[schemars(rename = ...)]"
                    ));
                }
                _ => {
                    all.insert(name, schema);
                }
            }
        }
        Ok(all)
    }
}

/// A query value is absent, never `null`: drop `null` from an optional
/// field's schema.
fn without_null(mut schema: Value) -> Value {
    let is_null = |v: &Value| v.get("type") == Some(&json!("null"));
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            schema["type"] = types[0].clone();
        }
    }
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.retain(|v| !v.is_null());
    }
    for key in ["anyOf", "oneOf"] {
        let Some(branches) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let kept: Vec<Value> = branches.iter().filter(|b| !is_null(b)).cloned().collect();
        if kept.len() == 1 {
            let mut inner = kept[0].clone();
            // Keep what was said about the field (description, default).
            if let (Some(inner), Some(outer)) = (inner.as_object_mut(), schema.as_object()) {
                for (k, v) in outer.iter().filter(|(k, _)| *k != key) {
                    inner.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            return inner;
        }
        schema[key] = Value::Array(kept);
    }
    schema
}

/// What a handler argument (an extractor) documents.
pub trait DocArg {
    /// Add what this extractor reads, and the errors it answers, to `doc`.
    fn describe(_schemas: &mut Schemas, _doc: &mut Described) {}
}

/// [`DocArg`] of every argument of a handler.
pub trait DocArgs {
    /// Describe each argument in turn.
    fn describe(schemas: &mut Schemas, doc: &mut Described);
}

/// What a handler's output documents: its success answers.
pub trait DocResponse {
    /// Add the success answers to `doc`.
    fn describe(schemas: &mut Schemas, doc: &mut Described);
}

/// The arguments and output of a handler function, which axum's
/// [`Handler`](axum::handler::Handler) does not name.
pub trait Returns<Args> {
    /// What the handler's future resolves to.
    type Output;
}

macro_rules! handler_arity {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> Returns<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future,
        {
            type Output = Fut::Output;
        }

        impl<$($arg: DocArg,)*> DocArgs for ($($arg,)*) {
            #[allow(unused_variables)]
            fn describe(schemas: &mut Schemas, doc: &mut Described) {
                $($arg::describe(schemas, doc);)*
            }
        }
    };
}

handler_arity!();
handler_arity!(A1);
handler_arity!(A1, A2);
handler_arity!(A1, A2, A3);
handler_arity!(A1, A2, A3, A4);
handler_arity!(A1, A2, A3, A4, A5);
handler_arity!(A1, A2, A3, A4, A5, A6);

// Extractors that read nothing the document describes: path parameters
// come from the route's template, the token from the security scheme.
impl<S> DocArg for State<S> {}
impl DocArg for Principal {}
impl DocArg for HeaderMap {}
impl<T> DocArg for ApiPath<T> {}

impl<T: JsonSchema> DocArg for ApiQuery<T> {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        doc.query.extend(schemas.query::<T>());
        doc.errors.push((
            400,
            "a query parameter is not of its type (`invalid_request`)",
        ));
    }
}

impl<T: JsonSchema> DocArg for ApiJson<T> {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        doc.body = Some(("application/json", schemas.input::<T>()));
        doc.errors.extend(BODY_ERRORS);
        doc.errors.extend([
            (400, "the body is not JSON (`invalid_request`)"),
            (
                415,
                "the body is not `application/json` (`unsupported_media_type`)",
            ),
            (
                422,
                "the JSON does not match the schema: a missing, unknown or mistyped field \
                 (`invalid_request`)",
            ),
        ]);
    }
}

impl DocArg for ApiBytes {
    fn describe(_: &mut Schemas, doc: &mut Described) {
        doc.body = Some((
            "application/wasm",
            json!({ "type": "string", "contentMediaType": "application/wasm" }),
        ));
        doc.errors.extend(BODY_ERRORS);
    }
}

/// What any route taking a body may answer about its size.
const BODY_ERRORS: [Failure; 1] = [(
    413,
    "the body is larger than the server accepts (`payload_too_large`)",
)];

impl<T: DocResponse> DocResponse for Result<T, ApiError> {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        T::describe(schemas, doc);
    }
}

impl<T: JsonSchema> DocResponse for Json<T> {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        let schema = schemas.output::<T>();
        doc.success
            .entry(200)
            .or_default()
            .push(("application/json", schema));
    }
}

/// `201 Created` with `T` as JSON.
#[derive(Debug)]
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

impl<T: JsonSchema> DocResponse for Created<T> {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        let schema = schemas.output::<T>();
        doc.success
            .entry(201)
            .or_default()
            .push(("application/json", schema));
    }
}

/// `204 No Content`.
#[derive(Debug)]
pub struct NoContent;

impl IntoResponse for NoContent {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl DocResponse for NoContent {
    fn describe(_: &mut Schemas, doc: &mut Described) {
        doc.success.entry(204).or_default();
    }
}
