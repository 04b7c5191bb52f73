//! The route registry: every API route is added through [`Routes::add`],
//! which routes it (with exactly the documented method and path) and records
//! its documentation and required role. The OpenAPI document and the
//! authentication middleware's role table are both built from that record,
//! so a route cannot exist undocumented or unguarded.
//!
//! What a route takes and answers is not written by hand: [`describe`]
//! derives the query parameters and body from the handler's extractor types
//! and the success answers from its return type, as JSON Schemas under
//! `components/schemas`. The error answers are those of the route's access
//! (401, 403), its extractors (400, 413, 415, 422), the server's layers
//! (421, 500) and what its [`Operation::errors`] declare.

pub mod describe;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::{Map, Value, json};

pub use describe::{Created, DocArg, DocArgs, DocResponse, Failure, NoContent, Returns};
use describe::{Described, Schemas};

use super::AppState;
use super::auth::Access;

/// The documentation of one route.
#[derive(Debug, Clone)]
pub struct Operation {
    /// GET, POST, PUT, PATCH or DELETE (anything else panics when added).
    pub method: Method,
    /// axum's template (`/api/v1/connections/{id}`), which is also OpenAPI's.
    pub path: &'static str,
    /// The OpenAPI `operationId`: a camelCase identifier
    /// (`listConnections`), unique in the API, which generated clients name
    /// their methods after.
    pub id: &'static str,
    /// The OpenAPI tag grouping it (`connections`, `oauth`, ...).
    pub tag: &'static str,
    /// One line saying what the route does.
    pub summary: &'static str,
    /// Who may call it; enforced by [`auth::authenticate`](super::auth::authenticate).
    pub access: Access,
    /// What the success answer is, in words (its schema comes from the
    /// handler's return type).
    pub returns: &'static str,
    /// The error statuses the handler itself answers, with their codes.
    /// Those of the access, the extractors and the server's layers are
    /// added to them.
    pub errors: &'static [Failure],
}

/// A route as recorded: its documentation and how to describe its types.
#[derive(Debug, Clone)]
pub struct Route {
    /// What was written about it.
    pub op: Operation,
    describe: fn(&mut Schemas) -> Described,
}

/// Routes under construction with their documentation.
#[derive(Debug)]
pub struct Routes {
    router: Router<AppState>,
    routes: Vec<Route>,
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

/// Whether `id` is an identifier generated clients can use as a method
/// name: a lower-case letter, then letters and digits.
pub fn is_operation_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_alphanumeric())
}

fn describe<A: DocArgs, R: DocResponse>(schemas: &mut Schemas) -> Described {
    let mut doc = Described::default();
    A::describe(schemas, &mut doc);
    R::describe(schemas, &mut doc);
    doc
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    /// Route `handler` as `op` describes and record `op`. The handler's
    /// arguments and answer must be describable ([`DocArg`],
    /// [`DocResponse`]): that is checked when this compiles.
    pub fn add<H, T, A>(self, op: Operation, handler: H) -> Self
    where
        H: Handler<T, AppState> + Returns<A>,
        T: 'static,
        A: DocArgs,
        <H as Returns<A>>::Output: DocResponse,
    {
        let method = on(filter(&op.method), handler);
        self.record(op, method, describe::<A, <H as Returns<A>>::Output>)
    }

    /// Like [`Routes::add`] with its own body limit (plugin uploads are
    /// larger than anything else).
    pub fn add_with_limit<H, T, A>(self, op: Operation, handler: H, limit: usize) -> Self
    where
        H: Handler<T, AppState> + Returns<A>,
        T: 'static,
        A: DocArgs,
        <H as Returns<A>>::Output: DocResponse,
    {
        let method =
            on(filter(&op.method), handler).layer(axum::extract::DefaultBodyLimit::max(limit));
        self.record(op, method, describe::<A, <H as Returns<A>>::Output>)
    }

    fn record(
        mut self,
        op: Operation,
        method: MethodRouter<AppState>,
        describe: fn(&mut Schemas) -> Described,
    ) -> Self {
        assert!(
            is_operation_id(op.id),
            "operationId `{}` of {} {} is not a camelCase identifier",
            op.id,
            op.method,
            op.path
        );
        if let Some(other) = self.routes.iter().find(|r| r.op.id == op.id) {
            panic!(
                "operationId `{}` is used by {} {} and {} {}",
                op.id, other.op.method, other.op.path, op.method, op.path
            );
        }
        self.router = self.router.route(op.path, method);
        self.routes.push(Route { op, describe });
        self
    }

    /// The documentation of every route added so far.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.routes.iter().map(|r| &r.op)
    }

    /// The router and the routes, for [`access_table`] and [`document`].
    pub fn into_parts(self) -> (Router<AppState>, Vec<Route>) {
        (self.router, self.routes)
    }
}

/// Who may call each (method, path template).
pub fn access_table(routes: &[Route]) -> HashMap<(Method, &'static str), Access> {
    routes
        .iter()
        .map(|r| ((r.op.method.clone(), r.op.path), r.op.access))
        .collect()
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": false,
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
            let description = match name {
                "interface" => "The exported interface (`tickets`, `documents`, `sync`, ...)",
                "operation" => "The interface's operation (`create`, `search`, ...)",
                _ if path.starts_with("/api/v1/plugins/") => "The plugin's id",
                _ if path.starts_with("/api/v1/conversations/") => "The conversation's id",
                _ if path.starts_with("/api/v1/tokens/") => "The token's id or name",
                _ => "The connection's id or name",
            };
            json!({
                "name": name, "in": "path", "required": true,
                "description": description,
                "schema": { "type": "string" }
            })
        })
        .collect()
}

/// Every error status `op` may answer, with what it means there.
fn errors(op: &Operation, described: &Described) -> BTreeMap<u16, Vec<&'static str>> {
    let mut all: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    let mut add = |(status, what): Failure| {
        let list = all.entry(status).or_default();
        if !list.contains(&what) {
            list.push(what);
        }
    };
    if let Access::Role(_) = op.access {
        add((401, "missing, unknown or revoked token (`unauthorized`)"));
        add((
            403,
            "the token's role is too low, or its project restriction forbids this (`forbidden`)",
        ));
    }
    described.errors.iter().copied().for_each(&mut add);
    op.errors.iter().copied().for_each(&mut add);
    add((
        421,
        "the Host header names a host a loopback-bound server does not answer for \
         (`forbidden_host`)",
    ));
    add((500, "a failure inside the host (`internal`)"));
    all
}

/// The OpenAPI entry of one route.
fn operation(op: &Operation, described: Described) -> Value {
    let errors = errors(op, &described);
    let mut parameters = path_parameters(op.path);
    parameters.extend(described.query);
    let mut responses = Map::new();
    for (status, content) in described.success {
        let mut response = json!({ "description": op.returns });
        if !content.is_empty() {
            let content: Map<String, Value> = content
                .into_iter()
                .map(|(mime, schema)| (mime.to_string(), json!({ "schema": schema })))
                .collect();
            response["content"] = Value::Object(content);
        }
        responses.insert(status.to_string(), response);
    }
    for (status, what) in errors {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("{reason}: {}", what.join("; ")),
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            }),
        );
    }
    let mut entry = json!({
        "operationId": op.id,
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
    if let Some((mime, schema)) = described.body {
        entry["requestBody"] = json!({
            "required": true,
            "content": { mime: { "schema": schema } }
        });
    }
    entry
}

/// The OpenAPI 3.1 document of `routes`, served at `server_url`.
///
/// Panics when two types generate different schemas under one name, a
/// programming error the tests catch.
pub fn document(routes: &[Route], server_url: &str) -> Value {
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    for route in routes {
        let described = (route.describe)(&mut schemas);
        let methods = paths
            .entry(route.op.path.to_string())
            .or_insert_with(|| json!({}));
        methods[route.op.method.as_str().to_ascii_lowercase()] = operation(&route.op, described);
    }
    let mut components = schemas.into_components().unwrap_or_else(|e| panic!("{e}"));
    components.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "airlock management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Plugins, connections, OAuth, invocation, sync, chat, conversations, \
                            audit and API tokens of an airlock host. Every route needs `Authorization: Bearer \
                            <token>` except the OAuth callback. Every error answers \
                            `{\"error\": {\"code\", \"message\"}}`."
        },
        "servers": [{ "url": server_url, "description": "This server" }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": components
        }
    })
}
