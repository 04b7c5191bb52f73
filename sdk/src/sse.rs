//! An incremental parser for server-sent events (`text/event-stream`), the
//! format OpenAI-compatible servers stream answers in.
//!
//! Feed it the body as it arrives, in pieces split anywhere (inside a line,
//! inside a UTF-8 character, between the `\r` and `\n` of a line end); it
//! returns each event once its terminating blank line has arrived:
//!
//! ```rust
//! use airlock_sdk::sse::SseParser;
//!
//! let mut parser = SseParser::new();
//! assert!(parser.feed(b"data: {\"a\":").unwrap().is_empty());
//! let events = parser.feed(b"1}\n\n: keep-alive\n\ndata: [DONE]\n\n").unwrap();
//! assert_eq!(events[0].data, "{\"a\":1}");
//! assert_eq!(events[1].data, "[DONE]");
//! assert!(!parser.has_partial());
//! ```
//!
//! Parsing follows the WHATWG EventSource rules: lines end in `\n`, `\r\n`
//! or `\r`; a line starting with `:` is a comment; `field: value` loses one
//! space after the colon; several `data` lines of one event are joined with
//! `\n`; an event without a `data` field is not dispatched; unknown fields
//! are ignored. A stream that ends without the blank line that would
//! complete an event leaves [`SseParser::has_partial`] true, so a caller can
//! tell an answer that was cut off mid-event.

use crate::types::{PluginError, UpstreamFailure};

/// Longest line or event accepted, in bytes: a server that never ends a line
/// cannot make a plugin buffer without bound.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event` field, when the server named the event type.
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id` field, when given.
    pub id: Option<String>,
}

/// Incremental `text/event-stream` parser; see the [module docs](self).
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous byte was a `\r` ending a line: a `\n` right after it
    /// belongs to the same line end.
    after_cr: bool,
    /// The first line has been seen (a leading byte-order mark is dropped).
    started: bool,
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
    /// Any field of the current event has been seen.
    pending: bool,
    pending_bytes: usize,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse the next piece of the body; returns the events it completed.
    /// A line or event over [`MAX_EVENT_BYTES`] is an `Upstream` error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, PluginError> {
        let mut events = Vec::new();
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_ended(&line)? {
                        events.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_EVENT_BYTES {
                        return Err(too_large());
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(events)
    }

    /// True when the stream so far ends inside an event: an unterminated
    /// line, or fields not yet followed by the blank line that dispatches
    /// them. At the end of a body this means the last event was cut off.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.pending
    }

    fn line_ended(&mut self, raw: &[u8]) -> Result<Option<Event>, PluginError> {
        let mut text = String::from_utf8_lossy(raw);
        if !self.started {
            self.started = true;
            if let Some(rest) = text.strip_prefix('\u{feff}') {
                text = rest.to_string().into();
            }
        }
        if text.is_empty() {
            return Ok(self.dispatch());
        }
        if text.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        self.pending = true;
        self.pending_bytes += value.len();
        if self.pending_bytes > MAX_EVENT_BYTES {
            return Err(too_large());
        }
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            // `retry` and unknown fields change nothing a plugin uses.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        self.pending = false;
        self.pending_bytes = 0;
        let event = self.event.take();
        let id = self.id.take();
        self.data.take().map(|data| Event { event, data, id })
    }
}

fn too_large() -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        status: 0,
        message: format!("the event stream sent a line or event over {MAX_EVENT_BYTES} bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    const STREAM: &str = "\u{feff}: comment first\r\n\
        data: {\"content\":\"héllo 日本\"}\r\n\r\n\
        event: update\nid: 7\ndata: line one\ndata:line two\ndata\n\n\
        retry: 1000\nunknown: x\n\n\
        data:  two spaces\r\r\
        data: [DONE]\n\n";

    fn expected() -> Vec<Event> {
        vec![
            Event {
                data: "{\"content\":\"héllo 日本\"}".into(),
                ..Event::default()
            },
            Event {
                event: Some("update".into()),
                id: Some("7".into()),
                data: "line one\nline two\n".into(),
            },
            Event {
                data: " two spaces".into(),
                ..Event::default()
            },
            Event {
                data: "[DONE]".into(),
                ..Event::default()
            },
        ]
    }

    #[test]
    fn parses_a_whole_stream() {
        let mut parser = SseParser::new();
        assert_eq!(parser.feed(STREAM.as_bytes()).unwrap(), expected());
        assert!(!parser.has_partial());
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        // Every split point, including inside multi-byte characters and
        // between `\r` and `\n`.
        for at in 0..=bytes.len() {
            let mut parser = SseParser::new();
            let mut events = parser.feed(&bytes[..at]).unwrap();
            events.extend(parser.feed(&bytes[at..]).unwrap());
            assert_eq!(events, expected(), "split at {at}");
        }
        // Byte by byte.
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for byte in bytes {
            events.extend(parser.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(events, expected());
    }

    #[test]
    fn a_cut_off_event_is_partial() {
        let mut parser = SseParser::new();
        let events = parser.feed(b"data: one\n\ndata: tw").unwrap();
        assert_eq!(data(&events), ["one"]);
        assert!(parser.has_partial());

        // A complete line without the blank line that dispatches it.
        let mut parser = SseParser::new();
        assert!(parser.feed(b"data: two\n").unwrap().is_empty());
        assert!(parser.has_partial());

        // Only comments: nothing pending.
        let mut parser = SseParser::new();
        assert!(parser.feed(b": ping\n").unwrap().is_empty());
        assert!(!parser.has_partial());
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let mut parser = SseParser::new();
        let events = parser
            .feed(b"event: ping\n\nid: 3\n\n\n\ndata: x\n\n")
            .unwrap();
        assert_eq!(data(&events), ["x"]);
        assert_eq!(
            events[0].event, None,
            "fields do not leak into the next event"
        );
    }

    #[test]
    fn endless_lines_are_refused() {
        let mut parser = SseParser::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut result = Ok(vec![]);
        for _ in 0..=(MAX_EVENT_BYTES / chunk.len()) {
            result = parser.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(PluginError::Upstream(_))),
            "{result:?}"
        );

        let mut parser = SseParser::new();
        let line = format!("data: {}\n", "b".repeat(600 * 1024));
        parser.feed(line.as_bytes()).unwrap();
        assert!(matches!(
            parser.feed(line.as_bytes()),
            Err(PluginError::Upstream(_))
        ));
    }
}
