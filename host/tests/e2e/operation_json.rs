//! The operation JSON contract end to end, through the real ServiceNow
//! plugin: `airlock call` and the API's invoke route take and answer the
//! WIT's enum spellings (`p1`) and `fields` as a JSON object, and refuse the
//! Rust spellings (`P1`) naming the field before anything is sent.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::{Api, Body};
use crate::common::CANARY;
use airlock::service::Role;

const TABLE: &str = "/api/now/table/incident";
const SYS_ID: &str = "46d44a5dc0a8010e0100d4b2a4c5e2f0";

fn servicenow_wasm() -> &'static str {
    airlock_test_artifacts::PLUGINS
        .iter()
        .find(|(n, _)| *n == "servicenow")
        .unwrap()
        .1
}

/// A ServiceNow instance that creates a P1 network incident.
async fn servicenow() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TABLE))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"result": {
            "sys_id": SYS_ID, "number": "INC0010042", "short_description": "VPN down",
            "description": "", "urgency": "1", "impact": "1", "priority": "1",
            "state": "1", "category": "network", "sys_class_name": "incident",
            "sys_created_on": "2026-11-20 09:00:00", "sys_updated_on": "2026-11-20 09:00:00"
        }})))
        .mount(&server)
        .await;
    server
}

/// The bodies the instance was sent to create incidents.
async fn posted(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// `airlock` on `dir`, in a blocking thread so the mock keeps answering:
/// (exit code, stdout, stderr).
async fn airlock(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
        .env("SN_PASSWORD", CANARY)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn airlock_call_creates_a_ticket_in_the_wit_spelling_with_fields_as_an_object() {
    let sn = servicenow().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = airlock(d, &["plugin", "install", servicenow_wasm(), "--approve"]).await;
    assert_eq!(code, 0, "{err}");
    let base = format!("base-url={}", sn.uri());
    let add = [
        "connection",
        "add",
        "sn",
        "--plugin",
        "servicenow",
        "--global",
        "--setting",
        &base,
        "--auth",
        "basic",
        "--username",
        "integration",
        "--secret-env",
        "SN_PASSWORD",
    ];
    let (code, _, err) = airlock(d, &add).await;
    assert_eq!(code, 0, "{err}");

    let input = r#"{"title": "VPN down", "priority": "p1", "fields": {"category": "network"}}"#;
    let (code, out, err) = airlock(d, &["call", "sn", "tickets.create", "--input", input]).await;
    assert_eq!(code, 0, "{err}");
    let sent = posted(&sn).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["short_description"], "VPN down");
    assert_eq!(
        (&sent[0]["urgency"], &sent[0]["impact"]),
        (&json!("1"), &json!("1"))
    );
    assert_eq!(sent[0]["category"], "network");
    let ticket: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ticket["id"], SYS_ID);
    assert_eq!(ticket["priority"], "p1");
    assert!(ticket["fields"].is_object(), "{out}");
    assert_eq!(ticket["fields"]["category"], "network");
    assert_eq!(ticket["created_at"], "2026-11-20T09:00:00Z");

    // The Rust spelling and a JSON-encoded `fields` are refused, naming the
    // field, before the plugin runs.
    for (input, needle) in [
        (
            r#"{"title": "VPN down", "priority": "P1"}"#,
            "invalid input for tickets.create: priority: unknown variant `P1`, \
             expected one of `p1`, `p2`, `p3`, `p4`",
        ),
        (
            r#"{"title": "VPN down", "fields": "{\"category\": \"network\"}"}"#,
            "invalid input for tickets.create: fields: invalid type: string",
        ),
    ] {
        let (code, _, err) = airlock(d, &["call", "sn", "tickets.create", "--input", input]).await;
        assert_eq!(code, 2, "a bad --input is a usage error: {input}");
        assert!(err.contains(needle), "{err}");
    }
    assert_eq!(posted(&sn).await.len(), 1, "refused inputs reach nobody");
}

#[tokio::test]
async fn the_invoke_route_takes_the_wit_spelling_and_refuses_the_rust_one() {
    let api = Api::start().await;
    let sn = servicenow().await;
    let plan = api
        .airlock
        .plan_install(std::fs::read(servicenow_wasm()).unwrap())
        .unwrap();
    api.airlock.install(&plan, true).unwrap();
    let operator = api.token("operator", Role::Operator, None);
    let user = api.token("user", Role::User, None);
    let created = api
        .send(
            "POST",
            "/api/v1/connections",
            Some(&operator),
            Body::Json(json!({
                "name": "sn", "plugin": "servicenow", "settings": {"base-url": sn.uri()},
                "auth": {"kind": "basic", "username": "integration", "password": CANARY}
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let invoke = |body: Value| {
        let user = user.clone();
        let api = &api;
        async move {
            api.send(
                "POST",
                "/api/v1/connections/sn/invoke/tickets/create",
                Some(&user),
                Body::Json(body),
            )
            .await
        }
    };

    let ticket = invoke(json!({
        "title": "VPN down", "priority": "p1", "fields": {"category": "network"}
    }))
    .await;
    assert_eq!(ticket.status, 200, "{}", ticket.text());
    assert_eq!(ticket.json()["priority"], "p1");
    assert!(ticket.json()["fields"].is_object(), "{}", ticket.text());
    assert_eq!(ticket.json()["fields"]["category"], "network");
    let sent = posted(&sn).await;
    assert_eq!(
        (&sent[0]["urgency"], &sent[0]["category"]),
        (&json!("1"), &json!("network"))
    );

    let refused = invoke(json!({"title": "VPN down", "priority": "P1"})).await;
    refused.assert_error(400, "invalid_input");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("invalid input for tickets.create: priority: unknown variant `P1`"),
        "{message}"
    );
    let unknown = invoke(json!({"title": "VPN down", "priority_level": "p1"})).await;
    unknown.assert_error(400, "invalid_input");
    assert!(
        unknown.text().contains("priority_level"),
        "{}",
        unknown.text()
    );
    assert_eq!(posted(&sn).await.len(), 1, "refused inputs reach nobody");
}
