//! airlock AI provider for OpenAI and OpenAI-compatible servers (local
//! model servers, gateways, Azure OpenAI).
//!
//! Runs as a sandboxed component (world `ai_provider`: exports `connector`
//! and `chat`). The host injects the API key in the header named by the
//! connection's `auth-header` setting, after its `auth-prefix` (defaults
//! `Authorization` and `Bearer `; Azure uses `api-key` with no prefix). This
//! plugin never sees the key and never sets that header.
//!
//! # Settings
//!
//! | setting         | default             | meaning                                              |
//! |-----------------|---------------------|------------------------------------------------------|
//! | `base-url`      | (required)          | API root, e.g. `https://api.openai.com/v1`           |
//! | `endpoint-path` | `/chat/completions` | chat endpoint below `base-url` (empty: `base-url` itself) |
//! | `models-path`   | `/models`           | model list below `base-url`                          |
//! | `model`         |                     | model when a request names none (optional with `api-version`: Azure deployments pick it) |
//! | `api-version`   |                     | `?api-version=` on every request (Azure)             |
//! | `auth-header`   | `Authorization`     | read by the host, not the plugin                     |
//! | `auth-prefix`   | `Bearer `           | read by the host, not the plugin                     |
//!
//! # Operations
//!
//! | operation               | request                                                      |
//! |-------------------------|--------------------------------------------------------------|
//! | `chat.complete`         | `POST {base}{endpoint-path}` with `model`, `messages`, `temperature`, `max_tokens` |
//! | `chat.complete-stream`  | the same with `"stream": true`, read as server-sent events   |
//! | `chat.list-models`      | `GET {base}{models-path}`                                    |
//! | `test-connection`       | the model list; when the server has none (404), a one-token completion with the connection's model (or, with `api-version`, the deployment's) |
//!
//! Streaming: events are parsed incrementally (`data:` lines, multi-line
//! events, comments, CR/LF line ends, pieces split anywhere, even inside a
//! UTF-8 character); `data: [DONE]` ends the answer; a stream that ends
//! before it is an `upstream` error. A server that ignores `stream: true`
//! and answers with one JSON document yields that answer as one delta.
//!
//! Errors: the SDK's status mapping (401 `unauthorized`, 403 `forbidden`,
//! 404 `not-found` — e.g. an unknown model —, 429 `rate-limited` with
//! `Retry-After`, 5xx `upstream`) with the server's `error.message`; a body
//! that is not a chat completion is `upstream` with the status.

mod api;
mod stream;
mod wire;

use airlock_sdk::http::Request;
use airlock_sdk::types::{
    ChatMessage, ChatRequest, ChatResponse, ConnectionReport, ModelInfo, PluginError, Role,
};
use airlock_sdk::{Chat, Connector};

use api::Endpoint;
use stream::OpenAiStream;

struct OpenAi;

fn list_models(endpoint: &Endpoint) -> Result<Vec<ModelInfo>, PluginError> {
    let response = Request::get(endpoint.models_url())
        .header("accept", "application/json")
        .send()?
        .error_for_status()?;
    wire::models(response.status, &response.body)
}

fn complete(endpoint: &Endpoint, request: &ChatRequest) -> Result<ChatResponse, PluginError> {
    let model = endpoint.model_for(request.model.as_deref())?;
    let body = wire::body(request, model, false)?;
    let response = Request::post(endpoint.chat_url())
        .header("accept", "application/json")
        .json(&body)
        .send()?
        .error_for_status()?;
    wire::response(response.status, &response.body)
}

impl Connector for OpenAi {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let endpoint = Endpoint::from_settings()?;
        let mut details = vec![("endpoint".to_string(), endpoint.chat_url())];
        match list_models(&endpoint) {
            Ok(models) => {
                details.push(("models".to_string(), models.len().to_string()));
                if let Some(model) = &endpoint.model {
                    let known = models.iter().any(|m| &m.id == model);
                    details.push((
                        "model".to_string(),
                        format!("{model} ({})", if known { "listed" } else { "not listed" }),
                    ));
                }
                Ok(ConnectionReport {
                    account: None,
                    message: format!("the server lists {} models", models.len()),
                    details,
                })
            }
            // No model list (Azure deployments, some gateways): one tiny
            // completion proves the endpoint and the key instead.
            Err(PluginError::NotFound(_))
                if endpoint.model.is_some() || endpoint.api_version.is_some() =>
            {
                let request = ChatRequest {
                    model: None,
                    messages: vec![ChatMessage {
                        role: Role::User,
                        content: "ping".into(),
                    }],
                    temperature: None,
                    max_tokens: Some(1),
                    conversation_id: None,
                };
                let answer = complete(&endpoint, &request)?;
                let model = answer
                    .model
                    .or(endpoint.model)
                    .unwrap_or_else(|| "the deployment's model".into());
                details.push(("model".to_string(), model.clone()));
                Ok(ConnectionReport {
                    account: None,
                    message: format!("no model list; a one-token completion with {model} worked"),
                    details,
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl Chat for OpenAi {
    type Stream = OpenAiStream;

    fn complete(request: ChatRequest) -> Result<ChatResponse, PluginError> {
        complete(&Endpoint::from_settings()?, &request)
    }

    fn complete_stream(request: ChatRequest) -> Result<OpenAiStream, PluginError> {
        let endpoint = Endpoint::from_settings()?;
        let model = endpoint.model_for(request.model.as_deref())?;
        let body = wire::body(&request, model, true)?;
        let response = Request::post(endpoint.chat_url())
            .header("accept", "text/event-stream")
            .json(&body)
            .send_streaming()?
            .error_for_status()?;
        OpenAiStream::new(response)
    }

    fn list_models() -> Result<Vec<ModelInfo>, PluginError> {
        list_models(&Endpoint::from_settings()?)
    }
}

airlock_sdk::export!(OpenAi, world = ai_provider, manifest = "airlock.toml");
