//! Audit sink benchmark: throughput of `begin` + `finish` (records/s) at 1, 8
//! and 64 concurrent tasks, for the in-memory sink and the SQLite sink at
//! both durability levels, measured in the same run on the same machine.
//!
//! Run with `cargo bench -p airlock --bench audit` (add `-- --quick` for a
//! shorter run, `-- --dir PATH` to put the databases on another disk; by
//! default they go under the target directory, not a possibly in-memory
//! /tmp, so fsync costs what it costs on the data disk).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use airlock::audit::{
    AUDIT_FILE, AuditDurability, AuditLog, AuditSink, Decision, EgressOutcome, EgressRecord,
    MemoryAudit,
};

const CONCURRENCY: [usize; 3] = [1, 8, 64];
/// The in-memory sink keeps every record: stop it here to bound memory.
const MEMORY_CAP: u64 = 200_000;

fn record() -> EgressRecord {
    EgressRecord {
        time: SystemTime::now(),
        plugin_id: "github".into(),
        plugin_version: "1.4.2".into(),
        connection_id: "5f0c3e1a9b7d4c2e8f6a1b3c5d7e9f01".into(),
        project: Some("platform".into()),
        method: "GET".into(),
        url: "https://api.github.com/repos/acme/widgets/issues?state=&per_page=".into(),
        request_bytes: 0,
        request_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        credential_used: true,
        decision: Decision::Allowed,
        detail: None,
    }
}

fn outcome() -> EgressOutcome {
    EgressOutcome {
        status: Some(200),
        response_bytes: 18_342,
        duration: Duration::from_millis(87),
        error: None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Sqlite(AuditDurability),
}

struct Cell {
    per_sec: f64,
    rows_per_commit: Option<f64>,
}

/// Run `tasks` tasks doing begin + finish for `duration` (or until `cap`
/// records), then wait for every outcome row to be committed.
async fn measure(kind: Kind, tasks: usize, duration: Duration, dir: &std::path::Path) -> Cell {
    let data = tempfile::tempdir_in(dir).unwrap();
    let (sink, sqlite): (Arc<dyn AuditSink>, Option<Arc<AuditLog>>) = match kind {
        Kind::Memory => (Arc::new(MemoryAudit::new()), None),
        Kind::Sqlite(durability) => {
            let audit = AuditLog::open(&data.path().join(AUDIT_FILE), durability).unwrap();
            (audit.clone(), Some(audit))
        }
    };
    let cap = if kind == Kind::Memory {
        MEMORY_CAP
    } else {
        u64::MAX
    };
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let sink = sink.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let record = record();
                let outcome = outcome();
                while start.elapsed() < duration && done.load(Ordering::Relaxed) < cap {
                    let id = sink.begin(&record).await.unwrap();
                    sink.finish(id, &outcome);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (commits_before_flush, rows_before_flush) = sqlite
        .as_ref()
        .map_or((0, 0), |s| (s.commits(), s.rows_written()));
    if let Some(s) = &sqlite {
        s.flush().await.unwrap();
    }
    let elapsed = start.elapsed();
    let n = done.load(Ordering::Relaxed);
    let rows_per_commit = sqlite.as_ref().map(|_| {
        // Ratio over the timed loop, before the final flush.
        rows_before_flush as f64 / commits_before_flush.max(1) as f64
    });
    if let Some(s) = &sqlite {
        assert_eq!(
            s.rows_written(),
            2 * n,
            "every request and outcome row written"
        );
        let conn = rusqlite::Connection::open(s.path().unwrap()).unwrap();
        let report = airlock::audit::verify(&conn).unwrap();
        assert!(report.is_ok(), "{:?}", report.problem);
    }
    drop(sink);
    drop(sqlite);
    Cell {
        per_sec: n as f64 / elapsed.as_secs_f64(),
        rows_per_commit,
    }
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    let duration = Duration::from_millis(if quick { 400 } else { 2000 });
    let warmup = Duration::from_millis(if quick { 50 } else { 200 });

    let kinds = [
        Kind::Memory,
        Kind::Sqlite(AuditDurability::ProcessCrash),
        Kind::Sqlite(AuditDurability::PowerLoss),
    ];
    for kind in kinds {
        measure(kind, 8, warmup, &dir).await;
    }

    println!(
        "airlock audit benchmark: begin + finish, records/s ({} ms per cell; databases in {})\n",
        duration.as_millis(),
        dir.display()
    );
    println!(
        "{:>5} {:>11} | {:>11} {:>8} {:>9} | {:>11} {:>8} {:>9}",
        "tasks", "memory", "sqlite", "/memory", "rows/txn", "sqlite", "/memory", "rows/txn"
    );
    println!(
        "{:>5} {:>11} | {:>31} | {:>31}",
        "", "", "process-crash (sync=NORMAL)", "power-loss (sync=FULL)"
    );
    for tasks in CONCURRENCY {
        let mut cells = Vec::new();
        for kind in kinds {
            cells.push(measure(kind, tasks, duration, &dir).await);
        }
        let memory = cells[0].per_sec;
        let sqlite = |c: &Cell| {
            format!(
                "{:>11} {:>7.3}x {:>9.1}",
                rate(c.per_sec),
                c.per_sec / memory,
                c.rows_per_commit.unwrap_or(0.0)
            )
        };
        println!(
            "{tasks:>5} {:>11} | {} | {}",
            rate(memory),
            sqlite(&cells[1]),
            sqlite(&cells[2])
        );
    }
    println!(
        "\nrows/txn: audit rows (a request row and an outcome row per record) per SQLite \
         transaction, i.e. per commit; memory stops at {MEMORY_CAP} records per cell."
    );
}
