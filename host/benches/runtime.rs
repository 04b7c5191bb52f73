//! Runtime benchmark: prints each figure next to its baseline, measured in
//! the same run on the same machine.
//!
//! Run with `cargo bench -p airlock --bench runtime` (add `-- --quick` for a
//! shorter run).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::audit::MemoryAudit;
use airlock::connection::{Credential, StaticCredential};
use airlock::egress::AddressPolicy;
use airlock::{Connection, Runtime, RuntimeConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

const BODY: &str = r#"{"name":"bench-user","id":42,"roles":["reader","writer"]}"#;

/// A minimal keep-alive HTTP/1.1 server on loopback answering every request
/// with the same small JSON document, so both sides pay the same server cost.
async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

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

fn runtime(cache: &std::path::Path, pooling: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        pooling,
        max_concurrent_calls: 64,
        audit: Arc::new(MemoryAudit::new()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Calls per second with `callers` concurrent tasks for `secs`.
async fn throughput(
    rt: Arc<Runtime>,
    plugin: Arc<airlock::Plugin>,
    conn: Connection,
    callers: usize,
    secs: f64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (rt, plugin, conn) = (rt.clone(), plugin.clone(), conn.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                rt.test_connection(&plugin, &conn).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / secs
}

fn us(d: Duration) -> String {
    format!("{:>9.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 3000 };
    let addr = serve().await;
    let base = format!("http://{addr}");
    let cache = tempfile::tempdir().unwrap();
    let minimal_wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let probe_wasm = std::fs::read(airlock_test_artifacts::PROBE).unwrap();

    // --- load: compile vs compiled cache -------------------------------
    let t = Instant::now();
    runtime(cache.path(), true).load(&minimal_wasm).unwrap();
    let cold = t.elapsed();
    let mut cached = Vec::new();
    for _ in 0..5 {
        let rt = runtime(cache.path(), true);
        let t = Instant::now();
        let p = rt.load(&minimal_wasm).unwrap();
        cached.push(t.elapsed());
        assert_eq!(p.cache_outcome(), airlock::runtime::CacheOutcome::Cached);
    }
    let cached = stats(cached).median;

    // --- instantiate + call a no-op: pooled vs on-demand ----------------
    let mut noop = Vec::new();
    for pooling in [true, false] {
        let rt = runtime(cache.path(), pooling);
        let probe = rt.load(&probe_wasm).unwrap();
        let conn = Connection::new("bench", "bench").with_setting("action", "ok");
        for _ in 0..50 {
            rt.test_connection(&probe, &conn).await.unwrap();
        }
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            rt.test_connection(&probe, &conn).await.unwrap();
            samples.push(t.elapsed());
        }
        noop.push(stats(samples));
    }

    // --- one loopback GET + JSON parse: plugin vs native ----------------
    let rt = runtime(cache.path(), true);
    let minimal = rt.load(&minimal_wasm).unwrap();
    let conn = Connection::new("bench", "bench")
        .with_setting("base-url", &base)
        .with_credential(
            http::header::AUTHORIZATION,
            StaticCredential::new(Credential::Bearer {
                token: "bench-token".to_string().into(),
            }),
        )
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let url: http::Uri = format!("{base}/api/me").parse().unwrap();
    let native_get = || async {
        let req = http::Request::get(url.clone())
            .header("authorization", "Bearer bench-token")
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["name"], "bench-user");
    };
    for _ in 0..50 {
        native_get().await;
        rt.test_connection(&minimal, &conn).await.unwrap();
    }
    // Interleave so both sides see the same machine conditions.
    let (mut native, mut plugin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        native_get().await;
        native.push(t.elapsed());
        let t = Instant::now();
        let r = rt.test_connection(&minimal, &conn).await.unwrap();
        plugin.push(t.elapsed());
        assert_eq!(r.account.as_deref(), Some("bench-user"));
    }
    let (native, plugin) = (stats(native), stats(plugin));

    // --- audit cost: 64 concurrent callers, the same GET -------------------
    let secs = if quick { 3.0 } else { 10.0 };
    let mut audit_rows = Vec::new();
    for (label, durability) in [
        ("audit in memory", None),
        (
            "audit SQLite, process-crash durable (default)",
            Some(airlock::audit::AuditDurability::ProcessCrash),
        ),
        (
            "audit SQLite, power-loss durable",
            Some(airlock::audit::AuditDurability::PowerLoss),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let audit: Arc<dyn airlock::audit::AuditSink> = match durability {
            None => Arc::new(MemoryAudit::new()),
            Some(d) => {
                let store = airlock::store::Store::open(dir.path()).unwrap();
                airlock::audit::SqliteAudit::open(store.path(), d).unwrap()
            }
        };
        let rt = Arc::new(
            Runtime::new(RuntimeConfig {
                cache_dir: Some(cache.path().to_path_buf()),
                address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
                max_concurrent_calls: 128,
                audit,
                ..RuntimeConfig::default()
            })
            .unwrap(),
        );
        let plugin = rt.load(&minimal_wasm).unwrap();
        let per_sec = throughput(rt, plugin, conn.clone(), 64, secs).await;
        audit_rows.push((label, per_sec));
    }

    println!("airlock runtime benchmark ({n} iterations per row)\n");
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "measure", "median", "p99", "ratio"
    );
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "load minimal.wasm: compile (cold)",
        us(cold),
        "",
        ""
    );
    println!(
        "{:<44} {:>12} {:>12} {:>7.2}%",
        "load minimal.wasm: compiled cache",
        us(cached),
        "",
        cached.as_secs_f64() / cold.as_secs_f64() * 100.0
    );
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "instantiate + no-op call, pooling",
        us(noop[0].median),
        us(noop[0].p99),
        ""
    );
    println!(
        "{:<44} {:>12} {:>12} {:>7.2}x",
        "instantiate + no-op call, on-demand",
        us(noop[1].median),
        us(noop[1].p99),
        noop[1].median.as_secs_f64() / noop[0].median.as_secs_f64()
    );
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "native GET + JSON (hyper, pooled)",
        us(native.median),
        us(native.p99),
        ""
    );
    println!(
        "{:<44} {:>12} {:>12} {:>7.2}x",
        "plugin GET + JSON (full host path)",
        us(plugin.median),
        us(plugin.p99),
        plugin.median.as_secs_f64() / native.median.as_secs_f64()
    );
    println!("\nplugin GET + JSON, 64 concurrent callers, {secs} s each:");
    let base = audit_rows[0].1;
    for (label, per_sec) in &audit_rows {
        println!(
            "{label:<52} {per_sec:>9.0} calls/s {:>7.2}x",
            per_sec / base
        );
    }
}
