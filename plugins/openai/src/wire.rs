//! The chat completions wire format: the request body, whole answers,
//! streamed chunks and the model list.

use airlock_sdk::types::{
    ChatDelta, ChatRequest, ChatResponse, ModelInfo, PluginError, Role, TokenUsage, UpstreamFailure,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, PartialEq)]
pub struct Body<'a> {
    /// Absent only for Azure deployments, which pick the model themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Message<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

fn role(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// The request body for `request`, refusing what no server would accept.
pub fn body(
    request: &ChatRequest,
    model: Option<String>,
    stream: bool,
) -> Result<Body<'_>, PluginError> {
    if request.messages.is_empty() {
        return Err(PluginError::InvalidInput(
            "a chat request needs at least one message".into(),
        ));
    }
    if let Some(t) = request.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(PluginError::InvalidInput(format!(
            "temperature {t} is outside 0 to 2"
        )));
    }
    if request.max_tokens == Some(0) {
        return Err(PluginError::InvalidInput(
            "max tokens must be at least 1".into(),
        ));
    }
    Ok(Body {
        model,
        messages: request
            .messages
            .iter()
            .map(|m| Message {
                role: role(m.role),
                content: &m.content,
            })
            .collect(),
        temperature: request.temperature,
        max_tokens: request.max_tokens,
        stream,
    })
}

#[derive(Debug, Deserialize)]
pub struct Usage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: u32,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Completion {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<AnswerMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AnswerMessage {
    content: Option<String>,
    refusal: Option<String>,
}

fn malformed(status: u16, why: String) -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        status,
        message: format!("malformed chat completion from upstream: {why}"),
    })
}

/// A whole answer from its JSON body.
pub fn response(status: u16, body: &[u8]) -> Result<ChatResponse, PluginError> {
    let completion: Completion =
        serde_json::from_slice(body).map_err(|e| malformed(status, e.to_string()))?;
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(malformed(status, "the answer has no choices".into()));
    };
    let message = choice
        .message
        .ok_or_else(|| malformed(status, "the first choice has no message".into()))?;
    let content = match (message.content, message.refusal) {
        (Some(content), _) => content,
        (None, Some(refusal)) => refusal,
        (None, None) => String::new(),
    };
    Ok(ChatResponse {
        content,
        model: completion.model,
        finish_reason: choice.finish_reason,
        usage: completion.usage.map(Into::into),
    })
}

/// One streamed `chat.completion.chunk`, or an error object some servers
/// send inside the stream.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
}

/// The delta carried by one event's data.
pub fn chunk(data: &str) -> Result<ChatDelta, PluginError> {
    let chunk: Chunk = serde_json::from_str(data)
        .map_err(|e| malformed(200, format!("a streamed chunk is not valid JSON: {e}")))?;
    if let Some(error) = chunk.error {
        let message = error
            .get("message")
            .and_then(|m| m.as_str())
            .map(String::from)
            .unwrap_or_else(|| error.to_string());
        return Err(PluginError::Upstream(UpstreamFailure {
            status: 200,
            message: format!("the upstream reported an error mid-stream: {message}"),
        }));
    }
    let (content, finish_reason) = match chunk.choices.into_iter().next() {
        Some(choice) => (
            choice.delta.and_then(|d| d.content).unwrap_or_default(),
            choice.finish_reason,
        ),
        None => (String::new(), None),
    };
    Ok(ChatDelta {
        content,
        finish_reason,
        usage: chunk.usage.map(Into::into),
    })
}

#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<Model>,
}

#[derive(Debug, Deserialize)]
struct Model {
    id: String,
    owned_by: Option<String>,
}

/// The model list from its JSON body.
pub fn models(status: u16, body: &[u8]) -> Result<Vec<ModelInfo>, PluginError> {
    let list: ModelList = serde_json::from_slice(body).map_err(|e| {
        PluginError::Upstream(UpstreamFailure {
            status,
            message: format!("malformed model list from upstream: {e}"),
        })
    })?;
    Ok(list
        .data
        .into_iter()
        .map(|m| ModelInfo {
            id: m.id,
            owned_by: m.owned_by,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::types::ChatMessage;

    fn request() -> ChatRequest {
        ChatRequest {
            model: None,
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "be brief".into(),
                },
                ChatMessage {
                    role: Role::User,
                    content: "hi".into(),
                },
            ],
            temperature: Some(0.5),
            max_tokens: Some(64),
            conversation_id: None,
        }
    }

    #[test]
    fn serializes_the_body() {
        let r = request();
        let json = serde_json::to_value(body(&r, Some("gpt-4o".into()), true).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"}
                ],
                "temperature": 0.5,
                "max_tokens": 64,
                "stream": true
            })
        );
        let mut bare = request();
        bare.temperature = None;
        bare.max_tokens = None;
        let json = serde_json::to_value(body(&bare, None, false).unwrap()).unwrap();
        assert!(json.get("stream").is_none() && json.get("temperature").is_none());
        assert!(json.get("model").is_none());
    }

    #[test]
    fn refuses_impossible_requests() {
        let mut r = request();
        r.temperature = Some(3.0);
        assert!(matches!(
            body(&r, None, false),
            Err(PluginError::InvalidInput(_))
        ));
        let mut r = request();
        r.messages.clear();
        assert!(matches!(
            body(&r, None, false),
            Err(PluginError::InvalidInput(_))
        ));
    }

    #[test]
    fn parses_answers() {
        let answer = response(
            200,
            br#"{"id":"x","model":"gpt-4o-2024","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#,
        )
        .unwrap();
        assert_eq!(answer.content, "Hello");
        assert_eq!(answer.model.as_deref(), Some("gpt-4o-2024"));
        assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
        assert_eq!(answer.usage.unwrap().total_tokens, 10);
        for bad in [
            &b"<html>"[..],
            br#"{"choices":[]}"#,
            br#"{"choices":[{"finish_reason":"stop"}]}"#,
        ] {
            assert!(matches!(response(200, bad), Err(PluginError::Upstream(_))));
        }
    }

    #[test]
    fn parses_chunks() {
        let d = chunk(r#"{"choices":[{"delta":{"content":"Hé"},"finish_reason":null}]}"#).unwrap();
        assert_eq!(d.content, "Hé");
        let d = chunk(r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#).unwrap();
        assert_eq!(d.finish_reason.as_deref(), Some("length"));
        let d = chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(d.usage.unwrap().completion_tokens, 2);
        assert!(matches!(chunk("{not json"), Err(PluginError::Upstream(_))));
        match chunk(r#"{"error":{"message":"overloaded"}}"#) {
            Err(PluginError::Upstream(u)) => assert!(u.message.contains("overloaded")),
            other => panic!("{other:?}"),
        }
    }
}
