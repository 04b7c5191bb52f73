//! The performance benchmark: every figure printed next to a native Rust
//! baseline measured in the same run, against the same loopback server.
//!
//! `cargo bench -p airlock --bench runtime` (about 3 minutes; `-- --quick`
//! for a short run, `-- --only NAME` for one section: startup, instantiate,
//! call, breakdown, scaling, soak, audit, fairness, transport, peer,
//! upstreams, streaming). The run ends with a summary table of every goal, its figure
//! and the baseline measured in the same run (`summary`).
//!
//! The plugin side is the full host path an application gets from
//! [`airlock::Airlock`]: the connection read from SQLite, a fresh instance
//! per call, the egress check, the bearer credential opened from the vault
//! and injected, and an audit row committed (default durability) before the
//! request leaves. The native side is the same GET through a pooled
//! keep-alive hyper client, parsing the same JSON into the same struct.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock::AddressPolicy;
use airlock::KeySource;
use airlock::audit::{
    AUDIT_FILE, AuditDurability, AuditError, AuditLog, AuditSink, EgressOutcome, EgressRecord,
    RecordId,
};
use airlock::credential::{Credential, StaticCredential};
use airlock::service::Scope;
use airlock::service::{AuthInput, NewConnection};
use airlock::{Airlock, AirlockConfig, Connection, Runtime, RuntimeConfig};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

mod peer;
mod streaming;
mod summary;
mod transport;
mod upstreams;

use summary::Goal;

const TOKEN: &str = "bench-token-0123456789";
const SIZES: [(usize, &str); 3] = [(1 << 10, "1 KiB"), (64 << 10, "64 KiB"), (1 << 20, "1 MiB")];
const CALLERS: [usize; 3] = [1, 8, 64];

/// What both sides parse the answer into (the minimal plugin's `Me`).
#[derive(Deserialize)]
struct Me {
    name: String,
}

/// A JSON document of exactly `size` bytes.
fn document(size: usize) -> Bytes {
    let head = r#"{"name":"bench-user","id":42,"pad":""#;
    let tail = r#""}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

/// A keep-alive HTTP/1.1 server on loopback answering `/api/me?size=N`
/// (and `/size/N/api/me`) with an N-byte JSON document.
async fn serve() -> SocketAddr {
    let bodies: Arc<BTreeMap<usize, Bytes>> =
        Arc::new(SIZES.iter().map(|(n, _)| (*n, document(*n))).collect());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let bodies = bodies.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    // `/size/<n>/api/me`: the size rides in the path so the
                    // plugin's `{base-url}/api/me` selects it.
                    let size = req
                        .uri()
                        .path()
                        .strip_prefix("/size/")
                        .and_then(|rest| rest.split('/').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1 << 10);
                    let body = bodies.get(&size).cloned().unwrap_or_default();
                    async move { Ok::<_, Infallible>(json_response(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A 200 answer carrying `body` as JSON: what both loopback servers send.
fn json_response(body: Bytes) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap()
}

// ---- the two sides -----------------------------------------------------------

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn native_client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

async fn native_get(client: &Client, url: &http::Uri) -> Result<(), String> {
    let req = http::Request::get(url.clone())
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let me: Me = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if me.name != "bench-user" {
        return Err(format!("unexpected name {}", me.name));
    }
    Ok(())
}

/// An embedded host on a fresh data directory with the minimal plugin
/// installed and one bearer connection per response size.
struct Host {
    airlock: Arc<Airlock>,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> AirlockConfig {
    let mut config = AirlockConfig::new(dir).unwrap();
    config.key_source = Some(KeySource::File(dir.join("master.key")));
    config.address_policy = AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap();
    config.max_concurrent_calls = 128;
    config
}

fn connection_name(size: usize) -> String {
    format!("bench-{size}")
}

fn host(base: &str) -> Host {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    Host {
        airlock: Arc::new(install(dir.path(), base)),
        _dir: dir,
    }
}

/// Open a host on `dir`, install the minimal plugin and add the connections.
fn install(dir: &std::path::Path, base: &str) -> Airlock {
    let airlock = Airlock::open(config(dir)).unwrap();
    let wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let plan = airlock.plan_install(wasm).unwrap();
    airlock.install(&plan, true).unwrap();
    for (size, _) in SIZES {
        airlock
            .add_connection(NewConnection {
                name: connection_name(size),
                plugin_id: "minimal".into(),
                settings: BTreeMap::from([("base-url".to_string(), format!("{base}/size/{size}"))]),
                auth: AuthInput::Bearer {
                    token: TOKEN.to_string().into(),
                },
                scope: Scope::Global,
            })
            .unwrap();
    }
    airlock
}

async fn plugin_get(airlock: &Airlock, connection: &str) -> Result<(), String> {
    let report = airlock
        .test_connection(connection)
        .await
        .map_err(|e| e.to_string())?;
    if report.account.as_deref() != Some("bench-user") {
        return Err(format!("unexpected account {:?}", report.account));
    }
    Ok(())
}

// ---- measuring ----------------------------------------------------------------

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// What a throughput run measured.
struct Rate {
    per_sec: f64,
    errors: u64,
    /// CPU time of the whole process (both sides of loopback, every thread)
    /// per call: unlike calls/s, it does not move when the VM's neighbours
    /// take cycles away.
    cpu_per_call: Duration,
}

/// Calls per second, errors and CPU per call with `callers` tasks running
/// `op` for `secs`.
async fn throughput<F>(callers: usize, secs: f64, op: F) -> Rate
where
    F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let cpu_before = process_cpu();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (op, errors) = (op.clone(), errors.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if let Err(e) = op().await
                        && errors.fetch_add(1, Ordering::Relaxed) == 0
                    {
                        eprintln!("first error: {e}");
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let cpu = process_cpu().saturating_sub(cpu_before);
    Rate {
        per_sec: total as f64 / start.elapsed().as_secs_f64(),
        errors: errors.load(Ordering::Relaxed),
        cpu_per_call: cpu / u32::try_from(total.max(1)).unwrap_or(u32::MAX),
    }
}

/// User plus system CPU time of this process so far (Linux; zero elsewhere).
fn process_cpu() -> Duration {
    // utime and stime, fields 14 and 15, in USER_HZ (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Duration::from_millis((user + system) * 10),
        _ => Duration::ZERO,
    }
}

/// Resident set size of this process.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// An audit sink that records nothing: the "audit off" baseline.
#[derive(Debug)]
struct NoAudit(AtomicU64);

impl AuditSink for NoAudit {
    fn begin<'a>(
        &'a self,
        _record: &'a EgressRecord,
    ) -> BoxFuture<'a, Result<RecordId, AuditError>> {
        let id = RecordId(self.0.fetch_add(1, Ordering::Relaxed));
        Box::pin(async move { Ok(id) })
    }

    fn finish(&self, _id: RecordId, _outcome: &EgressOutcome) {}
}

// ---- sections -------------------------------------------------------------------

struct Options {
    quick: bool,
    only: Option<String>,
}

impl Options {
    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == section)
    }
}

async fn startup(opts: &Options) {
    let minimal = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runtime = || {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let t = Instant::now();
    runtime().load(&minimal).unwrap();
    let cold = t.elapsed();
    let mut cached = Vec::new();
    for _ in 0..if opts.quick { 5 } else { 20 } {
        let rt = runtime();
        let t = Instant::now();
        let p = rt.load(&minimal).unwrap();
        cached.push(t.elapsed());
        assert_eq!(p.cache_outcome(), airlock::runtime::CacheOutcome::Cached);
    }
    let cached = stats(cached).median;

    // A restarted host: install (compiles), close, reopen, first call.
    let server = serve().await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    drop(install(dir.path(), &format!("http://{server}")));
    let t = Instant::now();
    let airlock = Airlock::open(config(dir.path())).unwrap();
    let opened = t.elapsed();
    let t = Instant::now();
    plugin_get(&airlock, &connection_name(1 << 10))
        .await
        .unwrap();
    let first_call = t.elapsed();
    let outcome = airlock.loaded_plugin("minimal").unwrap().cache_outcome();

    println!("## start-up\n");
    println!("| measure | time | vs compile |");
    println!("|---|---:|---:|");
    println!(
        "| load minimal.wasm: compile (cold) | {} | 100% |",
        us(cold)
    );
    println!(
        "| load minimal.wasm: from the compiled cache (median) | {} | {:.2}% |",
        us(cached),
        cached.as_secs_f64() / cold.as_secs_f64() * 100.0
    );
    println!("| restarted host: open data directory | {} | |", us(opened));
    println!(
        "| restarted host: first call (component {:?}) | {} | |",
        outcome,
        us(first_call)
    );
    assert_eq!(outcome, airlock::runtime::CacheOutcome::Cached);
    println!();
}

/// A pooled (and an on-demand) instance of the probe plugin per call, its
/// no-op `test-connection` called, interleaved with a native loopback GET
/// on the same worker: the GET is the yardstick the goal is set against.
async fn instantiate(opts: &Options, base: &str) {
    let n = if opts.quick { 500 } else { 5000 };
    let probe_wasm = std::fs::read(airlock_test_artifacts::PROBE).unwrap();
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let url: http::Uri = format!("{base}/size/1024/api/me").parse().unwrap();
    let mut rows = Vec::new();
    let mut native = Vec::with_capacity(2 * n);
    for pooling in [true, false] {
        let rt = Arc::new(
            Runtime::new(RuntimeConfig {
                cache_dir: Some(cache.path().to_path_buf()),
                pooling,
                ..RuntimeConfig::default()
            })
            .unwrap(),
        );
        let probe = rt.load(&probe_wasm).unwrap();
        let conn = Connection::new("bench", "bench").with_setting("action", "ok");
        let (client, url) = (native_client(), url.clone());
        let (samples, gets) = on_worker(async move {
            for _ in 0..100 {
                rt.test_connection(&probe, &conn).await.unwrap();
                native_get(&client, &url).await.unwrap();
            }
            let (mut samples, mut gets) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let t = Instant::now();
                rt.test_connection(&probe, &conn).await.unwrap();
                samples.push(t.elapsed());
                let t = Instant::now();
                native_get(&client, &url).await.unwrap();
                gets.push(t.elapsed());
            }
            (samples, gets)
        })
        .await;
        rows.push(stats(samples));
        native.extend(gets);
    }
    let native = stats(native);
    let ratio = |s: &Stats| s.median.as_secs_f64() / native.median.as_secs_f64();
    summary::add(
        "pooled instantiate + no-op call: median",
        us(rows[0].median),
        format!("{} native GET", us(native.median)),
        Some(ratio(&rows[0])),
        Goal::AtMost(0.15),
    );
    println!("## instantiate + call a no-op export ({n} calls)\n");
    println!("| allocation | median | p99 | vs pooled | vs native GET |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| native loopback GET of 1 KiB (the yardstick) | {} | {} | | 1.00x |",
        us(native.median),
        us(native.p99)
    );
    println!(
        "| pooled | {} | {} | 1.00x | {:.2}x |",
        us(rows[0].median),
        us(rows[0].p99),
        ratio(&rows[0])
    );
    println!(
        "| on-demand | {} | {} | {:.2}x | {:.2}x |",
        us(rows[1].median),
        us(rows[1].p99),
        rows[1].median.as_secs_f64() / rows[0].median.as_secs_f64(),
        ratio(&rows[1])
    );
    println!();
}

/// Sequential latency, interleaving the two sides so both see the same
/// machine conditions. The loop runs in a task on a runtime worker, where a
/// server handles a request: on `main`'s own thread every wake-up would
/// cross threads, which costs the native side four times its latency.
async fn latency(
    opts: &Options,
    airlock: &Arc<Airlock>,
    client: &Client,
    base: &str,
    size: usize,
) -> (Stats, Stats) {
    let n = match (opts.quick, size) {
        (true, s) if s >= 1 << 20 => 50,
        (true, _) => 300,
        (false, s) if s >= 1 << 20 => 300,
        (false, _) => 3000,
    };
    let url: http::Uri = format!("{base}/size/{size}/api/me").parse().unwrap();
    let name = connection_name(size);
    let (airlock, client) = (airlock.clone(), client.clone());
    on_worker(async move {
        for _ in 0..20 {
            native_get(&client, &url).await.unwrap();
            plugin_get(&airlock, &name).await.unwrap();
        }
        let (mut native, mut plugin) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let t = Instant::now();
            native_get(&client, &url).await.unwrap();
            native.push(t.elapsed());
            let t = Instant::now();
            plugin_get(&airlock, &name).await.unwrap();
            plugin.push(t.elapsed());
        }
        (stats(native), stats(plugin))
    })
    .await
}

/// Run `work` as a task on a runtime worker and wait for its answer.
async fn on_worker<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(work).await.unwrap()
}

async fn call(opts: &Options, base: &str) {
    let host = host(base);
    let client = native_client();
    let (native, plugin) = latency(opts, &host.airlock, &client, base, 1 << 10).await;
    summary::add(
        "sequential call, 1 KiB: median latency",
        us(plugin.median),
        format!("{} native", us(native.median)),
        Some(plugin.median.as_secs_f64() / native.median.as_secs_f64()),
        Goal::AtMost(2.0),
    );
    println!("## one call: GET 1 KiB of JSON from loopback and parse it\n");
    println!("| side | median | p99 | ratio (median) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| native Rust (hyper, pooled keep-alive) | {} | {} | 1.00x |",
        us(native.median),
        us(native.p99)
    );
    println!(
        "| plugin, full host path | {} | {} | {:.2}x |",
        us(plugin.median),
        us(plugin.p99),
        plugin.median.as_secs_f64() / native.median.as_secs_f64()
    );
    println!();
}

/// A runtime-level connection to the 1 KiB document with a bearer
/// credential held in memory (no vault).
fn static_connection(base: &str) -> Connection {
    Connection::new("bench", "bench")
        .with_setting("base-url", format!("{base}/size/1024"))
        .with_credential(
            http::header::AUTHORIZATION,
            StaticCredential::new(Credential::Bearer {
                token: TOKEN.to_string().into(),
            }),
        )
        .unwrap()
}

/// Sequential latency of the plugin path with parts of the host taken away,
/// so the table shows where the time of a call goes.
async fn breakdown(opts: &Options, base: &str) {
    let n = if opts.quick { 300 } else { 3000 };
    let minimal = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let conn = static_connection(base);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sinks: [(&str, Arc<dyn AuditSink>); 2] = [
        (
            "runtime only: static credential, audit off",
            Arc::new(NoAudit(AtomicU64::new(0))),
        ),
        (
            "runtime only: static credential, SQLite audit",
            AuditLog::open(&dir.path().join(AUDIT_FILE), AuditDurability::ProcessCrash).unwrap(),
        ),
    ];
    let mut runtimes = Vec::new();
    for (label, sink) in sinks {
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
            audit: sink,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let plugin = rt.load(&minimal).unwrap();
        runtimes.push((label, rt, plugin));
    }
    let host = host(base);
    let client = native_client();
    let url: http::Uri = format!("{base}/size/1024/api/me").parse().unwrap();
    let name = connection_name(1 << 10);
    let airlock = host.airlock.clone();
    let (runtimes, samples) = on_worker(async move {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); 2 + runtimes.len()];
        for round in 0..n + 20 {
            let t = Instant::now();
            native_get(&client, &url).await.unwrap();
            let native = t.elapsed();
            let mut row = vec![native];
            for (_, rt, plugin) in &runtimes {
                let t = Instant::now();
                rt.test_connection(plugin, &conn).await.unwrap();
                row.push(t.elapsed());
            }
            let t = Instant::now();
            plugin_get(&airlock, &name).await.unwrap();
            row.push(t.elapsed());
            if round >= 20 {
                for (column, d) in samples.iter_mut().zip(row) {
                    column.push(d);
                }
            }
        }
        (runtimes, samples)
    })
    .await;
    let stats: Vec<Stats> = samples.into_iter().map(stats).collect();
    let native = stats[0].median.as_secs_f64();
    println!("## where a call's time goes: sequential GET of 1 KiB ({n} rounds, interleaved)\n");
    println!("| path | median | p99 | vs native |");
    println!("|---|---:|---:|---:|");
    let mut labels = vec!["native Rust (hyper, pooled keep-alive)"];
    labels.extend(runtimes.iter().map(|(l, _, _)| *l));
    labels.push("full host path (Airlock: SQLite connection, vault, audit)");
    for (label, s) in labels.iter().zip(&stats) {
        println!(
            "| {label} | {} | {} | {:.2}x |",
            us(s.median),
            us(s.p99),
            s.median.as_secs_f64() / native
        );
    }
    println!();
}

async fn scaling(opts: &Options, base: &str) {
    let secs = if opts.quick { 1.0 } else { 3.0 };
    let host = host(base);
    let client = native_client();
    println!(
        "## scaling: throughput by concurrent callers and response size ({secs} s per cell)\n"
    );
    println!(
        "| response | callers | native calls/s | plugin calls/s | plugin/native | errors | native CPU/call | plugin CPU/call | native median | plugin median | latency ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (size, label) in SIZES {
        let (native_lat, plugin_lat) = latency(opts, &host.airlock, &client, base, size).await;
        for callers in CALLERS {
            let url: http::Uri = format!("{base}/size/{size}/api/me").parse().unwrap();
            let c = client.clone();
            let native = throughput(callers, secs, move || {
                let (c, url) = (c.clone(), url.clone());
                Box::pin(async move { native_get(&c, &url).await })
            })
            .await;
            let (airlock, name) = (host.airlock.clone(), connection_name(size));
            let plugin = throughput(callers, secs, move || {
                let (airlock, name) = (airlock.clone(), name.clone());
                Box::pin(async move { plugin_get(&airlock, &name).await })
            })
            .await;
            let latency = if callers == 1 {
                format!(
                    "{} | {} | {:.2}x",
                    us(native_lat.median),
                    us(plugin_lat.median),
                    plugin_lat.median.as_secs_f64() / native_lat.median.as_secs_f64()
                )
            } else {
                " | | ".to_string()
            };
            println!(
                "| {label} | {callers} | {:.0} | {:.0} | {:.2}x | {} | {} | {} | {latency} |",
                native.per_sec,
                plugin.per_sec,
                plugin.per_sec / native.per_sec,
                native.errors + plugin.errors,
                us(native.cpu_per_call),
                us(plugin.cpu_per_call),
            );
        }
    }
    println!();
}

async fn soak(opts: &Options, base: &str) {
    let secs = if opts.quick { 8.0 } else { 30.0 };
    let host = host(base);
    let client = native_client();
    let url: http::Uri = format!("{base}/size/1024/api/me").parse().unwrap();
    let native = throughput(64, secs, move || {
        let (c, url) = (client.clone(), url.clone());
        Box::pin(async move { native_get(&c, &url).await })
    })
    .await;
    // Sample resident memory every second while the plugin side runs.
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                samples
                    .lock()
                    .unwrap()
                    .push((start.elapsed().as_secs_f64(), rss_bytes()));
            }
        })
    };
    let (airlock, name) = (host.airlock.clone(), connection_name(1 << 10));
    let plugin = throughput(64, secs, move || {
        let (airlock, name) = (airlock.clone(), name.clone());
        Box::pin(async move { plugin_get(&airlock, &name).await })
    })
    .await;
    sampler.abort();
    let samples = samples.lock().unwrap().clone();
    let at_5s = samples
        .iter()
        .find(|(t, _)| *t >= 5.0)
        .map_or(0, |(_, rss)| *rss);
    let peak_after_5s = samples
        .iter()
        .filter(|(t, _)| *t >= 5.0)
        .map(|(_, rss)| *rss)
        .max()
        .unwrap_or(0);
    let last = samples.last().map_or(0, |(_, rss)| *rss);
    let trace: Vec<String> = samples
        .iter()
        .filter(|(t, _)| (t.round() as u64).is_multiple_of(5))
        .map(|(t, rss)| format!("{:.0} s: {}", t, mib(*rss)))
        .collect();
    summary::add(
        "64 callers, 1 KiB: CPU per call",
        us(plugin.cpu_per_call),
        format!("{} native", us(native.cpu_per_call)),
        Some(plugin.cpu_per_call.as_secs_f64() / native.cpu_per_call.as_secs_f64()),
        Goal::AtMost(3.0),
    );
    summary::add(
        "64 callers, 1 KiB: throughput",
        format!("{:.0} calls/s", plugin.per_sec),
        format!("{:.0} calls/s native", native.per_sec),
        Some(plugin.per_sec / native.per_sec),
        Goal::AtLeast(0.33),
    );
    println!("## soak: 64 concurrent callers, {secs} s each side, 1 KiB answers\n");
    println!("| side | calls/s | vs native | errors | CPU per call |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| native | {:.0} | 1.00x | {} | {} |",
        native.per_sec,
        native.errors,
        us(native.cpu_per_call)
    );
    println!(
        "| plugin, full host path | {:.0} | {:.2}x | {} | {} |",
        plugin.per_sec,
        plugin.per_sec / native.per_sec,
        plugin.errors,
        us(plugin.cpu_per_call)
    );
    println!(
        "\nresident memory while the plugin side ran: {} at 5 s, peak after 5 s {}, {} at the end ({:+.1}% from 5 s to the end)\n",
        mib(at_5s),
        mib(peak_after_5s),
        mib(last),
        (last as f64 - at_5s as f64) / at_5s.max(1) as f64 * 100.0
    );
    println!("resident memory every 5 s: {}\n", trace.join(", "));
}

async fn audit(opts: &Options, base: &str) {
    let secs = if opts.quick { 3.0 } else { 10.0 };
    let minimal = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let conn = static_connection(base);
    let mut rows = Vec::new();
    for (label, durability) in [
        ("audit off", None),
        (
            "audit on, crash-durable (default)",
            Some(AuditDurability::ProcessCrash),
        ),
        (
            "audit on, power-loss durable",
            Some(AuditDurability::PowerLoss),
        ),
    ] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let sqlite = durability.map(|d| AuditLog::open(&dir.path().join(AUDIT_FILE), d).unwrap());
        let sink: Arc<dyn AuditSink> = match &sqlite {
            None => Arc::new(NoAudit(AtomicU64::new(0))),
            Some(s) => s.clone(),
        };
        let rt = Arc::new(
            Runtime::new(RuntimeConfig {
                cache_dir: Some(cache.path().to_path_buf()),
                address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
                max_concurrent_calls: 128,
                audit: sink,
                ..RuntimeConfig::default()
            })
            .unwrap(),
        );
        let plugin = rt.load(&minimal).unwrap();
        let conn = conn.clone();
        let rate = throughput(64, secs, move || {
            let (rt, plugin, conn) = (rt.clone(), plugin.clone(), conn.clone());
            Box::pin(async move {
                rt.test_connection(&plugin, &conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
        .await;
        let per_commit = sqlite.map_or(String::new(), |s| {
            format!("{:.1}", s.rows_written() as f64 / s.commits().max(1) as f64)
        });
        rows.push((label, rate, per_commit));
    }
    println!("## audit cost: 64 concurrent callers, {secs} s each, 1 KiB answers\n");
    println!("| audit | calls/s | vs off | errors | CPU per call | rows per commit |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (off, off_cpu) = (rows[0].1.per_sec, rows[0].1.cpu_per_call);
    let off_text = format!("{off:.0} calls/s (audit off)");
    summary::add(
        "audit on (crash-durable, default) vs off, 64 callers: throughput",
        format!("{:.0} calls/s", rows[1].1.per_sec),
        off_text.clone(),
        Some(rows[1].1.per_sec / off),
        Goal::AtLeast(0.95),
    );
    summary::add(
        "audit on (power-loss durable) vs off, 64 callers: throughput",
        format!("{:.0} calls/s", rows[2].1.per_sec),
        off_text,
        Some(rows[2].1.per_sec / off),
        Goal::Report,
    );
    for (label, rate, per_commit) in rows {
        println!(
            "| {label} | {:.0} | {:.2}x | {} | {} ({:+.0} µs) | {per_commit} |",
            rate.per_sec,
            rate.per_sec / off,
            rate.errors,
            us(rate.cpu_per_call),
            (rate.cpu_per_call.as_secs_f64() - off_cpu.as_secs_f64()) * 1e6
        );
    }
    println!();
}

/// Sequential full-path calls (1 KiB GET) on a runtime worker: at most `n`
/// of them, or as many as fit in `secs`.
async fn unrelated_calls(airlock: &Arc<Airlock>, n: usize, secs: f64) -> Vec<Duration> {
    let (airlock, name) = (airlock.clone(), connection_name(1 << 10));
    on_worker(async move {
        for _ in 0..20 {
            plugin_get(&airlock, &name).await.unwrap();
        }
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let mut samples = Vec::with_capacity(n);
        while samples.len() < n && Instant::now() < until {
            let t = Instant::now();
            plugin_get(&airlock, &name).await.unwrap();
            samples.push(t.elapsed());
        }
        samples
    })
    .await
}

/// What the spinning calls did while the unrelated calls were measured.
#[derive(Default)]
struct Spun {
    /// Calls that ended, and how many of them the CPU limit stopped.
    ended: u64,
    by_cpu_limit: u64,
    /// Their total wall-clock time.
    wall: Duration,
}

/// Keep one probe call spinning in a loop on the host's runtime until
/// `stop`: each is stopped by the CPU limit and replaced.
async fn spinner(
    runtime: Arc<Runtime>,
    probe: Arc<airlock::Plugin>,
    stop: Arc<AtomicBool>,
) -> Spun {
    let conn = Connection::new("spin", "spin").with_setting("action", "loop");
    let mut spun = Spun::default();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let err = runtime.test_connection(&probe, &conn).await.unwrap_err();
        spun.wall += t.elapsed();
        spun.ended += 1;
        if err.limit() == Some(airlock::runtime::LimitKind::Cpu) {
            spun.by_cpu_limit += 1;
        } else {
            eprintln!("a spinning call ended otherwise: {err}");
        }
    }
    spun
}

/// Latency of unrelated calls while four plugin calls spin in loops, against
/// the same calls on a quiet host: a CPU-bound guest must yield its worker
/// often enough that others keep a p99 under 50 ms.
async fn fairness(opts: &Options, base: &str) {
    const SPINNERS: usize = 4;
    const GOAL: Duration = Duration::from_millis(50);
    let (n, secs) = if opts.quick {
        (300, 10.0)
    } else {
        (2000, 30.0)
    };
    let host = host(base);
    let runtime = host.airlock.runtime().clone();
    let probe = runtime
        .load(&std::fs::read(airlock_test_artifacts::PROBE).unwrap())
        .unwrap();
    let quiet = unrelated_calls(&host.airlock, n, secs).await;
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..SPINNERS)
        .map(|_| tokio::spawn(spinner(runtime.clone(), probe.clone(), stop.clone())))
        .collect();
    // Let every spinner get into its loop before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = unrelated_calls(&host.airlock, n, secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut spun = Spun::default();
    for s in spinners {
        let s = s.await.unwrap();
        spun.ended += s.ended;
        spun.by_cpu_limit += s.by_cpu_limit;
        spun.wall += s.wall;
    }
    let (quiet_n, busy_n) = (quiet.len(), busy.len());
    let (quiet, busy) = (stats(quiet), stats(busy));
    println!(
        "## fairness: sequential 1 KiB GETs (full host path) while {SPINNERS} plugin calls spin\n"
    );
    println!("| host | calls | median | p99 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| quiet | {quiet_n} | {} | {} |",
        us(quiet.median),
        us(quiet.p99)
    );
    println!(
        "| {SPINNERS} calls spinning | {busy_n} | {} | {} |",
        us(busy.median),
        us(busy.p99)
    );
    println!(
        "\ngoal: p99 under {GOAL:?} with {SPINNERS} spinning: {} ({:.1} ms); spinning calls ended: {}, by the CPU limit: {}, mean wall time {:.2} s\n",
        if busy.p99 < GOAL { "met" } else { "NOT met" },
        busy.p99.as_secs_f64() * 1e3,
        spun.ended,
        spun.by_cpu_limit,
        spun.wall.as_secs_f64() / spun.ended.max(1) as f64
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = Options {
        quick: args.iter().any(|a| a == "--quick"),
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1).cloned()),
    };
    let server = serve().await;
    let base = format!("http://{server}");
    println!(
        "# airlock benchmark ({} run, {} CPUs)\n",
        if opts.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if opts.runs("startup") {
        startup(&opts).await;
    }
    if opts.runs("instantiate") {
        instantiate(&opts, &base).await;
    }
    if opts.runs("call") {
        call(&opts, &base).await;
    }
    if opts.runs("breakdown") {
        breakdown(&opts, &base).await;
    }
    if opts.runs("scaling") {
        scaling(&opts, &base).await;
    }
    if opts.runs("soak") {
        soak(&opts, &base).await;
    }
    if opts.runs("audit") {
        audit(&opts, &base).await;
    }
    if opts.runs("fairness") {
        fairness(&opts, &base).await;
    }
    if opts.runs("transport") {
        transport::run(&opts, &base).await;
    }
    if opts.runs("peer") {
        peer::run(&opts, &base).await;
    }
    if opts.runs("upstreams") {
        upstreams::run(&opts, &base).await;
    }
    if opts.runs("streaming") {
        streaming::run(&opts, &base).await;
    }
    summary::print();
}
