//! One chat exchange with the gateway, as pure functions: the request body
//! from a chat request, and the answer (or the gateway's error) from the
//! response body.

use airlock_sdk::types::{ChatMessage, PluginError, Role, UpstreamFailure};
use serde_json::{Map, Value};

use crate::mapping::Mapping;

/// What goes into one request besides the messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extras {
    pub model: Option<String>,
    /// The gateway session of this conversation, when one was stored.
    pub session: Option<String>,
    pub user: Option<String>,
}

/// The prompt and system text of a request.
///
/// The gateway keeps the history of a session itself, so with a session
/// only the latest user message is sent. Without one (a new conversation,
/// or a mapping without `session`), earlier turns are folded into the
/// prompt so the gateway still sees the conversation.
pub fn prompt_and_system(
    messages: &[ChatMessage],
    has_session: bool,
) -> Result<(String, Option<String>), PluginError> {
    let last_user = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .ok_or_else(|| PluginError::InvalidInput("a chat request needs a user message".into()))?;
    let latest = &messages[last_user].content;
    if latest.trim().is_empty() {
        return Err(PluginError::InvalidInput(
            "the user message is empty".into(),
        ));
    }
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let earlier: Vec<String> = messages[..last_user]
        .iter()
        .filter_map(|m| match m.role {
            Role::User => Some(format!("User: {}", m.content)),
            Role::Assistant => Some(format!("Assistant: {}", m.content)),
            Role::System => None,
        })
        .collect();
    let prompt = if has_session || earlier.is_empty() {
        latest.clone()
    } else {
        format!(
            "Conversation so far:\n{}\n\nUser: {latest}",
            earlier.join("\n")
        )
    };
    Ok((prompt, system))
}

/// The request body.
pub fn body(
    messages: &[ChatMessage],
    mapping: &Mapping,
    extras: &Extras,
) -> Result<Value, PluginError> {
    let session = extras
        .session
        .as_ref()
        .filter(|_| mapping.get("session").is_some());
    let (mut prompt, system) = prompt_and_system(messages, session.is_some())?;
    let mut doc = Value::Object(Map::new());
    match (system, mapping.get("system")) {
        (Some(system), Some(at)) => at.set(&mut doc, Value::String(system))?,
        // No place for it: the system text leads the prompt.
        (Some(system), None) => prompt = format!("{system}\n\n{prompt}"),
        (None, _) => {}
    }
    mapping
        .get("prompt")
        .expect("validated: prompt is required")
        .set(&mut doc, Value::String(prompt))?;
    for (key, value) in [
        ("model", &extras.model),
        ("session", &session.cloned()),
        ("user", &extras.user),
    ] {
        if let (Some(at), Some(value)) = (mapping.get(key), value) {
            at.set(&mut doc, Value::String(value.clone()))?;
        }
    }
    Ok(doc)
}

/// The answer and the session id the gateway returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub session: Option<String>,
}

fn text_at(doc: &Value, mapping: &Mapping, key: &str) -> Option<String> {
    match mapping.get(key)?.get(doc)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The gateway's own account of a failure: the `error` entry, else the
/// `answer` entry (gateways often put the reason where the answer goes),
/// else common fields.
pub fn gateway_message(doc: &Value, mapping: &Mapping) -> Option<String> {
    text_at(doc, mapping, "error")
        .or_else(|| text_at(doc, mapping, "answer"))
        .or_else(|| {
            ["/message", "/error/message", "/error", "/detail"]
                .iter()
                .find_map(|p| doc.pointer(p).and_then(Value::as_str).map(String::from))
        })
}

fn upstream(status: u16, message: String) -> PluginError {
    PluginError::Upstream(UpstreamFailure { status, message })
}

/// Read a 2xx answer.
pub fn answer(status: u16, body: &[u8], mapping: &Mapping) -> Result<Answer, PluginError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| upstream(status, format!("malformed JSON from the gateway: {e}")))?;
    let failed = mapping
        .get("status")
        .and_then(|p| p.get(&doc))
        .is_some_and(|s| {
            matches!(s, Value::Bool(false))
                || s.as_str().is_some_and(|s| {
                    s.eq_ignore_ascii_case("false") || s.eq_ignore_ascii_case("error")
                })
        });
    if failed {
        let why = gateway_message(&doc, mapping).unwrap_or_else(|| "no message".into());
        return Err(upstream(
            status,
            format!("the gateway reported a failure (status false): {why}"),
        ));
    }
    let answer_at = mapping
        .get("answer")
        .expect("validated: answer is required");
    let text = match answer_at.get(&doc) {
        Some(Value::String(s)) => s.clone(),
        _ => {
            let why = gateway_message(&doc, mapping)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(upstream(
                status,
                format!(
                    "the gateway's answer has no text at {}{why}",
                    answer_at.as_str()
                ),
            ));
        }
    };
    Ok(Answer {
        text,
        session: text_at(&doc, mapping, "session"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{PRESET_REQUEST, PRESET_RESPONSE, REQUEST_KEYS, RESPONSE_KEYS};
    use serde_json::json;

    fn req() -> Mapping {
        Mapping::parse("r", PRESET_REQUEST, REQUEST_KEYS, &["prompt"], true).unwrap()
    }
    fn resp() -> Mapping {
        Mapping::parse("r", PRESET_RESPONSE, RESPONSE_KEYS, &["answer"], false).unwrap()
    }
    fn m(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn preset_body_with_a_session_sends_the_latest_message_only() {
        let messages = [
            m(Role::System, "You are an SRE."),
            m(Role::User, "first"),
            m(Role::Assistant, "answer one"),
            m(Role::User, "second"),
        ];
        let extras = Extras {
            model: Some("VertexGemini".into()),
            session: Some("s-1".into()),
            user: Some("ada@example.com".into()),
        };
        assert_eq!(
            body(&messages, &req(), &extras).unwrap(),
            json!({
                "prompt": "second",
                "system": "You are an SRE.",
                "model": "VertexGemini",
                "sessionId": "s-1",
                "userId": "ada@example.com"
            })
        );
        // Without a session the earlier turns travel in the prompt.
        let fresh = body(&messages, &req(), &Extras::default()).unwrap();
        assert_eq!(
            fresh["prompt"],
            "Conversation so far:\nUser: first\nAssistant: answer one\n\nUser: second"
        );
        assert!(fresh.get("sessionId").is_none() && fresh.get("model").is_none());
    }

    #[test]
    fn custom_body_without_a_system_entry() {
        let mapping = Mapping::parse(
            "r",
            r#"{"prompt": "/input/text", "model": "/options/engine"}"#,
            REQUEST_KEYS,
            &["prompt"],
            true,
        )
        .unwrap();
        let messages = [m(Role::System, "Be brief."), m(Role::User, "hi")];
        let extras = Extras {
            model: Some("e1".into()),
            session: Some("ignored".into()),
            ..Extras::default()
        };
        assert_eq!(
            body(&messages, &mapping, &extras).unwrap(),
            json!({"input": {"text": "Be brief.\n\nhi"}, "options": {"engine": "e1"}})
        );
    }

    #[test]
    fn refuses_requests_without_a_user_message() {
        assert!(body(&[m(Role::System, "x")], &req(), &Extras::default()).is_err());
        assert!(body(&[m(Role::User, "  ")], &req(), &Extras::default()).is_err());
    }

    #[test]
    fn reads_answers_and_failures() {
        let ok = answer(
            200,
            br#"{"status": true, "sessionId": "s-9", "msg": "Hi!", "initialPrompt": true}"#,
            &resp(),
        )
        .unwrap();
        assert_eq!(
            ok,
            Answer {
                text: "Hi!".into(),
                session: Some("s-9".into())
            }
        );

        let fail = answer(
            200,
            br#"{"status": false, "msg": "Model access denied"}"#,
            &resp(),
        )
        .unwrap_err();
        match fail {
            PluginError::Upstream(u) => {
                assert_eq!(u.status, 200);
                assert!(
                    u.message.contains("status false") && u.message.contains("Model access denied"),
                    "{}",
                    u.message
                );
            }
            other => panic!("{other:?}"),
        }
        match answer(
            200,
            br#"{"status": true, "message": "quota exceeded"}"#,
            &resp(),
        )
        .unwrap_err()
        {
            PluginError::Upstream(u) => assert!(
                u.message.contains("/msg") && u.message.contains("quota exceeded"),
                "{}",
                u.message
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(200, b"<html>", &resp()),
            Err(PluginError::Upstream(_))
        ));
        let _ = json!(null);
    }
}
