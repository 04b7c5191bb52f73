//! Chat on the host: conversations, the domain system prompt, PII redaction
//! before anything reaches the plugin (with counts in the audit log), the
//! streamed variant, and `airlock chat` through the binary.

use std::process::Command;

use airlock::ServiceError;
use airlock::audit::AuditFilter;
use airlock::service::{ChatEvent, ChatInput, ChatOptions, MessageRole, ProjectFilter};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::CANARY;
use crate::openai::{
    SSE_HEAD, api_key_connection, completion, plugin_path, service, trickle_server, trickled_answer,
};

async fn completions_server(answer: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(answer)))
        .mount(&server)
        .await;
    server
}

fn gpt(base: &str) -> airlock::service::NewConnection {
    api_key_connection(
        "gpt",
        "openai",
        &[("base-url", base), ("model", "gpt-4o-mini")],
        "",
        "",
    )
}

async fn sent_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// One value of every kind the redactor knows, and its placeholder.
const PII: &[(&str, &str)] = &[
    ("ada.lovelace@example.com", "[EMAIL_1]"),
    ("+44 20 7946 0958", "[PHONE_1]"),
    ("10.20.30.40", "[IPV4_1]"),
    ("2001:db8::8a2e:370:7334", "[IPV6_1]"),
    ("4111 1111 1111 1111", "[CARD_1]"),
    (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLXZhbHVlLTEyMw",
        "[JWT_1]",
    ),
    ("Bearer AbC123xYz789TokenValue", "Bearer [BEARER_TOKEN_1]"),
    ("sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2", "[API_KEY_1]"),
    ("ghp_0123456789abcdefghijABCDEFGHIJ012345", "[API_KEY_2]"),
    ("AKIAIOSFODNN7EXAMPLE", "[API_KEY_3]"),
];

fn pii_message() -> String {
    let mut text = String::from("Ticket from Zoë — ");
    for (value, _) in PII {
        text.push_str(value);
        text.push_str(" · ");
    }
    text.push_str("4111 1111 1111 1112 is not a card.");
    text
}

#[tokio::test]
async fn every_pii_kind_reaches_the_server_as_placeholders_only() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = completions_server("Noted.").await;
    airlock
        .add_connection(gpt(&format!("{}/v1", server.uri())))
        .unwrap();
    let answer = airlock
        .chat("gpt", ChatInput::new(pii_message()))
        .await
        .unwrap();
    assert_eq!(answer.content, "Noted.");

    let sent = sent_bodies(&server).await;
    let content = sent[0]["messages"][0]["content"].as_str().unwrap();
    let mut expected = String::from("Ticket from Zoë — ");
    for (_, placeholder) in PII {
        expected.push_str(placeholder);
        expected.push_str(" · ");
    }
    expected.push_str("4111 1111 1111 1112 is not a card.");
    assert_eq!(content, expected);
    let raw =
        String::from_utf8_lossy(&server.received_requests().await.unwrap()[0].body).into_owned();
    for (value, _) in PII {
        let secret_part = value.trim_start_matches("Bearer ");
        assert!(
            !raw.contains(secret_part),
            "{secret_part} reached the server"
        );
    }

    let counts = json!({
        "email": 1, "phone": 1, "ipv4": 1, "ipv6": 1, "card": 1,
        "jwt": 1, "bearer_token": 1, "api_key": 3
    });
    assert_eq!(serde_json::to_value(&answer.redacted).unwrap(), counts);

    // The audit row of the request records the counts, never the values.
    let entries = airlock
        .list_audit(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(entries.len(), 1);
    let detail = entries[0]
        .detail
        .as_deref()
        .expect("chat requests carry a detail");
    let detail: Value = serde_json::from_str(detail).unwrap();
    assert_eq!(detail["chat"]["redaction"], "on");
    assert_eq!(detail["chat"]["redacted"], counts);
    assert_eq!(
        detail["chat"]["conversation"],
        answer.conversation_id.as_str()
    );
    for (value, _) in PII {
        assert!(!entries[0].detail.as_deref().unwrap().contains(value));
    }
    assert!(airlock.verify_audit().unwrap().is_ok());

    // The conversation keeps what the user wrote.
    let (_, messages) = airlock
        .conversation(&answer.conversation_id, ProjectFilter::Any)
        .unwrap();
    assert_eq!(messages[0].content, pii_message());
    assert_eq!(messages[1].role, MessageRole::Assistant);
    assert_eq!(messages[1].model.as_deref(), Some("gpt-4o-mini-2024-07-18"));

    // The same values keep their placeholders on the next turn, where the
    // history is sent again.
    let mut next = ChatInput::new("Mail ada.lovelace@example.com again");
    next.conversation = Some(answer.conversation_id.clone());
    airlock.chat("gpt", next).await.unwrap();
    let sent = sent_bodies(&server).await;
    assert_eq!(sent[1]["messages"][0]["content"], content);
    assert_eq!(sent[1]["messages"][2]["content"], "Mail [EMAIL_1] again");
}

#[tokio::test]
async fn airlock_call_of_chat_complete_is_redacted_too() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = completions_server("ok").await;
    airlock
        .add_connection(gpt(&format!("{}/v1", server.uri())))
        .unwrap();
    // The operation JSON, as `airlock call` takes it.
    let request = json!({
        "model": null,
        "messages": [{"role": "user", "content": "reach me at ada@example.com or 10.1.1.1"}],
        "temperature": null,
        "max_tokens": null,
        "conversation_id": null
    });
    let out = airlock
        .call("gpt", "chat.complete", request, None)
        .await
        .unwrap();
    assert_eq!(out["content"], "ok");
    let sent = sent_bodies(&server).await;
    assert_eq!(
        sent[0]["messages"][0]["content"],
        "reach me at [EMAIL_1] or [IPV4_1]"
    );
    let entries = airlock.list_audit(&AuditFilter::default()).unwrap();
    let detail: Value = serde_json::from_str(entries[0].detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["chat"]["redacted"], json!({"email": 1, "ipv4": 1}));
}

#[tokio::test]
async fn redaction_can_be_switched_off_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = completions_server("ok").await;
    airlock
        .add_connection(gpt(&format!("{}/v1", server.uri())))
        .unwrap();
    assert!(
        airlock.chat_options("gpt").unwrap().redaction,
        "on by default"
    );
    airlock
        .set_chat_options(
            "gpt",
            &ChatOptions {
                redaction: false,
                system_prompt: None,
            },
        )
        .unwrap();
    airlock
        .chat("gpt", ChatInput::new("mail ada@example.com"))
        .await
        .unwrap();
    let sent = sent_bodies(&server).await;
    assert_eq!(sent[0]["messages"][0]["content"], "mail ada@example.com");
    let entries = airlock.list_audit(&AuditFilter::default()).unwrap();
    let detail: Value = serde_json::from_str(entries[0].detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["chat"]["redaction"], "off");
    assert_eq!(detail["chat"]["redacted"], json!({}));
}

#[tokio::test]
async fn the_domain_prompt_leads_every_new_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = completions_server("Restart the pod.").await;
    airlock
        .add_connection(gpt(&format!("{}/v1", server.uri())))
        .unwrap();
    airlock
        .set_chat_options(
            "gpt",
            &ChatOptions {
                redaction: true,
                system_prompt: Some("You are a Kubernetes incident assistant.".into()),
            },
        )
        .unwrap();
    let mut first = ChatInput::new("The pod is crash-looping");
    first.system = Some("Answer in one sentence.".into());
    first.temperature = Some(0.1);
    let first = airlock.chat("gpt", first).await.unwrap();
    let mut second = ChatInput::new("Why?");
    second.conversation = Some(first.conversation_id.clone());
    airlock.chat("gpt", second).await.unwrap();
    // A new conversation starts from the domain prompt again.
    airlock
        .chat("gpt", ChatInput::new("Other topic"))
        .await
        .unwrap();

    let sent = sent_bodies(&server).await;
    assert_eq!(
        sent[0]["messages"],
        json!([
            {"role": "system", "content": "You are a Kubernetes incident assistant."},
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "The pod is crash-looping"}
        ])
    );
    assert_eq!(sent[0]["temperature"], 0.1);
    assert_eq!(
        sent[1]["messages"],
        json!([
            {"role": "system", "content": "You are a Kubernetes incident assistant."},
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "The pod is crash-looping"},
            {"role": "assistant", "content": "Restart the pod."},
            {"role": "user", "content": "Why?"}
        ])
    );
    assert_eq!(
        sent[2]["messages"],
        json!([
            {"role": "system", "content": "You are a Kubernetes incident assistant."},
            {"role": "user", "content": "Other topic"}
        ])
    );
    let listed = airlock
        .conversations(Some("gpt"), ProjectFilter::Any, 10)
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].title, "The pod is crash-looping");
}

#[tokio::test]
async fn bad_turns_are_refused_and_failed_turns_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"message": "upstream overloaded", "type": "server_error"}}),
        ))
        .mount(&server)
        .await;
    airlock.add_connection(gpt(&server.uri())).unwrap();
    let err = airlock
        .chat("gpt", ChatInput::new("hello"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upstream overloaded"), "{err}");
    assert!(
        airlock
            .conversations(None, ProjectFilter::Any, 10)
            .unwrap()
            .is_empty()
    );

    let err = airlock.chat("gpt", ChatInput::new("  ")).await.unwrap_err();
    assert!(
        matches!(&err, ServiceError::Invalid(m) if m.contains("empty")),
        "{err}"
    );
    let err = airlock
        .chat(
            "gpt",
            ChatInput::new("x".repeat(airlock::service::MAX_MESSAGE_BYTES + 1)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Invalid(m) if m.contains("at most")),
        "{err}"
    );
    let mut unknown = ChatInput::new("hi");
    unknown.conversation = Some("no-such-conversation".into());
    let err = airlock.chat("gpt", unknown).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_conversation_stays_with_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = completions_server("ok").await;
    let base = format!("{}/v1", server.uri());
    airlock.add_connection(gpt(&base)).unwrap();
    let mut other = gpt(&base);
    other.name = "other".into();
    airlock.add_connection(other).unwrap();
    let answer = airlock.chat("gpt", ChatInput::new("hi")).await.unwrap();
    let mut elsewhere = ChatInput::new("continue");
    elsewhere.conversation = Some(answer.conversation_id);
    let err = airlock.chat("other", elsewhere).await.unwrap_err();
    assert!(
        err.to_string().contains("belongs to another connection"),
        "{err}"
    );
}

#[tokio::test]
async fn a_streamed_turn_yields_deltas_then_the_stored_answer() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let (base, server) = trickle_server(SSE_HEAD, trickled_answer(true)).await;
    airlock.add_connection(gpt(&base)).unwrap();
    let mut events = airlock
        .chat_stream("gpt", ChatInput::new("greet ada@example.com"))
        .await
        .unwrap();
    let mut text = String::new();
    let mut done = None;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            ChatEvent::Delta(d) => {
                assert!(done.is_none());
                text.push_str(&d);
            }
            ChatEvent::Done(answer) => done = Some(answer),
        }
    }
    let answer = done.expect("a Done event ends the stream");
    assert_eq!(text, "Grüße, 世界! 🎉");
    assert_eq!(answer.content, text);
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    assert_eq!(answer.usage.unwrap().total_tokens, 15);
    let (_, messages) = airlock
        .conversation(&answer.conversation_id, ProjectFilter::Any)
        .unwrap();
    assert_eq!(messages[0].content, "greet ada@example.com");
    assert_eq!(messages[1].content, "Grüße, 世界! 🎉");
    let raw = server.await.unwrap();
    assert!(
        raw.contains("greet [EMAIL_1]") && !raw.contains("ada@example.com"),
        "{raw}"
    );

    // A stream that breaks stores nothing.
    let (base, _server) = trickle_server(SSE_HEAD, trickled_answer(false)).await;
    let mut broken = gpt(&base);
    broken.name = "broken".into();
    airlock.add_connection(broken).unwrap();
    let events = airlock
        .chat_stream("broken", ChatInput::new("hi"))
        .await
        .unwrap();
    use futures::StreamExt as _;
    let items: Vec<_> = events.into_stream().collect().await;
    assert!(matches!(items.last(), Some(Err(_))), "{items:?}");
    assert_eq!(
        airlock
            .conversations(Some("broken"), ProjectFilter::Any, 10)
            .unwrap()
            .len(),
        0
    );
}

fn airlock_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
        .env("CANARY_SECRET", CANARY)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn airlock_chat_prints_the_answer_and_the_conversation_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = completions_server("Check the load balancer.").await;
    let base = format!("{}/v1", server.uri());
    let d = dir.path().to_path_buf();
    let run = move |args: Vec<String>| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            airlock_cli(&d, &args)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (ok, _, err) = run(args(&[
        "plugin",
        "install",
        plugin_path("openai"),
        "--approve",
    ]))
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (ok, _, err) = run(args(&[
        "connection",
        "add",
        "gpt",
        "--plugin",
        "openai",
        "--auth",
        "api-key",
        "--setting",
        &format!("base-url={base}"),
        "--setting",
        "model=gpt-4o-mini",
        "--secret-env",
        "CANARY_SECRET",
        "--global",
    ]))
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (ok, out, err) = run(args(&[
        "connection",
        "chat-options",
        "gpt",
        "--system-prompt",
        "You are an SRE.",
    ]))
    .await
    .unwrap();
    assert!(ok && out.contains("redaction:     on"), "{out}{err}");

    let (ok, out, err) = run(args(&["chat", "gpt", "Users see 502s from 10.0.0.7"]))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "Check the load balancer.\n");
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("conversation: "))
        .expect("the conversation id is printed")
        .to_string();
    let (ok, out, err) = run(args(&[
        "chat",
        "gpt",
        "And then?",
        "--conversation",
        &id,
        "--json",
    ]))
    .await
    .unwrap();
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["conversation_id"], id.as_str());
    assert_eq!(answer["redacted"], json!({"ipv4": 1}));

    let sent = sent_bodies(&server).await;
    assert_eq!(
        sent[1]["messages"],
        json!([
            {"role": "system", "content": "You are an SRE."},
            {"role": "user", "content": "Users see 502s from [IPV4_1]"},
            {"role": "assistant", "content": "Check the load balancer."},
            {"role": "user", "content": "And then?"}
        ])
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests[0].headers.get("authorization").unwrap(),
        &format!("Bearer {CANARY}")
    );

    let (ok, out, _) = run(args(&["conversation", "show", &id])).await.unwrap();
    assert!(ok && out.contains("Users see 502s from 10.0.0.7"), "{out}");
    let (ok, out, _) = run(args(&["conversation", "list"])).await.unwrap();
    assert!(ok && out.contains(&id), "{out}");
    let (ok, _, err) = run(args(&["chat", "gpt", "x", "--conversation", "nope"]))
        .await
        .unwrap();
    assert!(
        !ok && err.contains("conversation `nope` not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn airlock_chat_stream_prints_tokens_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _server) = trickle_server(SSE_HEAD, trickled_answer(true)).await;
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let (ok, _, err) = airlock_cli(
            &d,
            &["plugin", "install", plugin_path("openai"), "--approve"],
        );
        assert!(ok, "{err}");
        let (ok, _, err) = airlock_cli(
            &d,
            &[
                "connection",
                "add",
                "gpt",
                "--plugin",
                "openai",
                "--auth",
                "bearer",
                "--setting",
                &format!("base-url={base}"),
                "--setting",
                "model=m",
                "--secret-env",
                "CANARY_SECRET",
                "--global",
            ],
        );
        assert!(ok, "{err}");
        airlock_cli(&d, &["chat", "gpt", "hello", "--stream"])
    })
    .await
    .unwrap();
    let (ok, stdout, stderr) = out;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "Grüße, 世界! 🎉\n");
    assert!(stderr.contains("conversation: "), "{stderr}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
}
