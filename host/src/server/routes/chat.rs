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
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::CALL_ERRORS;
use super::connections::usable_for;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath};
use crate::server::openapi::describe::{Described, Schemas};
use crate::server::openapi::{DocResponse, Failure, Operation, Routes};
use crate::service::{ChatAnswer, ChatEvent, ChatInput};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::POST,
            path: "/api/v1/connections/{id}/chat",
            id: "chat",
            tag: "chat",
            summary: "Send a message through an AI provider connection (a new conversation, or \
                      `conversation` to continue one); JSON answer, or server-sent events with \
                      `stream: true`",
            access: Access::Role(Role::User),
            returns: "The answer and its conversation id (JSON), or `delta` events then one \
                      `done` event (text/event-stream)",
            errors: CHAT_ERRORS,
        },
        chat,
    )
}

/// A chat turn calls the plugin, and names a conversation that may not be
/// found for the project the call is made for.
const CHAT_ERRORS: &[Failure] = &[
    CALL_ERRORS[0],
    CALL_ERRORS[1],
    CALL_ERRORS[2],
    (
        404,
        "no such conversation for the project the call is made for (`not_found`)",
    ),
    CALL_ERRORS[3],
    CALL_ERRORS[4],
    CALL_ERRORS[5],
    CALL_ERRORS[6],
    CALL_ERRORS[7],
];

/// One chat turn.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ChatTurn")]
struct ChatBody {
    /// The user's message.
    message: String,
    /// Continue this conversation; a new one is started when absent.
    conversation: Option<String>,
    /// Extra system text.
    system: Option<String>,
    /// The model; the connection's configured one when absent.
    model: Option<String>,
    /// Sampling temperature; the provider's default when absent.
    temperature: Option<f32>,
    /// Most tokens the answer may use.
    max_tokens: Option<u32>,
    /// The project the call is made for (a restricted token's own by
    /// default); it scopes the conversation.
    project: Option<String>,
    /// Answer as `text/event-stream`.
    #[serde(default)]
    stream: bool,
}

/// A chat answer: JSON, or server-sent events.
struct ChatReply(Response);

impl IntoResponse for ChatReply {
    fn into_response(self) -> Response {
        self.0
    }
}

impl DocResponse for ChatReply {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        let answer = schemas.output::<ChatAnswer>();
        doc.success.entry(200).or_default().extend([
            ("application/json", answer),
            (
                "text/event-stream",
                json!({
                    "type": "string",
                    "description": "`delta` events whose data is `{\"content\": text}`, then \
                                    one `done` event whose data is the ChatAnswer, or one \
                                    `error` event whose data is the Error"
                }),
            ),
        ]);
    }
}

async fn chat(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<ChatReply, ApiError> {
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
        return Ok(ChatReply(Json(answer).into_response()));
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
    Ok(ChatReply(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    ))
}
