//! The openai plugin through the real host: wiremock shaped like the chat
//! completions API, a hand-written TCP server that trickles server-sent
//! events in chosen pieces, and connections made by the service so the
//! auth header settings are honoured as an operator would set them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use airlock::runtime::types::{ChatMessage, ChatRequest, PluginError, Role};
use airlock::service::Scope;
use airlock::service::{AuthInput, NewConnection};
use airlock::{Connection, Plugin, ServiceError};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{CANARY, Host, bearer_connection, host, plugin_error};

pub fn plugin_path(name: &str) -> &'static str {
    airlock_test_artifacts::PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("plugins/{name} is built"))
}

fn openai(host: &Host) -> Arc<Plugin> {
    host.plugin("openai")
}

fn connection(base: &str) -> Connection {
    bearer_connection(base).with_setting("model", "gpt-4o-mini")
}

pub fn message(role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.into(),
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        model: None,
        messages: vec![
            message(Role::System, "You are terse."),
            message(Role::User, "Hello?"),
            message(Role::Assistant, "Hi."),
            message(Role::User, "Name a colour"),
        ],
        temperature: Some(0.25),
        max_tokens: Some(32),
        conversation_id: Some("conv-1".into()),
    }
}

pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 21, "completion_tokens": 1, "total_tokens": 22}
    })
}

/// `chat.complete` input for `airlock call`: the operation JSON contract,
/// roles spelt as the WIT names them.
fn hi_request() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}]})
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "exactly one request");
    requests.remove(0)
}

#[tokio::test]
async fn complete_sends_the_chat_completions_request_field_by_field() {
    let host = host();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Teal.")))
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let answer = host
        .runtime
        .complete(&openai(&host), &connection(&base), request())
        .await
        .unwrap();
    assert_eq!(answer.content, "Teal.");
    assert_eq!(answer.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    let usage = answer.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (21, 1, 22)
    );

    let sent = only_request(&server).await;
    assert_eq!(
        sent.headers.get("authorization").unwrap(),
        &format!("Bearer {CANARY}")
    );
    assert_eq!(
        sent.headers.get("content-type").unwrap(),
        "application/json"
    );
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello?"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Name a colour"}
        ])
    );
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(body["max_tokens"], 32);
    assert!(body.get("stream").is_none(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 4, "nothing else: {body}");

    // A model named by the request wins over the connection's.
    let mut named = request();
    named.model = Some("o3-mini".into());
    host.runtime
        .complete(&openai(&host), &connection(&base), named)
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body["model"], "o3-mini");
}

#[tokio::test]
async fn without_any_model_nothing_is_sent() {
    let host = host();
    let server = MockServer::start().await;
    let err = host
        .runtime
        .complete(&openai(&host), &bearer_connection(&server.uri()), request())
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::InvalidInput(m) if m.contains("`model` setting")),
        "{err}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn list_models_and_test_connection() {
    let host = host();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [
                {"id": "gpt-4o-mini", "object": "model", "owned_by": "system"},
                {"id": "llama3", "object": "model"}
            ]
        })))
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let models = host
        .runtime
        .list_models(&openai(&host), &connection(&base))
        .await
        .unwrap();
    let ids: Vec<(&str, Option<&str>)> = models
        .iter()
        .map(|m| (m.id.as_str(), m.owned_by.as_deref()))
        .collect();
    assert_eq!(ids, [("gpt-4o-mini", Some("system")), ("llama3", None)]);
    let report = host
        .runtime
        .test_connection(&openai(&host), &connection(&base))
        .await
        .unwrap();
    assert_eq!(report.message, "the server lists 2 models");
    assert!(
        report
            .details
            .contains(&("model".to_string(), "gpt-4o-mini (listed)".to_string())),
        "{:?}",
        report.details
    );
}

#[tokio::test]
async fn test_connection_without_a_model_list_sends_a_one_token_completion() {
    let host = host();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("p")))
        .mount(&server)
        .await;
    // GET /models: wiremock answers 404 for what nothing matches.
    let report = host
        .runtime
        .test_connection(&openai(&host), &connection(&server.uri()))
        .await
        .unwrap();
    assert!(
        report.message.contains("one-token completion"),
        "{}",
        report.message
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body["max_tokens"], 1);
    assert_eq!(body["model"], "gpt-4o-mini");
}

async fn failing(template: ResponseTemplate) -> (airlock::CallError, MockServer) {
    let host = host();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(template)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .complete(&openai(&host), &connection(&server.uri()), request())
        .await
        .unwrap_err();
    (err, server)
}

fn openai_error(message: &str, kind: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[tokio::test]
async fn upstream_errors_are_typed_with_the_servers_message() {
    let (err, _) = failing(ResponseTemplate::new(401).set_body_json(openai_error(
        "Incorrect API key provided: sk-****",
        "invalid_request_error",
        "invalid_api_key",
    )))
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Unauthorized(m) if m.contains("Incorrect API key")),
        "{err}"
    );

    let (err, _) = failing(ResponseTemplate::new(403).set_body_json(openai_error(
        "You are not allowed to sample from this model",
        "invalid_request_error",
        "model_not_allowed",
    )))
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Forbidden(m) if m.contains("not allowed")),
        "{err}"
    );

    let (err, _) = failing(ResponseTemplate::new(404).set_body_json(openai_error(
        "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )))
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::NotFound(m) if m.contains("`gpt-9` does not exist")),
        "{err}"
    );

    // POST is not idempotent: the host does not resend, the plugin reports
    // when to come back.
    let (err, server) = failing(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "7")
            .set_body_json(openai_error(
                "Rate limit reached for gpt-4o-mini",
                "requests",
                "rate_limit_exceeded",
            )),
    )
    .await;
    match plugin_error(&err) {
        PluginError::RateLimited(r) => {
            assert_eq!(r.retry_after_secs, Some(7));
            assert!(r.message.contains("Rate limit reached"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let (err, _) = failing(ResponseTemplate::new(500).set_body_json(openai_error(
        "The server had an error while processing your request.",
        "server_error",
        "",
    )))
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.status == 500 && u.message.contains("server had an error")),
        "{err}"
    );

    let (err, _) = failing(
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string("{\"choices\": [ {\"message\": "),
    )
    .await;
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.status == 200 && u.message.contains("malformed")),
        "{err}"
    );
}

// ---- streaming -------------------------------------------------------------

/// A one-shot HTTP/1.1 server that answers with `head` and then writes
/// `pieces` one at a time, flushing and pausing between them, then closes.
/// Resolves to the raw request it received.
pub async fn trickle_server(
    head: &str,
    pieces: Vec<Vec<u8>>,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let head = head.to_string();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = crate::common::read_http_request(&mut socket).await;
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.flush().await.unwrap();
        for piece in pieces {
            tokio::time::sleep(Duration::from_millis(40)).await;
            socket.write_all(&piece).await.unwrap();
            socket.flush().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        socket.shutdown().await.unwrap();
        request
    });
    (base, task)
}

pub const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            cache-control: no-cache\r\nconnection: close\r\n\r\n";

fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

/// An SSE answer "Grüße, 世界! 🎉" cut into pieces that split events, lines,
/// a `\r\n`, and multi-byte characters.
pub fn trickled_answer(with_done: bool) -> Vec<Vec<u8>> {
    let mut stream = String::from(": keep-alive comment\r\n\r\n");
    stream.push_str(&format!(
        "data: {}\r\n\r\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    ));
    for part in ["Grüße", ", 世界", "! 🎉"] {
        stream.push_str(&chunk(part));
    }
    stream.push_str(&format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}})
    ));
    if with_done {
        stream.push_str("data: [DONE]\n\n");
    }
    let bytes = stream.into_bytes();
    // Cut points inside `ü`, `世`, `🎉`, a `\r\n` and mid-line.
    let find = |needle: &str, offset: usize| {
        let at = String::from_utf8_lossy(&bytes)
            .find(needle)
            .expect("needle present");
        // Byte offset of `needle` in the lossless string is the same.
        at + offset
    };
    let mut cuts = vec![
        find("\r\n\r\n", 1), // between \r and \n
        find("Grü", 3),      // inside ü (2 bytes)
        find("世界", 1),     // inside 世 (3 bytes)
        find("🎉", 2),       // inside 🎉 (4 bytes)
        find("finish_reason\":\"stop", 5),
    ];
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(bytes[start..cut].to_vec());
        start = cut;
    }
    pieces.push(bytes[start..].to_vec());
    pieces
}

#[tokio::test]
async fn streaming_delivers_deltas_from_pieces_that_split_events_and_characters() {
    let host = host();
    let (base, server) = trickle_server(SSE_HEAD, trickled_answer(true)).await;
    let mut stream = host
        .runtime
        .chat_stream(&openai(&host), &connection(&base), request())
        .await
        .unwrap();
    let mut deltas = Vec::new();
    while let Some(delta) = stream.next().await.unwrap() {
        deltas.push(delta);
    }
    let text: String = deltas.iter().map(|d| d.content.as_str()).collect();
    assert_eq!(text, "Grüße, 世界! 🎉");
    assert!(
        deltas.iter().filter(|d| !d.content.is_empty()).count() >= 2,
        "delivered as it arrived, not all at the end: {deltas:?}"
    );
    let last = deltas.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    assert_eq!(last.usage.unwrap().total_tokens, 15);
    assert!(stream.next().await.unwrap().is_none(), "ended stays ended");

    let raw = server.await.unwrap();
    assert!(raw.starts_with("POST /chat/completions HTTP/1.1"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains(&format!(
            "authorization: bearer {}",
            CANARY.to_ascii_lowercase()
        )),
        "{raw}"
    );
    let body: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_an_error_after_its_deltas() {
    let host = host();
    let (base, _server) = trickle_server(SSE_HEAD, trickled_answer(false)).await;
    let mut stream = host
        .runtime
        .chat_stream(&openai(&host), &connection(&base), request())
        .await
        .unwrap();
    let mut text = String::new();
    let err = loop {
        match stream.next().await {
            Ok(Some(d)) => text.push_str(&d.content),
            Ok(None) => panic!("a stream without [DONE] must not end cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(text, "Grüße, 世界! 🎉");
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.message.contains("[DONE]")),
        "{err}"
    );

    // Cut off in the middle of an event.
    let (base, _server) = trickle_server(
        SSE_HEAD,
        vec![
            chunk("partial").into_bytes(),
            b"data: {\"choices\": [{\"del".to_vec(),
        ],
    )
    .await;
    let mut stream = host
        .runtime
        .chat_stream(&openai(&host), &connection(&base), request())
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().content, "partial");
    let err = stream.next().await.unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.message.contains("middle of an event")),
        "{err}"
    );
}

#[tokio::test]
async fn an_endless_stream_is_cut_at_the_response_body_limit() {
    let host = host();
    // 64 pieces of ~8 KiB of deltas: past the test limit of 256 KiB.
    let piece = chunk(&"x".repeat(8000)).into_bytes();
    let (base, _server) = trickle_server(SSE_HEAD, vec![piece; 64]).await;
    let mut stream = host
        .runtime
        .chat_stream(&openai(&host), &connection(&base), request())
        .await
        .unwrap();
    let mut received = 0;
    let err = loop {
        match stream.next().await {
            Ok(Some(d)) => received += d.content.len(),
            Ok(None) => panic!("the stream must not end cleanly"),
            Err(e) => break e,
        }
    };
    assert!(received < 256 << 10, "{received}");
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(u) if u.message.contains("body size exceeds limit")),
        "{err}"
    );
    host.assert_still_serving().await;
}

#[tokio::test]
async fn a_refused_stream_is_a_typed_error_at_open() {
    let host = host();
    let (base, _server) = trickle_server(
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
        vec![
            openai_error(
                "The model `nope` does not exist",
                "invalid_request_error",
                "model_not_found",
            )
            .to_string()
            .into_bytes(),
        ],
    )
    .await;
    let err = host
        .runtime
        .chat_stream(&openai(&host), &connection(&base), request())
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::NotFound(m) if m.contains("`nope`")),
        "{err}"
    );
}

// ---- connections made by the service ------------------------------------------

pub fn service(dir: &std::path::Path, plugin: &str) -> airlock::Airlock {
    let airlock = crate::service::open(dir);
    crate::service::install(&airlock, plugin_path(plugin));
    airlock
}

pub fn api_key_connection(
    name: &str,
    plugin: &str,
    settings: &[(&str, &str)],
    header: &str,
    prefix: &str,
) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: plugin.into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        auth: AuthInput::ApiKey {
            header: header.into(),
            prefix: Some(prefix.into()),
            key: SecretString::from(CANARY),
        },
        scope: Scope::Global,
    }
}

#[tokio::test]
async fn azure_style_api_key_header_with_an_empty_prefix_and_api_version() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt4o/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .mount(&server)
        .await;
    let base = format!("{}/openai/deployments/gpt4o", server.uri());
    // The header and prefix come from the plugin's settings: no --header.
    let record = airlock
        .add_connection(api_key_connection(
            "azure",
            "openai",
            &[
                ("base-url", &base),
                ("auth-header", "api-key"),
                ("auth-prefix", ""),
                ("api-version", "2024-10-21"),
            ],
            "",
            "",
        ))
        .unwrap();
    assert_eq!(record.auth_config.header.as_deref(), Some("api-key"));
    assert_eq!(record.auth_config.prefix.as_deref(), Some(""));
    let answer = airlock
        .call("azure", "chat.complete", hi_request(), None)
        .await
        .unwrap();
    assert_eq!(answer["content"], "ok");
    let sent = only_request(&server).await;
    assert_eq!(sent.headers.get("api-key").unwrap(), CANARY, "no prefix");
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(sent.url.query(), Some("api-version=2024-10-21"));
    // The deployment in the URL picks the model: none is sent.
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert!(body.get("model").is_none(), "{body}");
}

#[tokio::test]
async fn the_default_header_is_authorization_bearer_and_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = service(dir.path(), "openai");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let record = airlock
        .add_connection(api_key_connection(
            "default",
            "openai",
            &[("base-url", &base), ("model", "gpt-4o-mini")],
            "",
            "",
        ))
        .unwrap();
    assert_eq!(record.settings["auth-header"], "Authorization");
    assert_eq!(record.settings["auth-prefix"], "Bearer ");
    airlock
        .call("default", "chat.complete", hi_request(), None)
        .await
        .unwrap();
    let sent = only_request(&server).await;
    assert_eq!(
        sent.headers.get("authorization").unwrap(),
        &format!("Bearer {CANARY}")
    );

    // A header named with the credential is written into the settings...
    let record = airlock
        .add_connection(api_key_connection(
            "named",
            "openai",
            &[("base-url", &base)],
            "x-api-key",
            "",
        ))
        .unwrap();
    assert_eq!(record.settings["auth-header"], "x-api-key");
    assert_eq!(record.settings["auth-prefix"], "");
    // ...and may not contradict them.
    let err = airlock
        .add_connection(api_key_connection(
            "conflict",
            "openai",
            &[("base-url", &base), ("auth-header", "api-key")],
            "x-api-key",
            "",
        ))
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Invalid(m) if m.contains("disagree")),
        "{err}"
    );
    let err = airlock
        .add_connection(api_key_connection(
            "reserved",
            "openai",
            &[("base-url", &base), ("auth-header", "cookie")],
            "",
            "",
        ))
        .unwrap_err();
    assert!(err.to_string().contains("cannot carry an API key"), "{err}");
    assert_eq!(
        airlock
            .connections(&Default::default())
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["default", "named"]
    );
}

/// A host whose plugin calls get `wall_clock` and whose streams get `idle`
/// between deltas and `total` in all.
fn stream_host(wall_clock: Duration, idle: Duration, total: Duration) -> Host {
    crate::common::host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        airlock::Limits {
            wall_clock,
            stream_idle: idle,
            stream_total: total,
            ..crate::common::test_limits()
        },
    )
}

/// The trickled answer streamed by a host with these limits; the host and
/// the server are returned to live as long as the stream.
async fn trickled_stream(
    wall_clock: Duration,
    idle: Duration,
    total: Duration,
) -> (
    airlock::runtime::ChatStream,
    Host,
    tokio::task::JoinHandle<String>,
) {
    let host = stream_host(wall_clock, idle, total);
    let (base, server) = trickle_server(SSE_HEAD, trickled_answer(true)).await;
    let stream = host
        .runtime
        .chat_stream(&openai(&host), &connection(&base), request())
        .await
        .unwrap();
    (stream, host, server)
}

async fn collect(
    stream: &mut airlock::runtime::ChatStream,
) -> (String, Option<airlock::CallError>) {
    let mut text = String::new();
    loop {
        match stream.next().await {
            Ok(Some(delta)) => text.push_str(&delta.content),
            Ok(None) => return (text, None),
            Err(e) => return (text, Some(e)),
        }
    }
}

#[tokio::test]
async fn a_stream_outlives_the_call_deadline_but_not_a_silence_or_its_total_limit() {
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    // Pieces come every 40 ms for about 300 ms: longer than the 150 ms call
    // deadline, and that is fine for a stream that keeps talking.
    let (mut stream, _host, _server) = trickled_stream(ms(150), secs(2), secs(10)).await;
    let (text, error) = collect(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, "Grüße, 世界! 🎉");

    // A silence longer than the idle limit ends it, naming the limit.
    let (mut stream, _host, _server) = trickled_stream(secs(5), ms(15), secs(10)).await;
    let (_, error) = collect(&mut stream).await;
    let error = error.expect("the idle limit ends the stream").to_string();
    assert!(error.contains("without a delta"), "{error}");
    assert!(error.contains("openai"), "{error}");
    assert!(stream.next().await.unwrap().is_none(), "ended stays ended");

    // So does the total limit, after the deltas that made it in time.
    let (mut stream, _host, _server) = trickled_stream(secs(5), secs(2), ms(100)).await;
    let (text, error) = collect(&mut stream).await;
    let error = error.expect("the total limit ends the stream").to_string();
    assert!(error.contains("for the whole stream"), "{error}");
    assert!(text.len() < "Grüße, 世界! 🎉".len(), "{text}");
}
