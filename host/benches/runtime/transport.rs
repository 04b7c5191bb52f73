//! `transport`: the same request through the SDK's two ways out, in the
//! same run: one host call (`airlock:plugin/outbound`, what `Request::send`
//! uses) against wasi:http's resources and streams (`send_streaming`, read
//! whole). The probe plugin's `fetch` with its `transport` setting, on a
//! runtime with a static credential and the audit log off, so the rows
//! differ only in the transport: sequential latency interleaved on a
//! worker, then 64 callers' throughput and CPU per call.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use airlock::{AddressPolicy, Connection, Plugin, Runtime, RuntimeConfig};

use super::summary::{self, Goal};
use super::{NoAudit, Options, on_worker, static_connection, stats, throughput, us};

const TRANSPORTS: [(&str, &str); 2] = [
    ("", "one host call (airlock:plugin/outbound)"),
    ("wasi-http", "wasi:http (resources and streams)"),
];

fn runtime() -> (Arc<Runtime>, Arc<Plugin>) {
    let rt = Runtime::new(RuntimeConfig {
        address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        max_concurrent_calls: 128,
        audit: Arc::new(NoAudit(AtomicU64::new(0))),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let probe = rt
        .load(&std::fs::read(airlock_test_artifacts::PROBE).unwrap())
        .unwrap();
    (Arc::new(rt), probe)
}

fn connection(base: &str, transport: &str) -> Connection {
    static_connection(base)
        .with_setting("action", "fetch")
        .with_setting("url", format!("{base}/size/1024/api/me"))
        .with_setting("transport", transport)
}

async fn fetch(rt: &Runtime, probe: &Plugin, conn: &Connection) -> Result<(), String> {
    let report = rt
        .test_connection(probe, conn)
        .await
        .map_err(|e| e.to_string())?;
    if !report.message.contains("bench-user") {
        return Err(format!("unexpected answer {}", report.message));
    }
    Ok(())
}

pub async fn run(opts: &Options, base: &str) {
    let n = if opts.quick { 300 } else { 3000 };
    let secs = if opts.quick { 2.0 } else { 5.0 };
    let (rt, probe) = runtime();
    let conns: Vec<Connection> = TRANSPORTS
        .iter()
        .map(|(t, _)| connection(base, t))
        .collect();
    let (rt2, probe2, conns2) = (rt.clone(), probe.clone(), conns.clone());
    let samples = on_worker(async move {
        let mut samples = vec![Vec::with_capacity(n); conns2.len()];
        for round in 0..n + 20 {
            for (column, conn) in samples.iter_mut().zip(&conns2) {
                let t = Instant::now();
                fetch(&rt2, &probe2, conn).await.unwrap();
                if round >= 20 {
                    column.push(t.elapsed());
                }
            }
        }
        samples
    })
    .await;
    let seq: Vec<_> = samples.into_iter().map(stats).collect();
    let mut rates = Vec::new();
    for conn in &conns {
        let (rt, probe, conn) = (rt.clone(), probe.clone(), conn.clone());
        rates.push(
            throughput(64, secs, move || {
                let (rt, probe, conn) = (rt.clone(), probe.clone(), conn.clone());
                Box::pin(async move { fetch(&rt, &probe, &conn).await })
            })
            .await,
        );
    }
    println!("## transport: one host call vs wasi:http (probe fetch of 1 KiB, audit off)\n");
    println!(
        "| transport | sequential median | p99 | 64 callers: calls/s | CPU per call | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (((_, label), s), r) in TRANSPORTS.iter().zip(&seq).zip(&rates) {
        println!(
            "| {label} | {} | {} | {:.0} | {} | {} |",
            us(s.median),
            us(s.p99),
            r.per_sec,
            us(r.cpu_per_call),
            r.errors
        );
    }
    println!();
    summary::add(
        "one host call vs wasi:http, 64 callers: CPU per call",
        us(rates[0].cpu_per_call),
        format!("{} wasi:http", us(rates[1].cpu_per_call)),
        Some(rates[0].cpu_per_call.as_secs_f64() / rates[1].cpu_per_call.as_secs_f64()),
        Goal::Report,
    );
    summary::add(
        "one host call vs wasi:http: sequential median",
        us(seq[0].median),
        format!("{} wasi:http", us(seq[1].median)),
        Some(seq[0].median.as_secs_f64() / seq[1].median.as_secs_f64()),
        Goal::Report,
    );
}
