//! The custom-rest plugin through the service: the gateway preset (single
//! prompt, server-side sessions kept per conversation), a custom JSON-pointer
//! mapping, gateway failures, and mappings refused when saved.

use std::sync::atomic::{AtomicU32, Ordering};

use airlock::ServiceError;
use airlock::runtime::types::PluginError;
use airlock::service::{ChatEvent, ChatInput, ChatOptions, ProjectFilter};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::CANARY;
use crate::openai::{api_key_connection, service};

const SYSTEM: &str = "You are an SRE assistant.";

/// A gateway shaped like the preset: a request without `sessionId` starts
/// session `sess-<n>`; one with it continues that session.
async fn gateway() -> MockServer {
    let server = MockServer::start().await;
    let sessions = AtomicU32::new(0);
    Mock::given(method("POST"))
        .and(path("/app-gateway/api/v2/chat"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let (session, initial) = match body.get("sessionId").and_then(Value::as_str) {
                Some(s) => (s.to_string(), false),
                None => (
                    format!("sess-{}", sessions.fetch_add(1, Ordering::SeqCst) + 1),
                    true,
                ),
            };
            ResponseTemplate::new(200).set_body_json(json!({
                "status": true,
                "sessionId": session,
                "msg": format!("answer to: {}", body["prompt"].as_str().unwrap_or("")),
                "initialPrompt": initial
            }))
        })
        .mount(&server)
        .await;
    server
}

fn gateway_connection(server: &MockServer) -> airlock::service::NewConnection {
    let base = format!("{}/app-gateway", server.uri());
    api_key_connection(
        "genai",
        "custom-rest",
        &[
            ("base-url", &base),
            ("endpoint-path", "/api/v2/chat"),
            ("model", "VertexGemini"),
            ("user-id", "ada@example.com"),
            ("client-header", "X-msi-genai-client: airlock-tests"),
            ("auth-header", "x-msi-genai-api-key"),
            ("auth-prefix", ""),
        ],
        "",
        "",
    )
}

fn bodies(requests: &[Request]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn turn(message: &str, conversation: Option<&str>) -> ChatInput {
    let mut input = ChatInput::new(message);
    input.conversation = conversation.map(String::from);
    input
}

#[tokio::test]
async fn the_gateway_preset_keeps_one_session_per_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "custom-rest");
    let server = gateway().await;
    airlock.add_connection(gateway_connection(&server)).unwrap();
    airlock
        .set_chat_options(
            "genai",
            &ChatOptions {
                redaction: true,
                system_prompt: Some(SYSTEM.into()),
            },
        )
        .unwrap();

    let first = airlock
        .chat("genai", turn("Why is the checkout API slow?", None))
        .await
        .unwrap();
    assert_eq!(first.content, "answer to: Why is the checkout API slow?");
    let a = first.conversation_id.clone();
    let second = airlock
        .chat("genai", turn("And the fix?", Some(&a)))
        .await
        .unwrap();
    assert_eq!(second.conversation_id, a);
    let other = airlock
        .chat("genai", turn("Unrelated question", None))
        .await
        .unwrap();
    assert_ne!(other.conversation_id, a);
    airlock
        .chat("genai", turn("Anything else?", Some(&a)))
        .await
        .unwrap();

    let requests = server.received_requests().await.unwrap();
    for r in &requests {
        assert_eq!(r.headers.get("x-msi-genai-api-key").unwrap(), CANARY);
        assert_eq!(
            r.headers.get("x-msi-genai-client").unwrap(),
            "airlock-tests"
        );
        assert!(r.headers.get("authorization").is_none());
    }
    let sent = bodies(&requests);
    // First turn: the whole preset, no session yet.
    assert_eq!(
        sent[0],
        json!({
            "prompt": "Why is the checkout API slow?",
            "system": SYSTEM,
            "model": "VertexGemini",
            "userId": "ada@example.com"
        })
    );
    // Second turn of the same conversation: its session, the latest message only.
    assert_eq!(sent[1]["sessionId"], "sess-1");
    assert_eq!(sent[1]["prompt"], "And the fix?");
    assert_eq!(sent[1]["system"], SYSTEM);
    // Another conversation does not share it.
    assert!(sent[2].get("sessionId").is_none(), "{}", sent[2]);
    assert_eq!(sent[3]["sessionId"], "sess-1");

    // Deleting the conversation deletes its session.
    airlock.delete_conversation(&a, ProjectFilter::Any).unwrap();
    let err = airlock
        .chat("genai", turn("still there?", Some(&a)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    airlock
        .chat("genai", turn("next", Some(&other.conversation_id)))
        .await
        .unwrap();
    let sent = bodies(&server.received_requests().await.unwrap());
    assert_eq!(sent[4]["sessionId"], "sess-2");
}

async fn failing_gateway(
    template: ResponseTemplate,
) -> (ServiceError, airlock::Airlock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "custom-rest");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(template)
        .mount(&server)
        .await;
    let base = format!("{}/app-gateway", server.uri());
    airlock
        .add_connection(api_key_connection(
            "genai",
            "custom-rest",
            &[("base-url", &base)],
            "x-msi-genai-api-key",
            "",
        ))
        .unwrap();
    let err = airlock
        .chat("genai", turn("hello", None))
        .await
        .unwrap_err();
    // Server is dropped here; what matters is the error and what was stored.
    drop(server);
    (err, airlock, dir)
}

fn plugin_error(err: &ServiceError) -> &PluginError {
    match err {
        ServiceError::Call(call) => crate::common::plugin_error(call),
        other => panic!("expected a plugin error, got {other}"),
    }
}

#[tokio::test]
async fn gateway_failures_carry_the_gateways_message_and_store_nothing() {
    let (err, airlock, _dir) = failing_gateway(ResponseTemplate::new(200).set_body_json(json!({
        "status": false,
        "msg": "Model VertexGemini is not enabled for this API key"
    })))
    .await;
    match plugin_error(&err) {
        PluginError::Upstream(u) => assert!(
            u.message.contains("status false")
                && u.message.contains("not enabled for this API key"),
            "{}",
            u.message
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        airlock
            .conversations(None, ProjectFilter::Any, 10)
            .unwrap()
            .is_empty()
    );

    let (err, _, _dir) = failing_gateway(
        ResponseTemplate::new(200).set_body_json(json!({"status": true, "sessionId": "s"})),
    )
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.message.contains("no text at /msg")),
        "{err}"
    );

    let (err, _, _dir) = failing_gateway(
        ResponseTemplate::new(403)
            .set_body_json(json!({"status": false, "msg": "Invalid API key"})),
    )
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Forbidden(m) if m == "HTTP 403: Invalid API key"),
        "{err}"
    );

    let (err, _, _dir) = failing_gateway(
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/html")
            .set_body_string("<html>gateway timeout</html>"),
    )
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.message.contains("malformed JSON")),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_header_cannot_forge_the_credential_header() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "custom-rest");
    let server = gateway().await;
    let mut forged = gateway_connection(&server);
    forged
        .settings
        .insert("client-header".into(), "X-MSI-GenAI-API-Key: forged".into());
    airlock.add_connection(forged).unwrap();
    let err = airlock
        .chat("genai", turn("hello", None))
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::EgressDenied(m) if m.to_ascii_lowercase().contains("`x-msi-genai-api-key`")),
        "{err}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn another_format_works_through_a_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "custom-rest");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/generate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "result": {"outputs": [{"text": "Mapped answer"}]},
            "conversation": {"id": "remote-7"}
        })))
        .mount(&server)
        .await;
    airlock
        .add_connection(api_key_connection(
            "mapped",
            "custom-rest",
            &[
                ("base-url", &server.uri()),
                ("endpoint-path", "/v1/generate"),
                ("model", "engine-2"),
                (
                    "request-mapping",
                    r#"{"prompt": "/input/text", "system": "/input/instructions", "model": "/engine", "session": "/conversation/id"}"#,
                ),
                (
                    "response-mapping",
                    r#"{"answer": "/result/outputs/0/text", "session": "/conversation/id", "status": "/ok", "error": "/problem/detail"}"#,
                ),
            ],
            "x-api-key",
            "",
        ))
        .unwrap();
    let mut input = turn("Summarise the outage", None);
    input.system = Some("Two sentences.".into());
    let first = airlock.chat("mapped", input).await.unwrap();
    assert_eq!(first.content, "Mapped answer");
    airlock
        .chat("mapped", turn("Shorter", Some(&first.conversation_id)))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].headers.get("x-api-key").unwrap(), CANARY);
    let sent = bodies(&requests);
    assert_eq!(
        sent[0],
        json!({
            "input": {"text": "Summarise the outage", "instructions": "Two sentences."},
            "engine": "engine-2"
        })
    );
    assert_eq!(
        sent[1],
        json!({
            "input": {"text": "Shorter", "instructions": "Two sentences."},
            "engine": "engine-2",
            "conversation": {"id": "remote-7"}
        })
    );
}

#[tokio::test]
async fn invalid_mappings_are_refused_when_the_connection_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "custom-rest");
    for (setting, value, needle) in [
        ("request-mapping", "not json", "JSON object"),
        ("request-mapping", r#"["/prompt"]"#, "JSON object"),
        (
            "request-mapping",
            r#"{"system": "/system"}"#,
            "required entry `prompt`",
        ),
        (
            "request-mapping",
            r#"{"prompt": "prompt"}"#,
            "must start with `/`",
        ),
        (
            "request-mapping",
            r#"{"prompt": "/p", "temperature": "/t"}"#,
            "`temperature` is not one of",
        ),
        (
            "request-mapping",
            r#"{"prompt": "/a", "system": "/a/b"}"#,
            "overlap",
        ),
        ("request-mapping", r#"{"prompt": "/a~9"}"#, "`~` must be"),
        (
            "response-mapping",
            r#"{"session": "/sessionId"}"#,
            "required entry `answer`",
        ),
        ("response-mapping", r#"{"answer": 5}"#, "pointer string"),
    ] {
        let err = airlock
            .add_connection(api_key_connection(
                "bad",
                "custom-rest",
                &[("base-url", "https://gw.example"), (setting, value)],
                "x-api-key",
                "",
            ))
            .unwrap_err();
        assert!(
            matches!(&err, ServiceError::Settings(_)) && err.to_string().contains(needle),
            "{setting} = {value}: {err}"
        );
    }
    assert!(airlock.connections(&Default::default()).unwrap().is_empty());
}

#[tokio::test]
async fn a_plugin_that_does_not_stream_answers_whole_through_chat_stream() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "custom-rest");
    let server = gateway().await;
    airlock.add_connection(gateway_connection(&server)).unwrap();
    let mut events = airlock
        .chat_stream("genai", turn("stream please", None))
        .await
        .unwrap();
    let conversation = events.conversation_id().unwrap().to_string();
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        seen.push(event.unwrap());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], ChatEvent::Delta("answer to: stream please".into()));
    let ChatEvent::Done(answer) = &seen[1] else {
        panic!("{seen:?}")
    };
    assert_eq!(answer.conversation_id, conversation);
    let (_, messages) = airlock
        .conversation(&conversation, ProjectFilter::Any)
        .unwrap();
    assert_eq!(messages.last().unwrap().content, "answer to: stream please");
}
