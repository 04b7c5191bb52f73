//! What the security work on the response path costs: scrubbing and
//! yielding.
//!
//! Scrubbing. Every answer to a request the host added a credential to is
//! searched for that credential (the header value and the secret alone) and
//! masked before the guest reads it (`egress/scrub.rs`). The scrubber is
//! not public and has no switch, but it runs only when a credential was
//! injected: the same runtime call to the minimal plugin, GET and parse 1
//! MiB of JSON, once with a static bearer credential and once with none,
//! differs by the scrubber (and the header's injection, a few hundred
//! nanoseconds). Rounds interleave the two with a native GET and the full
//! host path of the same document; the cost is the median of the
//! differences within a round, printed with their quartiles. The quartiles
//! often straddle zero: the scrubber's share of a call is small next to
//! the call's own noise, so it is also timed alone: the host's own
//! scrubber (`scrub_alone`), per 16 KiB piece and per chat event.
//!
//! Yielding. A running guest gives its worker back to tokio at every epoch
//! tick (1 ms; `runtime/invoke.rs` `meter_cpu`), so a busy guest cannot
//! starve the calls behind it (the `fairness` section shows what that
//! buys). The host has no switch for it, so this measures a replica on
//! wasmtime directly, the same engine flag and callback: a CPU-bound loop
//! (a multiply-add per iteration, so a loop back-edge, an epoch check,
//! every three instructions: the worst case) run with no epoch
//! interruption, with the checks compiled in but no deadline reached, and
//! with the host's policy (a ticker thread advancing the epoch every
//! millisecond, the deadline one tick ahead, `UpdateDeadline::YieldCustom`
//! with `tokio::task::yield_now` at each). One yield is timed apart, by a
//! loop that yields at every check (deadline zero ticks ahead), since the
//! thousand a second the host makes are too few to stand out of the noise.
//! The figures are CPU time of the whole process to the nanosecond
//! (`/proc/self/task/*/schedstat`), which other work on the machine moves
//! far less than wall time; medians of interleaved runs.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock::credential::{Credential, StaticCredential};
use airlock::{AddressPolicy, Connection, Runtime, RuntimeConfig};
use bytes::Bytes;
use wasmtime::{Config, Engine, Instance, Module, Store, UpdateDeadline};

use super::{paired, scrub_alone, threads_cpu};
use crate::summary::{self, Goal};
use crate::{
    NoAudit, Options, Stats, TOKEN, connection_name, document, host, native_client, native_get,
    on_worker, plugin_get, stats, us,
};

const MIB: usize = 1 << 20;
/// The host's `EPOCH_TICK` (`limits.rs`, not exported).
const TICK: Duration = Duration::from_millis(1);

// ---- scrubbing -------------------------------------------------------------------

/// The minimal plugin's connection to the 1 MiB document, with a bearer
/// credential or without.
fn document_connection(base: &str, credential: bool) -> Connection {
    let id = if credential { "scrubbed" } else { "plain" };
    let conn = Connection::new(id, id).with_setting("base-url", format!("{base}/size/{MIB}"));
    if !credential {
        return conn;
    }
    let token = Credential::Bearer {
        token: TOKEN.to_string().into(),
    };
    conn.with_credential(http::header::AUTHORIZATION, StaticCredential::new(token))
        .unwrap()
}

/// Sequential 1 MiB calls, interleaved: native, full host path, runtime
/// with a credential, runtime without. One column per path.
async fn scrub_rounds(opts: &Options, base: &str) -> Vec<Vec<Duration>> {
    let n = if opts.quick { 80 } else { 300 };
    let host = host(base);
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
            audit: Arc::new(NoAudit(AtomicU64::new(0))),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let minimal = runtime
        .load(&std::fs::read(airlock_test_artifacts::MINIMAL).unwrap())
        .unwrap();
    let conns = [true, false].map(|c| document_connection(base, c));
    let url: http::Uri = format!("{base}/size/{MIB}/api/me").parse().unwrap();
    let (client, airlock) = (native_client(), host.airlock.clone());
    on_worker(async move {
        let mut columns: Vec<Vec<Duration>> = (0..4).map(|_| Vec::with_capacity(n)).collect();
        for round in 0..n + 5 {
            let t = Instant::now();
            native_get(&client, &url).await.unwrap();
            let mut row = vec![t.elapsed()];
            let t = Instant::now();
            plugin_get(&airlock, &connection_name(MIB)).await.unwrap();
            row.push(t.elapsed());
            for conn in &conns {
                let t = Instant::now();
                let report = runtime.test_connection(&minimal, conn).await.unwrap();
                row.push(t.elapsed());
                assert_eq!(report.account.as_deref(), Some("bench-user"));
            }
            if round >= 5 {
                columns.iter_mut().zip(row).for_each(|(c, d)| c.push(d));
            }
        }
        columns
    })
    .await
}

async fn scrubbing(opts: &Options, base: &str) {
    let columns = scrub_rounds(opts, base).await;
    let rounds = columns[0].len();
    let diff = paired(columns[2].clone(), columns[3].clone());
    let extra = diff.median;
    let s: Vec<Stats> = columns.into_iter().map(stats).collect();
    let native = s[0].median.as_secs_f64();
    println!(
        "## response scrubbing: sequential GET of 1 MiB of JSON, parsed ({rounds} rounds, interleaved)\n"
    );
    println!("| path | median | p99 | vs native |");
    println!("|---|---:|---:|---:|");
    for (label, s) in [
        "native Rust (hyper, pooled keep-alive)",
        "plugin, full host path (Airlock: vault, audit, the answer scrubbed)",
        "runtime only, bearer credential: the answer is scrubbed",
        "runtime only, no credential: nothing to scrub",
    ]
    .iter()
    .zip(&s)
    {
        let ratio = s.median.as_secs_f64() / native;
        println!(
            "| {label} | {} | {} | {ratio:.2}x |",
            us(s.median),
            us(s.p99)
        );
    }
    let without = s[3].median.as_secs_f64();
    println!(
        "\nscrubbing 1 MiB, differences within a round: {} µs a call, so {:.0} MB/s, {:+.1}% of the call without it\n",
        diff.text(1e-6, 1),
        MIB as f64 / extra.max(1e-9) / 1e6,
        extra / without * 100.0
    );
    summary::add(
        "1 MiB GET and parse, full host path: median",
        us(s[1].median),
        format!("{} native", us(s[0].median)),
        Some(s[1].median.as_secs_f64() / native),
        Goal::Report,
    );
    summary::add(
        "response scrubbing, 1 MiB answer (runtime, with vs without credential)",
        format!("{:+.1} µs", extra * 1e6),
        format!("{} without", us(s[3].median)),
        Some((without + extra) / without),
        Goal::Report,
    );
}

/// The host's scrubber alone (`scrub_alone`).
fn scrubber_alone(opts: &Options) {
    let volume = if opts.quick { 64 << 20 } else { 256 << 20 };
    let doc = document(MIB);
    let pieces: Vec<Bytes> = (0..MIB)
        .step_by(16 << 10)
        .map(|at| doc.slice(at..at + (16 << 10)))
        .collect();
    let event = super::chat::event("w123 ");
    let inputs = [
        ("1 MiB document in 16 KiB pieces", pieces, volume),
        (
            &*format!("one chat event ({} bytes) a piece", event.len()),
            vec![event],
            volume / 16,
        ),
    ];
    println!(
        "| the scrubber alone (egress/scrub.rs), per piece | scrubbed | copied | one memmem search | scrubbed vs copied |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut timings = Vec::new();
    for (label, pieces, bytes) in &inputs {
        let t = scrub_alone::time(TOKEN, pieces, *bytes);
        let size = pieces[0].len() as f64;
        let show = |d: Duration| {
            format!(
                "{} ({:.0} MB/s)",
                super::chat::ns(d),
                size / d.as_secs_f64() / 1e6
            )
        };
        println!(
            "| {label} | {} | {} | {} | {:.1}x |",
            show(t.scrub),
            show(t.copy),
            show(t.search),
            t.scrub.as_secs_f64() / t.copy.as_secs_f64()
        );
        timings.push(t);
    }
    println!();
    let mb_s = |d: Duration| (16 << 10) as f64 / d.as_secs_f64() / 1e6;
    summary::add(
        "response scrubber alone (egress/scrub.rs), 16 KiB pieces: throughput",
        format!("{:.0} MB/s", mb_s(timings[0].scrub)),
        format!("{:.0} MB/s copied", mb_s(timings[0].copy)),
        Some(mb_s(timings[0].scrub) / mb_s(timings[0].copy)),
        Goal::Report,
    );
    summary::add(
        "response scrubber alone (egress/scrub.rs), one chat event a piece",
        super::chat::ns(timings[1].scrub),
        format!("{} copied", super::chat::ns(timings[1].copy)),
        Some(timings[1].scrub.as_secs_f64() / timings[1].copy.as_secs_f64()),
        Goal::Report,
    );
}

// ---- yielding -------------------------------------------------------------------------

/// `acc = acc * K + n` for `n` down to 1: one epoch check per iteration.
const SPIN: &str = r#"(module
  (func (export "spin") (param $n i64) (result i64) (local $acc i64)
    (loop $top
      (local.set $acc
        (i64.add (i64.mul (local.get $acc) (i64.const 6364136223846793005)) (local.get $n)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br_if $top (i64.ne (local.get $n) (i64.const 0))))
    (local.get $acc)))"#;

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    /// An engine without epoch interruption.
    Off,
    /// Epoch checks compiled in; the deadline is never reached.
    Checks,
    /// The host's: deadline one tick ahead, yield to tokio at each tick.
    Host,
    /// Yield at every check (deadline zero ticks ahead): one yield an
    /// iteration, to time a yield.
    Every,
}

/// One run of the loop under `policy`.
#[derive(Clone, Copy)]
struct Spun {
    wall: Duration,
    cpu: Duration,
    yields: u64,
}

async fn spin(engine: &Engine, module: &Module, policy: Policy, n: i64) -> Spun {
    let mut store = Store::new(engine, ());
    let yields = Arc::new(AtomicU64::new(0));
    match policy {
        Policy::Off => {}
        Policy::Checks => store.set_epoch_deadline(1 << 40),
        Policy::Host | Policy::Every => {
            let ahead = u64::from(policy == Policy::Host);
            store.set_epoch_deadline(ahead);
            let counter = yields.clone();
            store.epoch_deadline_callback(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
                let yielded = Box::pin(tokio::task::yield_now());
                Ok(UpdateDeadline::YieldCustom(ahead, yielded))
            });
        }
    }
    let instance = Instance::new_async(&mut store, module, &[]).await.unwrap();
    let func = instance
        .get_typed_func::<i64, i64>(&mut store, "spin")
        .unwrap();
    let (cpu, wall) = (threads_cpu(), Instant::now());
    black_box(func.call_async(&mut store, n).await.unwrap());
    Spun {
        wall: wall.elapsed(),
        cpu: threads_cpu().saturating_sub(cpu),
        yields: yields.load(Ordering::Relaxed),
    }
}

/// An engine, the loop compiled for it, and (with epochs) a ticker thread
/// advancing its epoch every tick until `stop`, as the host's does.
fn engine(epochs: bool, stop: &Arc<AtomicBool>) -> (Engine, Module) {
    let mut config = Config::new();
    config.epoch_interruption(epochs);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, wat::parse_str(SPIN).unwrap()).unwrap();
    if epochs {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        });
    }
    (engine, module)
}

/// Iterations of the loop that take about `target` under `policy`.
async fn calibrate(engine: &Engine, module: &Module, policy: Policy, target: Duration) -> i64 {
    let probe = if policy == Policy::Every {
        20_000
    } else {
        20_000_000
    };
    let t = spin(engine, module, policy, probe).await.wall;
    (probe as f64 * target.as_secs_f64() / t.as_secs_f64()) as i64
}

/// `runs` interleaved rounds of the four policies, one column each; the
/// loop is as long as about `target` without epochs (`Every`: a shorter
/// loop of about the same time).
async fn yield_rounds(runs: usize, target: Duration) -> (Vec<Vec<Spun>>, i64) {
    let stop = Arc::new(AtomicBool::new(false));
    let (plain, plain_module) = engine(false, &stop);
    let (epoch, epoch_module) = engine(true, &stop);
    let out = on_worker(async move {
        let n = calibrate(&plain, &plain_module, Policy::Off, target).await;
        let every = calibrate(&epoch, &epoch_module, Policy::Every, target).await;
        let mut columns: Vec<Vec<Spun>> = (0..4).map(|_| Vec::with_capacity(runs)).collect();
        for _ in 0..runs {
            let runs = [
                (&plain, &plain_module, Policy::Off, n),
                (&epoch, &epoch_module, Policy::Checks, n),
                (&epoch, &epoch_module, Policy::Host, n),
                (&epoch, &epoch_module, Policy::Every, every),
            ];
            for (column, (engine, module, policy, n)) in columns.iter_mut().zip(runs) {
                column.push(spin(engine, module, policy, n).await);
            }
        }
        (columns, every)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    out
}

async fn yielding(opts: &Options) {
    let (runs, target) = if opts.quick {
        (5, Duration::from_millis(150))
    } else {
        (15, Duration::from_millis(300))
    };
    let (columns, every) = yield_rounds(runs, target).await;
    let median = |c: &[Spun], f: fn(&Spun) -> Duration| stats(c.iter().map(f).collect()).median;
    let cpu: Vec<f64> = columns
        .iter()
        .map(|c| median(c, |s| s.cpu).as_secs_f64())
        .collect();
    let wall: Vec<f64> = columns
        .iter()
        .map(|c| median(c, |s| s.wall).as_secs_f64())
        .collect();
    let mut host_yields: Vec<u64> = columns[2].iter().map(|s| s.yields).collect();
    host_yields.sort_unstable();
    let per_yield = cpu[3] / every as f64;
    let share = per_yield / TICK.as_secs_f64();
    println!(
        "## yielding: a CPU-bound guest loop, wasmtime with the host's epoch policy ({runs} runs, interleaved)\n"
    );
    println!("| engine | CPU (median) | wall (median) | CPU vs no epochs | yields a run |");
    println!("|---|---:|---:|---:|---:|");
    for (i, label) in [
        "no epoch interruption",
        "epoch checks compiled in, deadline never reached",
        "host policy: epoch every 1 ms, yield to tokio at each",
    ]
    .iter()
    .enumerate()
    {
        let y = if i == 2 { host_yields[runs / 2] } else { 0 };
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.3}x | {y} |",
            cpu[i] * 1e3,
            wall[i] * 1e3,
            cpu[i] / cpu[0]
        );
    }
    println!(
        "\none yield (yielding at every check, {every} a run): {:.2} µs of CPU, so one a millisecond costs a busy guest {:.2}%; the epoch checks cost this loop (a check every 3 instructions, the worst case) {:+.1}%\n",
        per_yield * 1e6,
        share * 100.0,
        (cpu[1] / cpu[0] - 1.0) * 100.0
    );
    summary::add(
        "yielding: epoch checks and a yield a ms, CPU-bound loop (wasmtime replica): CPU",
        format!("{:.1} ms", cpu[2] * 1e3),
        format!("{:.1} ms no epochs", cpu[0] * 1e3),
        Some(cpu[2] / cpu[0]),
        Goal::Report,
    );
    summary::add(
        "yielding: one yield's CPU against the 1 ms tick it comes at",
        format!("{:.2} µs ({:.2}%)", per_yield * 1e6, share * 100.0),
        format!("{} µs tick", TICK.as_micros()),
        None,
        Goal::Report,
    );
}

pub async fn run(opts: &Options, base: &str) {
    scrubbing(opts, base).await;
    scrubber_alone(opts);
    yielding(opts).await;
}
