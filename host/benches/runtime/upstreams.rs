//! `upstreams`: airlock in front of an upstream with a real API's latency.
//!
//! A loopback server of this section's own answers the 1 KiB document after
//! a delay (`tokio::time::sleep`), keep-alive HTTP/1.1 like `serve()`, and
//! counts the requests it holds at once. Callers loop for a few seconds,
//! their starts spread over one delay as independent callers' would be.
//!
//! - 20 ms (a typical SaaS API), 64 callers: native (pooled keep-alive
//!   hyper) against airlock's full host path, throughput and the median of
//!   every call's latency under that load. A call's time is the upstream's
//!   here, so the ratios show what airlock adds to a call that waits. The
//!   host lets all 64 calls run on the one connection
//!   (`limits.connection_calls` = 64); a second airlock row shows the
//!   default cap (32), which halves throughput by design.
//! - 200 ms with 1,000 callers in flight: errors and the process's peak
//!   resident memory (sampled every 100 ms). `max_concurrent_calls` = 1024
//!   (the instance pool) and `limits.connection_calls` = 1024, so every call
//!   is really in flight: the table prints the most requests the upstream
//!   held at once. Native runs the same load first, as the baseline.
//!
//! Fair: both sides send the same request to the same server from the same
//! process, one after the other, with the same callers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::Airlock;
use airlock::service::{AuthInput, NewConnection, Scope};
use futures::future::BoxFuture;

use super::summary::{self, Goal};
use super::{
    Host, Options, Rate, TOKEN, config, document, mib, native_client, native_get, plugin_get,
    process_cpu, rss_bytes, stats, us,
};

/// The connection every call of this section goes through.
const CONNECTION: &str = "upstream";

/// A delayed upstream and the most requests it has held at once.
struct Upstream {
    base: String,
    delay: Duration,
    peak: Arc<AtomicUsize>,
}

/// A keep-alive HTTP/1.1 server on loopback answering every request with
/// the 1 KiB document after `delay`.
async fn serve_delayed(delay: Duration) -> Upstream {
    let body = document(1 << 10);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let peak = Arc::new(AtomicUsize::new(0));
    let (h, p) = (Arc::new(AtomicUsize::new(0)), peak.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let (body, h, p) = (body.clone(), h.clone(), p.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: hyper::Request<_>| {
                    let (body, h, p) = (body.clone(), h.clone(), p.clone());
                    async move {
                        p.fetch_max(h.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
                        tokio::time::sleep(delay).await;
                        h.fetch_sub(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(super::json_response(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream {
        base: format!("http://{addr}"),
        delay,
        peak,
    }
}

/// A host like `host()` with one bearer connection to `base`, the instance
/// pool and the per-connection cap set as given.
fn upstream_host(base: &str, max_concurrent_calls: u32, connection_calls: usize) -> Host {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut config = config(dir.path());
    config.max_concurrent_calls = max_concurrent_calls;
    config.limits.connection_calls = connection_calls;
    let airlock = Airlock::open(config).unwrap();
    let wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let plan = airlock.plan_install(wasm).unwrap();
    airlock.install(&plan, true).unwrap();
    airlock
        .add_connection(NewConnection {
            name: CONNECTION.into(),
            plugin_id: "minimal".into(),
            settings: BTreeMap::from([("base-url".to_string(), base.to_string())]),
            auth: AuthInput::Bearer {
                token: TOKEN.to_string().into(),
            },
            scope: Scope::Global,
        })
        .unwrap();
    Host {
        airlock: Arc::new(airlock),
        _dir: dir,
    }
}

/// What a [`load`] run measured.
struct Load {
    rate: Rate,
    /// Every call's latency.
    latencies: Vec<Duration>,
    first_error: Option<String>,
    /// Peak resident memory, sampled every 100 ms during the run.
    peak_rss: u64,
    /// The most requests the upstream held at once during the run.
    held: usize,
}

/// `throughput()` that also keeps every call's latency, the first error, the
/// peak resident memory and the upstream's peak of requests held:
/// `callers` tasks running `op` for `secs`. Their starts are spread evenly
/// over the upstream's delay, as independent callers' would be (started at
/// once, a constant delay keeps them in lock-step).
async fn load<F>(upstream: &Upstream, callers: usize, secs: f64, op: F) -> Load
where
    F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (errors, first_error) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(None)));
    let peak_rss = Arc::new(AtomicU64::new(rss_bytes()));
    let sampler = {
        let peak_rss = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                peak_rss.fetch_max(rss_bytes(), Ordering::Relaxed);
            }
        })
    };
    upstream.peak.store(0, Ordering::Relaxed);
    let (start, cpu_before) = (Instant::now(), process_cpu());
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let (op, errors, first_error) = (op.clone(), errors.clone(), first_error.clone());
            let offset = upstream.delay.mul_f64(i as f64 / callers as f64);
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let outcome = op().await;
                    latencies.push(t.elapsed());
                    if let Err(e) = outcome
                        && errors.fetch_add(1, Ordering::Relaxed) == 0
                    {
                        *first_error.lock().unwrap() = Some(e);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let (elapsed, cpu) = (start.elapsed(), process_cpu().saturating_sub(cpu_before));
    sampler.abort();
    let calls = u32::try_from(latencies.len().max(1)).unwrap_or(u32::MAX);
    let first_error = first_error.lock().unwrap().take();
    Load {
        rate: Rate {
            per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            errors: errors.load(Ordering::Relaxed),
            cpu_per_call: cpu / calls,
        },
        latencies,
        first_error,
        peak_rss: peak_rss.load(Ordering::Relaxed).max(rss_bytes()),
        held: upstream.peak.load(Ordering::Relaxed),
    }
}

/// [`load`] of native GETs of the upstream's `/api/me`.
async fn native_load(upstream: &Upstream, callers: usize, secs: f64) -> Load {
    let client = native_client();
    let url: http::Uri = format!("{}/api/me", upstream.base).parse().unwrap();
    load(upstream, callers, secs, move || {
        let (c, url) = (client.clone(), url.clone());
        Box::pin(async move { native_get(&c, &url).await })
    })
    .await
}

/// [`load`] of full-path calls through `host`'s upstream connection.
async fn plugin_load(host: &Host, upstream: &Upstream, callers: usize, secs: f64) -> Load {
    let airlock = host.airlock.clone();
    load(upstream, callers, secs, move || {
        let airlock = airlock.clone();
        Box::pin(async move { plugin_get(&airlock, CONNECTION).await })
    })
    .await
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

pub async fn run(opts: &Options, _base: &str) {
    typical(opts).await;
    in_flight(opts).await;
}

/// The 20 ms upstream with 64 callers: what airlock adds to a call that
/// waits on its upstream.
async fn typical(opts: &Options) {
    const CALLERS: usize = 64;
    let secs = if opts.quick { 3.0 } else { 8.0 };
    let upstream = serve_delayed(Duration::from_millis(20)).await;
    let default_cap = airlock::Limits::default().connection_calls;
    let raised = upstream_host(&upstream.base, 128, CALLERS);
    let capped = upstream_host(&upstream.base, 128, default_cap);
    let native = native_load(&upstream, CALLERS, secs).await;
    let plugin = plugin_load(&raised, &upstream, CALLERS, secs).await;
    let default = plugin_load(&capped, &upstream, CALLERS, secs).await;
    let (n, p) = (
        stats(native.latencies.clone()),
        stats(plugin.latencies.clone()),
    );
    let calls = |load: &Load| format!("{:.0} calls/s", load.rate.per_sec);
    summary::add(
        "20 ms upstream, 64 callers: throughput",
        calls(&plugin),
        format!("{} native", calls(&native)),
        Some(plugin.rate.per_sec / native.rate.per_sec),
        Goal::AtLeast(0.97),
    );
    summary::add(
        "20 ms upstream, 64 callers: median latency",
        ms(p.median),
        format!("{} native", ms(n.median)),
        Some(p.median.as_secs_f64() / n.median.as_secs_f64()),
        Goal::AtMost(1.03),
    );
    summary::add(
        format!(
            "20 ms upstream, 64 callers, default {default_cap} calls per connection: throughput"
        ),
        calls(&default),
        format!("{} native", calls(&native)),
        Some(default.rate.per_sec / native.rate.per_sec),
        Goal::Report,
    );
    println!("## upstream answering after 20 ms: {CALLERS} callers, {secs} s each, 1 KiB\n");
    println!(
        "| side | calls/s | vs native | errors | CPU per call | median | p99 | median vs native | upstream held at once |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let raised_label = format!("airlock, full host path, {CALLERS} calls per connection");
    let default_label =
        format!("airlock, full host path, default {default_cap} calls per connection");
    for (label, load) in [
        ("native Rust (hyper, pooled keep-alive)", &native),
        (raised_label.as_str(), &plugin),
        (default_label.as_str(), &default),
    ] {
        let s = stats(load.latencies.clone());
        println!(
            "| {label} | {:.0} | {:.3}x | {} | {} | {} | {} | {:.3}x | {} |",
            load.rate.per_sec,
            load.rate.per_sec / native.rate.per_sec,
            load.rate.errors,
            us(load.rate.cpu_per_call),
            ms(s.median),
            ms(s.p99),
            s.median.as_secs_f64() / n.median.as_secs_f64(),
            load.held,
        );
    }
    println!(
        "\nhost: max_concurrent_calls 128, limits.connection_calls {CALLERS} (first airlock row) or the default {default_cap} (second), one connection\n"
    );
}

/// Virtual memory of this process (`VmSize`).
fn virtual_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident memory the 1,000-in-flight run may reach: 300 MB.
const RSS_GOAL: u64 = 300_000_000;

/// The 200 ms upstream with 1,000 calls in flight: errors and peak
/// resident memory, native first (so airlock's peak includes whatever the
/// native run left resident).
async fn in_flight(opts: &Options) {
    const CALLERS: usize = 1000;
    const POOL: u32 = 1024;
    let secs = if opts.quick { 3.0 } else { 8.0 };
    let upstream = serve_delayed(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let native = native_load(&upstream, CALLERS, secs).await;
    let host = upstream_host(&upstream.base, POOL, POOL as usize);
    let (opened, reserved) = (rss_bytes(), virtual_bytes());
    let plugin = plugin_load(&host, &upstream, CALLERS, secs).await;
    summary::add(
        "200 ms upstream, 1,000 in flight: errors",
        format!("{} errors", plugin.rate.errors),
        format!("{} calls", plugin.latencies.len()),
        None,
        Goal::Report,
    );
    summary::add(
        "peak RSS with 1,000 in flight",
        mb(plugin.peak_rss),
        format!("{} goal", mb(RSS_GOAL)),
        Some(plugin.peak_rss as f64 / RSS_GOAL as f64),
        Goal::AtMost(1.0),
    );
    println!("## upstream answering after 200 ms: {CALLERS} callers in flight, {secs} s each\n");
    println!(
        "| side | calls/s | calls | errors | median | p99 | upstream held at once | peak resident memory |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, load) in [
        ("native Rust (hyper, pooled keep-alive)", &native),
        ("airlock, full host path", &plugin),
    ] {
        let s = stats(load.latencies.clone());
        println!(
            "| {label} | {:.0} | {} | {} | {} | {} | {} | {} ({}) |",
            load.rate.per_sec,
            load.latencies.len(),
            load.rate.errors,
            ms(s.median),
            ms(s.p99),
            load.held,
            mb(load.peak_rss),
            mib(load.peak_rss)
        );
    }
    for (label, load) in [("native", &native), ("airlock", &plugin)] {
        if let Some(e) = &load.first_error {
            println!("\nfirst {label} error: {e}");
        }
    }
    println!(
        "\nhost: max_concurrent_calls {POOL} (instance pool), limits.connection_calls {POOL}, one connection; \
         resident memory {} before the section, {} with the host open after the native run; \
         the process's virtual memory with the host open (mostly the pool's reservation): {:.1} TiB\n",
        mb(before),
        mb(opened),
        reserved as f64 / (1u64 << 40) as f64,
    );
}
