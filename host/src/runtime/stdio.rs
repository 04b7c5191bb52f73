//! Guest stdout/stderr: never inherited, forwarded line by line to the host
//! log tagged with plugin and connection, with a cap on what one call may
//! write so a chatty guest cannot flood the log.
//!
//! The streams write synchronously into the log: writing a line never
//! blocks, so nothing needs a background task. (wasmtime-wasi's
//! `AsyncStdoutStream` would spawn a writer task for each stream of each
//! call, two tasks per call that a plugin which never logs still paid
//! for: 5% of a no-op call's CPU in the instantiate benchmark.)

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes one call may write to stdout and stderr together before the rest is
/// dropped (a note says so once).
const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Longest line kept; longer lines are split.
const MAX_LINE: usize = 8 * 1024;

#[derive(Debug)]
pub struct LogWriter {
    plugin: String,
    connection: String,
    stream: &'static str,
    line: Vec<u8>,
    written: usize,
    truncated: bool,
}

/// One of a call's output streams as WASI hands it out: every handle the
/// guest gets for it writes into the same [`LogWriter`].
#[derive(Debug, Clone)]
pub struct LogStream(Arc<Mutex<LogWriter>>);

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.lock().unwrap().write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl Pollable for LogStream {
    // Always ready: a write never waits.
    fn ready<'a, 'f>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async {})
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.lock().unwrap().emit();
        Poll::Ready(Ok(()))
    }
}

impl LogWriter {
    pub fn stream(plugin: &str, connection: &str, stream: &'static str) -> LogStream {
        LogStream(Arc::new(Mutex::new(Self {
            plugin: plugin.to_string(),
            connection: connection.to_string(),
            stream,
            line: Vec::new(),
            written: 0,
            truncated: false,
        })))
    }

    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        tracing::info!(
            target: "airlock::guest",
            plugin = %self.plugin,
            connection = %self.connection,
            stream = self.stream,
            "{}",
            text.trim_end_matches('\r')
        );
        self.line.clear();
    }
}

impl LogWriter {
    /// Take `buf` into the log: whole lines are emitted, the rest is kept
    /// until its newline; past the call's cap bytes are dropped (the guest
    /// never blocks or fails on logging).
    fn write(&mut self, buf: &[u8]) {
        let room = MAX_OUTPUT_BYTES.saturating_sub(self.written);
        if room == 0 {
            if !std::mem::replace(&mut self.truncated, true) {
                tracing::warn!(
                    target: "airlock::guest",
                    plugin = %self.plugin,
                    connection = %self.connection,
                    "plugin wrote more than {MAX_OUTPUT_BYTES} bytes to {}; the rest is dropped",
                    self.stream
                );
            }
            return;
        }
        let take = buf.len().min(room);
        self.written += take;
        for &b in &buf[..take] {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(stream: &LogStream) -> std::sync::MutexGuard<'_, LogWriter> {
        stream.0.lock().unwrap()
    }

    /// Every handle WASI hands out writes into the one writer, whole lines
    /// leave at once and a partial line waits for its newline.
    #[test]
    fn handles_share_one_writer_and_lines_wait_for_their_newline() {
        let stream = LogWriter::stream("p", "c", "stdout");
        let mut a = stream.p2_stream();
        let mut b = stream.p2_stream();
        a.write(Bytes::from_static(b"one\ntw")).unwrap();
        assert_eq!(writer(&stream).line, b"tw");
        b.write(Bytes::from_static(b"o\n")).unwrap();
        assert!(writer(&stream).line.is_empty());
        assert_eq!(writer(&stream).written, 8);
        assert!(a.check_write().unwrap() > 0, "a write never waits");
    }

    /// A long line is split at the line cap; past the call's output cap the
    /// rest is accepted and dropped.
    #[test]
    fn long_lines_split_and_output_past_the_cap_is_dropped() {
        let stream = LogWriter::stream("p", "c", "stderr");
        let mut out = stream.p2_stream();
        out.write(Bytes::from(vec![b'x'; MAX_LINE + 10])).unwrap();
        assert_eq!(writer(&stream).line.len(), 10);
        let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
        for _ in 0..8 {
            out.write(chunk.clone()).unwrap();
        }
        let w = writer(&stream);
        assert_eq!(w.written, MAX_OUTPUT_BYTES);
        assert!(w.truncated);
    }
}
