//! The route registry: every API route is added through [`Routes::add`],
//! which routes it (with exactly the documented method and path) and records
//! its documentation and required role. The OpenAPI document and the
//! authentication middleware's role table are both built from that record,
//! so a route cannot exist undocumented or unguarded.

use std::collections::HashMap;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Access;

/// What a route takes as its body.
#[derive(Debug, Clone, Copy)]
pub enum RequestBody {
    /// No body.
    None,
    /// A JSON body; the value is its schema.
    Json(fn() -> Value),
    /// A raw `.wasm` component.
    Wasm,
}

/// The documentation of one route.
#[derive(Debug, Clone)]
pub struct Operation {
    /// GET, POST, PUT, PATCH or DELETE (anything else panics when added).
    pub method: Method,
    /// axum's template (`/api/v1/connections/{id}`), which is also OpenAPI's.
    pub path: &'static str,
    /// The OpenAPI tag grouping it (`connections`, `oauth`, ...).
    pub tag: &'static str,
    /// One line saying what the route does.
    pub summary: &'static str,
    /// Who may call it; enforced by [`auth::authenticate`](super::auth::authenticate).
    pub access: Access,
    /// What it takes as its body.
    pub body: RequestBody,
    /// Success status and what it returns.
    pub success: (u16, &'static str),
    /// Query parameters: name and description.
    pub query: &'static [(&'static str, &'static str)],
}

/// Routes under construction with their documentation.
#[derive(Debug)]
pub struct Routes {
    router: Router<AppState>,
    ops: Vec<Operation>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

fn filter(method: &Method) -> MethodFilter {
    match *method {
        Method::GET => MethodFilter::GET,
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::PATCH => MethodFilter::PATCH,
        Method::DELETE => MethodFilter::DELETE,
        _ => panic!("the API uses GET, POST, PUT, PATCH and DELETE only, not {method}"),
    }
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            ops: Vec::new(),
        }
    }

    /// Route `handler` as `op` describes and record `op`.
    pub fn add<H, T>(mut self, op: Operation, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(op.path, on(filter(&op.method), handler));
        self.ops.push(op);
        self
    }

    /// Like [`Routes::add`] with its own body limit (plugin uploads are
    /// larger than anything else).
    pub fn add_with_limit<H, T>(mut self, op: Operation, handler: H, limit: usize) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(
            op.path,
            on(filter(&op.method), handler).layer(axum::extract::DefaultBodyLimit::max(limit)),
        );
        self.ops.push(op);
        self
    }

    /// The documentation of every route added so far.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// The router and the route documentation, for [`access_table`] and
    /// [`document`].
    pub fn into_parts(self) -> (Router<AppState>, Vec<Operation>) {
        (self.router, self.ops)
    }
}

/// Who may call each (method, path template).
pub fn access_table(ops: &[Operation]) -> HashMap<(Method, &'static str), Access> {
    ops.iter()
        .map(|op| ((op.method.clone(), op.path), op.access))
        .collect()
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "description": "Stable machine-readable code" },
                    "message": { "type": "string", "description": "What went wrong and what to do next" }
                }
            }
        }
    })
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name, "in": "path", "required": true,
                "schema": { "type": "string" }
            })
        })
        .collect()
}

/// The OpenAPI 3.1 document of `ops`.
pub fn document(ops: &[Operation]) -> Value {
    let mut paths = serde_json::Map::new();
    for op in ops {
        let mut parameters = path_parameters(op.path);
        parameters.extend(op.query.iter().map(|(name, description)| {
            json!({
                "name": name, "in": "query", "required": false,
                "description": description, "schema": { "type": "string" }
            })
        }));
        let mut responses = serde_json::Map::new();
        responses.insert(
            op.success.0.to_string(),
            json!({ "description": op.success.1 }),
        );
        let error = |d: &str| {
            json!({
                "description": d,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            })
        };
        responses.insert("400".into(), error("Invalid request"));
        if let Access::Role(role) = op.access {
            responses.insert("401".into(), error("Missing, unknown or revoked token"));
            responses.insert(
                "403".into(),
                error(&format!(
                    "Needs role {role} or higher, or the token's project restriction forbids it"
                )),
            );
        }
        let mut entry = json!({
            "operationId": format!("{} {}", op.method, op.path),
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        });
        match op.access {
            Access::Public => entry["security"] = json!([]),
            Access::Role(role) => {
                entry["security"] = json!([{ "bearer": [] }]);
                entry["x-airlock-role"] = json!(role.as_str());
            }
        }
        match op.body {
            RequestBody::None => {}
            RequestBody::Json(schema) => {
                entry["requestBody"] = json!({
                    "required": true,
                    "content": { "application/json": { "schema": schema() } }
                });
            }
            RequestBody::Wasm => {
                entry["requestBody"] = json!({
                    "required": true,
                    "content": { "application/wasm": { "schema": { "type": "string", "format": "binary" } } }
                });
            }
        }
        let methods = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        methods[op.method.as_str().to_ascii_lowercase()] = entry;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "airlock management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Plugins, connections, OAuth, invocation, sync and audit of an airlock host. \
                            Every route needs `Authorization: Bearer <token>` except the OAuth callback."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": error_schema() }
        }
    })
}
