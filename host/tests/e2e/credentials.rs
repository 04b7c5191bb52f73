//! A connection's credential over its life: checked against the plugin's
//! auth kinds, tried before it is saved, injected the way the settings say,
//! and replaced in place. Real plugins, real SQLite files, loopback servers
//! shaped like ServiceNow and OpenAI.

use std::collections::BTreeMap;

use airlock::ServiceError;
use airlock::service::{AuthInput, NewConnection, Scope};
use base64::Engine;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::openai::{plugin_path, service};

const RIGHT: &str = "right-password-81c2";
const WRONG: &str = "wrong-password-5d07";

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A ServiceNow instance that knows one account: `ops` with [`RIGHT`]; any
/// other credential gets ServiceNow's 401.
async fn servicenow() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(header("authorization", basic("ops", RIGHT).as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "result": [{"sys_id": "6816f79cc0a8016401c5a33be04be441",
                        "user_name": "ops", "name": "Ops", "email": "ops@example.com"}]
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/api/now/table/[a-z_]+$"))
        .and(header("authorization", basic("ops", RIGHT).as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path_regex("^/api/"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": "User Not Authenticated",
                      "detail": "Required to provide Auth information"},
            "status": "failure"
        })))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

fn servicenow_connection(name: &str, base: &str, password: &str) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "servicenow".into(),
        settings: BTreeMap::from([("base-url".to_string(), base.to_string())]),
        auth: AuthInput::Basic {
            username: "ops".into(),
            password: SecretString::from(password.to_string()),
        },
        scope: Scope::Global,
    }
}

/// Run the `airlock` binary on `dir` off the test runtime; success,
/// stdout, stderr.
async fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let (dir, args): (std::path::PathBuf, Vec<String>) =
        (dir.into(), args.iter().map(ToString::to_string).collect());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = [
            ("RIGHT_PASSWORD", RIGHT),
            ("WRONG_PASSWORD", WRONG),
            ("USER", "alice"),
        ];
        crate::common::airlock_in(&dir, &args, &env)
    })
    .await
    .unwrap();
    (code == 0, out, err)
}

async fn cli_json(dir: &std::path::Path, args: &[&str]) -> Value {
    let (ok, out, err) = cli(dir, args).await;
    assert!(ok, "airlock {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The sealed ciphertexts of a connection's secrets, straight from the file.
fn ciphertexts(dir: &std::path::Path, connection_id: &str) -> Vec<Vec<u8>> {
    let db = rusqlite::Connection::open(dir.join(airlock::DB_FILE)).unwrap();
    let mut stmt = db
        .prepare("SELECT ciphertext FROM secrets WHERE connection_id = ?1")
        .unwrap();
    stmt.query_map([connection_id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_replaced_in_place_from_the_cli() {
    let server = servicenow().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = format!("base-url={}", server.uri());
    let install = ["plugin", "install", plugin_path("servicenow"), "--approve"];
    assert!(cli(d, &install).await.0);
    let added = cli_json(
        d,
        &[
            "connection",
            "add",
            "sn",
            "--plugin",
            "servicenow",
            "--auth",
            "basic",
            "--username",
            "ops",
            "--setting",
            &base,
            "--secret-env",
            "WRONG_PASSWORD",
            "--global",
            "--json",
        ],
    )
    .await;
    let id = added["id"].as_str().unwrap().to_string();
    let (ok, _, err) = cli(d, &["connection", "test", "sn"]).await;
    assert!(!ok && err.contains("401"), "{err}");
    let old = ciphertexts(d, &id);
    assert_eq!(old.len(), 1);

    // set-secret keeps the kind, so it asks for the same parts.
    let (ok, _, err) = cli(
        d,
        &[
            "connection",
            "set-secret",
            "sn",
            "--secret-env",
            "RIGHT_PASSWORD",
        ],
    )
    .await;
    assert!(!ok && err.contains("--username"), "{err}");
    let replaced = cli_json(
        d,
        &[
            "connection",
            "set-secret",
            "sn",
            "--username",
            "ops",
            "--secret-env",
            "RIGHT_PASSWORD",
            "--json",
        ],
    )
    .await;
    assert_eq!(replaced["id"], id.as_str(), "same connection, same id");
    let report = cli_json(d, &["connection", "test", "sn", "--json"]).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["account"], "ops", "{report}");
    let last = server.received_requests().await.unwrap();
    assert_eq!(
        last.last().unwrap().headers.get("authorization").unwrap(),
        basic("ops", RIGHT).as_str()
    );

    // The old ciphertext is gone from the table and from the file.
    let new = ciphertexts(d, &id);
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    for file in ["airlock.db", "airlock.db-wal"] {
        assert!(!file_contains(&d.join(file), &old[0]), "{file}");
    }

    // The change is on record, without the secret, and the chain holds.
    let events = cli_json(d, &["audit", "events", "--connection", "sn", "--json"]).await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["actor"], "cli:alice");
    assert_eq!(events[0]["connection_id"], id.as_str());
    assert_eq!(
        events[0]["detail"],
        json!({"action": "credential-replaced", "fields": ["password"]})
    );
    assert!(!events.to_string().contains(RIGHT));
    let (ok, out, err) = cli(d, &["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
}

#[tokio::test]
async fn replacing_keeps_the_kind_and_the_settings_own_the_key_header() {
    let server = servicenow().await;
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "servicenow");
    crate::service::install(&airlock, plugin_path("openai"));
    airlock
        .add_connection(servicenow_connection("sn", &server.uri(), WRONG))
        .unwrap();
    let err = airlock
        .replace_credential(
            "sn",
            AuthInput::Bearer {
                token: SecretString::from("t".to_string()),
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Invalid(m) if m.contains("authenticates with `basic`, not `bearer`")),
        "{err}"
    );
    let err = airlock
        .replace_credential("nope", AuthInput::None, "test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");

    airlock
        .add_connection(crate::openai::api_key_connection(
            "gpt",
            "openai",
            &[("base-url", &format!("{}/v1", server.uri()))],
            "",
            "",
        ))
        .unwrap();
    let err = airlock
        .replace_credential(
            "gpt",
            AuthInput::ApiKey {
                header: "x-api-key".into(),
                prefix: None,
                key: SecretString::from("k".to_string()),
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("change those settings"), "{err}");
    assert!(
        airlock.list_audit_events(None, 10).unwrap().is_empty(),
        "a refused replacement is no event"
    );
}

#[tokio::test]
async fn add_with_a_test_saves_only_a_connection_that_passes() {
    let server = servicenow().await;
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "servicenow");
    let err = airlock
        .add_connection_tested(servicenow_connection("sn", &server.uri(), WRONG))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::NotSaved { name, .. } if name == "sn"),
        "{err}"
    );
    assert!(err.to_string().contains("401"), "{err}");
    assert!(airlock.connection("sn").is_err(), "nothing saved");
    let rows = airlock.list_audit(&Default::default()).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.url.contains("/api/now/table/sys_user")),
        "the test's requests are audited"
    );

    let (record, report) = airlock
        .add_connection_tested(servicenow_connection("sn", &server.uri(), RIGHT))
        .await
        .unwrap();
    assert_eq!(report.account.as_deref(), Some("ops"));
    assert_eq!(airlock.connection("sn").unwrap().id, record.id);
    let err = airlock
        .add_connection_tested(servicenow_connection("sn", &server.uri(), RIGHT))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn an_auth_kind_the_plugin_does_not_declare_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "azure-devops");
    let err = airlock
        .add_connection(NewConnection {
            name: "ado".into(),
            plugin_id: "azure-devops".into(),
            settings: BTreeMap::from([(
                "base-url".to_string(),
                "https://dev.azure.com/acme".to_string(),
            )]),
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("azure-devops") && text.contains("needs a credential"),
        "{text}"
    );
    assert!(text.contains("basic, bearer, oauth2"), "{text}");
    assert!(airlock.connections(&Default::default()).unwrap().is_empty());
}

/// The credential goes in the header the settings name, with the prefix
/// they name: when the connection is made (a header without a prefix keeps
/// the plugin's default prefix) and after the settings change.
#[tokio::test]
async fn the_api_key_header_follows_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "data": [{"id": "m", "object": "model"}]
        })))
        .mount(&server)
        .await;
    let mut new = crate::openai::api_key_connection(
        "gpt",
        "openai",
        &[("base-url", &format!("{}/v1", server.uri()))],
        "Authorization",
        "",
    );
    new.auth = AuthInput::ApiKey {
        header: "Authorization".into(),
        prefix: None,
        key: SecretString::from(crate::common::CANARY.to_string()),
    };
    let record = airlock.add_connection(new).unwrap();
    assert_eq!(record.settings["auth-prefix"], "Bearer ");
    let sent = async || {
        airlock.test_connection("gpt").await.unwrap();
        let requests = server.received_requests().await.unwrap();
        requests.last().unwrap().headers.clone()
    };
    let headers = sent().await;
    assert_eq!(
        headers.get("authorization").unwrap(),
        format!("Bearer {}", crate::common::CANARY).as_str()
    );

    let changes = BTreeMap::from([
        ("auth-header".to_string(), Some("api-key".to_string())),
        ("auth-prefix".to_string(), Some(String::new())),
    ]);
    let record = airlock.update_connection_settings("gpt", &changes).unwrap();
    assert_eq!(record.auth_config.header.as_deref(), Some("api-key"));
    let headers = sent().await;
    assert_eq!(headers.get("api-key").unwrap(), crate::common::CANARY);
    assert!(headers.get("authorization").is_none());

    let reserved = BTreeMap::from([("auth-header".to_string(), Some("cookie".to_string()))]);
    let err = airlock
        .update_connection_settings("gpt", &reserved)
        .unwrap_err();
    assert!(err.to_string().contains("cannot carry an API key"), "{err}");
    assert_eq!(
        airlock.connection("gpt").unwrap().settings["auth-header"],
        "api-key",
        "a refused change changes nothing"
    );
}

/// The same through the API: a tested create saves nothing on a wrong
/// password (422), and `PUT .../secret` replaces it in place, recorded
/// with the token's name; a paused connection's error names the route that
/// resumes it, not a CLI command.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_tests_before_saving_and_replaces_a_secret_in_place() {
    use crate::api::{Api, Body};
    let server = servicenow().await;
    let api = Api::start().await;
    crate::service::install(&api.airlock, plugin_path("servicenow"));
    let token = api.token("ops", airlock::service::Role::Operator, None);
    let create = |password: &str, test: bool| {
        Body::Json(json!({
            "name": "sn", "plugin": "servicenow", "test": test,
            "settings": {"base-url": server.uri()},
            "auth": {"kind": "basic", "username": "ops", "password": password},
        }))
    };
    let resp = api
        .send(
            "POST",
            "/api/v1/connections",
            Some(&token),
            create(WRONG, true),
        )
        .await;
    resp.assert_error(422, "connection_test_failed");
    assert!(resp.text().contains("not saved"), "{}", resp.text());
    assert!(api.airlock.connection("sn").is_err());

    let resp = api
        .send(
            "POST",
            "/api/v1/connections",
            Some(&token),
            create(WRONG, false),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let id = resp.json()["id"].as_str().unwrap().to_string();
    let replace = |body: Value| {
        api.send(
            "PUT",
            "/api/v1/connections/sn/secret",
            Some(&token),
            Body::Json(body),
        )
    };
    replace(json!({"kind": "bearer", "token": "t"}))
        .await
        .assert_error(400, "invalid_request");
    let resp = replace(json!({"kind": "basic", "username": "ops", "password": RIGHT})).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["id"], id.as_str());
    assert!(!resp.text().contains(RIGHT));
    let resp = api
        .send(
            "POST",
            "/api/v1/connections/sn/test",
            Some(&token),
            Body::Empty,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["account"], "ops");
    let events = api.airlock.list_audit_events(Some("sn"), 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "token:ops");

    api.airlock.pause_connection("sn").unwrap();
    let resp = api
        .send(
            "POST",
            "/api/v1/connections/sn/test",
            Some(&token),
            Body::Empty,
        )
        .await;
    resp.assert_error(409, "connection_paused");
    let text = resp.text();
    assert!(
        text.contains("POST /api/v1/connections/sn/resume"),
        "{text}"
    );
    assert!(!text.contains("airlock connection"), "{text}");
}
