//! {{name}}: an airlock AI provider plugin. The host runs it in a sandbox,
//! adds the connection's credential (an API key) to its requests, redacts
//! personal data from what it sends and records each request; the plugin
//! only ever sees its settings and the answers.
//!
//! The service here speaks the OpenAI chat-completions shape
//! (`POST {base-url}/v1/chat/completions`); change `complete` for another.

use airlock_sdk::http::{Request, join_url};
use airlock_sdk::types::{
    ChatRequest, ChatResponse, ConnectionReport, ModelInfo, PluginError, Role,
};
use airlock_sdk::{Chat, Connector, NoStream, setting_required};
use serde::Deserialize;
use serde_json::json;

struct Plugin;

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[derive(Deserialize)]
struct Models {
    data: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    id: String,
    owned_by: Option<String>,
}

impl Connector for Plugin {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let base = setting_required("base-url")?;
        let models: Models = Request::get(join_url(&base, "/v1/models")).send_json()?;
        Ok(ConnectionReport {
            account: None,
            message: format!("{base} offers {} models", models.data.len()),
            details: vec![],
        })
    }
}

impl Chat for Plugin {
    /// Not streaming: `complete-stream` answers `unsupported`.
    type Stream = NoStream;

    fn complete(request: ChatRequest) -> Result<ChatResponse, PluginError> {
        #[derive(Deserialize)]
        struct Answer {
            model: Option<String>,
            choices: Vec<Choice>,
        }
        #[derive(Deserialize)]
        struct Choice {
            message: Message,
            finish_reason: Option<String>,
        }
        #[derive(Deserialize)]
        struct Message {
            content: String,
        }
        let base = setting_required("base-url")?;
        let model = request.model.or_else(|| airlock_sdk::host::setting("model"));
        let messages: Vec<_> = request
            .messages
            .iter()
            .map(|m| json!({"role": role(m.role), "content": m.content}))
            .collect();
        let body = json!({
            "model": model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        });
        let answer: Answer = Request::post(join_url(&base, "/v1/chat/completions"))
            .json(&body)
            .send_json()?;
        let choice = answer.choices.into_iter().next().ok_or_else(|| {
            PluginError::Internal("the provider answered no choice".into())
        })?;
        Ok(ChatResponse {
            content: choice.message.content,
            model: answer.model,
            finish_reason: choice.finish_reason,
            usage: None,
        })
    }

    fn list_models() -> Result<Vec<ModelInfo>, PluginError> {
        let base = setting_required("base-url")?;
        let models: Models = Request::get(join_url(&base, "/v1/models")).send_json()?;
        Ok(models
            .data
            .into_iter()
            .map(|m| ModelInfo { id: m.id, owned_by: m.owned_by })
            .collect())
    }
}

airlock_sdk::export!(Plugin, world = ai_provider, manifest = "airlock.toml");
