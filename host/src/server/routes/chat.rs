//! Chat over the API: one turn of a conversation through an AI provider
//! connection, answered as JSON or, with `"stream": true`, as server-sent
//! events (`delta` events with text as it arrives, then one `done` event with
//! the stored answer, or one `error` event).

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::connections::usable_for;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath};
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::service::{ChatEvent, ChatInput};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::POST,
            path: "/api/v1/connections/{id}/chat",
            tag: "chat",
            summary: "Send a message through an AI provider connection (a new conversation, or \
                      `conversation` to continue one); JSON answer, or server-sent events with \
                      `stream: true`",
            access: Access::Role(Role::User),
            body: RequestBody::Json(|| {
                json!({
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "message": {"type": "string"},
                        "conversation": {"type": "string", "description": "Continue this conversation"},
                        "system": {"type": "string", "description": "Extra system text"},
                        "model": {"type": "string"},
                        "temperature": {"type": "number"},
                        "max_tokens": {"type": "integer"},
                        "project": {"type": "string"},
                        "stream": {"type": "boolean", "description": "Answer as text/event-stream"}
                    }
                })
            }),
            success: (
                200,
                "The answer and its conversation id (JSON), or `delta` events then one `done` \
                 event (text/event-stream)",
            ),
            query: &[],
        },
        chat,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    message: String,
    conversation: Option<String>,
    system: Option<String>,
    model: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    project: Option<String>,
    #[serde(default)]
    stream: bool,
}

async fn chat(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let (record, project) = usable_for(&state, &principal, &id, body.project)?;
    let input = ChatInput {
        message: body.message,
        conversation: body.conversation,
        system: body.system,
        model: body.model,
        temperature: body.temperature,
        max_tokens: body.max_tokens,
        project,
    };
    let airlock = state.airlock();
    if !body.stream {
        let answer = airlock.chat(&record.id, input).await?;
        return Ok(Json(answer).into_response());
    }
    // Errors before the first byte (unknown conversation, paused
    // connection, the upstream refusing the request) keep their status.
    let events = airlock.chat_stream(&record.id, input).await?;
    let stream = events.into_stream().map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(ChatEvent::Delta(text)) => Event::default()
                .event("delta")
                .data(json!({ "content": text }).to_string()),
            Ok(ChatEvent::Done(answer)) => Event::default()
                .event("done")
                .data(serde_json::to_string(&answer).unwrap_or_default()),
            Err(e) => {
                let e = ApiError::from(e);
                Event::default()
                    .event("error")
                    .data(json!({ "error": { "code": e.code, "message": e.message } }).to_string())
            }
        })
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
