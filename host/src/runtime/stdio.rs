//! Guest stdout/stderr: never inherited, forwarded line by line to the host
//! log tagged with plugin and connection, with a cap on what one call may
//! write so a chatty guest cannot flood the log.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::AsyncStdoutStream;

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

impl LogWriter {
    pub fn stream(plugin: &str, connection: &str, stream: &'static str) -> AsyncStdoutStream {
        AsyncStdoutStream::new(
            MAX_LINE,
            Self {
                plugin: plugin.to_string(),
                connection: connection.to_string(),
                stream,
                line: Vec::new(),
                written: 0,
                truncated: false,
            },
        )
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

impl AsyncWrite for LogWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let room = MAX_OUTPUT_BYTES.saturating_sub(this.written);
        if room == 0 {
            if !std::mem::replace(&mut this.truncated, true) {
                tracing::warn!(
                    target: "airlock::guest",
                    plugin = %this.plugin,
                    connection = %this.connection,
                    "plugin wrote more than {MAX_OUTPUT_BYTES} bytes to {}; the rest is dropped",
                    this.stream
                );
            }
            // Accept and drop: the guest must not block or fail on logging.
            return Poll::Ready(Ok(buf.len()));
        }
        let take = buf.len().min(room);
        this.written += take;
        for &b in &buf[..take] {
            if b == b'\n' {
                this.emit();
            } else {
                this.line.push(b);
                if this.line.len() >= MAX_LINE {
                    this.emit();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.emit();
    }
}
