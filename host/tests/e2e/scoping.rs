//! Plugin state and conversations belong to (connection, project): on a
//! global connection, a call for one project never reads or continues what
//! a call for another project (or a call without a project) left, through
//! the library and through the management API alike.

use airlock::Airlock;
use airlock::service::{AuthInput, ChatInput, NewConnection, ProjectFilter, Role, Scope};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::{Api, Body};
use crate::openai::{api_key_connection, completion, plugin_path};

/// A global probe connection, `shared`, whose test-connection reports the
/// key `k` as the call found it and overwrites it with the call's project.
fn add_marking_probe(airlock: &Airlock) {
    crate::service::install(airlock, airlock_test_artifacts::PROBE);
    airlock
        .add_connection(NewConnection {
            name: "shared".into(),
            plugin_id: "probe".into(),
            settings: [
                ("action".to_string(), "state-mark".to_string()),
                ("key".to_string(), "k".to_string()),
            ]
            .into(),
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap();
}

/// What `state-mark` found under `k` for a call of `shared` for `project`.
async fn found(airlock: &Airlock, project: Option<&str>) -> Value {
    let out = airlock
        .call("shared", "connector.test-connection", json!({}), project)
        .await
        .unwrap();
    let report: Value = serde_json::from_str(out["message"].as_str().unwrap()).unwrap();
    report["before"].clone()
}

#[tokio::test]
async fn plugin_state_is_kept_per_connection_and_project() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    add_marking_probe(&airlock);

    // Each scope starts empty, whatever the others wrote first.
    assert_eq!(found(&airlock, Some("x")).await, Value::Null);
    assert_eq!(found(&airlock, Some("y")).await, Value::Null);
    assert_eq!(found(&airlock, None).await, Value::Null);
    // A project named like the no-project mark is still a project.
    assert_eq!(found(&airlock, Some("")).await, Value::Null);
    // And each keeps its own.
    assert_eq!(found(&airlock, Some("x")).await, "project x");
    assert_eq!(found(&airlock, Some("y")).await, "project y");
    assert_eq!(found(&airlock, None).await, "no project");
    assert_eq!(found(&airlock, Some("")).await, "project ");
}

/// POST an invoke of `shared`'s test-connection with `token`; what
/// `state-mark` found.
async fn found_over_api(api: &Api, token: &str, project: Option<&str>) -> Value {
    let query = project.map_or(String::new(), |p| format!("?project={p}"));
    let resp = api
        .send(
            "POST",
            &format!("/api/v1/connections/shared/invoke/connector/test-connection{query}"),
            Some(token),
            Body::Json(json!({})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let report: Value = serde_json::from_str(resp.json()["message"].as_str().unwrap()).unwrap();
    report["before"].clone()
}

#[tokio::test]
async fn plugin_state_over_the_api_follows_the_tokens_project() {
    let api = Api::start().await;
    add_marking_probe(&api.airlock);
    let x = api.token("x-user", Role::User, Some("x"));
    let y = api.token("y-user", Role::User, Some("y"));
    let anyone = api.token("any-user", Role::User, None);

    assert_eq!(found_over_api(&api, &x, None).await, Value::Null);
    assert_eq!(found_over_api(&api, &y, None).await, Value::Null);
    assert_eq!(found_over_api(&api, &anyone, None).await, Value::Null);
    assert_eq!(found_over_api(&api, &x, None).await, "project x");
    // An unrestricted token acting for x shares x's scope, as it should.
    assert_eq!(found_over_api(&api, &anyone, Some("x")).await, "project x");
    assert_eq!(found_over_api(&api, &y, Some("y")).await, "project y");
    assert_eq!(found_over_api(&api, &anyone, None).await, "no project");
}

/// A completions server answering `answer` to every request.
async fn completions(answer: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(answer)))
        .mount(&server)
        .await;
    server
}

fn add_gpt(airlock: &Airlock, server: &MockServer) {
    crate::service::install(airlock, plugin_path("openai"));
    let base = format!("{}/v1", server.uri());
    airlock
        .add_connection(api_key_connection(
            "gpt",
            "openai",
            &[("base-url", &base), ("model", "gpt-4o-mini")],
            "",
            "",
        ))
        .unwrap();
}

fn turn(message: &str, conversation: Option<&str>, project: Option<&str>) -> ChatInput {
    let mut input = ChatInput::new(message);
    input.conversation = conversation.map(String::from);
    input.project = project.map(String::from);
    input
}

#[tokio::test]
async fn a_conversation_cannot_be_read_listed_continued_or_deleted_for_another_project() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    let server = completions("ok").await;
    add_gpt(&airlock, &server);
    let started = airlock
        .chat("gpt", turn("secret plans of x", None, Some("x")))
        .await
        .unwrap();
    let id = started.conversation_id.as_str();

    for other in [Some("y"), None] {
        let err = airlock
            .chat("gpt", turn("tell me", Some(id), other))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{other:?}: {err}");
    }
    // Nothing was sent for the refused turns.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // Reads for another project (or none) do not find or list it either,
    // and cannot delete it.
    let y = || ProjectFilter::of(Some("y"));
    for other in [y(), ProjectFilter::of(None)] {
        let err = airlock.conversation(id, other.clone()).unwrap_err();
        assert!(err.to_string().contains("not found"), "{other:?}: {err}");
        let listed = airlock.conversations(Some("gpt"), other.clone(), 10);
        assert!(listed.unwrap().is_empty(), "{other:?}");
        let err = airlock.delete_conversation(id, other.clone()).unwrap_err();
        assert!(err.to_string().contains("not found"), "{other:?}: {err}");
    }
    let (record, messages) = airlock
        .conversation(id, ProjectFilter::of(Some("x")))
        .unwrap();
    assert_eq!(record.project.as_deref(), Some("x"));
    assert_eq!(messages[0].content, "secret plans of x");
    let listed = airlock.conversations(None, ProjectFilter::of(Some("x")), 10);
    assert_eq!(listed.unwrap()[0].id, id);
    // The operator's view covers every project.
    let all = airlock.conversations(None, ProjectFilter::Any, 10).unwrap();
    assert_eq!(all.len(), 1);
    // Its own project continues it, with its history.
    airlock
        .chat("gpt", turn("go on", Some(id), Some("x")))
        .await
        .unwrap();
    let sent = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(body["messages"][0]["content"], "secret plans of x");

    // y's conversations are its own too, and x deletes only its own.
    let y_started = airlock
        .chat("gpt", turn("plans of y", None, Some("y")))
        .await
        .unwrap();
    let of_y = airlock.conversations(None, y(), 10).unwrap();
    assert_eq!(of_y.len(), 1);
    assert_eq!(of_y[0].id, y_started.conversation_id);
    airlock
        .delete_conversation(id, ProjectFilter::of(Some("x")))
        .unwrap();
    assert!(airlock.conversation(id, ProjectFilter::Any).is_err());
    assert!(
        airlock
            .conversation(&y_started.conversation_id, y())
            .is_ok()
    );
}

#[tokio::test]
async fn a_project_token_cannot_continue_another_projects_conversation() {
    let api = Api::start().await;
    let server = completions("ok").await;
    add_gpt(&api.airlock, &server);
    let x = api.token("x-user", Role::User, Some("x"));
    let y = api.token("y-user", Role::User, Some("y"));
    let anyone = api.token("any-user", Role::User, None);
    let chat = |token: String, body: Value| {
        let api = &api;
        async move {
            api.send(
                "POST",
                "/api/v1/connections/gpt/chat",
                Some(&token),
                Body::Json(body),
            )
            .await
        }
    };

    let resp = chat(y.clone(), json!({"message": "secret plans of y"})).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let id = resp.json()["conversation_id"].as_str().unwrap().to_string();

    chat(x.clone(), json!({"message": "tell me", "conversation": id}))
        .await
        .assert_error(404, "not_found");
    chat(
        anyone.clone(),
        json!({"message": "tell me", "conversation": id}),
    )
    .await
    .assert_error(404, "not_found");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // y continues it; so does an unrestricted token acting for y.
    let resp = chat(y, json!({"message": "go on", "conversation": id})).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = chat(
        anyone,
        json!({"message": "and then", "conversation": id, "project": "y"}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// Run the `airlock` binary on `dir` off the test runtime (the mock servers
/// keep answering); success, stdout, stderr.
async fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
        .env("CANARY_SECRET", crate::common::CANARY)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = cli(dir, args).await;
    assert!(ok, "airlock {args:?}: {err}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_keeps_state_and_conversations_per_project() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cli_ok(
        d,
        &[
            "plugin",
            "install",
            airlock_test_artifacts::PROBE,
            "--approve",
        ],
    )
    .await;
    cli_ok(
        d,
        &[
            "connection",
            "add",
            "shared",
            "--plugin",
            "probe",
            "--setting",
            "action=state-mark",
            "--setting",
            "key=k",
            "--global",
        ],
    )
    .await;
    let found = |project: Option<&'static str>| async move {
        let mut args = vec!["call", "shared", "connector.test-connection"];
        args.extend(project.map(|p| ["--project", p]).into_iter().flatten());
        let out: Value = serde_json::from_str(&cli_ok(d, &args).await).unwrap();
        let report: Value = serde_json::from_str(out["message"].as_str().unwrap()).unwrap();
        report["before"].clone()
    };
    assert_eq!(found(Some("x")).await, Value::Null);
    assert_eq!(found(Some("y")).await, Value::Null);
    assert_eq!(found(None).await, Value::Null);
    assert_eq!(found(Some("x")).await, "project x");
    assert_eq!(found(None).await, "no project");

    let server = completions("ok").await;
    let base = format!("base-url={}/v1", server.uri());
    cli_ok(
        d,
        &["plugin", "install", plugin_path("openai"), "--approve"],
    )
    .await;
    cli_ok(
        d,
        &[
            "connection",
            "add",
            "gpt",
            "--plugin",
            "openai",
            "--auth",
            "bearer",
            "--setting",
            &base,
            "--setting",
            "model=m",
            "--secret-env",
            "CANARY_SECRET",
            "--global",
        ],
    )
    .await;
    let (ok, _, err) = cli(d, &["chat", "gpt", "plans of x", "--project", "x"]).await;
    assert!(ok, "{err}");
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("conversation: "))
        .expect("the conversation id is printed")
        .to_string();
    for args in [
        vec![
            "chat",
            "gpt",
            "tell me",
            "--conversation",
            &id,
            "--project",
            "y",
        ],
        vec!["chat", "gpt", "tell me", "--conversation", &id],
        vec!["conversation", "show", &id, "--project", "y"],
        vec!["conversation", "show", &id, "--no-project"],
        vec!["conversation", "rm", &id, "--project", "y"],
    ] {
        let (ok, _, err) = cli(d, &args).await;
        assert!(!ok && err.contains("not found"), "{args:?}: {err}");
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let listed = cli_ok(d, &["conversation", "list", "--project", "y", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), json!([]));
    let listed = cli_ok(d, &["conversation", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()[0]["project"],
        "x"
    );
    let shown = cli_ok(d, &["conversation", "show", &id, "--project", "x"]).await;
    assert!(shown.contains("plans of x"), "{shown}");
    cli_ok(
        d,
        &[
            "chat",
            "gpt",
            "go on",
            "--conversation",
            &id,
            "--project",
            "x",
        ],
    )
    .await;
}
