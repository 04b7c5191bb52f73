//! Calling a plugin's exports: one fresh store and instance per call, run
//! under the call's deadline and CPU budget, with every failure mapped to a
//! [`CallError`] that names the plugin, the connection and what to do.
//!
//! The typed method of each operation is generated from the operation table
//! in `dispatch`; the streamed chat answer, which keeps its instance across
//! pulls, is written out here under the table's name for it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::Instance;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::Runtime;
use super::bindings::types::*;
use super::boundary;
use super::call_data::{CallState, HostCtx, LimitExceeded, LimitHit};
use super::plugin::{Interface, Plugin};
use super::slots::CallSlot;
use crate::connection::Connection;
use crate::egress::{CallEgress, CallTracker};
use crate::net::EgressRule;

/// Which limit stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Linear memory grew past its limit.
    Memory,
    /// A table grew past its element limit.
    Table,
    /// The call used up its epoch CPU budget.
    Cpu,
    /// The wasm stack overflowed.
    Stack,
    /// The call, or a stream's wait for its next delta, ran past its deadline.
    WallClock,
    /// One host call carried more data than [`Limits::hostcall_data_bytes`]
    /// allows.
    ///
    /// [`Limits::hostcall_data_bytes`]: crate::Limits::hostcall_data_bytes
    HostcallData,
    /// The operation's result was larger than [`Limits::result_bytes`].
    ///
    /// [`Limits::result_bytes`]: crate::Limits::result_bytes
    Result,
    /// The call held as many resource handles as
    /// [`Limits::resource_handles`] and asked for another.
    ///
    /// [`Limits::resource_handles`]: crate::Limits::resource_handles
    Handles,
    /// The connection had [`Limits::connection_calls`] calls in flight for
    /// as long as this one could wait: it never started.
    ///
    /// [`Limits::connection_calls`]: crate::Limits::connection_calls
    ConnectionCalls,
}

impl LimitKind {
    /// The [`Limits`](crate::Limits) field that sets this limit, if one does.
    pub fn field(self) -> Option<&'static str> {
        match self {
            LimitKind::Memory => Some("memory_bytes"),
            LimitKind::Table => Some("table_elements"),
            LimitKind::Cpu => Some("cpu"),
            LimitKind::Stack => None,
            LimitKind::WallClock => Some("wall_clock"),
            LimitKind::HostcallData => Some("hostcall_data_bytes"),
            LimitKind::Result => Some("result_bytes"),
            LimitKind::Handles => Some("resource_handles"),
            LimitKind::ConnectionCalls => Some("connection_calls"),
        }
    }

    /// What the caller can do about it.
    fn advice(self) -> String {
        match (self, self.field()) {
            (LimitKind::ConnectionCalls, Some(field)) => format!(
                "calls over it wait for a slot within their deadline: retry later, or raise `Limits::{field}`"
            ),
            (_, Some(field)) => {
                format!("the plugin is faulty or the limit too tight (`Limits::{field}`)")
            }
            (_, None) => "the plugin is faulty".to_string(),
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Memory => "memory",
            LimitKind::Table => "table size",
            LimitKind::Cpu => "CPU time",
            LimitKind::Stack => "stack depth",
            LimitKind::WallClock => "wall-clock deadline",
            LimitKind::HostcallData => "host-call data",
            LimitKind::Result => "result size",
            LimitKind::Handles => "resource handle",
            LimitKind::ConnectionCalls => "concurrent calls per connection",
        })
    }
}

/// Why a plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned a typed error (an expected failure).
    #[error("{plugin} on connection `{connection}`: {operation} failed: {}{}", describe(.error), denial_note(.denials))]
    Plugin {
        /// `plugin <id>@<version>`.
        plugin: String,
        /// The connection's name.
        connection: String,
        /// The WIT name of the operation (`tickets.get`).
        operation: &'static str,
        /// What the plugin returned.
        error: Box<PluginError>,
        /// Why the host refused outbound requests during the call.
        denials: Vec<String>,
    },
    /// The plugin does not export the interface.
    #[error("{plugin} does not export the `{interface}` interface, so it cannot {operation}")]
    NotExported {
        /// `plugin <id>@<version>`.
        plugin: String,
        /// The interface the operation belongs to.
        interface: Interface,
        /// The WIT name of the operation.
        operation: &'static str,
    },
    /// The call breached a limit and was stopped (for
    /// [`LimitKind::ConnectionCalls`], before it started).
    #[error(
        "{plugin} on connection `{connection}`: {operation} stopped: it exceeded its {limit} limit ({detail}); {}",
        .limit.advice()
    )]
    Limit {
        /// `plugin <id>@<version>`.
        plugin: String,
        /// The connection's name.
        connection: String,
        /// The WIT name of the operation.
        operation: &'static str,
        /// Which limit.
        limit: LimitKind,
        /// The limit's value, e.g. `33554432 bytes of linear memory`.
        detail: String,
    },
    /// The plugin crashed (a bug in the plugin).
    #[error(
        "{plugin} on connection `{connection}`: {operation} crashed: {message}; report this to the plugin's author"
    )]
    Trap {
        /// `plugin <id>@<version>`.
        plugin: String,
        /// The connection's name.
        connection: String,
        /// The WIT name of the operation.
        operation: &'static str,
        /// The trap, or the host error that ended the call.
        message: String,
    },
    /// The plugin could not be instantiated.
    #[error("{plugin}: could not start an instance for {operation}: {message}")]
    Instantiate {
        /// `plugin <id>@<version>`.
        plugin: String,
        /// The WIT name of the operation.
        operation: &'static str,
        /// Why instantiation failed.
        message: String,
    },
    /// `invoke_json` was given an operation name it does not know.
    #[error("unknown operation `{operation}`; operations are: {known}")]
    UnknownOperation {
        /// The name given.
        operation: String,
        /// [`OPERATIONS`](super::OPERATIONS), comma-separated.
        known: String,
    },
    /// `invoke_json` was given input that does not fit the operation.
    #[error("invalid input for {operation}: {message}")]
    BadInput {
        /// The WIT name of the operation.
        operation: String,
        /// What did not fit, from the JSON decoder, after the path of the
        /// field that did not (`messages[0].role: unknown variant ...`).
        message: String,
    },
    /// The connection is unusable as configured.
    #[error("connection `{connection}`: {message}")]
    Connection {
        /// The connection's name.
        connection: String,
        /// What is wrong with it.
        message: String,
    },
}

fn denial_note(denials: &[String]) -> String {
    if denials.is_empty() {
        String::new()
    } else {
        format!(" (host refused: {})", denials.join("; "))
    }
}

impl CallError {
    /// The plugin's typed error, when that is what ended the call.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            CallError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The limit that stopped the call, when one did.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            CallError::Limit { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}

/// A person-readable account of a plugin error.
pub fn describe(error: &PluginError) -> String {
    struct D<'a>(&'a PluginError);
    impl fmt::Display for D<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                PluginError::InvalidInput(m) => write!(f, "invalid input: {m}"),
                PluginError::Unauthorized(m) => {
                    write!(f, "unauthorized (check the connection's credential): {m}")
                }
                PluginError::Forbidden(m) => {
                    write!(f, "forbidden (the credential lacks permission): {m}")
                }
                PluginError::NotFound(m) => write!(f, "not found: {m}"),
                PluginError::Conflict(m) => write!(f, "conflict: {m}"),
                PluginError::RateLimited(r) => match r.retry_after_secs {
                    Some(s) => write!(f, "rate limited, retry after {s}s: {}", r.message),
                    None => write!(f, "rate limited: {}", r.message),
                },
                PluginError::Upstream(u) if u.status == 0 => {
                    write!(f, "upstream failure: {}", u.message)
                }
                PluginError::Upstream(u) => {
                    write!(f, "upstream answered {}: {}", u.status, u.message)
                }
                PluginError::EgressDenied(m) => write!(f, "outbound request refused: {m}"),
                PluginError::Timeout(m) => write!(f, "timed out: {m}"),
                PluginError::Unsupported(m) => write!(f, "unsupported: {m}"),
                PluginError::Internal(m) => write!(f, "internal plugin error: {m}"),
            }
        }
    }
    D(error).to_string()
}

/// Everything one call owns while it runs.
pub(super) struct Call {
    pub store: Store<CallState>,
    pub instance: Instance,
    pub tracker: Arc<CallTracker>,
    /// The call's place on its connection, freed when the call is dropped.
    _slot: CallSlot,
    /// Where the call's refused WASI operations are counted when it ends.
    denials: DenialReport,
}

/// Whom a call's refused WASI operations are reported for, and where.
struct DenialReport {
    metrics: Arc<crate::metrics::Metrics>,
    plugin: String,
    connection: String,
}

/// However a call ends (a result, an error, a trap, its deadline, a dropped
/// stream), the WASI operations refused during it are counted and logged
/// once.
impl Drop for Call {
    fn drop(&mut self) {
        let denials = &self.store.data().wasi_denials;
        if denials.count() == 0 {
            return;
        }
        let DenialReport {
            metrics,
            plugin,
            connection,
        } = &self.denials;
        tracing::warn!(
            target: "airlock::wasi",
            plugin = %plugin,
            connection = %connection,
            denied = denials.count(),
            "the plugin tried to use sockets or files, which airlock refuses: {}",
            denials.examples().join("; ")
        );
        metrics.record_wasi_denials(plugin, connection, denials.count());
    }
}

type CallFuture<'a, R> =
    Pin<Box<dyn Future<Output = wasmtime::Result<Result<R, PluginError>>> + Send + 'a>>;

impl Runtime {
    fn grants(
        &self,
        plugin: &Plugin,
        connection: &Connection,
    ) -> Result<Vec<EgressRule>, CallError> {
        let mut grants = plugin.granted().to_vec();
        match connection.base_origin() {
            Ok(Some(origin)) => grants.push(EgressRule::origin(origin.clone())),
            Ok(None) => {}
            Err(e) => {
                return Err(CallError::Connection {
                    connection: connection.name.clone(),
                    message: format!("setting `base-url` is not a usable URL: {e}"),
                });
            }
        }
        Ok(grants)
    }

    /// A fresh store and instance for one call, once the connection has a
    /// free call slot (`admitted` says when it has one).
    pub(super) async fn start(
        &self,
        plugin: &Plugin,
        connection: &Arc<Connection>,
        operation: &'static str,
        admitted: &AtomicBool,
    ) -> Result<Call, CallError> {
        let slot = self
            .slots
            .acquire(&connection.id, self.limits.connection_calls)
            .await;
        admitted.store(true, Ordering::Relaxed);
        let tracker = Arc::new(CallTracker::default());
        let egress = CallEgress::new(
            self.egress.clone(),
            plugin.id(),
            &plugin.manifest().version,
            connection.clone(),
            self.grants(plugin, connection)?,
            self.limits.clone(),
            tracker.clone(),
        );
        let host = HostCtx {
            plugin_id: plugin.id().to_string(),
            connection: connection.clone(),
            state: self.state.clone(),
            limits: self.limits.clone(),
        };
        let mut store = Store::new(&self.engine, CallState::new(host, egress, &self.limits));
        store.limiter(|s| &mut s.limiter);
        boundary::bound(&mut store, &self.limits);
        meter_cpu(&mut store, self.limits.cpu_ticks());
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Instantiate {
                plugin: plugin_label(plugin),
                operation,
                message: format!("{e:#}"),
            })?;
        Ok(Call {
            store,
            instance,
            tracker,
            _slot: slot,
            denials: DenialReport {
                metrics: self.metrics.clone(),
                plugin: plugin.id().to_string(),
                connection: connection.name.clone(),
            },
        })
    }

    /// Run `f` against a fresh instance under the call's limits.
    pub(super) async fn run<R, F>(
        &self,
        plugin: &Plugin,
        connection: &Connection,
        operation: &'static str,
        f: F,
    ) -> Result<R, CallError>
    where
        R: Send,
        F: for<'a> FnOnce(&'a mut Call, &'a Plugin) -> CallFuture<'a, R> + Send,
    {
        let connection = Arc::new(connection.clone());
        let admitted = AtomicBool::new(false);
        let work = async {
            let mut call = self
                .start(plugin, &connection, operation, &admitted)
                .await?;
            let result = f(&mut call, plugin).await;
            Ok::<_, CallError>((result, call))
        };
        match tokio::time::timeout(self.limits.wall_clock, work).await {
            Err(_) => Err(self.deadline_error(
                plugin,
                &connection,
                operation,
                admitted.load(Ordering::Relaxed),
            )),
            Ok(Err(e)) => Err(e),
            Ok(Ok((result, call))) => self.finish(plugin, &connection, operation, result, &call),
        }
    }

    pub(super) fn finish<R>(
        &self,
        plugin: &Plugin,
        connection: &Connection,
        operation: &'static str,
        result: wasmtime::Result<Result<R, PluginError>>,
        call: &Call,
    ) -> Result<R, CallError> {
        // The names are built for an error only: this runs for every call.
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(error)) => Err(CallError::Plugin {
                plugin: plugin_label(plugin),
                connection: connection.name.clone(),
                operation,
                error: Box::new(error),
                denials: call.tracker.denials(),
            }),
            Err(err) => {
                let (label, conn) = (plugin_label(plugin), connection.name.clone());
                let hit = call
                    .store
                    .data()
                    .limiter
                    .hit
                    .or_else(|| err.downcast_ref::<LimitExceeded>().map(|l| l.0))
                    .or_else(|| boundary::breach(&err));
                let trap = err.downcast_ref::<Trap>();
                let kind = match (hit, trap) {
                    (Some(hit), _) => Some(limit_kind(hit)),
                    (None, Some(Trap::Interrupt)) => Some(LimitKind::Cpu),
                    (None, Some(Trap::StackOverflow)) => Some(LimitKind::Stack),
                    (None, _) => None,
                };
                Err(match kind {
                    Some(limit) => CallError::Limit {
                        plugin: label,
                        connection: conn,
                        operation,
                        limit,
                        detail: self.limit_detail(limit),
                    },
                    None => CallError::Trap {
                        plugin: label,
                        connection: conn,
                        operation,
                        message: match trap {
                            // Rust guests keep their stack in linear memory;
                            // overflowing it lands here.
                            Some(Trap::MemoryOutOfBounds) => format!(
                                "{} (a stack overflow or memory bug inside the plugin)",
                                Trap::MemoryOutOfBounds
                            ),
                            Some(trap) => trap.to_string(),
                            None => format!("{err:#}"),
                        },
                    },
                })
            }
        }
    }

    /// The value of limit `kind`, as a call's error states it.
    pub(super) fn limit_detail(&self, kind: LimitKind) -> String {
        let l = &self.limits;
        match kind {
            LimitKind::Memory => format!("{} bytes of linear memory", l.memory_bytes),
            LimitKind::Table => format!("{} table elements", l.table_elements),
            LimitKind::Cpu => format!("{:?} of execution", l.cpu),
            LimitKind::Stack => "512 KiB of wasm stack".into(),
            LimitKind::WallClock => format!("{:?}", l.wall_clock),
            LimitKind::HostcallData => format!(
                "{} bytes passed to one host call: a value of at most {} bytes and its other arguments",
                l.hostcall_budget(),
                l.hostcall_data_bytes
            ),
            LimitKind::Result => format!(
                "{} bytes of result, counted at its size in host memory",
                l.result_bytes
            ),
            LimitKind::Handles => format!("{} resource handles held at once", l.resource_handles),
            LimitKind::ConnectionCalls => {
                format!("{} calls in flight on this connection", l.connection_calls)
            }
        }
    }
}

fn limit_kind(hit: LimitHit) -> LimitKind {
    match hit {
        LimitHit::Memory => LimitKind::Memory,
        LimitHit::Table => LimitKind::Table,
        LimitHit::Cpu => LimitKind::Cpu,
        LimitHit::HostcallData => LimitKind::HostcallData,
        LimitHit::Result => LimitKind::Result,
        LimitHit::Handles => LimitKind::Handles,
    }
}

/// Count the epoch ticks the guest runs through, stop it after `budget`, and
/// yield to the executor at every tick in between.
fn meter_cpu(store: &mut Store<CallState>, budget: u64) {
    store.set_epoch_deadline(1);
    let mut ticks = 0u64;
    store.epoch_deadline_callback(move |mut ctx| {
        ticks += 1;
        if ticks > budget {
            ctx.data_mut().limiter.hit = Some(LimitHit::Cpu);
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield so a busy guest cannot starve the other tasks on this
        // thread. wasmtime's own yield wakes the task at once, and tokio
        // polls its I/O driver only every 61 task polls while every worker
        // is busy: with guests spinning, other calls' sockets went unread
        // for 61 slices (~600 ms at a 10 ms tick). tokio's yield_now defers
        // the task until the worker has run what is ready and polled the
        // driver, so a guest's slice is the most anything waits for it.
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
}

pub(super) fn plugin_label(plugin: &Plugin) -> String {
    format!("plugin {}@{}", plugin.id(), plugin.manifest().version)
}

/// The error for calling `operation` of a plugin that does not export its
/// interface.
pub(super) fn not_exported(
    plugin: &Plugin,
    interface: Interface,
    operation: &'static str,
) -> CallError {
    CallError::NotExported {
        plugin: plugin_label(plugin),
        interface,
        operation,
    }
}

impl Runtime {
    /// The error of a call whose deadline passed: its wall-clock limit, or,
    /// when it never got one of its connection's slots, that limit.
    pub(super) fn deadline_error(
        &self,
        plugin: &Plugin,
        connection: &Connection,
        operation: &'static str,
        admitted: bool,
    ) -> CallError {
        let (limit, detail) = if admitted {
            (
                LimitKind::WallClock,
                self.limit_detail(LimitKind::WallClock),
            )
        } else {
            (
                LimitKind::ConnectionCalls,
                format!(
                    "{}; this call waited its whole {:?} deadline for one to end",
                    self.limit_detail(LimitKind::ConnectionCalls),
                    self.limits.wall_clock
                ),
            )
        };
        CallError::Limit {
            plugin: plugin_label(plugin),
            connection: connection.name.clone(),
            operation,
            limit,
            detail,
        }
    }
}
