//! Whole flows through the management API with the real ServiceNow plugin
//! against a wiremock ServiceNow: upload, approve, connect, test, create an
//! incident, read its audit trail, verify the chain; the connection
//! lifecycle, sync and OAuth over the API; graceful shutdown; the `airlock
//! serve` binary; and the embedding example.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock::server::ServerConfig;
use airlock::service::{ProjectFilter, Role};
use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::{Api, Body, Resp};
use crate::common::CANARY;

pub(crate) const USER: &str = "airlock.integration";
const TABLE: &str = "/api/now/table/incident";
pub(crate) const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

pub(crate) fn servicenow_wasm() -> Vec<u8> {
    let (_, path) = airlock_test_artifacts::PLUGINS
        .iter()
        .find(|(n, _)| *n == "servicenow")
        .unwrap();
    std::fs::read(path).unwrap()
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{CANARY}"))
    )
}

fn incident(sys_id: &str, number: &str, title: &str) -> Value {
    json!({
        "sys_id": sys_id, "number": number, "short_description": title,
        "description": "", "urgency": "2", "impact": "2", "priority": "3",
        "state": "1", "active": "true", "category": "network",
        "sys_created_on": "2026-11-20 09:00:00", "sys_updated_on": "2026-11-20 09:00:00",
        "sys_class_name": "incident"
    })
}

/// A ServiceNow instance: who-am-I, the table probe, create, and a sync page.
pub(crate) async fn servicenow() -> MockServer {
    let server = MockServer::start().await;
    let auth = basic();
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": "6816f79cc0a8016401c5a33be04be441", "user_name": USER,
            "name": "Airlock Integration", "email": "airlock@acme.example"
        }]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(TABLE))
        .and(query_param("sysparm_fields", "sys_id"))
        .and(header("authorization", auth.as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"result": [{"sys_id": SYS_ID}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(TABLE))
        .and(query_param("sysparm_offset", "0"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            incident(SYS_ID, "INC0010001", "Email is down"),
            incident("e8caedcbc0a80164017df472f39eaed1", "INC0010002", "VPN flaps"),
        ]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(TABLE))
        .and(header("authorization", auth.as_str()))
        .and(body_string_contains("Printer on fire"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                json!({"result": incident(SYS_ID, "INC0010003", "Printer on fire")}),
            ),
        )
        .mount(&server)
        .await;
    server
}

/// Every answer of a scenario, to check that no secret ever came back.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn keep(&mut self, r: Resp) -> Resp {
        self.0.push(r.text());
        r
    }

    fn assert_no(&self, secret: &str) {
        for body in &self.0 {
            assert!(
                !body.contains(secret),
                "a response carried a secret: {body}"
            );
        }
    }
}

#[tokio::test]
async fn full_scenario_upload_approve_connect_test_create_audit_verify() {
    let api = Api::start().await;
    let sn = servicenow().await;
    let admin = api.token("admin", Role::Admin, None);
    let operator = api.token("ops", Role::Operator, None);
    let user = api.token("app", Role::User, None);
    let mut seen = Seen::default();

    // Upload: checked, compiled, held for approval with its capabilities.
    let up = seen.keep(
        api.send(
            "POST",
            "/api/v1/plugins",
            Some(&admin),
            Body::Raw("application/wasm", servicenow_wasm()),
        )
        .await,
    );
    assert_eq!(up.status, 202, "{}", up.text());
    let plan = up.json();
    assert_eq!(plan["id"], "servicenow");
    assert_eq!(plan["status"], "pending-approval");
    assert!(
        plan["interfaces"]
            .as_array()
            .unwrap()
            .contains(&json!("tickets"))
    );
    assert!(
        plan["changes"][0]
            .as_str()
            .unwrap()
            .starts_with("new plugin servicenow")
    );
    let sha = plan["sha256"].as_str().unwrap().to_string();
    assert!(
        api.airlock.list_plugins().unwrap().is_empty(),
        "not installed before approval"
    );
    let inspect = seen.keep(
        api.send(
            "GET",
            "/api/v1/plugins/servicenow",
            Some(&operator),
            Body::Empty,
        )
        .await,
    );
    assert_eq!(inspect.json()["installed"], Value::Null);
    assert_eq!(inspect.json()["pending"]["sha256"], sha.as_str());

    // Approval names the exact file.
    api.send(
        "POST",
        "/api/v1/plugins/servicenow/approve",
        Some(&admin),
        Body::Json(json!({ "sha256": "0".repeat(64) })),
    )
    .await
    .assert_error(409, "sha256_mismatch");
    let approved = seen.keep(
        api.send(
            "POST",
            "/api/v1/plugins/servicenow/approve",
            Some(&admin),
            Body::Json(json!({ "sha256": sha })),
        )
        .await,
    );
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()["sha256"], sha.as_str());
    let list = seen.keep(
        api.send("GET", "/api/v1/plugins", Some(&operator), Body::Empty)
            .await,
    );
    assert_eq!(list.json()[0]["id"], "servicenow");
    let again = seen.keep(
        api.send(
            "POST",
            "/api/v1/plugins",
            Some(&admin),
            Body::Raw("application/wasm", servicenow_wasm()),
        )
        .await,
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "unchanged");

    // A connection to the mock instance; the password goes in, never out.
    let created = seen.keep(
        api.send(
            "POST",
            "/api/v1/connections",
            Some(&operator),
            Body::Json(json!({
                "name": "sn", "plugin": "servicenow",
                "settings": { "base-url": sn.uri() },
                "auth": { "kind": "basic", "username": USER, "password": CANARY }
            })),
        )
        .await,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let conn = created.json();
    assert_eq!(conn["status"], "active");
    assert_eq!(conn["scope"], "global");
    assert_eq!(conn["settings"]["table"], "incident", "defaults applied");
    let id = conn["id"].as_str().unwrap().to_string();

    let tested = seen.keep(
        api.send(
            "POST",
            "/api/v1/connections/sn/test",
            Some(&operator),
            Body::Empty,
        )
        .await,
    );
    assert_eq!(tested.status, 200, "{}", tested.text());
    assert_eq!(tested.json()["account"], USER);

    let ticket = seen.keep(
        api.send(
            "POST",
            "/api/v1/connections/sn/invoke/tickets/create",
            Some(&user),
            Body::Json(json!({
                "title": "Printer on fire", "description": null, "kind": null,
                "priority": "p2", "fields": {"category": "hardware"}
            })),
        )
        .await,
    );
    assert_eq!(ticket.status, 200, "{}", ticket.text());
    assert_eq!(ticket.json()["id"], SYS_ID);
    assert_eq!(ticket.json()["number"], "INC0010003");
    // The answer in the operation JSON contract: the WIT's enum spelling,
    // `fields` as an object.
    assert_eq!(ticket.json()["priority"], "p3");
    assert_eq!(ticket.json()["fields"]["category"], "network");
    let posts = sn.received_requests().await.unwrap();
    let posts: Vec<_> = posts
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    let sent: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(sent["short_description"], "Printer on fire");
    // p2 is urgency 1, impact 2; the object's fields are set as given.
    assert_eq!(
        (&sent["urgency"], &sent["impact"]),
        (&json!("1"), &json!("2"))
    );
    assert_eq!(sent["category"], "hardware");

    // The audit trail of that send, then the chain.
    let audit = seen.keep(
        api.send(
            "GET",
            "/api/v1/audit?connection=sn&decision=allowed",
            Some(&operator),
            Body::Empty,
        )
        .await,
    );
    assert_eq!(audit.status, 200, "{}", audit.text());
    let entries = audit.json();
    let create = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "POST")
        .expect("the create is audited");
    let url = create["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}{TABLE}", sn.uri())), "{url}");
    assert_eq!(create["connection_id"], id.as_str());
    assert_eq!(create["plugin_id"], "servicenow");
    assert_eq!(create["credential_used"], true);
    assert_eq!(create["outcome"]["status"], 201);
    assert_eq!(
        entries.as_array().unwrap().len(),
        3,
        "test (2 sends) + create: {entries}"
    );
    let verify = seen.keep(
        api.send("GET", "/api/v1/audit/verify", Some(&admin), Body::Empty)
            .await,
    );
    assert_eq!(verify.status, 200);
    assert_eq!(verify.json()["ok"], true, "{}", verify.text());
    assert!(verify.json()["rows"].as_u64().unwrap() >= 3);

    // Metrics count both calls for this plugin and connection.
    let metrics = api
        .send("GET", "/metrics", Some(&operator), Body::Empty)
        .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    assert!(
        text.contains("airlock_calls_total{plugin=\"servicenow\",connection=\"sn\"} 2"),
        "{text}"
    );
    assert!(text.contains("airlock_call_errors_total{plugin=\"servicenow\",connection=\"sn\"} 0"));
    assert!(text.contains(
        "airlock_call_duration_seconds_count{plugin=\"servicenow\",connection=\"sn\"} 2"
    ));
    assert!(text.contains(
        "route=\"/api/v1/connections/{id}/invoke/{interface}/{operation}\",status=\"200\""
    ));
    seen.0.push(text);
    seen.assert_no(CANARY);
}

#[tokio::test]
async fn connection_lifecycle_settings_pause_resume_and_sync() {
    let api = Api::start().await;
    let sn = servicenow().await;
    let plan = api.airlock.plan_install(servicenow_wasm()).unwrap();
    api.airlock.install(&plan, true).unwrap();
    let op = api.token("ops", Role::Operator, None);
    let t = Some(op.as_str());
    let created = api
        .send(
            "POST",
            "/api/v1/connections",
            t,
            Body::Json(json!({
                "name": "sn", "plugin": "servicenow", "projects": ["web"],
                "settings": { "base-url": sn.uri() },
                "auth": { "kind": "basic", "username": USER, "password": CANARY }
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["scope"], json!({"projects": ["web"]}));

    let listed = api
        .send(
            "GET",
            "/api/v1/connections?project=web&plugin=servicenow",
            t,
            Body::Empty,
        )
        .await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    let other = api
        .send("GET", "/api/v1/connections?project=api", t, Body::Empty)
        .await;
    assert_eq!(other.json(), json!([]));

    // Settings: changed and validated; the credential's origin is fixed.
    let patched = api
        .send(
            "PATCH",
            "/api/v1/connections/sn",
            t,
            Body::Json(json!({"settings": {"table": "u_ticket"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["settings"]["table"], "u_ticket");
    let reset = api
        .send(
            "PATCH",
            "/api/v1/connections/sn",
            t,
            Body::Json(json!({"settings": {"table": null}})),
        )
        .await;
    assert_eq!(reset.json()["settings"]["table"], "incident");
    api.send(
        "PATCH",
        "/api/v1/connections/sn",
        t,
        Body::Json(json!({"settings": {"base-url": "https://evil.example"}})),
    )
    .await
    .assert_error(400, "invalid_request");
    api.send(
        "PATCH",
        "/api/v1/connections/sn",
        t,
        Body::Json(json!({"settings": {"nope": "1"}})),
    )
    .await
    .assert_error(400, "invalid_request");
    assert_eq!(
        api.airlock.connection("sn").unwrap().settings["base-url"],
        sn.uri()
    );

    // Pause stops calls, resume allows them again.
    let paused = api
        .send("POST", "/api/v1/connections/sn/pause", t, Body::Empty)
        .await;
    assert_eq!(paused.json()["status"], "paused");
    api.send("POST", "/api/v1/connections/sn/test", t, Body::Empty)
        .await
        .assert_error(409, "connection_paused");
    let resumed = api
        .send("POST", "/api/v1/connections/sn/resume", t, Body::Empty)
        .await;
    assert_eq!(resumed.json()["status"], "active");
    assert_eq!(
        api.send("POST", "/api/v1/connections/sn/test", t, Body::Empty)
            .await
            .status,
        200
    );

    // Sync: one page of two records, then runs and records.
    let run = api
        .send(
            "POST",
            "/api/v1/connections/sn/sync?full=true",
            t,
            Body::Empty,
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.text());
    assert_eq!(run.json()["records"], 2);
    assert_eq!(run.json()["status"], "succeeded");
    let runs = api
        .send("GET", "/api/v1/connections/sn/sync/runs", t, Body::Empty)
        .await;
    assert_eq!(runs.json().as_array().unwrap().len(), 1);
    let records = api
        .send(
            "GET",
            "/api/v1/connections/sn/sync/records?limit=10",
            t,
            Body::Empty,
        )
        .await;
    let records = records.json();
    assert_eq!(records.as_array().unwrap().len(), 2, "{records}");
    assert!(records.to_string().contains("INC0010002"));

    // Invoking an operation the plugin does not have.
    let user = api.token("app", Role::User, Some("web"));
    api.send(
        "POST",
        "/api/v1/connections/sn/invoke/documents/get-page",
        Some(&user),
        Body::Json(json!({"id": "1"})),
    )
    .await
    .assert_error(404, "unknown_operation");
    api.send(
        "POST",
        "/api/v1/connections/sn/invoke/tickets/get",
        Some(&user),
        Body::Json(json!({"nope": 1})),
    )
    .await
    .assert_error(400, "invalid_input");
}

#[tokio::test]
async fn oauth_start_and_callback_through_the_api() {
    let api = Api::start().await;
    let sn = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(body_string_contains("code=the-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "CANARY-access-token", "token_type": "Bearer",
            "expires_in": 3600, "refresh_token": "CANARY-refresh-token"
        })))
        .expect(1)
        .mount(&sn)
        .await;
    let plan = api.airlock.plan_install(servicenow_wasm()).unwrap();
    api.airlock.install(&plan, true).unwrap();
    let op = api.token("ops", Role::Operator, None);
    let t = Some(op.as_str());
    let created = api
        .send(
            "POST",
            "/api/v1/connections",
            t,
            Body::Json(json!({
                "name": "sn-oauth", "plugin": "servicenow",
                "settings": { "base-url": sn.uri() },
                "auth": { "kind": "oauth2", "client_id": "cid", "client_secret": "CANARY-client-secret" }
            })),
        )
        .await;
    assert_eq!(created.json()["status"], "needs-reauth");

    let start = api
        .send(
            "POST",
            "/api/v1/connections/sn-oauth/oauth/start",
            t,
            Body::Empty,
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.text());
    let start = start.json();
    let redirect = format!("http://{}/api/v1/oauth/callback", api.addr);
    assert_eq!(start["redirect_uri"], redirect.as_str());
    let url = url::Url::parse(start["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/oauth_auth.do");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["redirect_uri"], redirect);
    assert_eq!(q["client_id"], "cid");
    assert_eq!(q["code_challenge_method"], "S256");
    let state = start["state"].as_str().unwrap().to_string();
    assert_eq!(q["state"], state);

    // A forged state changes nothing and sends nothing.
    let forged = api
        .send_with(
            "GET",
            "/api/v1/oauth/callback?code=the-code&state=forged",
            None,
            Body::Empty,
            &[("accept", "application/json")],
        )
        .await;
    forged.assert_error(400, "oauth_error");
    assert_eq!(
        api.airlock.connection("sn-oauth").unwrap().status.as_str(),
        "needs-reauth"
    );

    // The browser comes back (no token) with the real state.
    let back = api
        .send(
            "GET",
            &format!("/api/v1/oauth/callback?code=the-code&state={state}"),
            None,
            Body::Empty,
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.text());
    assert!(back.text().contains("is authorised"));
    assert_eq!(
        api.airlock.connection("sn-oauth").unwrap().status.as_str(),
        "active"
    );
    let sent = sn.received_requests().await.unwrap();
    let form = String::from_utf8_lossy(&sent[0].body).into_owned();
    assert!(form.contains("code_verifier="), "{form}");
    assert!(
        form.contains(&format!(
            "redirect_uri={}",
            url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        )),
        "{form}"
    );
    // The state is single-use.
    let replay = api
        .send(
            "GET",
            &format!("/api/v1/oauth/callback?code=the-code&state={state}"),
            None,
            Body::Empty,
        )
        .await;
    assert_eq!(replay.status, 400);
    for body in [back.text(), replay.text()] {
        assert!(!body.contains("CANARY"), "{body}");
    }
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish_and_then_stops() {
    let api = Api::start_with(ServerConfig {
        shutdown_grace: Duration::from_secs(20),
        ..ServerConfig::default()
    })
    .await;
    let slow = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "slow"}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&slow)
        .await;
    let plan = api
        .airlock
        .plan_install(std::fs::read(airlock_test_artifacts::MINIMAL).unwrap())
        .unwrap();
    api.airlock.install(&plan, true).unwrap();
    api.airlock
        .add_connection(airlock::service::NewConnection {
            name: "slow".into(),
            plugin_id: "minimal".into(),
            settings: [("base-url".to_string(), slow.uri())].into(),
            auth: airlock::service::AuthInput::None,
            scope: airlock::service::Scope::Global,
        })
        .unwrap();
    let user = api.token("app", Role::User, None);
    let api = std::sync::Arc::new(api);
    let in_flight = {
        let api = api.clone();
        tokio::spawn(async move {
            api.send(
                "POST",
                "/api/v1/connections/slow/invoke/connector/test-connection",
                Some(&user),
                Body::Json(json!({})),
            )
            .await
        })
    };
    // Let the request reach the plugin (its upstream answers after 1.5 s),
    // then stop the server as SIGTERM would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!in_flight.is_finished());
    api.shutdown();
    let resp = in_flight.await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["account"], "slow");
    let task = api.take_task();
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stops once the call is done");
    ended.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(api.addr).await.is_err(),
        "no longer listening"
    );
    // The call was recorded completely: request and outcome.
    api.airlock.audit().flush().await.unwrap();
    let audit = api.airlock.list_audit(&Default::default()).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].outcome.as_ref().unwrap().status, Some(200));
}

/// Lines of a child's stdout, read on a thread so a hang fails the test
/// instead of blocking it.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Lines until one starts with `last` (included).
fn read_until(rx: &std::sync::mpsc::Receiver<String>, last: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no `{last}` line ({e}); got {lines:?}"));
        let done = line.starts_with(last);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

fn serve(dir: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("AIRLOCK_DATA_DIR", dir)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// A plain HTTP/1.1 request with `Connection: close`.
fn http_get(addr: &str, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn airlock_cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn airlock_serve_prints_where_it_listens_and_a_first_admin_token_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path());
    let rx = lines_of(&mut child);
    let lines = read_until(&rx, "Sign in to the console");
    let text = lines.join("\n");
    let addr = lines
        .iter()
        .find_map(|l| l.split("listening on http://").nth(1))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    assert!(
        text.contains(&format!("data directory: {}", dir.path().display())),
        "{text}"
    );
    assert!(text.contains("master key: key file"), "{text}");
    let token = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("alk_"))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    // Where the console is, and that the first token signs in to it.
    assert!(
        text.contains(&format!("Console: http://{addr}/"))
            && text.contains(&format!("Sign in to the console at http://{addr}/ with it")),
        "{text}"
    );
    let console = http_get(&addr, "/", "");
    assert!(
        console.starts_with("HTTP/1.1 200") && console.contains("/console/app.js"),
        "{console}"
    );
    let ok = http_get(&addr, "/api/v1/plugins", &token);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("[]"), "{ok}");
    let refused = http_get(&addr, "/api/v1/plugins", "alk_wrong");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    sigterm(&child);
    assert_eq!(
        read_until(&rx, "airlock stopped").last().unwrap(),
        "airlock stopped"
    );
    assert!(child.wait().unwrap().success());

    // A second start prints no token: only its hash was kept, and one exists.
    let mut child = serve(dir.path());
    let rx = lines_of(&mut child);
    let lines = read_until(&rx, "API:");
    sigterm(&child);
    let rest: Vec<String> = rx.iter().collect();
    assert!(child.wait().unwrap().success());
    let all = [lines, rest].concat().join("\n");
    assert!(
        !all.contains("alk_") && !all.contains("First start"),
        "{all}"
    );
    let db = std::fs::read(dir.path().join("airlock.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(&token),
        "the token is not stored"
    );
}

#[test]
fn token_commands_create_list_and_revoke_with_script_friendly_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = airlock_cli(
        dir.path(),
        &[
            "token",
            "create",
            "ci",
            "--role",
            "operator",
            "--project",
            "web",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("alk_"));
    assert_eq!(created["record"]["role"], "operator");
    assert_eq!(created["record"]["project"], "web");

    let (code, out, _) = airlock_cli(dir.path(), &["token", "list", "--json"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!out.contains(token), "listing never shows the token");
    let (code, out, _) = airlock_cli(dir.path(), &["token", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("NAME") && out.contains("ci") && out.contains("web"),
        "{out}"
    );

    let (code, _, err) = airlock_cli(dir.path(), &["token", "create", "ci", "--role", "user"]);
    assert_eq!(code, 1, "a duplicate name fails: {err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, _) = airlock_cli(dir.path(), &["token", "create", "x", "--role", "root"]);
    assert_eq!(code, 2, "a usage error");
    let (code, out, _) = airlock_cli(dir.path(), &["token", "revoke", "ci"]);
    assert_eq!(code, 0);
    assert!(out.contains("revoked"));
    let (code, _, err) = airlock_cli(dir.path(), &["token", "revoke", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("token `nope` not found"), "{err}");
    let (_, out, _) = airlock_cli(dir.path(), &["token", "list", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert!(listed[0]["revoked_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedding_example_runs_against_a_servicenow_instance() {
    let sn = servicenow().await;
    Mock::given(method("POST"))
        .and(path(TABLE))
        .and(header("authorization", basic().as_str()))
        .and(body_string_contains("Created by the embedding example"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"result": incident(SYS_ID, "INC0010009", "Created by the embedding example")}),
        ))
        .expect(1)
        .mount(&sn)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{TABLE}/{SYS_ID}")))
        .and(header("authorization", basic().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": incident(SYS_ID, "INC0010009", "Created by the embedding example")}),
        ))
        .expect(1)
        .mount(&sn)
        .await;
    // `cargo test` builds examples; a filtered run (`--test e2e`) may not
    // have, so build it here (a no-op when it is fresh).
    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "airlock", "--example", "embed"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(built.success());
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(format!("embed{}", std::env::consts::EXE_SUFFIX));
    let (_, wasm) = airlock_test_artifacts::PLUGINS
        .iter()
        .find(|(n, _)| *n == "servicenow")
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (wasm, uri, data_dir) = (wasm.to_string(), sn.uri(), data.path().to_path_buf());
    // Blocking: the mock server keeps answering on this runtime's workers.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&example)
            .args([wasm.as_str(), uri.as_str()])
            .env("AIRLOCK_DATA_DIR", &data_dir)
            .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
            .env("SN_USER", USER)
            .env("SN_PASSWORD", CANARY)
            .env_remove("AIRLOCK_MASTER_KEY")
            .env_remove("AIRLOCK_MASTER_PASSPHRASE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("installing servicenow"), "{stdout}");
    assert!(
        stdout.contains(&format!("created ticket {SYS_ID} (INC0010009)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("fetched by name: \"Created by the embedding example\""),
        "{stdout}"
    );
    assert!(stdout.contains("audit: audit log OK: 4 rows"), "{stdout}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
}

#[test]
fn connection_set_changes_settings_and_keeps_the_credential_origin() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = airlock_cli(
        dir.path(),
        &[
            "plugin",
            "install",
            airlock_test_artifacts::MINIMAL,
            "--approve",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "connection",
            "add",
            "c",
            "--plugin",
            "minimal",
            "--global",
            "--auth",
            "bearer",
            "--setting",
            "base-url=https://api.example.com",
            "--secret-env",
            "TOKEN_FOR_TEST",
        ])
        .env("AIRLOCK_DATA_DIR", dir.path())
        .env("TOKEN_FOR_TEST", CANARY)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, out, err) = airlock_cli(
        dir.path(),
        &[
            "connection",
            "set",
            "c",
            "--setting",
            "base-url=https://api.example.com/v2",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["settings"]["base-url"], "https://api.example.com/v2");
    let (code, _, err) = airlock_cli(
        dir.path(),
        &[
            "connection",
            "set",
            "c",
            "--setting",
            "base-url=https://evil.example",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot move to another origin"), "{err}");
    let (code, _, _) = airlock_cli(dir.path(), &["connection", "set", "c"]);
    assert_eq!(code, 2, "nothing to change is a usage error");
    let (code, _, err) = airlock_cli(dir.path(), &["connection", "set", "c", "--setting", "nope"]);
    assert_eq!(code, 2, "{err}");
    let (_, out, _) = airlock_cli(dir.path(), &["connection", "show", "c", "--json"]);
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["settings"]["base-url"], "https://api.example.com/v2");
    assert!(!out.contains(CANARY));
}

#[tokio::test]
async fn egress_denials_and_errors_are_counted_per_plugin_and_connection() {
    // A host that, like a default deployment, allows public addresses only:
    // the loopback upstream below is refused before any connection is made.
    let api = Api::start_custom(ServerConfig::default(), |c| {
        c.address_policy = airlock::AddressPolicy::global_only();
    })
    .await;
    let upstream = MockServer::start().await;
    let plan = api.airlock.plan_install(servicenow_wasm()).unwrap();
    api.airlock.install(&plan, true).unwrap();
    let op = api.token("ops", Role::Operator, None);
    let created = api
        .send(
            "POST",
            "/api/v1/connections",
            Some(&op),
            Body::Json(json!({
                "name": "internal", "plugin": "servicenow",
                "settings": { "base-url": upstream.uri() },
                "auth": { "kind": "basic", "username": USER, "password": CANARY }
            })),
        )
        .await;
    assert_eq!(created.status, 201);
    let denied = api
        .send(
            "POST",
            "/api/v1/connections/internal/test",
            Some(&op),
            Body::Empty,
        )
        .await;
    denied.assert_error(403, "egress_denied");
    assert!(upstream.received_requests().await.unwrap().is_empty());
    let metrics = api
        .send("GET", "/metrics", Some(&op), Body::Empty)
        .await
        .text();
    let labels = "plugin=\"servicenow\",connection=\"internal\"";
    assert!(
        metrics.contains(&format!("airlock_calls_total{{{labels}}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("airlock_call_errors_total{{{labels}}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("airlock_egress_denials_total{{{labels}}} 1")),
        "{metrics}"
    );
    let audit = api
        .send("GET", "/api/v1/audit", Some(&op), Body::Empty)
        .await
        .json();
    // The address is checked after the rule decision, at connect time: the
    // entry ends with that error and no status.
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert!(entries[0]["outcome"]["status"].is_null());
    assert!(
        entries[0]["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{audit}"
    );
}

#[tokio::test]
async fn chat_through_the_api_as_json_then_as_server_sent_events() {
    use crate::openai::{
        SSE_HEAD, api_key_connection, completion, plugin_path, trickle_server, trickled_answer,
    };

    let api = Api::start().await;
    let plan = api
        .airlock
        .plan_install(std::fs::read(plugin_path("openai")).unwrap())
        .unwrap();
    api.airlock.install(&plan, true).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {CANARY}").as_str()))
        .and(body_string_contains("[EMAIL_1]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Noted.")))
        .expect(1)
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    api.airlock
        .add_connection(api_key_connection(
            "gpt",
            "openai",
            &[("base-url", &base), ("model", "gpt-4o-mini")],
            "Authorization",
            "Bearer ",
        ))
        .unwrap();
    let user = api.token("chatter", Role::User, None);

    // JSON: the answer, its conversation, the redaction counts.
    let resp = api
        .send(
            "POST",
            "/api/v1/connections/gpt/chat",
            Some(&user),
            Body::Json(json!({"message": "Mail ada@example.com about it"})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    assert_eq!(answer["content"], "Noted.");
    assert_eq!(answer["redacted"]["email"], 1);
    let conversation = answer["conversation_id"].as_str().unwrap().to_string();
    assert!(!resp.text().contains(CANARY));

    // Unknown fields and an unknown conversation are clear errors.
    let bad = api
        .send(
            "POST",
            "/api/v1/connections/gpt/chat",
            Some(&user),
            Body::Json(json!({"message": "hi", "colour": "red"})),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("colour"), "{}", bad.text());
    let missing = api
        .send(
            "POST",
            "/api/v1/connections/gpt/chat",
            Some(&user),
            Body::Json(json!({"message": "hi", "conversation": "no-such-conversation"})),
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // SSE: a second connection to a server that trickles the answer.
    let (sse_base, upstream) = trickle_server(SSE_HEAD, trickled_answer(true)).await;
    api.airlock
        .add_connection(api_key_connection(
            "gpt-stream",
            "openai",
            &[("base-url", &sse_base), ("model", "gpt-4o-mini")],
            "Authorization",
            "Bearer ",
        ))
        .unwrap();
    let resp = api
        .send(
            "POST",
            "/api/v1/connections/gpt-stream/chat",
            Some(&user),
            Body::Json(json!({"message": "Greet the world", "stream": true})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.headers["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = resp.text();
    let mut deltas = String::new();
    let mut done = None;
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let kind = event.lines().find_map(|l| l.strip_prefix("event: "));
        let data: String = event
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        match kind {
            Some("delta") => deltas.push_str(
                serde_json::from_str::<Value>(&data).unwrap()["content"]
                    .as_str()
                    .unwrap(),
            ),
            Some("done") => done = Some(serde_json::from_str::<Value>(&data).unwrap()),
            other => panic!("unexpected event {other:?}: {event}"),
        }
    }
    assert_eq!(deltas, "Grüße, 世界! 🎉");
    let done = done.expect("a done event");
    assert_eq!(done["content"], "Grüße, 世界! 🎉");
    assert!(upstream.await.unwrap().contains("\"stream\":true"));
    // Both turns are stored; the first conversation has its two messages.
    let (_, messages) = api
        .airlock
        .conversation(&conversation, ProjectFilter::Any)
        .unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
}
