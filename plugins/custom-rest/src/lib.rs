//! airlock AI provider for gateways with their own JSON format.
//!
//! Runs as a sandboxed component (world `ai_provider`: exports `connector`
//! and `chat`). The host injects the API key in the header named by the
//! `auth-header` setting after `auth-prefix`; the plugin never sees it.
//!
//! # The built-in gateway preset
//!
//! `POST {base-url}{endpoint-path}` with
//!
//! ```json
//! {"prompt": "latest user message", "system": "system text",
//!  "model": "VertexGemini", "sessionId": "…", "userId": "ada@example.com"}
//! ```
//!
//! answered by `{"status": true, "sessionId": "…", "msg": "answer"}`. The
//! gateway keeps the history per session; the plugin stores the returned
//! `sessionId` in the connection's plugin state under
//! `conversation/<conversation-id>/session`, so each host conversation has
//! its own gateway session (and the host deletes it with the conversation).
//! Without a stored session (the first turn, or a request without a
//! conversation id) earlier turns are folded into the prompt. `status:
//! false`, or an answer without `msg`, is an `upstream` error carrying the
//! gateway's message. `userId` is the `user-id` setting (cost tracking);
//! `client-header` (`Name: value`) identifies the client on every request.
//!
//! # Other formats
//!
//! The `request-mapping` and `response-mapping` settings place each part at
//! a JSON pointer; the defaults are the preset above. Request entries:
//! `prompt` (required), `system` (absent: the system text leads the
//! prompt), `model`, `session`, `user`. Response entries: `answer`
//! (required), `session`, `status` (`false` means failure), `error` (the
//! failure message). The host refuses invalid mappings when the connection
//! is saved.
//!
//! `test-connection` sends the prompt `ping` (no session) and reports the
//! answer's length; `list-models` lists the `model` setting; streaming is
//! not offered (the host delivers the whole answer as one delta).

mod exchange;
mod mapping;

use airlock_sdk::http::{Request, Response, join_url};
use airlock_sdk::types::{
    ChatMessage, ChatRequest, ChatResponse, ConnectionReport, ModelInfo, PluginError, RateLimit,
    Role, UpstreamFailure,
};
use airlock_sdk::{Chat, Connector, NoStream, host, setting_required};
use serde_json::Value;

use exchange::Extras;
use mapping::{Mapping, PRESET_REQUEST, PRESET_RESPONSE, REQUEST_KEYS, RESPONSE_KEYS};

struct CustomRest;

/// The connection's gateway, from its settings.
struct Gateway {
    url: String,
    client_header: Option<(String, String)>,
    model: Option<String>,
    user: Option<String>,
    request: Mapping,
    response: Mapping,
}

fn non_empty(name: &str) -> Option<String> {
    host::setting(name).filter(|v| !v.trim().is_empty())
}

impl Gateway {
    fn from_settings() -> Result<Gateway, PluginError> {
        let base = setting_required("base-url")?;
        let url = match non_empty("endpoint-path") {
            Some(path) => join_url(&base, &path),
            None => base.trim().to_string(),
        };
        let client_header = match non_empty("client-header") {
            Some(text) => {
                let (name, value) = text.split_once(':').ok_or_else(|| {
                    PluginError::InvalidInput(format!(
                        "setting `client-header` = {text:?} must be `Name: value`"
                    ))
                })?;
                Some((name.trim().to_string(), value.trim().to_string()))
            }
            None => None,
        };
        let request = Mapping::parse(
            "request-mapping",
            &host::setting("request-mapping").unwrap_or_else(|| PRESET_REQUEST.into()),
            REQUEST_KEYS,
            &["prompt"],
            true,
        )?;
        let response = Mapping::parse(
            "response-mapping",
            &host::setting("response-mapping").unwrap_or_else(|| PRESET_RESPONSE.into()),
            RESPONSE_KEYS,
            &["answer"],
            false,
        )?;
        Ok(Gateway {
            url,
            client_header,
            model: non_empty("model"),
            user: non_empty("user-id"),
            request,
            response,
        })
    }

    /// Send one exchange and read the answer.
    fn exchange(
        &self,
        messages: &[ChatMessage],
        extras: &Extras,
    ) -> Result<exchange::Answer, PluginError> {
        let body = exchange::body(messages, &self.request, extras)?;
        let mut request = Request::post(&self.url).header("accept", "application/json");
        if let Some((name, value)) = &self.client_header {
            request = request.header(name, value);
        }
        let response = request.json(&body).send()?;
        if !response.is_success() {
            return Err(self.status_error(response));
        }
        exchange::answer(response.status, &response.body, &self.response)
    }

    /// A non-2xx answer as the SDK maps it, with the gateway's own message
    /// when its body has one where the response mapping says.
    fn status_error(&self, response: Response) -> PluginError {
        let status = response.status;
        let message = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|doc| exchange::gateway_message(&doc, &self.response))
            .map(|m| format!("HTTP {status}: {m}"));
        let error = response
            .error_for_status()
            .expect_err("only called for non-2xx answers");
        match message {
            None => error,
            Some(m) => match error {
                PluginError::InvalidInput(_) => PluginError::InvalidInput(m),
                PluginError::Unauthorized(_) => PluginError::Unauthorized(m),
                PluginError::Forbidden(_) => PluginError::Forbidden(m),
                PluginError::NotFound(_) => PluginError::NotFound(m),
                PluginError::Conflict(_) => PluginError::Conflict(m),
                PluginError::RateLimited(r) => PluginError::RateLimited(RateLimit {
                    retry_after_secs: r.retry_after_secs,
                    message: m,
                }),
                PluginError::Upstream(u) => PluginError::Upstream(UpstreamFailure {
                    status: u.status,
                    message: m,
                }),
                other => other,
            },
        }
    }
}

fn session_key(conversation: &str) -> String {
    format!("conversation/{conversation}/session")
}

impl Connector for CustomRest {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let gateway = Gateway::from_settings()?;
        let messages = [ChatMessage {
            role: Role::User,
            content: "ping".into(),
        }];
        let extras = Extras {
            model: gateway.model.clone(),
            session: None,
            user: gateway.user.clone(),
        };
        let answer = gateway.exchange(&messages, &extras)?;
        let mut details = vec![("endpoint".to_string(), gateway.url.clone())];
        if let Some(model) = &gateway.model {
            details.push(("model".to_string(), model.clone()));
        }
        Ok(ConnectionReport {
            account: gateway.user.clone(),
            message: format!(
                "the gateway answered a test prompt ({} characters)",
                answer.text.chars().count()
            ),
            details,
        })
    }
}

impl Chat for CustomRest {
    type Stream = NoStream;

    fn complete(request: ChatRequest) -> Result<ChatResponse, PluginError> {
        let gateway = Gateway::from_settings()?;
        let conversation = request
            .conversation_id
            .as_deref()
            .filter(|c| !c.trim().is_empty());
        let session = conversation.and_then(|c| host::state_get(&session_key(c)));
        let model = request
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .or_else(|| gateway.model.clone());
        let extras = Extras {
            model: model.clone(),
            session: session.clone(),
            user: gateway.user.clone(),
        };
        let answer = gateway.exchange(&request.messages, &extras)?;
        if let (Some(conversation), Some(new)) = (conversation, &answer.session)
            && session.as_ref() != Some(new)
            && let Err(e) = host::state_set(&session_key(conversation), new)
        {
            // The answer stands; the next turn starts a new session and
            // carries the history in its prompt instead.
            host::warn(&format!("cannot keep the gateway session: {e:?}"));
        }
        Ok(ChatResponse {
            content: answer.text,
            model,
            finish_reason: Some("stop".into()),
            usage: None,
        })
    }

    fn list_models() -> Result<Vec<ModelInfo>, PluginError> {
        Ok(non_empty("model")
            .map(|id| ModelInfo { id, owned_by: None })
            .into_iter()
            .collect())
    }
}

airlock_sdk::export!(CustomRest, world = ai_provider, manifest = "airlock.toml");
