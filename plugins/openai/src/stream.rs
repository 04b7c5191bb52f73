//! Streamed answers: server-sent events decoded incrementally into deltas.
//!
//! Each body piece the host delivers becomes at most one delta: the content
//! of every complete event in it, concatenated, with the finish reason and
//! usage when an event carried them. `data: [DONE]` ends the answer; a body
//! that ends before it (cut off mid-event or not) is an `upstream` error,
//! because the answer may be incomplete.

use std::cell::RefCell;

use airlock_sdk::CompletionStream;
use airlock_sdk::http::StreamingResponse;
use airlock_sdk::sse::SseParser;
use airlock_sdk::types::{ChatDelta, PluginError, UpstreamFailure};

use crate::wire;

/// The pure part: bytes in, deltas out.
#[derive(Debug, Default)]
pub struct Decoder {
    parser: SseParser,
    done: bool,
}

impl Decoder {
    /// Decode one body piece; `None` when it completed no content-bearing
    /// event. Data after `[DONE]` is ignored.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<ChatDelta>, PluginError> {
        if self.done {
            return Ok(None);
        }
        let mut merged: Option<ChatDelta> = None;
        for event in self.parser.feed(bytes)? {
            if event.data.trim() == "[DONE]" {
                self.done = true;
                break;
            }
            let delta = wire::chunk(&event.data)?;
            match &mut merged {
                None => merged = Some(delta),
                Some(m) => {
                    m.content.push_str(&delta.content);
                    if delta.finish_reason.is_some() {
                        m.finish_reason = delta.finish_reason;
                    }
                    if delta.usage.is_some() {
                        m.usage = delta.usage;
                    }
                }
            }
        }
        Ok(merged
            .filter(|d| !d.content.is_empty() || d.finish_reason.is_some() || d.usage.is_some()))
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The body has ended: fine after `[DONE]`, an error otherwise.
    pub fn end(&self) -> Result<(), PluginError> {
        if self.done {
            return Ok(());
        }
        let how = if self.parser.has_partial() {
            "in the middle of an event"
        } else {
            "without `data: [DONE]`"
        };
        Err(PluginError::Upstream(UpstreamFailure {
            status: 200,
            message: format!("the answer stream ended {how}; the answer may be incomplete"),
        }))
    }
}

/// The exported `completion-stream`: the upstream body being read.
#[derive(Debug)]
pub struct OpenAiStream {
    state: RefCell<State>,
}

#[derive(Debug)]
struct State {
    /// `None` for a server that ignored `stream: true` and answered whole.
    response: Option<StreamingResponse>,
    decoder: Decoder,
    /// That whole answer, handed out as one delta.
    whole: Option<ChatDelta>,
    finished: bool,
}

impl OpenAiStream {
    pub fn new(response: StreamingResponse) -> Result<OpenAiStream, PluginError> {
        let is_json = response
            .header("content-type")
            .is_some_and(|t| t.trim_start().starts_with("application/json"));
        let (response, whole) = if is_json {
            let status = response.status;
            let whole = response.into_response()?;
            let answer = wire::response(status, &whole.body)?;
            let delta = ChatDelta {
                content: answer.content,
                finish_reason: answer.finish_reason,
                usage: answer.usage,
            };
            (None, Some(delta))
        } else {
            (Some(response), None)
        };
        Ok(OpenAiStream {
            state: RefCell::new(State {
                response,
                decoder: Decoder::default(),
                whole,
                finished: false,
            }),
        })
    }
}

impl CompletionStream for OpenAiStream {
    fn next(&self) -> Result<Option<ChatDelta>, PluginError> {
        let mut state = self.state.borrow_mut();
        if state.finished {
            return Ok(None);
        }
        let result = state.step();
        if !matches!(result, Ok(Some(_))) {
            state.finished = true;
            // Release the upstream body now rather than when the host drops
            // the stream.
            state.response = None;
        }
        result
    }
}

impl State {
    fn step(&mut self) -> Result<Option<ChatDelta>, PluginError> {
        if let Some(whole) = self.whole.take() {
            return Ok(Some(whole));
        }
        let Some(response) = self.response.as_mut() else {
            return Ok(None);
        };
        loop {
            if self.decoder.is_done() {
                return Ok(None);
            }
            let Some(chunk) = response.read_chunk()? else {
                self.decoder.end()?;
                return Ok(None);
            };
            if let Some(delta) = self.decoder.feed(&chunk)? {
                return Ok(Some(delta));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Grüß\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\" 日本\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(pieces: &[&[u8]]) -> (Vec<ChatDelta>, Result<(), PluginError>) {
        let mut decoder = Decoder::default();
        let mut deltas = Vec::new();
        for piece in pieces {
            match decoder.feed(piece) {
                Ok(Some(d)) => deltas.push(d),
                Ok(None) => {}
                Err(e) => return (deltas, Err(e)),
            }
        }
        let end = decoder.end();
        (deltas, end)
    }

    #[test]
    fn decodes_at_every_split() {
        let bytes = STREAM.as_bytes();
        for at in 0..=bytes.len() {
            let (deltas, end) = run(&[&bytes[..at], &bytes[at..]]);
            end.unwrap();
            let text: String = deltas.iter().map(|d| d.content.as_str()).collect();
            assert_eq!(text, "Grüß 日本", "split at {at}");
            assert!(
                deltas
                    .iter()
                    .any(|d| d.finish_reason.as_deref() == Some("stop"))
            );
            assert!(
                deltas
                    .iter()
                    .any(|d| d.usage.as_ref().is_some_and(|u| u.total_tokens == 7))
            );
        }
    }

    #[test]
    fn a_stream_without_done_is_an_error() {
        let cut = STREAM.split("data: [DONE]").next().unwrap();
        let (deltas, end) = run(&[cut.as_bytes()]);
        assert_eq!(deltas.len(), 1);
        match end {
            Err(PluginError::Upstream(u)) => assert!(
                u.message.contains("without `data: [DONE]`"),
                "{}",
                u.message
            ),
            other => panic!("{other:?}"),
        }
        let (_, end) = run(&[b"data: {\"choices\":[{\"delta\":{\"content\":\"par"]);
        match end {
            Err(PluginError::Upstream(u)) => assert!(u.message.contains("middle of an event")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_chunks_and_data_after_done() {
        let (_, end) = run(&[b"data: nope\n\n"]);
        assert!(matches!(end, Err(PluginError::Upstream(_))));
        let (deltas, end) =
            run(&[b"data: [DONE]\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"]);
        assert!(deltas.is_empty());
        end.unwrap();
    }
}
