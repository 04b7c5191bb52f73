//! The data a call's `Store` holds, and the views the WASI, wasi-http and
//! airlock host implementations borrow from it.

use std::sync::Arc;

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::stdio::LogWriter;
use super::wasi_deny::{Denier, WasiDenials};
use crate::connection::Connection;
use crate::egress::CallEgress;
use crate::limits::Limits;
use crate::plugin_state::PluginState;

/// Everything one invocation owns. Built fresh per call and dropped with it,
/// so nothing leaks between calls, connections or projects.
pub struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) egress: CallEgress,
    pub(super) host: HostCtx,
    pub(super) limiter: CallLimiter,
    /// The `wasi:sockets` and `wasi:filesystem` operations refused so far.
    pub(super) wasi_denials: WasiDenials,
}

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallState")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// What the `airlock:plugin/host` interface serves.
#[derive(Debug)]
pub struct HostCtx {
    pub plugin_id: String,
    pub connection: Arc<Connection>,
    pub state: Arc<dyn PluginState>,
    pub limits: Limits,
}

impl CallState {
    /// The view airlock's denying `wasi:sockets`/`wasi:filesystem` take.
    pub(super) fn denier(&mut self) -> Denier<'_> {
        Denier::new(&mut self.table, &mut self.wasi_denials)
    }

    pub(super) fn new(host: HostCtx, egress: CallEgress, limits: &Limits) -> Self {
        // An empty WASI world: no environment, arguments, preopened
        // directories or network; stdio goes to the host log. Sockets and
        // the filesystem are not wasmtime-wasi's (see `wasi_deny`), so its
        // network settings below are never consulted; they are set to deny
        // anyway, so that linking wasmtime-wasi's sockets by mistake would
        // still reach nothing: `allow_tcp`/`allow_udp(false)` refuse a
        // socket before the OS creates one, `allow_ip_name_lookup(false)`
        // refuses lookups before the resolver, and `socket_addr_check`
        // refuses every address a socket would bind or connect to.
        let wasi = WasiCtx::builder()
            .stdout(LogWriter::stream(
                &host.plugin_id,
                &host.connection.name,
                "stdout",
            ))
            .stderr(LogWriter::stream(
                &host.plugin_id,
                &host.connection.name,
                "stderr",
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(limits.header_bytes);
        // The host's half of the handle limit (the store caps the plugin's
        // half): wasmtime's default would let one call hold a million.
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resource_handles);
        Self {
            wasi,
            http,
            table,
            egress,
            host,
            limiter: CallLimiter::new(limits),
            wasi_denials: WasiDenials::default(),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.egress,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// `HasData` marker for the airlock host interface.
pub struct HostApi;

impl HasData for HostApi {
    type Data<'a> = &'a mut HostCtx;
}

/// Which limit a call ran into, so the caller gets a precise error instead
/// of a bare trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Memory,
    Table,
    Cpu,
    /// One host call carried more than [`Limits::hostcall_budget`].
    HostcallData,
    /// The operation's result was larger than [`Limits::result_bytes`].
    Result,
    /// The call held [`Limits::resource_handles`] handles and asked for one
    /// more.
    Handles,
}

/// Memory/table/instance caps for one store, remembering what was refused.
#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    pub(super) hit: Option<LimitHit>,
}

impl CallLimiter {
    fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            memories: limits.memories,
            hit: None,
        }
    }
}

/// Raised from the limiter so growth beyond a cap traps instead of letting
/// the guest limp on after a failed `memory.grow`.
#[derive(Debug, thiserror::Error)]
#[error("plugin exceeded its {0:?} limit")]
pub struct LimitExceeded(pub LimitHit);

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(LimitHit::Memory);
            return Err(LimitExceeded(LimitHit::Memory).into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(LimitHit::Table);
            return Err(LimitExceeded(LimitHit::Table).into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}
