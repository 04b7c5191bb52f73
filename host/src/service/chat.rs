//! Chat through an AI provider connection, with the conversation kept on the
//! host: the library calls behind `airlock chat` and the management API's
//! chat routes.
//!
//! A turn loads the conversation (or starts one: the connection's domain
//! system prompt first, then the caller's system text), appends the user's
//! message, redacts PII from every message sent (unless the connection
//! switched redaction off), calls the plugin, and only when the answer is
//! complete stores the new messages and the answer in one transaction. A
//! failed or abandoned turn stores nothing. The audit record of each request
//! the plugin sends carries `{"chat": {"conversation", "redaction",
//! "redacted": {kind: count}}}` — counts, never values.
//!
//! A conversation belongs to its connection and to the project of the turn
//! that started it (or to no project); only turns for that same project
//! continue it, and reads take a [`ProjectFilter`]. The plugin state a
//! provider keeps for it is in the same (connection, project) scope.
//!
//! ```no_run
//! # async fn demo(airlock: &airlock::Airlock) -> Result<(), airlock::ServiceError> {
//! use airlock::service::{ChatEvent, ChatInput};
//!
//! let answer = airlock.chat("gpt", ChatInput::new("Summarise INC0010001")).await?;
//! println!("{} (conversation {})", answer.content, answer.conversation_id);
//!
//! let mut follow_up = ChatInput::new("And the root cause?");
//! follow_up.conversation = Some(answer.conversation_id.clone());
//! let mut events = airlock.chat_stream("gpt", follow_up).await?;
//! while let Some(event) = events.next().await {
//!     match event? {
//!         ChatEvent::Delta(text) => print!("{text}"),
//!         ChatEvent::Done(answer) => println!("\n[{:?}]", answer.finish_reason),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Airlock, ServiceError};
use crate::redact::Redactor;
use crate::runtime::ChatStream;
use crate::runtime::types::{
    ChatMessage, ChatRequest, ChatResponse, PluginError, Role, TokenUsage,
};
use crate::store::connections::ConnectionRecord;
use crate::store::conversations::{
    self as repo, ChatOptions, ConversationRecord, MessageRecord, MessageRole, NewMessage,
    ProjectFilter,
};
use crate::store::plugins::PluginRecord;
use crate::store::{Store, StoreError};

/// Largest message a caller may add, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// One chat turn to send.
#[derive(Debug, Clone, Default)]
pub struct ChatInput {
    /// The user's message.
    pub message: String,
    /// Continue this conversation; a new one is started when absent.
    pub conversation: Option<String>,
    /// Extra system text: after the domain prompt in a new conversation,
    /// before the message in an existing one.
    pub system: Option<String>,
    /// The model; the connection's configured one when absent.
    pub model: Option<String>,
    /// Sampling temperature passed to the provider; its default when absent.
    pub temperature: Option<f32>,
    /// Most tokens the answer may use; the provider's default when absent.
    pub max_tokens: Option<u32>,
    /// The project the call is made for, recorded in the audit of its
    /// requests. It does not pick the connection: that is the one named.
    /// It scopes the conversation: a new one belongs to this project (or to
    /// no project), and only turns for the same project continue it.
    pub project: Option<String>,
}

impl ChatInput {
    /// A turn with `message` in a new conversation, everything else
    /// defaulted.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ChatAnswer {
    /// The conversation the turn was stored in; pass it as
    /// [`ChatInput::conversation`] to continue.
    pub conversation_id: String,
    /// The assistant's whole answer.
    pub content: String,
    /// The model that answered, as the provider reported it, else the one
    /// asked for; `None` when neither is known.
    pub model: Option<String>,
    /// Why the provider stopped (e.g. `stop`, `length`), when it said.
    pub finish_reason: Option<String>,
    /// Token counts, when the provider reported them.
    #[schemars(with = "Option<UsageSchema>")]
    pub usage: Option<TokenUsage>,
    /// How many values of each kind redaction replaced in what was sent.
    pub redacted: BTreeMap<String, u32>,
}

/// The JSON form of the WIT's [`TokenUsage`] (a generated type, which
/// cannot derive a schema), for [`ChatAnswer`]'s schema in the API document.
#[derive(schemars::JsonSchema)]
#[schemars(rename = "TokenUsage")]
#[allow(dead_code)]
struct UsageSchema {
    /// Tokens in the prompt.
    prompt_tokens: u32,
    /// Tokens in the answer.
    completion_tokens: u32,
    /// Both.
    total_tokens: u32,
}

/// What a streamed turn yields: text as it arrives, then the whole answer
/// (already stored) as the last event.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// The next piece of the answer's text (never empty).
    Delta(String),
    /// The whole answer, stored in the conversation; always the last event.
    Done(ChatAnswer),
}

/// A prepared turn: what to send and what to store once answered.
#[derive(Debug)]
struct Turn {
    conversation_id: String,
    /// `None` when the conversation already exists.
    new_conversation: Option<ConversationRecord>,
    to_store: Vec<NewMessage>,
    request: ChatRequest,
    /// Whether redaction was on, and what it replaced.
    redaction: bool,
    redacted: BTreeMap<String, u32>,
}

fn to_wit(role: MessageRole) -> Role {
    match role {
        MessageRole::System => Role::System,
        MessageRole::User => Role::User,
        MessageRole::Assistant => Role::Assistant,
    }
}

fn system_message(text: &str) -> Option<NewMessage> {
    (!text.trim().is_empty()).then(|| NewMessage {
        role: MessageRole::System,
        content: text.to_string(),
        model: None,
    })
}

/// Refuse an empty message and oversized texts before anything is sent.
fn check_input(input: &ChatInput) -> Result<(), ServiceError> {
    if input.message.trim().is_empty() {
        return Err(ServiceError::Invalid("the chat message is empty".into()));
    }
    for (what, text) in [
        ("message", Some(&input.message)),
        ("system text", input.system.as_ref()),
    ] {
        if text.is_some_and(|t| t.len() > MAX_MESSAGE_BYTES) {
            return Err(ServiceError::Invalid(format!(
                "the {what} is {} bytes; at most {MAX_MESSAGE_BYTES} are allowed",
                text.map_or(0, String::len)
            )));
        }
    }
    Ok(())
}

impl Turn {
    /// Store the turn's messages and the answer in one transaction.
    fn commit(self, store: &Store, answer: &ChatResponse) -> Result<ChatAnswer, ServiceError> {
        let mut messages = self.to_store;
        messages.push(NewMessage {
            role: MessageRole::Assistant,
            content: answer.content.clone(),
            model: answer.model.clone().or_else(|| self.request.model.clone()),
        });
        store.transact(|tx| {
            if let Some(record) = &self.new_conversation {
                repo::insert_conversation(tx, record)?;
            }
            repo::append_messages(tx, &self.conversation_id, &messages)?;
            Ok::<_, ServiceError>(())
        })?;
        Ok(ChatAnswer {
            conversation_id: self.conversation_id,
            content: answer.content.clone(),
            model: answer.model.clone().or(self.request.model),
            finish_reason: answer.finish_reason.clone(),
            usage: answer.usage,
            redacted: self.redacted,
        })
    }
}

impl Airlock {
    fn prepare_turn(
        &self,
        record: &ConnectionRecord,
        input: &ChatInput,
    ) -> Result<Turn, ServiceError> {
        check_input(input)?;
        let options = self.store.read(|c| repo::chat_options(c, &record.id))?;
        let mut to_store = Vec::new();
        let (conversation_id, history, new_conversation) = match &input.conversation {
            Some(id) => {
                // Looked up in the turn's project only: another project's
                // conversation is not found, whoever knows its id.
                let projects = ProjectFilter::of(input.project.as_deref());
                let conversation = self
                    .store
                    .read(|c| repo::get_conversation(c, id, &projects))?;
                if conversation.connection_id != record.id {
                    return Err(ServiceError::Invalid(format!(
                        "conversation `{id}` belongs to another connection; continue it there \
                         or start a new one"
                    )));
                }
                let history = self.store.read(|c| repo::messages(c, id))?;
                (conversation.id, history, None)
            }
            None => {
                let now = crate::store::now();
                let record = ConversationRecord {
                    id: crate::store::new_id(),
                    connection_id: record.id.clone(),
                    project: input.project.clone(),
                    title: repo::title_of(&input.message),
                    created_at: now.clone(),
                    updated_at: now,
                };
                // The domain prompt leads every new conversation.
                to_store.extend(options.system_prompt.as_deref().and_then(system_message));
                (record.id.clone(), Vec::new(), Some(record))
            }
        };
        to_store.extend(input.system.as_deref().and_then(system_message));
        to_store.push(NewMessage {
            role: MessageRole::User,
            content: input.message.clone(),
            model: None,
        });

        let mut redactor = options.redaction.then(Redactor::new);
        let messages = history
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .chain(to_store.iter().map(|m| (m.role, m.content.as_str())))
            .map(|(role, content)| ChatMessage {
                role: to_wit(role),
                content: match &mut redactor {
                    Some(r) => r.redact(content),
                    None => content.to_string(),
                },
            })
            .collect();
        let redacted = redactor.as_ref().map(Redactor::counts).unwrap_or_default();
        Ok(Turn {
            request: ChatRequest {
                model: input.model.clone().filter(|m| !m.trim().is_empty()),
                messages,
                temperature: input.temperature,
                max_tokens: input.max_tokens,
                conversation_id: Some(conversation_id.clone()),
            },
            conversation_id,
            new_conversation,
            to_store,
            redaction: options.redaction,
            redacted,
        })
    }

    /// Redact a `chat.complete` input given to [`Airlock::call`] as the
    /// connection's options say, so no AI send bypasses redaction; returns
    /// the input to send and the audit detail to record.
    pub(super) fn redact_call_input(
        &self,
        record: &ConnectionRecord,
        input: serde_json::Value,
    ) -> Result<(serde_json::Value, String), ServiceError> {
        let options = self.store.read(|c| repo::chat_options(c, &record.id))?;
        // Decoded as `invoke_json` will decode it, so the same input is
        // accepted or refused with the same message.
        let mut request: crate::runtime::json::ChatRequest =
            crate::runtime::json::input("chat.complete", input)?;
        let mut redacted = BTreeMap::new();
        if options.redaction {
            let mut redactor = Redactor::new();
            for m in &mut request.messages {
                m.content = redactor.redact(&m.content);
            }
            redacted = redactor.counts();
        }
        let detail = serde_json::json!({
            "chat": {
                "conversation": request.conversation_id,
                "redaction": if options.redaction { "on" } else { "off" },
                "redacted": redacted,
            }
        })
        .to_string();
        let input = serde_json::to_value(&request).expect("mirror types serialize to JSON");
        Ok((input, detail))
    }

    /// The plugin and runtime connection for a turn, its audit detail set.
    fn chat_call(
        &self,
        (record, installed): (&ConnectionRecord, &PluginRecord),
        turn: &Turn,
        project: Option<&str>,
    ) -> Result<(Arc<crate::runtime::Plugin>, crate::connection::Connection), ServiceError> {
        let (plugin, mut conn) = self.prepare_installed(record, installed, project)?;
        conn.audit_detail = Some(
            serde_json::json!({
                "chat": {
                    "conversation": turn.conversation_id,
                    "redaction": if turn.redaction { "on" } else { "off" },
                    "redacted": turn.redacted,
                }
            })
            .to_string(),
        );
        Ok((plugin, conn))
    }

    /// Send one chat turn through `connection` (name or id) and wait for the
    /// whole answer; the turn is stored in the conversation once answered.
    pub async fn chat(
        &self,
        connection: &str,
        input: ChatInput,
    ) -> Result<ChatAnswer, ServiceError> {
        let (record, installed) = self.call_records(connection)?;
        let turn = self.prepare_turn(&record, &input)?;
        let (plugin, conn) =
            self.chat_call((&record, &installed), &turn, input.project.as_deref())?;
        let answer = self
            .runtime
            .complete(&plugin, &conn, turn.request.clone())
            .await?;
        turn.commit(&self.store, &answer)
    }

    /// Send one chat turn and receive the answer as it is produced. A plugin
    /// that does not stream answers whole, as one delta. The turn is stored
    /// when the last event ([`ChatEvent::Done`]) is produced; dropping the
    /// [`ChatEvents`] earlier abandons it and stores nothing.
    pub async fn chat_stream(
        &self,
        connection: &str,
        input: ChatInput,
    ) -> Result<ChatEvents, ServiceError> {
        let (record, installed) = self.call_records(connection)?;
        let turn = self.prepare_turn(&record, &input)?;
        let (plugin, conn) =
            self.chat_call((&record, &installed), &turn, input.project.as_deref())?;
        let source = match self
            .runtime
            .chat_stream(&plugin, &conn, turn.request.clone())
            .await
        {
            Ok(stream) => Source::Stream(Box::new(stream)),
            Err(e) if matches!(e.plugin_error(), Some(PluginError::Unsupported(_))) => {
                let answer = self
                    .runtime
                    .complete(&plugin, &conn, turn.request.clone())
                    .await?;
                Source::Whole(Some(answer))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(ChatEvents {
            store: self.store.clone(),
            turn: Some(turn),
            source,
            answer: ChatResponse {
                content: String::new(),
                model: None,
                finish_reason: None,
                usage: None,
            },
        })
    }

    /// Conversations of the projects `projects` admits, most recently
    /// active first; one connection's when given.
    pub fn conversations(
        &self,
        connection: Option<&str>,
        projects: ProjectFilter,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, ServiceError> {
        let id = match connection {
            Some(c) => Some(self.connection(c)?.id),
            None => None,
        };
        Ok(self
            .store
            .read(|c| repo::list_conversations(c, id.as_deref(), &projects, limit))?)
    }

    /// A conversation with its messages, as stored (not redacted); not
    /// found unless `projects` admits its project.
    pub fn conversation(
        &self,
        id: &str,
        projects: ProjectFilter,
    ) -> Result<(ConversationRecord, Vec<MessageRecord>), ServiceError> {
        Ok(self.store.read(|c| {
            let record = repo::get_conversation(c, id, &projects)?;
            let messages = repo::messages(c, id)?;
            Ok::<_, StoreError>((record, messages))
        })?)
    }

    /// Delete a conversation, its messages and the plugin state kept for
    /// it; not found unless `projects` admits its project.
    pub fn delete_conversation(
        &self,
        id: &str,
        projects: ProjectFilter,
    ) -> Result<(), ServiceError> {
        Ok(self
            .store
            .write(|tx| repo::delete_conversation(tx, id, &projects))?)
    }

    /// A connection's chat options (redaction on and no domain prompt unless
    /// set).
    pub fn chat_options(&self, connection: &str) -> Result<ChatOptions, ServiceError> {
        let record = self.connection(connection)?;
        Ok(self.store.read(|c| repo::chat_options(c, &record.id))?)
    }

    /// Set a connection's chat options.
    pub fn set_chat_options(
        &self,
        connection: &str,
        options: &ChatOptions,
    ) -> Result<ChatOptions, ServiceError> {
        let record = self.connection(connection)?;
        if options
            .system_prompt
            .as_ref()
            .is_some_and(|p| p.len() > MAX_MESSAGE_BYTES)
        {
            return Err(ServiceError::Invalid(format!(
                "the system prompt is over {MAX_MESSAGE_BYTES} bytes"
            )));
        }
        let options = ChatOptions {
            redaction: options.redaction,
            system_prompt: options
                .system_prompt
                .clone()
                .filter(|p| !p.trim().is_empty()),
        };
        self.store
            .write(|tx| repo::set_chat_options(tx, &record.id, &options))?;
        Ok(options)
    }
}

enum Source {
    Stream(Box<ChatStream>),
    /// A plugin that does not stream: its whole answer, until handed out.
    Whole(Option<ChatResponse>),
}

/// A streamed chat turn; see [`Airlock::chat_stream`]. Pull events with
/// [`ChatEvents::next`], or turn it into a `futures::Stream` (for
/// server-sent events) with [`ChatEvents::into_stream`].
pub struct ChatEvents {
    store: Arc<Store>,
    /// `None` once the turn ended (stored or failed).
    turn: Option<Turn>,
    source: Source,
    /// The answer so far.
    answer: ChatResponse,
}

impl std::fmt::Debug for ChatEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatEvents")
            .field(
                "conversation",
                &self.turn.as_ref().map(|t| t.conversation_id.as_str()),
            )
            .field("received", &self.answer.content.len())
            .finish_non_exhaustive()
    }
}

impl ChatEvents {
    /// The conversation this turn belongs to (new or continued).
    pub fn conversation_id(&self) -> Option<&str> {
        self.turn.as_ref().map(|t| t.conversation_id.as_str())
    }

    /// The next event; `None` after [`ChatEvent::Done`] or an error.
    pub async fn next(&mut self) -> Option<Result<ChatEvent, ServiceError>> {
        self.turn.as_ref()?;
        match self.step().await {
            Ok(event) => Some(Ok(event)),
            Err(e) => {
                self.turn = None;
                Some(Err(e))
            }
        }
    }

    async fn step(&mut self) -> Result<ChatEvent, ServiceError> {
        loop {
            let delta = match &mut self.source {
                Source::Stream(stream) => stream.next().await?,
                Source::Whole(whole) => match whole.take() {
                    Some(answer) => {
                        self.answer.model = answer.model;
                        self.answer.usage = answer.usage;
                        Some(crate::runtime::types::ChatDelta {
                            content: answer.content,
                            finish_reason: answer.finish_reason,
                            usage: answer.usage,
                        })
                    }
                    None => None,
                },
            };
            match delta {
                Some(delta) => {
                    if delta.finish_reason.is_some() {
                        self.answer.finish_reason = delta.finish_reason;
                    }
                    if delta.usage.is_some() {
                        self.answer.usage = delta.usage;
                    }
                    if !delta.content.is_empty() {
                        self.answer.content.push_str(&delta.content);
                        return Ok(ChatEvent::Delta(delta.content));
                    }
                }
                None => {
                    let turn = self.turn.take().expect("checked by next");
                    return Ok(ChatEvent::Done(turn.commit(&self.store, &self.answer)?));
                }
            }
        }
    }

    /// The events as a `futures::Stream`, e.g. for an SSE response.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<ChatEvent, ServiceError>> + Send {
        futures::stream::unfold(self, |mut events| async move {
            events.next().await.map(|item| (item, events))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_can_cross_threads() {
        fn send<T: Send>() {}
        send::<ChatEvents>();
        send::<ChatAnswer>();
    }
}
