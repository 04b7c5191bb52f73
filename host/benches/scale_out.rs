//! One server against three on one PostgreSQL, and against the embedded
//! SQLite default: real `airlock serve` processes, the same call for all
//! (`POST /api/v1/connections/c/test`: the minimal plugin GETs 1 KiB of
//! JSON from a loopback upstream, with a bearer credential the host adds
//! and an audit row committed before it leaves), 64 callers spread
//! round-robin over the servers as a load balancer would.
//!
//! `cargo bench --bench scale_out`. PostgreSQL is a private cluster of the
//! distribution's server started for the run, with fsync on. Every figure
//! is from this run; on a machine with few cores the servers, the database,
//! the upstream and the callers share them, so three servers measure the
//! cost of coordination more than added capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airlock_test_artifacts::postgres::TestPostgres;
use airlock_test_artifacts::serve::{Server, install, request};

const CALLERS: usize = 64;
const WARM_UP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);

fn main() {
    let upstream = Upstream::start();
    let pg = TestPostgres::start_durable().unwrap_or_else(|e| panic!("{e}"));
    println!("#### scale-out: {CALLERS} callers, {MEASURE:?} each, 1 KiB answers");
    println!("| setup | calls/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|");
    let sqlite = run(&upstream, None, 1);
    print_row("1 server, SQLite", &sqlite);
    let one = run(&upstream, Some(&pg.database()), 1);
    print_row("1 server, PostgreSQL", &one);
    let three = run(&upstream, Some(&pg.database()), 3);
    print_row("3 servers, one PostgreSQL", &three);
    println!();
    println!(
        "3 servers / 1 server on PostgreSQL: {:.2}x throughput, {:.2}x p99; \
         1 server PostgreSQL / SQLite: {:.2}x throughput",
        three.rate / one.rate,
        three.p99.as_secs_f64() / one.p99.as_secs_f64(),
        one.rate / sqlite.rate
    );
}

/// What one setup measured.
struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn print_row(setup: &str, f: &Figures) {
    println!(
        "| {setup} | {:.0} | {:.2} ms | {:.2} ms | {} |",
        f.rate,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.errors
    );
}

/// Start `servers` servers on `database`, install the plugin, add the
/// connection, and measure.
fn run(upstream: &Upstream, database: Option<&str>, servers: usize) -> Figures {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_airlock"));
    let mut started = Vec::new();
    let mut token = None;
    for _ in 0..servers {
        let (server, t) = Server::start(binary, database);
        started.push(server);
        token = token.or(t);
    }
    let token = token.expect("a first admin token");
    let wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    install(&started[0].addr, &token, wasm);
    let body = format!(
        r#"{{"name":"c","plugin":"minimal","settings":{{"base-url":"http://{}"}},
            "auth":{{"kind":"bearer","token":"bench-token"}}}}"#,
        upstream.addr
    );
    let (status, answer) = request(
        &started[0].addr,
        "POST",
        "/api/v1/connections",
        &token,
        Some(("application/json", body.into_bytes())),
    )
    .unwrap();
    assert_eq!(status, 201, "{answer}");
    let addrs: Vec<String> = started.iter().map(|s| s.addr.clone()).collect();
    load(&addrs, &token, WARM_UP);
    load(&addrs, &token, MEASURE)
}

/// [`CALLERS`] threads calling round-robin over `addrs` for `time`.
fn load(addrs: &[String], token: &str, time: Duration) -> Figures {
    let stop = AtomicBool::new(false);
    let results: Vec<(Vec<Duration>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|c| {
                let stop = &stop;
                s.spawn(move || {
                    let (mut took, mut errors) = (Vec::new(), 0);
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        i = (i + 1) % addrs.len();
                        let start = Instant::now();
                        match request(&addrs[i], "POST", "/api/v1/connections/c/test", token, None)
                        {
                            Ok((200, _)) => took.push(start.elapsed()),
                            _ => errors += 1,
                        }
                    }
                    (took, errors)
                })
            })
            .collect();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors = results.iter().map(|r| r.1).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        rate: all.len() as f64 / time.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        errors,
    }
}

/// The loopback upstream: `GET /api/me` answers 1 KiB of JSON.
struct Upstream {
    addr: String,
    _runtime: tokio::runtime::Runtime,
}

impl Upstream {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let body = Arc::new(format!(
            r#"{{"name":"alice","pad":"{}"}}"#,
            "x".repeat(1000)
        ));
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = body.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let body = body.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body.to_string())),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            _runtime: runtime,
        }
    }
}
