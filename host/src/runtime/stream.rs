//! A streamed chat answer: the call that opens it (the table's
//! `chat.complete-stream`) and the stream that holds the call's instance
//! while deltas are pulled, under an idle and a total limit.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::component::ResourceAny;

use super::Runtime;
use super::bindings::types::*;
use super::dispatch::CHAT_STREAM;
use super::invoke::{Call, CallError, LimitKind, not_exported, plugin_label};
use super::plugin::Plugin;
use crate::connection::Connection;

/// A streamed chat answer. Holds its call's instance until the stream ends
/// or is dropped; the call's deadline runs from when the stream was opened.
pub struct ChatStream {
    runtime: Arc<Runtime>,
    plugin: Arc<Plugin>,
    connection: Connection,
    call: Call,
    stream: Option<ResourceAny>,
    /// When the whole stream must be over ([`Limits::stream_total`]).
    ends: Instant,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatStream")
            .field("plugin", &self.plugin.id())
            .field("connection", &self.connection.name)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Open a streamed completion: the `chat.complete-stream` export (see
    /// the operation table in `dispatch`).
    pub async fn chat_stream(
        self: &Arc<Self>,
        plugin: &Arc<Plugin>,
        connection: &Connection,
        request: ChatRequest,
    ) -> Result<ChatStream, CallError> {
        const OP: &str = CHAT_STREAM.name;
        if plugin.exports.chat.is_none() {
            return Err(not_exported(plugin, CHAT_STREAM.interface, OP));
        }
        let deadline = Instant::now() + self.limits.wall_clock;
        let conn = Arc::new(connection.clone());
        let admitted = AtomicBool::new(false);
        let opened = async {
            let mut call = self.start(plugin, &conn, OP, &admitted).await?;
            let result = async {
                let guest = plugin
                    .exports
                    .chat
                    .as_ref()
                    .expect("checked above")
                    .load(&mut call.store, &call.instance)?;
                guest.call_complete_stream(&mut call.store, &request).await
            }
            .await;
            Ok::<_, CallError>((result, call))
        };
        let (result, call) = tokio::time::timeout_at(deadline.into(), opened)
            .await
            .map_err(|_| {
                self.deadline_error(plugin, connection, OP, admitted.load(Ordering::Relaxed))
            })??;
        let resource = self.finish(plugin, connection, OP, result, &call)?;
        Ok(ChatStream {
            runtime: self.clone(),
            plugin: plugin.clone(),
            connection: connection.clone(),
            call,
            stream: Some(resource),
            ends: Instant::now() + self.limits.stream_total,
        })
    }
}

impl ChatStream {
    /// The next delta, or `None` when the answer is complete.
    pub async fn next(&mut self) -> Result<Option<ChatDelta>, CallError> {
        const OP: &str = CHAT_STREAM.next;
        let Some(resource) = self.stream else {
            return Ok(None);
        };
        let plugin = self.plugin.clone();
        let step = async {
            let guest = plugin
                .exports
                .chat
                .as_ref()
                .expect("stream exists only for chat plugins")
                .load(&mut self.call.store, &self.call.instance)?;
            guest
                .completion_stream()
                .call_next(&mut self.call.store, resource)
                .await
        };
        // A long answer may take minutes; what must not happen is a long
        // silence, or an answer that never ends.
        let limits = self.runtime.limits();
        let idle = Instant::now() + limits.stream_idle;
        let (deadline, detail) = if idle < self.ends {
            (idle, format!("{:?} without a delta", limits.stream_idle))
        } else {
            (
                self.ends,
                format!("{:?} for the whole stream", limits.stream_total),
            )
        };
        let result = tokio::time::timeout_at(deadline.into(), step)
            .await
            .map_err(|_| {
                self.stream = None;
                CallError::Limit {
                    plugin: plugin_label(&self.plugin),
                    connection: self.connection.name.clone(),
                    operation: OP,
                    limit: LimitKind::WallClock,
                    detail,
                }
            })?;
        let out = self
            .runtime
            .finish(&self.plugin, &self.connection, OP, result, &self.call);
        if !matches!(out, Ok(Some(_))) {
            self.stream = None;
        }
        out
    }
}
