//! The document's lint (parsed as OpenAPI 3.1 by `oas3`, then structural
//! checks: references resolve, operationIds are unique identifiers, path
//! parameters are declared, parameters are typed, every answer has a
//! schema, every schema compiles), the lint's own failures, and the
//! README's route table against the registry.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::*;
use crate::store::tokens::Role;

fn served() -> Value {
    let (_, routes) = crate::server::routes(&Default::default()).into_parts();
    document(&routes, "http://127.0.0.1:7300")
}

/// Every `$ref` in `value`, with where it is.
fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push((at.clone(), r)),
                    _ => refs(v, format!("{at}/{k}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Whether `schema` says anything about a value: `true` and `{}` accept
/// everything, which a client cannot parse by.
fn constrains(schema: &Value) -> bool {
    const KEYS: [&str; 7] = ["type", "$ref", "anyOf", "oneOf", "allOf", "const", "enum"];
    schema
        .as_object()
        .is_some_and(|s| KEYS.iter().any(|k| s.contains_key(*k)))
}

/// A validator for `schema`, a schema somewhere in `doc` whose `$ref`s
/// point into `doc`'s components.
pub(crate) fn validator(doc: &Value, schema: &Value) -> Result<jsonschema::Validator, String> {
    let mut root = schema.clone();
    let obj = root
        .as_object_mut()
        .ok_or("a schema that is not an object")?;
    obj.insert("components".into(), doc["components"].clone());
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| e.to_string())
}

fn lint_operation(path: &str, method: &str, op: &Value, problems: &mut Vec<String>) {
    let at = format!("{} {path}", method.to_uppercase());
    let mut problem = |p: String| problems.push(format!("{at}: {p}"));
    let id = op["operationId"].as_str().unwrap_or_default();
    if !is_operation_id(id) {
        problem(format!("operationId {id:?} is not an identifier"));
    }
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let declared: BTreeSet<&str> = params
        .iter()
        .filter(|p| p["in"] == "path" && p["required"] == true)
        .filter_map(|p| p["name"].as_str())
        .collect();
    let templated: BTreeSet<&str> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect();
    if declared != templated {
        problem(format!(
            "path parameters {declared:?}, template {templated:?}"
        ));
    }
    let mut seen = BTreeSet::new();
    for p in &params {
        let key = (p["name"].to_string(), p["in"].to_string());
        if !seen.insert(key.clone()) {
            problem(format!("parameter {key:?} twice"));
        }
        if !constrains(&p["schema"]) {
            problem(format!("parameter {} has no type", p["name"]));
        }
    }
    let responses = op["responses"].as_object().cloned().unwrap_or_default();
    if !responses.keys().any(|s| s.starts_with('2')) {
        problem("no success response".into());
    }
    for (status, response) in &responses {
        let content = response["content"].as_object();
        if status.starts_with('2') {
            if status != "204" && content.is_none_or(|c| c.is_empty()) {
                problem(format!("{status} has no content"));
            }
            for (mime, media) in content.into_iter().flatten() {
                if !constrains(&media["schema"]) {
                    problem(format!("{status} {mime} has no schema"));
                }
            }
        } else if response["content"]["application/json"]["schema"]["$ref"]
            != "#/components/schemas/Error"
        {
            problem(format!("{status} is not the Error shape"));
        }
    }
    if op["security"] != json!([])
        && !(responses.contains_key("401") && responses.contains_key("403"))
    {
        problem("a token route without 401 and 403".into());
    }
    if let Some(body) = op.get("requestBody") {
        for (mime, media) in body["content"].as_object().into_iter().flatten() {
            if !constrains(&media["schema"]) {
                problem(format!("request {mime} has no schema"));
            }
        }
    }
}

/// What is wrong with `doc` as an OpenAPI 3.1 document a client can be
/// generated from; empty when nothing.
pub(crate) fn lint(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match oas3::from_json(doc.to_string()) {
        Err(e) => problems.push(format!("not an OpenAPI 3.1 document: {e}")),
        Ok(spec) => {
            if let Err(e) = spec.validate_version() {
                problems.push(format!("version: {e}"));
            }
            for (path, method, op) in spec.operations() {
                if let Err(e) = op.parameters(&spec) {
                    problems.push(format!("{method} {path}: parameters: {e}"));
                }
                if let Err(e) = op.request_body(&spec) {
                    problems.push(format!("{method} {path}: request body: {e}"));
                }
            }
        }
    }
    if doc["servers"][0]["url"].as_str().is_none_or(str::is_empty) {
        problems.push("no servers".into());
    }
    let mut all = Vec::new();
    refs(doc, String::new(), &mut all);
    for (at, target) in all {
        let resolved = target.strip_prefix('#').and_then(|p| doc.pointer(p));
        if resolved.is_none() {
            problems.push(format!("{at}: $ref {target} resolves to nothing"));
        }
    }
    let mut ids = BTreeMap::new();
    for (path, methods) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in methods.as_object().into_iter().flatten() {
            let id = op["operationId"].as_str().unwrap_or_default();
            if let Some(other) = ids.insert(id.to_string(), format!("{method} {path}")) {
                problems.push(format!("operationId {id} of {method} {path} and {other}"));
            }
            lint_operation(path, method, op, &mut problems);
        }
    }
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Err(e) = validator(doc, schema) {
            problems.push(format!("components/schemas/{name} does not compile: {e}"));
        }
    }
    problems
}

#[test]
fn the_document_lints_clean() {
    let doc = served();
    let problems = lint(&doc);
    assert!(problems.is_empty(), "{problems:#?}");
    // Generated from the types: records are in the components, and the
    // routes refer to them.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ConnectionRecord",
        "PluginRecord",
        "SyncRun",
        "AuditEntry",
        "ChatAnswer",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    let list = &doc["paths"]["/api/v1/connections"]["get"];
    assert_eq!(list["operationId"], "listConnections");
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/ConnectionRecord"
    );
}

#[test]
fn query_parameters_are_typed_as_the_handlers_parse_them() {
    let doc = served();
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))
            .clone()
    };
    let sync = "/api/v1/connections/{id}/sync";
    assert_eq!(param(sync, "post", "full")["schema"]["type"], "boolean");
    assert_eq!(
        param(sync, "post", "page_size")["schema"]["type"],
        "integer"
    );
    let limit = param("/api/v1/audit", "get", "limit");
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(limit["required"], false);
    let decision = param("/api/v1/audit", "get", "decision").to_string();
    assert!(
        decision.contains("allowed") && decision.contains("denied"),
        "{decision}"
    );
    let since = param("/api/v1/audit", "get", "since");
    assert!(since["schema"].to_string().contains("date-time"), "{since}");
    assert_eq!(since["required"], false);
}

#[test]
fn every_failure_the_routes_may_answer_is_documented() {
    let doc = served();
    let statuses = |path: &str, method: &str| -> BTreeSet<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let invoke = statuses(
        "/api/v1/connections/{id}/invoke/{interface}/{operation}",
        "post",
    );
    for s in [
        "400", "401", "403", "404", "409", "413", "415", "422", "429", "500", "502", "504",
    ] {
        assert!(invoke.contains(s), "invoke lacks {s}: {invoke:?}");
    }
    let callback = statuses("/api/v1/oauth/callback", "get");
    assert!(!callback.contains("401"), "the callback needs no token");
    let get = statuses("/api/v1/conversations/{id}", "get");
    assert!(get.contains("404"), "{get:?}");
}

/// A change that breaks the document.
type Breakage<'a> = (&'a str, &'a dyn Fn(&mut Value));

#[test]
fn the_lint_finds_what_a_client_generator_would_trip_on() {
    let doc = served();
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        change(&mut d);
        lint(&d)
    };
    let list = "/api/v1/connections";
    let item = "/api/v1/connections/{id}";
    let cases: [Breakage; 7] = [
        ("$ref", &|d| {
            d["paths"][list]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["items"]["$ref"] = json!("#/components/schemas/Nothing");
        }),
        ("operationId", &|d| {
            d["paths"][item]["get"]["operationId"] = json!("listConnections")
        }),
        ("identifier", &|d| {
            d["paths"][item]["get"]["operationId"] = json!("GET /api/v1/connections/{id}")
        }),
        ("path parameters", &|d| {
            d["paths"][item]["get"]["parameters"] = json!([])
        }),
        ("no schema", &|d| {
            d["paths"][list]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
                json!(true)
        }),
        ("no type", &|d| {
            d["paths"][list]["get"]["parameters"][0]["schema"] = json!({})
        }),
        ("servers", &|d| d["servers"] = json!([])),
    ];
    for (expected, change) in cases {
        let problems = broken(change);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:#?}"
        );
    }
}

/// The routes of the README's route table: (method, path) and the role
/// column of its row.
fn readme_routes() -> BTreeMap<(String, String), String> {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("| route | role | what |")
        .expect("the README has the route table");
    let mut routes = BTreeMap::new();
    for row in readme[start..].lines().skip(2) {
        let Some(row) = row.strip_prefix('|') else {
            break;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let role = cells[1].to_string();
        for route in cells[0].split('`').skip(1).step_by(2) {
            let (method, path) = route
                .split_once(' ')
                .unwrap_or_else(|| panic!("`{route}` in the README is not `METHOD /path`"));
            let path = path.split('?').next().unwrap_or_default();
            let key = (method.to_string(), path.to_string());
            assert!(routes.insert(key, role.clone()).is_none(), "{route} twice");
        }
    }
    routes
}

#[test]
fn the_readme_route_table_lists_exactly_the_registered_routes() {
    let (_, routes) = crate::server::routes(&Default::default()).into_parts();
    let registered: BTreeMap<(String, String), String> = routes
        .iter()
        .map(|r| {
            let role = match r.op.access {
                Access::Public => "none".to_string(),
                Access::Role(role) => role.as_str().to_string(),
            };
            ((r.op.method.to_string(), r.op.path.to_string()), role)
        })
        .collect();
    assert_eq!(
        readme_routes(),
        registered,
        "README.md's route table and the registry differ"
    );
    // The roles compared are the registry's own spelling.
    assert_eq!(Role::Operator.as_str(), "operator");
}
