//! The sandbox: one async engine (pooling allocator, epoch interruption), the
//! compiled-component cache, plugin loading, and per-call stores.
//!
//! A call is: fresh `Store` with its own limits and egress context →
//! instantiate from the plugin's `InstancePre` → call the export under a
//! wall-clock deadline and an epoch CPU budget → map the outcome to a typed
//! [`CallError`] naming the plugin and connection.

mod bindings;
mod boundary;
mod cache;
mod call_data;
mod dispatch;
mod guest_errors;
mod host_api;
mod invoke;
pub mod json;
mod outbound;
mod pack;
mod plugin;
mod slots;
mod stdio;
mod stream;
mod wasi_deny;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use bindings::{API_VERSION, types};
pub use cache::{ArtifactKey, CacheOutcome};
pub use dispatch::{OPERATIONS, operation_schemas};
pub use invoke::{CallError, LimitKind};
pub use pack::{PackError, Packed};
pub use plugin::{CategoryMismatch, Interface, LoadError, Plugin, check_category, precheck};
pub use slots::ConnectionLoad;
pub use stream::ChatStream;

use crate::audit::{AuditSink, MemoryAudit};
use crate::egress::EgressShared;
use crate::limits::{EPOCH_TICK, Limits};
use crate::manifest::EgressSpec;
use crate::metrics::Metrics;
use crate::net::{AddressPolicy, build_client};
use crate::plugin_state::{MemoryPluginState, PluginState};
use call_data::{CallState, HostApi};

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// What each call may use; a breach fails that call only.
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// The key that authenticates cached compiled components; `None` uses a
    /// random key per process (another process's entries are recompiled).
    pub artifact_key: Option<ArtifactKey>,
    /// Which addresses outbound requests may reach after DNS.
    pub address_policy: AddressPolicy,
    /// Origins that may receive a credential over plain http although they
    /// are not loopback (`AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS`); empty by
    /// default.
    pub cleartext_credential_origins: Vec<crate::net::Origin>,
    /// Pre-reserve instance slots (fast instantiation) instead of allocating
    /// on demand.
    pub pooling: bool,
    /// Most calls in flight at once (pool size).
    pub max_concurrent_calls: u32,
    /// Where every outbound request is recorded before it leaves (and every
    /// refusal); a failed write stops the request.
    pub audit: Arc<dyn AuditSink>,
    /// Where plugins' key/value state lives.
    pub state: Arc<dyn PluginState>,
    /// Where each call's refused WASI operations are counted
    /// (`airlock_wasi_denials_total`); the service passes its own.
    pub metrics: Arc<Metrics>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            cache_dir: None,
            artifact_key: None,
            address_policy: AddressPolicy::global_only(),
            cleartext_credential_origins: Vec::new(),
            pooling: true,
            max_concurrent_calls: 256,
            audit: Arc::new(MemoryAudit::new()),
            state: Arc::new(MemoryPluginState::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// The plugin host runtime. Cheap to share behind an `Arc`; every method
/// takes `&self`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: cache::ComponentCache,
    limits: Limits,
    egress: EgressShared,
    state: Arc<dyn PluginState>,
    address_policy: Arc<AddressPolicy>,
    slots: slots::ConnectionSlots,
    metrics: Arc<Metrics>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .field("address_policy", &self.address_policy)
            .finish_non_exhaustive()
    }
}

/// Bytes of each pooled linear memory kept resident between calls.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
/// Bytes of each pooled table kept resident between calls.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
/// Bytes of each pooled async stack kept resident between calls.
const KEEP_RESIDENT_STACK: usize = 128 << 10;

/// The engine settings plugins run with: epoch interruption, a 512 KiB wasm
/// stack and, when `pooling`, a pool of `max_concurrent_calls` instance
/// slots sized by `limits`. Public so that the benchmark's bare
/// wasmtime-wasi-http peer runs on the very same settings.
pub fn engine_config(limits: &Limits, pooling: bool, max_concurrent_calls: u32) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    cfg.max_wasm_stack(512 << 10);
    if pooling {
        let n = max_concurrent_calls.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * limits.instances as u32)
            .total_memories(n * limits.memories as u32)
            .total_tables(n * limits.tables as u32)
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            .max_core_instances_per_component(limits.instances as u32)
            .max_memories_per_component(limits.memories as u32)
            .max_tables_per_component(limits.tables as u32)
            // Reset the pages a call dirtied in place and keep them
            // resident instead of handing them back with madvise: the
            // profile of a pooled call showed the decommit (madvise,
            // TLB shootdowns) and the page faults refilling those pages
            // on the next call among its largest costs. Bounded by slots
            // actually used; a plugin's stack, data and first heap pages
            // fit in this much.
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE)
            .async_stack_keep_resident(KEEP_RESIDENT_STACK);
        // Without the pagemap scan wasmtime resets by memset-ing the
        // first `keep_resident` bytes of every memory whether the call
        // touched them or not: a Rust guest's whole 1 MiB shadow stack,
        // every call, a third of the CPU at 64 callers in the profile.
        // With it (Linux 6.7+; elsewhere the memset fallback stays) only
        // the pages the call wrote are reset.
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

impl Runtime {
    /// Build the engine (pooling allocator sized by the limits, epoch
    /// interruption), the linker with exactly the interfaces plugins may
    /// import, the filtering HTTP client and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let limits = config.limits.clone();
        let cfg = engine_config(&limits, config.pooling, config.max_concurrent_calls);
        let engine = Engine::new(&cfg).map_err(anyhow::Error::from)?;

        let linker = build_linker(&engine).map_err(anyhow::Error::from)?;

        let address_policy = Arc::new(config.address_policy);
        let egress = EgressShared {
            client: build_client(address_policy.clone(), limits.connect_timeout),
            audit: config.audit,
            cleartext_origins: Arc::new(config.cleartext_credential_origins),
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            cache: cache::ComponentCache::new(config.cache_dir, config.artifact_key),
            limits,
            egress,
            state: config.state,
            address_policy,
            slots: slots::ConnectionSlots::default(),
            metrics: config.metrics,
            _ticker: ticker,
        })
    }

    /// Where calls' refused WASI operations are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Origins that may receive a credential over plain http although they
    /// are not loopback.
    pub fn cleartext_credential_origins(&self) -> &[crate::net::Origin] {
        &self.egress.cleartext_origins
    }

    /// Which addresses outbound requests may reach after DNS.
    pub fn address_policy(&self) -> &AddressPolicy {
        &self.address_policy
    }

    /// How many calls the connection with id `connection_id` has running
    /// and waiting for a slot ([`Limits::connection_calls`]) now.
    pub fn connection_load(&self, connection_id: &str) -> ConnectionLoad {
        self.slots.load(connection_id, self.limits.connection_calls)
    }

    /// Validate, compile (or load from cache) and link a plugin, granting it
    /// the egress its manifest declares. Hosts that record an operator's
    /// approval use [`Runtime::load_granted`].
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        self.load_granted(wasm, None)
    }

    /// [`Runtime::load`] with the egress the operator approved (`None`: what
    /// the manifest declares). Each connection's `base-url` origin is granted
    /// on top.
    pub fn load_granted(
        &self,
        wasm: &[u8],
        approved: Option<&[EgressSpec]>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let (manifest, sha256) = precheck(wasm)?;
        let granted = match approved {
            None => manifest.egress_rules(),
            Some(specs) => specs.iter().map(|e| e.rule().clone()).collect(),
        };
        let (component, outcome) =
            self.cache
                .load(&self.engine, wasm, &sha256)
                .map_err(|e| LoadError::Compile {
                    plugin: format!("{}@{}", manifest.id, manifest.version),
                    message: format!("{e:#}"),
                })?;
        let interfaces = plugin::check_component(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        tracing::debug!(plugin = %manifest.id, ?outcome, "plugin loaded");
        Ok(Arc::new(plugin::link(
            manifest, sha256, interfaces, outcome, granted, pre,
        )?))
    }

    /// [`Runtime::load`] from a file.
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> anyhow::Result<Arc<Plugin>> {
        use anyhow::Context as _;
        let path = path.as_ref();
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.load(&wasm)
            .with_context(|| format!("loading plugin {}", path.display()))
    }
}

/// The linker every plugin is instantiated with: exactly what the
/// load-time import allow-list (`plugin::ALLOWED_IMPORTS`) lets through.
///
/// wasmtime-wasi's WASI 0.2 basics (io, clocks, random, cli) serve an empty
/// world (see `CallState::new`); sockets and the filesystem are airlock's
/// denying implementations (`wasi_deny`), never wasmtime-wasi's, so
/// `wasmtime_wasi::p2::add_to_linker_async` (which links its real ones) is
/// not used.
fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, io, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};

    let mut l: Linker<CallState> = Linker::new(engine);
    io::error::add_to_linker::<_, IoTable>(&mut l, |s| &mut s.table)?;
    io::poll::add_to_linker::<_, IoTable>(&mut l, |s| &mut s.table)?;
    io::streams::add_to_linker::<_, IoTable>(&mut l, |s| &mut s.table)?;
    guest_errors::add_to_linker(&mut l)?;
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(&mut l, CallState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(&mut l, CallState::clocks)?;
    random::random::add_to_linker::<_, WasiRandom>(&mut l, CallState::random)?;
    random::insecure::add_to_linker::<_, WasiRandom>(&mut l, CallState::random)?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(&mut l, CallState::random)?;
    cli::exit::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::environment::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::stdin::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::stdout::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::stderr::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(&mut l, CallState::cli)?;
    wasi_deny::add_to_linker(&mut l, CallState::denier)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
    bindings::airlock::plugin::host::add_to_linker::<_, HostApi>(&mut l, |s| &mut s.host)?;
    bindings::airlock::plugin::outbound::add_to_linker::<_, outbound::OutboundApi>(&mut l, |s| {
        &mut s.egress
    })?;
    types::add_to_linker::<_, HostApi>(&mut l, |s| &mut s.host)?;
    Ok(l)
}

/// `HasData` for the wasi-io interfaces: they need only the call's table.
struct IoTable;

impl wasmtime::component::HasData for IoTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
