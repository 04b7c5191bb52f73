//! Per-invocation limits. Every call runs under all of them; the defaults are
//! safe for untrusted plugins and each can be tightened or loosened by the
//! embedder.

use std::time::Duration;

/// Bounds on one plugin invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline for the whole call, outbound requests included.
    /// A streamed chat answer gets it to open; then [`Limits::stream_idle`]
    /// and [`Limits::stream_total`] apply.
    pub wall_clock: Duration,
    /// Longest wait for the next delta of a streamed answer.
    pub stream_idle: Duration,
    /// Longest a streamed answer may run, from when it opened.
    pub stream_total: Duration,
    /// CPU time the guest may spend executing, measured in epoch ticks.
    pub cpu: Duration,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Most elements in any table.
    pub table_elements: usize,
    /// Most core instances one component may create.
    pub instances: usize,
    /// Most tables one component may create.
    pub tables: usize,
    /// Most linear memories one component may create.
    pub memories: usize,
    /// Largest string or list a host function accepts or returns (log lines,
    /// state values, operation results).
    pub hostcall_data_bytes: usize,
    /// Largest header section of an outbound request or inbound response.
    pub header_bytes: usize,
    /// Largest outbound request body.
    pub request_body_bytes: u64,
    /// Largest inbound response body.
    pub response_body_bytes: u64,
    /// Most outbound requests in one call.
    pub outbound_requests: u32,
    /// Connect timeout (DNS included) of an outbound request.
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive.
    pub first_byte_timeout: Duration,
    /// Most keys in a connection's plugin state.
    pub state_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_clock: Duration::from_secs(30),
            stream_idle: Duration::from_secs(30),
            stream_total: Duration::from_secs(600),
            cpu: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
            tables: 16,
            memories: 4,
            hostcall_data_bytes: 1 << 20,
            header_bytes: 64 << 10,
            request_body_bytes: 10 << 20,
            response_body_bytes: 16 << 20,
            outbound_requests: 64,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(20),
            state_keys: 256,
        }
    }
}

/// How often the engine's epoch advances; the CPU limit counts these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

impl Limits {
    /// The CPU limit in epoch ticks (at least one).
    pub fn cpu_ticks(&self) -> u64 {
        (self.cpu.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}
