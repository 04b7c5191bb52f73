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
    /// Most core instances one component may create. Each costs the host
    /// only its bookkeeping (no linear memory: that is [`Limits::memories`]),
    /// so this bounds the work of instantiating rather than memory.
    pub instances: usize,
    /// Most tables one component may create.
    pub tables: usize,
    /// Most linear memories one component may create. With
    /// [`Limits::memory_bytes`] this is the call's bound on guest memory:
    /// `memories x memory_bytes` (256 MiB by default).
    pub memories: usize,
    /// Largest value a host function accepts from the plugin: a longer log
    /// message is truncated, a longer state value refused with
    /// `invalid-input` (as the WIT says). All the data of one host call
    /// together (strings and lists, counted at their size on the host) may
    /// exceed it by 64 KiB at most ([`Limits::hostcall_budget`]); more fails
    /// the call before the host allocates it.
    pub hostcall_data_bytes: usize,
    /// Largest result an operation may return, counted at its size on the
    /// host (string bytes, and every list element at its in-memory size). A
    /// larger one fails the call before the host allocates it.
    pub result_bytes: usize,
    /// Most resource handles (HTTP requests, headers, bodies, streams,
    /// pollables) a call may hold at once, in the host's table and in the
    /// plugin's; one more fails the call.
    pub resource_handles: usize,
    /// Most calls in flight at once on one connection (a streamed chat answer
    /// counts until it ends; at least 1). One more waits for a slot, first
    /// come first served, within its wall-clock deadline, and fails with
    /// [`CallError::Limit`](crate::CallError::Limit) if none frees up in time.
    pub connection_calls: usize,
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
            // componentize-py's CPython starts with 12.6 MiB of linear
            // memory and componentize-js's StarlingMonkey with 8-12 MiB; both
            // run their test-connection in 16 MiB (measured with 0.25.1 and
            // 0.22.0). 64 MiB leaves them room for real answers.
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            // Core instances per component, measured: a Rust plugin 3,
            // componentize-js 4, componentize-py 14, and componentize-py
            // with `--stub-wasi` 44 (a stub module per WASI interface). 64
            // fits all with room; the pool's total is this times
            // `max_concurrent_calls`, and an idle host's resident memory is
            // the same at 32, 64 and 128 (the pool reserves address space,
            // not memory, for instance slots).
            instances: 64,
            // Every component measured above has 2 tables and 1 memory.
            tables: 16,
            memories: 4,
            hostcall_data_bytes: 1 << 20,
            // The largest upstream answer a call may read
            // (`response_body_bytes`): a plugin can relay a whole one, and a
            // result costs the host no more than a quarter of one guest's
            // linear memory.
            result_bytes: 16 << 20,
            // A call may have its 64 outbound requests open at once, each
            // about a dozen handles (request, headers, body, stream, future,
            // pollable, response and its own); 1024 is room for that, and
            // bounds the host memory a call can pin through handles.
            resource_handles: 1024,
            // An eighth of the default pool (256 instances): a burst on one
            // connection waits its turn instead of taking every instance
            // from the others, and 32 calls in flight keep two cores busy.
            connection_calls: 32,
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

/// How often the engine's epoch advances; the CPU limit counts these ticks,
/// and a running guest yields its executor thread at each one.
///
/// A guest holds its thread for at most one tick, and every task queued
/// behind it waits that long: with four guests spinning on two cores the
/// benchmark's unrelated calls had a p99 of 17 ms at 2 ms and 10 ms at 1 ms
/// (`fairness` section). The ticker thread waking 1000 times a second costs
/// well under 1% of a core.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// What one host call may carry beyond [`Limits::hostcall_data_bytes`]: room
/// for the arguments that travel with a value (a state key is at most 256
/// bytes), so a value just over the limit still reaches the host's own check
/// and gets the answer the WIT promises (truncated, `invalid-input`).
pub const HOSTCALL_ARGUMENT_SLACK: usize = 64 << 10;

impl Limits {
    /// The CPU limit in epoch ticks (at least one).
    pub fn cpu_ticks(&self) -> u64 {
        (self.cpu.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64
    }

    /// The most data one host call may carry from the plugin to the host.
    pub fn hostcall_budget(&self) -> usize {
        self.hostcall_data_bytes
            .saturating_add(HOSTCALL_ARGUMENT_SLACK)
    }
}
