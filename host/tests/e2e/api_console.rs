//! The API routes the operator console is built on, over real HTTP (a real
//! server on loopback with a real data directory): who the calling token
//! is, token management, uploads waiting for approval with their manifest
//! and structured diff, a connection's operations with their schemas, audit
//! paging and the chain head, and the OAuth callback page's link back to
//! the console. Each with its refusals: role, project restriction, input.

use std::collections::{BTreeMap, BTreeSet};

use airlock::service::{AuthInput, NewConnection, Role, Scope};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::{Api, Body, Resp, me_server};
use crate::api_scenario::{USER, servicenow, servicenow_wasm};
use crate::common::{CANARY, with_manifest};

fn install(api: &Api, wasm: Vec<u8>) {
    let plan = api.airlock.plan_install(wasm).unwrap();
    api.airlock.install(&plan, true).unwrap();
}

fn minimal_wasm() -> Vec<u8> {
    std::fs::read(airlock_test_artifacts::MINIMAL).unwrap()
}

/// A bearer connection of the minimal plugin to `base`.
fn add_minimal(api: &Api, name: &str, base: &str, scope: Scope) {
    api.airlock
        .add_connection(NewConnection {
            name: name.into(),
            plugin_id: "minimal".into(),
            settings: BTreeMap::from([("base-url".to_string(), base.to_string())]),
            auth: AuthInput::Bearer {
                token: SecretString::from(CANARY),
            },
            scope,
        })
        .unwrap();
}

/// Neither the token, nor its random part, nor its stored hash is in the
/// answer.
fn assert_no_token(resp: &Resp, token: &str) {
    let body = resp.text();
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    assert!(!body.contains(token), "the token leaks: {body}");
    assert!(!body.contains(&token[4..]), "the token leaks: {body}");
    assert!(!body.contains(&hash), "the token's hash leaks: {body}");
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

// ---- /api/v1/me --------------------------------------------------------------

#[tokio::test]
async fn me_names_the_calling_token_and_never_the_token_or_its_hash() {
    let api = Api::start().await;
    let admin = api.token("root", Role::Admin, None);
    let alpha = api.token("alpha-user", Role::User, Some("alpha"));
    let records = api.airlock.list_tokens().unwrap();
    let id = |name: &str| records.iter().find(|t| t.name == name).unwrap().id.clone();

    let resp = api
        .send("GET", "/api/v1/me", Some(&admin), Body::Empty)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({ "id": id("root"), "name": "root", "role": "admin", "project": null })
    );
    assert_no_token(&resp, &admin);

    let resp = api
        .send("GET", "/api/v1/me", Some(&alpha), Body::Empty)
        .await;
    assert_eq!(
        resp.json(),
        json!({ "id": id("alpha-user"), "name": "alpha-user", "role": "user", "project": "alpha" })
    );
    assert_no_token(&resp, &alpha);

    api.airlock.revoke_token("alpha-user").unwrap();
    let resp = api
        .send("GET", "/api/v1/me", Some(&alpha), Body::Empty)
        .await;
    resp.assert_error(401, "unauthorized");
    let resp = api.send("GET", "/api/v1/me", None, Body::Empty).await;
    resp.assert_error(401, "unauthorized");
}

// ---- /api/v1/tokens ----------------------------------------------------------

#[tokio::test]
async fn a_token_created_over_the_api_is_shown_once_works_and_stops_working_when_revoked() {
    let api = Api::start().await;
    let admin = api.token("root", Role::Admin, None);
    let a = Some(admin.as_str());

    let created = api
        .send(
            "POST",
            "/api/v1/tokens",
            a,
            Body::Json(json!({ "name": "ci", "role": "operator", "project": "web" })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(keys(&created), set(&["token", "record"]));
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("alk_") && token.len() > 40, "{token}");
    let record = &created["record"];
    assert_eq!(
        keys(record),
        set(&[
            "id",
            "name",
            "role",
            "project",
            "created_at",
            "revoked",
            "revoked_at"
        ])
    );
    assert_eq!(
        (
            &record["name"],
            &record["role"],
            &record["project"],
            &record["revoked"],
            &record["revoked_at"]
        ),
        (
            &json!("ci"),
            &json!("operator"),
            &json!("web"),
            &json!(false),
            &Value::Null
        )
    );
    let stored = api.airlock.list_tokens().unwrap();
    let ci = stored.iter().find(|t| t.name == "ci").unwrap();
    assert_eq!(record["id"], ci.id.as_str());
    assert_eq!(record["created_at"], ci.created_at.as_str());

    // The token works, with exactly the role and project it was given.
    let me = api
        .send("GET", "/api/v1/me", Some(&token), Body::Empty)
        .await;
    assert_eq!(
        me.json(),
        json!({ "id": ci.id, "name": "ci", "role": "operator", "project": "web" })
    );
    let conns = api
        .send("GET", "/api/v1/connections", Some(&token), Body::Empty)
        .await;
    assert_eq!(conns.status, 200, "{}", conns.text());
    api.send("GET", "/api/v1/tokens", Some(&token), Body::Empty)
        .await
        .assert_error(403, "forbidden");

    // Listed, never with the token or its hash.
    let listed = api.send("GET", "/api/v1/tokens", a, Body::Empty).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_no_token(&listed, &token);
    assert_no_token(&listed, &admin);
    let list = listed.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "ci"]);
    assert_eq!(list[1], *record);

    // Revoked by name: refused from the next request on, listed as revoked.
    let revoked = api
        .send("DELETE", "/api/v1/tokens/ci", a, Body::Empty)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let revoked = revoked.json();
    assert_eq!(revoked["id"], ci.id.as_str());
    assert_eq!(revoked["revoked"], true);
    assert!(revoked["revoked_at"].is_string());
    api.send("GET", "/api/v1/me", Some(&token), Body::Empty)
        .await
        .assert_error(401, "unauthorized");
    let list = api
        .send("GET", "/api/v1/tokens", a, Body::Empty)
        .await
        .json();
    assert_eq!(list[1], revoked);
    // A second revocation (by id) keeps the first time.
    let again = api
        .send(
            "DELETE",
            &format!("/api/v1/tokens/{}", ci.id),
            a,
            Body::Empty,
        )
        .await;
    assert_eq!(again.json(), revoked);
    // A revoked name stays taken.
    api.send(
        "POST",
        "/api/v1/tokens",
        a,
        Body::Json(json!({ "name": "ci", "role": "user" })),
    )
    .await
    .assert_error(409, "conflict");
    // The CLI's store agrees.
    let stored = api.airlock.list_tokens().unwrap();
    assert!(
        stored
            .iter()
            .find(|t| t.name == "ci")
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(api.airlock.authenticate_token(&token).unwrap().is_none());
}

#[tokio::test]
async fn token_management_refuses_bad_input_unknown_tokens_and_revoking_itself() {
    let api = Api::start().await;
    let admin = api.token("root", Role::Admin, None);
    let other = api.token("other-admin", Role::Admin, None);
    let a = Some(admin.as_str());
    let before = api.airlock.list_tokens().unwrap();
    let create = |body: Value| api.send("POST", "/api/v1/tokens", a, Body::Json(body));

    create(json!({ "name": "root", "role": "user" }))
        .await
        .assert_error(409, "conflict");
    for name in [
        String::new(),
        "   ".into(),
        "x".repeat(65),
        "tab\there".into(),
    ] {
        let resp = create(json!({ "name": name, "role": "user" })).await;
        resp.assert_error(400, "invalid_request");
        assert!(
            resp.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1-64 printable characters"),
            "{}",
            resp.text()
        );
    }
    create(json!({ "name": "p", "role": "user", "project": " " }))
        .await
        .assert_error(400, "invalid_request");
    for body in [
        json!({ "name": "r", "role": "root" }),
        json!({ "name": "r" }),
        json!({ "name": "r", "role": "user", "token": "alk_chosen" }),
    ] {
        create(body).await.assert_error(422, "invalid_request");
    }
    // 64 characters is the longest name.
    let longest = create(json!({ "name": "y".repeat(64), "role": "user" })).await;
    assert_eq!(longest.status, 201, "{}", longest.text());

    let missing = api
        .send("DELETE", "/api/v1/tokens/nobody", a, Body::Empty)
        .await;
    missing.assert_error(404, "not_found");
    assert!(
        missing.text().contains("GET /api/v1/tokens"),
        "{}",
        missing.text()
    );

    // A token cannot revoke itself, by name or by id; it keeps working.
    let root_id = before.iter().find(|t| t.name == "root").unwrap().id.clone();
    for me in ["root", root_id.as_str()] {
        let resp = api
            .send("DELETE", &format!("/api/v1/tokens/{me}"), a, Body::Empty)
            .await;
        resp.assert_error(409, "self_revocation");
        assert!(
            resp.text().contains("another admin token"),
            "{}",
            resp.text()
        );
    }
    let me = api.send("GET", "/api/v1/me", a, Body::Empty).await;
    assert_eq!(me.status, 200);
    // Another admin token may revoke it.
    let resp = api
        .send("DELETE", "/api/v1/tokens/root", Some(&other), Body::Empty)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    api.send("GET", "/api/v1/me", a, Body::Empty)
        .await
        .assert_error(401, "unauthorized");

    let after = api.airlock.list_tokens().unwrap();
    assert_eq!(after.len(), before.len() + 1, "only the 64-character one");
}

#[tokio::test]
async fn only_unrestricted_admin_tokens_manage_tokens() {
    let api = Api::start().await;
    let admin = api.token("root", Role::Admin, None);
    let operator = api.token("ops", Role::Operator, None);
    let user = api.token("user", Role::User, None);
    // A project's admin must not mint a token for every project.
    let beta_admin = api.token("beta-admin", Role::Admin, Some("beta"));
    let before = api.airlock.list_tokens().unwrap();
    let new = || Body::Json(json!({ "name": "escalated", "role": "admin" }));
    for token in [&operator, &user, &beta_admin] {
        let t = Some(token.as_str());
        api.send("GET", "/api/v1/tokens", t, Body::Empty)
            .await
            .assert_error(403, "forbidden");
        api.send("POST", "/api/v1/tokens", t, new())
            .await
            .assert_error(403, "forbidden");
        api.send("DELETE", "/api/v1/tokens/root", t, Body::Empty)
            .await
            .assert_error(403, "forbidden");
    }
    let refused = api
        .send("POST", "/api/v1/tokens", Some(&beta_admin), new())
        .await;
    assert!(
        refused.text().contains("unrestricted token"),
        "{}",
        refused.text()
    );
    assert_eq!(api.airlock.list_tokens().unwrap(), before);
    // The same requests succeed with the unrestricted admin.
    let ok = api
        .send("POST", "/api/v1/tokens", Some(&admin), new())
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let ok = api
        .send(
            "DELETE",
            "/api/v1/tokens/beta-admin",
            Some(&admin),
            Body::Empty,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

// ---- plugin uploads ----------------------------------------------------------

/// The minimal plugin's next version: basic and api-key dropped, oauth2
/// added, a gateway origin that receives the bearer token, one more
/// setting.
const MINIMAL_V2: &str = r#"id = "minimal"
name = "Minimal"
version = "0.2.0"
api-version = "0.1"
category = "connector"
description = "The SDK's example plugin, version 2."

[auth]
kinds = ["none", "bearer", "oauth2"]

[auth.oauth2]
authorize-url = "{base-url}/oauth/authorize"
token-url = "{base-url}/oauth/token"
scopes = ["read"]

[[egress]]
url = "https://gateway.example.com/api/"
methods = ["GET"]
reason = "The API gateway in front of the service"
credential = ["bearer"]

[[settings]]
name = "base-url"
type = "url"
required = true
description = "Site URL"

[[settings]]
name = "region"
type = "string"
description = "Where the data lives"
"#;

/// The one-line form of a `diff` entry, as `changes` must have it.
fn line(d: &Value) -> String {
    let sign = match (d["change"].as_str().unwrap(), d["what"].as_str().unwrap()) {
        (_, "plugin") | ("changed", _) => "",
        ("added", _) => "+ ",
        ("removed", _) => "- ",
        other => panic!("unknown change {other:?}"),
    };
    format!("{sign}{}", d["text"].as_str().unwrap())
}

fn assert_changes_are_the_diff(plan: &Value) {
    let lines: Vec<String> = plan["diff"].as_array().unwrap().iter().map(line).collect();
    assert_eq!(plan["changes"], json!(lines), "{plan:#}");
}

#[tokio::test]
async fn uploads_waiting_for_approval_are_listed_with_their_manifest_and_structured_diff() {
    let api = Api::start().await;
    let admin = api.token("root", Role::Admin, None);
    let operator = api.token("ops", Role::Operator, None);
    let user = api.token("user", Role::User, None);
    let beta = api.token("beta-admin", Role::Admin, Some("beta"));
    let a = Some(admin.as_str());
    let pending = || {
        api.send(
            "GET",
            "/api/v1/plugins/pending",
            Some(&operator),
            Body::Empty,
        )
    };

    assert_eq!(pending().await.json(), json!([]));

    // A new plugin: one line saying so, and the whole manifest.
    let up = api
        .send(
            "POST",
            "/api/v1/plugins",
            a,
            Body::Raw("application/wasm", minimal_wasm()),
        )
        .await;
    assert_eq!(up.status, 202, "{}", up.text());
    let plan = up.json();
    assert_eq!(
        plan["diff"],
        json!([{ "change": "added", "what": "plugin", "text": "new plugin minimal 0.1.0" }])
    );
    assert_changes_are_the_diff(&plan);
    let m = &plan["manifest"];
    assert_eq!(m["id"], "minimal");
    assert_eq!(m["name"], "Minimal");
    assert_eq!(m["category"], "connector");
    assert!(
        m["description"]
            .as_str()
            .unwrap()
            .contains("GET {base-url}/api/me")
    );
    assert_eq!(
        m["auth"]["kinds"],
        json!(["none", "basic", "api-key", "bearer"])
    );
    assert_eq!(m["settings"][0]["name"], "base-url");
    assert_eq!(m["settings"][0]["type"], "url");
    assert_eq!(m["settings"][0]["required"], true);
    // The listing answers what the upload answered.
    assert_eq!(pending().await.json(), json!([plan]));

    // Only unrestricted operators and admins read it.
    api.send("GET", "/api/v1/plugins/pending", Some(&user), Body::Empty)
        .await
        .assert_error(403, "forbidden");
    api.send("GET", "/api/v1/plugins/pending", Some(&beta), Body::Empty)
        .await
        .assert_error(403, "forbidden");

    let approve = |sha: String| {
        api.send(
            "POST",
            "/api/v1/plugins/minimal/approve",
            a,
            Body::Json(json!({ "sha256": sha })),
        )
    };
    let ok = approve(plan["sha256"].as_str().unwrap().to_string()).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(pending().await.json(), json!([]));

    // The next version: every capability change is one entry.
    let v2 = with_manifest(&minimal_wasm(), MINIMAL_V2);
    let up = api
        .send(
            "POST",
            "/api/v1/plugins",
            a,
            Body::Raw("application/wasm", v2),
        )
        .await;
    assert_eq!(up.status, 202, "{}", up.text());
    let plan = up.json();
    let gateway = "egress https://gateway.example.com/api/ [GET] (receives the connection's \
                   credential: bearer)";
    assert_eq!(
        plan["diff"],
        json!([
            { "change": "changed", "what": "version", "text": "version 0.1.0 -> 0.2.0" },
            { "change": "added", "what": "egress", "text": gateway },
            { "change": "added", "what": "auth", "text": "auth kind oauth2" },
            { "change": "removed", "what": "auth", "text": "auth kind basic" },
            { "change": "removed", "what": "auth", "text": "auth kind api-key" },
            { "change": "added", "what": "auth", "text":
                "oauth2 endpoints: authorize {base-url}/oauth/authorize, token \
                 {base-url}/oauth/token, scopes [read]" },
            { "change": "added", "what": "settings", "text": "setting region (string)" },
        ]),
        "{plan:#}"
    );
    assert_changes_are_the_diff(&plan);
    assert_eq!(plan["changes"][1], format!("+ {gateway}"));
    // Which origin receives which credential, in the manifest and the grant.
    let egress = json!([{
        "url": "https://gateway.example.com/api/", "methods": ["GET"],
        "reason": "The API gateway in front of the service", "credential": ["bearer"]
    }]);
    assert_eq!(plan["manifest"]["egress"], egress);
    assert_eq!(plan["grant"], egress);
    assert_eq!(
        plan["manifest"]["auth"]["oauth2"]["token-url"],
        "{base-url}/oauth/token"
    );
    assert_eq!(plan["manifest"]["settings"][1]["name"], "region");
    assert_eq!(pending().await.json(), json!([plan]));
    let inspect = api
        .send(
            "GET",
            "/api/v1/plugins/minimal",
            Some(&operator),
            Body::Empty,
        )
        .await;
    assert_eq!(inspect.json()["pending"], plan);
    assert_eq!(inspect.json()["installed"]["version"], "0.1.0");

    // The same version in another file: the file line, then the changes.
    let v1b = with_manifest(
        &minimal_wasm(),
        &MINIMAL_V2
            .replace("0.2.0", "0.1.0")
            .replace("version 2", "again"),
    );
    let up = api
        .send(
            "POST",
            "/api/v1/plugins",
            a,
            Body::Raw("application/wasm", v1b),
        )
        .await;
    let plan = up.json();
    assert_eq!(
        plan["diff"][0],
        json!({ "change": "changed", "what": "file", "text": "file changed (version still 0.1.0)" })
    );
    assert_changes_are_the_diff(&plan);
    // It replaced the earlier upload of the same id.
    let listed = pending().await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["sha256"], plan["sha256"]);
}

#[tokio::test]
async fn no_plugin_may_be_called_pending_which_is_the_listing_of_uploads() {
    let api = Api::start().await;
    let admin = api.token("root", Role::Admin, None);
    let manifest = r#"id = "pending"
name = "Pending"
version = "0.1.0"
api-version = "0.1"
category = "connector"
"#;
    let wasm = with_manifest(&minimal_wasm(), manifest);
    let resp = api
        .send(
            "POST",
            "/api/v1/plugins",
            Some(&admin),
            Body::Raw("application/wasm", wasm.clone()),
        )
        .await;
    resp.assert_error(400, "invalid_request");
    assert!(resp.text().contains("reserved"), "{}", resp.text());
    let listed = api
        .send("GET", "/api/v1/plugins/pending", Some(&admin), Body::Empty)
        .await;
    assert_eq!(listed.json(), json!([]));
    // Not through the library either (the CLI installs with it).
    let err = api.airlock.plan_install(wasm).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

// ---- a connection's operations -------------------------------------------------

/// Install servicenow and add connection `sn` (basic auth) scoped to alpha.
fn add_servicenow(api: &Api, base: &str) {
    install(api, servicenow_wasm());
    api.airlock
        .add_connection(NewConnection {
            name: "sn".into(),
            plugin_id: "servicenow".into(),
            settings: BTreeMap::from([("base-url".to_string(), base.to_string())]),
            auth: AuthInput::Basic {
                username: USER.into(),
                password: SecretString::from(CANARY),
            },
            scope: Scope::Projects(vec!["alpha".into()]),
        })
        .unwrap();
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .build(schema)
        .unwrap_or_else(|e| panic!("{schema} does not compile: {e}"))
}

#[tokio::test]
async fn a_connection_lists_the_operations_its_plugin_exports_with_schemas_and_examples() {
    let api = Api::start().await;
    let sn = servicenow().await;
    add_servicenow(&api, &sn.uri());
    let me = me_server().await;
    install(&api, minimal_wasm());
    add_minimal(&api, "me", &me.uri(), Scope::Global);
    let user = api.token("user", Role::User, None);
    let u = Some(user.as_str());

    let resp = api
        .send("GET", "/api/v1/connections/sn/operations", u, Body::Empty)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let ops = resp.json();
    let names: Vec<String> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}.{}",
                o["interface"].as_str().unwrap(),
                o["operation"].as_str().unwrap()
            )
        })
        .collect();
    // Exactly the operations of the interfaces the plugin exports, in the
    // operation table's order.
    let exported: Vec<&str> = api
        .airlock
        .loaded_plugin("servicenow")
        .unwrap()
        .interfaces()
        .iter()
        .map(|i| i.name())
        .collect();
    let expected: Vec<String> = airlock::runtime::OPERATIONS
        .iter()
        .filter(|op| exported.contains(&op.split('.').next().unwrap()))
        .map(|op| op.to_string())
        .collect();
    assert_eq!(names, expected);
    for op in [
        "connector.test-connection",
        "tickets.create",
        "tickets.search",
    ] {
        assert!(names.contains(&op.to_string()), "{op} missing: {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("documents.") || n.starts_with("chat.")),
        "{names:?}"
    );
    let examples: BTreeMap<&str, &str> = airlock::runtime::json::EXAMPLES.iter().copied().collect();
    for (op, name) in ops.as_array().unwrap().iter().zip(&names) {
        assert_eq!(
            keys(op),
            set(&["interface", "operation", "input", "output", "example"])
        );
        let example: Value = serde_json::from_str(examples[name.as_str()]).unwrap();
        assert_eq!(op["example"], example, "{name}");
        // The example fits the input schema; the output schema compiles.
        let input = validator(&op["input"]);
        let errors: Vec<String> = input.iter_errors(&example).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert!(
            !input.is_valid(&json!({ "not-a-field": 1 })) || name == "connector.test-connection",
            "{name}: the input schema accepts anything"
        );
        validator(&op["output"]);
    }
    let create = &ops[names.iter().position(|n| n == "tickets.create").unwrap()];
    assert!(
        create["input"]["properties"]["title"].is_object(),
        "{create:#}"
    );

    // The minimal plugin exports the connector alone; its example runs.
    let ops = api
        .send("GET", "/api/v1/connections/me/operations", u, Body::Empty)
        .await
        .json();
    assert_eq!(ops.as_array().unwrap().len(), 1, "{ops:#}");
    assert_eq!(
        (&ops[0]["interface"], &ops[0]["operation"]),
        (&json!("connector"), &json!("test-connection"))
    );
    let ran = api
        .send(
            "POST",
            "/api/v1/connections/me/invoke/connector/test-connection",
            u,
            Body::Json(ops[0]["example"].clone()),
        )
        .await;
    assert_eq!(ran.status, 200, "{}", ran.text());
}

#[tokio::test]
async fn a_connections_operations_are_refused_to_tokens_that_may_not_use_it() {
    let api = Api::start().await;
    let sn = servicenow().await;
    add_servicenow(&api, &sn.uri());
    let alpha = api.token("alpha-user", Role::User, Some("alpha"));
    let beta = api.token("beta-admin", Role::Admin, Some("beta"));
    let admin = api.token("root", Role::Admin, None);
    let path = "/api/v1/connections/sn/operations";

    let ok = api.send("GET", path, Some(&alpha), Body::Empty).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let refused = api.send("GET", path, Some(&beta), Body::Empty).await;
    refused.assert_error(403, "forbidden");
    assert!(
        refused.text().contains("not available"),
        "{}",
        refused.text()
    );
    api.send("GET", path, None, Body::Empty)
        .await
        .assert_error(401, "unauthorized");
    api.send(
        "GET",
        "/api/v1/connections/nope/operations",
        Some(&admin),
        Body::Empty,
    )
    .await
    .assert_error(404, "not_found");
    // Listing sends nothing upstream.
    assert!(sn.received_requests().await.unwrap().is_empty());
}

// ---- audit paging and the chain head -------------------------------------------

/// The `seq`s of `GET /api/v1/audit?{query}`.
async fn seqs(api: &Api, query: &str, token: Option<&str>) -> Vec<i64> {
    let resp = api
        .send("GET", &format!("/api/v1/audit?{query}"), token, Body::Empty)
        .await;
    assert_eq!(resp.status, 200, "{query}: {}", resp.text());
    resp.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn audit_pages_by_before_give_every_entry_once_newest_first() {
    let api = Api::start().await;
    let me = me_server().await;
    install(&api, minimal_wasm());
    add_minimal(&api, "me", &me.uri(), Scope::Global);
    // 250 audited requests; every third for project alpha.
    for i in 0..250 {
        let project = (i % 3 == 0).then_some("alpha");
        api.airlock
            .call("me", "connector.test-connection", json!({}), project)
            .await
            .unwrap();
    }
    api.airlock.audit().flush().await.unwrap();
    let operator = api.token("ops", Role::Operator, None);
    let o = Some(operator.as_str());
    let all = seqs(&api, "limit=1000", o).await;
    assert_eq!(all.len(), 250);

    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut query = "limit=100".to_string();
    loop {
        let page = seqs(&api, &query, o).await;
        sizes.push(page.len());
        let Some(&last) = page.last() else { break };
        paged.extend(page);
        query = format!("limit=100&before={last}");
    }
    assert_eq!(sizes, [100, 100, 50, 0]);
    assert_eq!(paged, all, "every entry once, newest first");
    assert!(paged.windows(2).all(|w| w[0] > w[1]));

    // With a filter, and for a project token: its own project's, paged.
    let alpha = api.token("alpha-ops", Role::Operator, Some("alpha"));
    let alpha_all = seqs(&api, "limit=1000&project=alpha", o).await;
    assert_eq!(alpha_all.len(), 84);
    let first = seqs(&api, "limit=50", Some(&alpha)).await;
    let rest = seqs(
        &api,
        &format!("limit=50&before={}", first[49]),
        Some(&alpha),
    )
    .await;
    assert_eq!([first, rest].concat(), alpha_all);

    // `before` is exclusive; below the first entry there is nothing.
    assert_eq!(
        seqs(&api, &format!("before={}", all[0]), o).await,
        all[1..101]
    );
    assert!(
        seqs(&api, &format!("before={}", all[249]), o)
            .await
            .is_empty()
    );
    let bad = api
        .send("GET", "/api/v1/audit?before=yesterday", o, Body::Empty)
        .await;
    bad.assert_error(400, "invalid_request");
    assert!(bad.text().contains("before"), "{}", bad.text());
}

#[tokio::test]
async fn audit_verification_answers_the_chain_head() {
    let api = Api::start().await;
    let me = me_server().await;
    install(&api, minimal_wasm());
    add_minimal(&api, "me", &me.uri(), Scope::Global);
    let operator = api.token("ops", Role::Operator, None);
    let o = Some(operator.as_str());
    let call = || async {
        api.airlock
            .call("me", "connector.test-connection", json!({}), None)
            .await
            .unwrap();
        api.airlock.audit().flush().await.unwrap();
    };
    let verify = || async {
        let resp = api
            .send("GET", "/api/v1/audit/verify", o, Body::Empty)
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    };
    call().await;
    let first = verify().await;
    assert_eq!(first["ok"], true, "{first:#}");
    let head = first["last_seq"].as_i64().unwrap();
    let hash = first["last_hash"].as_str().unwrap().to_string();
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_ne!(hash, "0".repeat(64));
    assert_eq!(first["rows"], head, "every row up to the head is good");
    // The head is the newest row: the newest request's outcome.
    let entries = api
        .send("GET", "/api/v1/audit?limit=1", o, Body::Empty)
        .await
        .json();
    assert_eq!(entries[0]["outcome"]["seq"], head);
    assert!(first["summary"].as_str().unwrap().contains(&hash));

    // One more call (a request and its outcome): the head moves on.
    call().await;
    let second = verify().await;
    assert_eq!(second["last_seq"], head + 2);
    assert_ne!(second["last_hash"], first["last_hash"]);
    // A project token may not verify the whole log.
    let alpha = api.token("alpha-ops", Role::Operator, Some("alpha"));
    api.send("GET", "/api/v1/audit/verify", Some(&alpha), Body::Empty)
        .await
        .assert_error(403, "forbidden");
}

// ---- the OAuth callback page ---------------------------------------------------

const BACK: &str = r#"<a href="/#/connections">Back to the airlock console</a>"#;

fn assert_plain_page(page: &Resp) {
    let html = page.text().to_ascii_lowercase();
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers
    );
    for inline in ["<script", "<style", " style=", "javascript:", " on"] {
        let in_markup = html
            .split('<')
            .skip(1)
            .filter_map(|tag| tag.split('>').next())
            .any(|tag| format!("<{tag}").contains(inline));
        assert!(!in_markup, "`{inline}` in {html}");
    }
}

#[tokio::test]
async fn the_oauth_callback_page_links_back_to_the_console_on_success_and_failure() {
    let api = Api::start().await;
    let sn = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(body_string_contains("code=the-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "CANARY-access-token", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&sn)
        .await;
    install(&api, servicenow_wasm());
    let op = api.token("ops", Role::Operator, None);
    let o = Some(op.as_str());
    let created = api
        .send(
            "POST",
            "/api/v1/connections",
            o,
            Body::Json(json!({
                "name": "sn-oauth", "plugin": "servicenow",
                "settings": { "base-url": sn.uri() },
                "auth": { "kind": "oauth2", "client_id": "cid", "client_secret": "CANARY-secret" }
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let start = || async {
        let started = api
            .send(
                "POST",
                "/api/v1/connections/sn-oauth/oauth/start",
                o,
                Body::Empty,
            )
            .await;
        started.json()["state"].as_str().unwrap().to_string()
    };

    // Refused by the provider, with markup in its description: escaped,
    // and the way back is there.
    let state = start().await;
    let denied = api
        .send(
            "GET",
            &format!(
                "/api/v1/oauth/callback?state={state}&error=access_denied&error_description=\
                 %3Cscript%3Ealert(1)%3C%2Fscript%3E"
            ),
            None,
            Body::Empty,
        )
        .await;
    assert_eq!(denied.status, 400, "{}", denied.text());
    assert!(denied.text().contains(BACK), "{}", denied.text());
    assert!(denied.text().contains("access_denied"), "{}", denied.text());
    assert!(!denied.text().contains("<script>"), "{}", denied.text());
    assert_plain_page(&denied);

    // An unknown state: a failure page with the way back too.
    let forged = api
        .send(
            "GET",
            "/api/v1/oauth/callback?code=the-code&state=forged",
            None,
            Body::Empty,
        )
        .await;
    assert_eq!(forged.status, 400);
    assert!(forged.text().contains(BACK), "{}", forged.text());
    assert_plain_page(&forged);

    // Authorised.
    let state = start().await;
    let back = api
        .send(
            "GET",
            &format!("/api/v1/oauth/callback?code=the-code&state={state}"),
            None,
            Body::Empty,
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.text());
    assert!(back.text().contains("is authorised"), "{}", back.text());
    assert!(back.text().contains(BACK), "{}", back.text());
    assert!(!back.text().contains("CANARY"));
    assert_plain_page(&back);
    assert_eq!(
        api.airlock.connection("sn-oauth").unwrap().status.as_str(),
        "active"
    );
}
