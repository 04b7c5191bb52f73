//! `peer`: airlock's full path against a bare wasmtime-wasi-http host
//! making the same GET, built in this benchmark from the same wasmtime.
//!
//! The peer hosts the way a Spin- or wasmCloud-style host does: one engine,
//! the component compiled and linked once (`InstancePre`), and per call a
//! fresh pooled instance in a fresh `Store` holding an empty `WasiCtx`, a
//! `WasiHttpCtx` and a `ResourceTable`, wasmtime-wasi-http's default hooks
//! (its `default_send_request`: a new connection per request), and nothing
//! else: no egress check, no credential, no audit, no limits.
//!
//! Fair to the peer: its engine has airlock's engine settings (pooling
//! allocator sized the same, pages kept resident, pagemap scan, epoch
//! interruption code with no budget, the same stack limit), its guest
//! (`tests/guests/peer`) does what the `minimal` plugin's `test-connection`
//! does with plain wit-bindgen (GET with `accept: application/json`, read
//! the whole body through wasi:http streams, parse `{"name": ...}` with
//! serde_json), and it runs in the same process, against the same loopback
//! server, interleaved with airlock and the native client. The row
//! "native, new connection per request" shows what the peer's send costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::Airlock;
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::summary::{self, Goal};
use super::{
    Client, Options, Rate, Stats, connection_name, host, native_client, native_get, on_worker,
    plugin_get, stats, throughput, us,
};

/// Callers of the throughput runs.
const CALLERS: usize = 64;

/// What a peer call's `Store` holds: the bare minimum wasmtime-wasi and
/// wasmtime-wasi-http ask for.
struct PeerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for PeerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PeerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            // wasmtime-wasi-http's own `send_request`.
            hooks: Default::default(),
        }
    }
}

/// The bare host: the peer guest linked once against wasmtime-wasi and
/// wasmtime-wasi-http.
struct Peer {
    pre: InstancePre<PeerState>,
    get: ComponentExportIndex,
}

/// An engine with airlock's own settings (`airlock::runtime::engine_config`)
/// for a pool of `max_concurrent_calls` instances, sized by airlock's
/// default limits. Its epoch checks are compiled in as in airlock's; the
/// peer sets no budget, so they never fire.
fn engine(max_concurrent_calls: u32) -> Engine {
    let cfg =
        airlock::runtime::engine_config(&airlock::Limits::default(), true, max_concurrent_calls);
    Engine::new(&cfg).unwrap()
}

impl Peer {
    /// Compile and link `tests/guests/peer` once.
    fn new(max_concurrent_calls: u32) -> Self {
        let engine = engine(max_concurrent_calls);
        let component =
            wasmtime::component::Component::from_file(&engine, airlock_test_artifacts::PEER)
                .unwrap();
        let mut linker = Linker::<PeerState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        let get = component.get_export_index(None, "get").unwrap();
        Self { pre, get }
    }

    /// One call: a fresh store and instance, the guest's `get(url)`.
    async fn get(&self, url: &str) -> Result<String, String> {
        let state = PeerState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        // The epoch never advances on this engine: no CPU budget.
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let get = instance
            .get_typed_func::<(String,), (Result<String, String>,)>(&mut store, self.get)
            .map_err(|e| format!("{e:#}"))?;
        let (name,) = get
            .call_async(&mut store, (url.to_string(),))
            .await
            .map_err(|e| format!("{e:#}"))?;
        name
    }

    /// [`Peer::get`], checking the name as the other sides do.
    async fn check(&self, url: &str) -> Result<(), String> {
        match self.get(url).await? {
            name if name == "bench-user" => Ok(()),
            name => Err(format!("unexpected name {name}")),
        }
    }
}

/// A native client that opens a new connection for every request, as the
/// peer's default send does.
fn fresh_client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// The sequential paths, in table order.
const PATHS: [&str; 4] = [
    "native Rust (hyper, pooled keep-alive)",
    "native Rust, new connection per request",
    "bare wasmtime-wasi-http peer",
    "airlock, full host path",
];

/// Sequential latency of the four paths, interleaved round by round on a
/// runtime worker.
async fn sequential(n: usize, peer: &Arc<Peer>, airlock: &Arc<Airlock>, base: &str) -> Vec<Stats> {
    let airlock = airlock.clone();
    let (pooled, fresh, peer) = (native_client(), fresh_client(), peer.clone());
    let url: http::Uri = format!("{base}/size/1024/api/me").parse().unwrap();
    let name = connection_name(1 << 10);
    on_worker(async move {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); PATHS.len()];
        let text = url.to_string();
        for round in 0..n + 20 {
            let mut row = [Duration::ZERO; PATHS.len()];
            let t = Instant::now();
            native_get(&pooled, &url).await.unwrap();
            row[0] = t.elapsed();
            let t = Instant::now();
            native_get(&fresh, &url).await.unwrap();
            row[1] = t.elapsed();
            let t = Instant::now();
            peer.check(&text).await.unwrap();
            row[2] = t.elapsed();
            let t = Instant::now();
            plugin_get(&airlock, &name).await.unwrap();
            row[3] = t.elapsed();
            if round >= 20 {
                for (column, d) in samples.iter_mut().zip(row) {
                    column.push(d);
                }
            }
        }
        samples.into_iter().map(stats).collect()
    })
    .await
}

/// Throughput at [`CALLERS`] callers: native, peer, airlock.
async fn rates(secs: f64, peer: &Arc<Peer>, airlock: &Arc<Airlock>, base: &str) -> [Rate; 3] {
    let url: http::Uri = format!("{base}/size/1024/api/me").parse().unwrap();
    let client = native_client();
    let u = url.clone();
    let native = throughput(CALLERS, secs, move || {
        let (c, u) = (client.clone(), u.clone());
        Box::pin(async move { native_get(&c, &u).await })
    })
    .await;
    let (p, text) = (peer.clone(), url.to_string());
    let peer = throughput(CALLERS, secs, move || {
        let (p, text) = (p.clone(), text.clone());
        Box::pin(async move { p.check(&text).await })
    })
    .await;
    let (airlock, name) = (airlock.clone(), connection_name(1 << 10));
    let plugin = throughput(CALLERS, secs, move || {
        let (airlock, name) = (airlock.clone(), name.clone());
        Box::pin(async move { plugin_get(&airlock, &name).await })
    })
    .await;
    [native, peer, plugin]
}

pub async fn run(opts: &Options, base: &str) {
    let (n, secs) = if opts.quick { (300, 2.0) } else { (3000, 5.0) };
    // The pool of `host()`'s engine.
    let peer = Arc::new(Peer::new(128));
    let host = host(base);
    let seq = sequential(n, &peer, &host.airlock, base).await;
    let [native, peer_rate, plugin] = rates(secs, &peer, &host.airlock, base).await;
    let (native_seq, peer_seq, plugin_seq) = (seq[0], seq[2], seq[3]);
    add_rows(
        [&native, &peer_rate, &plugin],
        [&native_seq, &peer_seq, &plugin_seq],
    );
    println!(
        "## bare wasmtime-wasi-http peer: sequential GET of 1 KiB ({n} rounds, interleaved)\n"
    );
    println!("| path | median | p99 | vs native | vs peer |");
    println!("|---|---:|---:|---:|---:|");
    for (label, s) in PATHS.iter().zip(&seq) {
        println!(
            "| {label} | {} | {} | {:.2}x | {:.2}x |",
            us(s.median),
            us(s.p99),
            s.median.as_secs_f64() / native_seq.median.as_secs_f64(),
            s.median.as_secs_f64() / peer_seq.median.as_secs_f64()
        );
    }
    println!("\n## bare wasmtime-wasi-http peer: {CALLERS} callers, {secs} s each, 1 KiB\n");
    println!("| side | calls/s | vs native | vs peer | errors | CPU per call |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, r) in [
        (PATHS[0], &native),
        (PATHS[2], &peer_rate),
        (PATHS[3], &plugin),
    ] {
        println!(
            "| {label} | {:.0} | {:.2}x | {:.2}x | {} | {} |",
            r.per_sec,
            r.per_sec / native.per_sec,
            r.per_sec / peer_rate.per_sec,
            r.errors,
            us(r.cpu_per_call)
        );
    }
    println!(
        "\npeer: pool of 128 instances, wasmtime-wasi-http's default send (a new connection per request); \
         airlock: `host()` (pool of 128, the default 32 calls in flight per connection)\n"
    );
}

/// The summary rows: airlock against the peer (the goals), the peer
/// against native (reported).
fn add_rows([native, peer, plugin]: [&Rate; 3], [native_seq, peer_seq, plugin_seq]: [&Stats; 3]) {
    let calls = |r: &Rate| format!("{:.0} calls/s", r.per_sec);
    let median = |s: &Stats| s.median.as_secs_f64();
    summary::add(
        "airlock vs bare wasmtime-wasi-http peer, 64 callers: throughput",
        calls(plugin),
        format!("{} peer", calls(peer)),
        Some(plugin.per_sec / peer.per_sec),
        Goal::AtLeast(2.0),
    );
    summary::add(
        "airlock vs peer: sequential median",
        us(plugin_seq.median),
        format!("{} peer", us(peer_seq.median)),
        Some(median(plugin_seq) / median(peer_seq)),
        Goal::AtMost(0.5),
    );
    summary::add(
        "peer vs native, 64 callers: throughput",
        calls(peer),
        format!("{} native", calls(native)),
        Some(peer.per_sec / native.per_sec),
        Goal::Report,
    );
    summary::add(
        "peer vs native: sequential median",
        us(peer_seq.median),
        format!("{} native", us(native_seq.median)),
        Some(median(peer_seq) / median(native_seq)),
        Goal::Report,
    );
    summary::add(
        "peer vs native, 64 callers: CPU per call",
        us(peer.cpu_per_call),
        format!("{} native", us(native.cpu_per_call)),
        Some(peer.cpu_per_call.as_secs_f64() / native.cpu_per_call.as_secs_f64()),
        Goal::Report,
    );
}
