//! A full sync of 10,000 ServiceNow incidents: the servicenow plugin through
//! `Airlock::sync` against a native client that fetches the same pages and
//! writes the same rows.
//!
//! The loopback Table API holds 10,000 incidents of about 1.3 KB each (the
//! fields of a real incident, raw values), four to a second of
//! `sys_updated_on` so pages break inside a second, ordered by
//! `(sys_updated_on, sys_id)`. It answers exactly the keyset queries the
//! plugin sends (`ORDERBYsys_updated_on^ORDERBYsys_id`, then
//! `sys_updated_on>=T^sys_updated_on>T^ORsys_id>ID^...`) with
//! `sysparm_offset=0` and `sysparm_limit`, and refuses anything else, so a
//! change in the plugin's paging shows here as an error rather than as a
//! different measurement. 100 records a page: 100 full pages and the empty
//! one that ends the run, on both sides.
//!
//! The native side is what an application without airlock would write:
//! hyper (pooled keep-alive), the same query string, the page parsed with
//! serde_json, the order checked as the plugin checks it, each record
//! re-serialised as its stored document, and each page's rows upserted with
//! its cursor in one `BEGIN IMMEDIATE` transaction into a SQLite file with
//! airlock's schema for runs and records and airlock's pragmas (WAL,
//! `synchronous=FULL`, foreign keys, `secure_delete`). What airlock does on
//! top is what the figure is about: a fresh instance per page, the egress
//! check, the bearer token from the vault, an audit row per request, the
//! page crossing the component boundary, the check that every record is a
//! JSON document, and the run's bookkeeping.
//!
//! Each round syncs into a new connection on both sides, so both stores
//! grow alike, and the side that goes first alternates. Printed: the median
//! whole sync, records per second from it, and CPU per record (the whole
//! process, the server's share included, to the nanosecond: wall time here
//! is mostly the 101 fsyncs, which vary with the disk and its other users).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use airlock::Airlock;
use airlock::service::{AuthInput, NewConnection, Scope};
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rusqlite::{TransactionBehavior, params};
use serde_json::{Value, json};

use super::{plugin_wasm, threads_cpu};
use crate::summary::{self, Goal};
use crate::{Client, Options, TOKEN, config, native_client, on_worker, stats};

const RECORDS: usize = 10_000;
const PAGE: u32 = 100;
const TABLE: &str = "/api/now/table/incident";
const ORDER: &str = "ORDERBYsys_updated_on^ORDERBYsys_id";

// ---- the Table API ------------------------------------------------------------------

struct Incident {
    updated: String,
    id: String,
    json: Bytes,
}

fn hex_id(n: u128) -> String {
    format!(
        "{:032x}",
        (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    )
}

fn incident(n: usize) -> Incident {
    let id = hex_id(n as u128);
    let s = 8 * 3600 + n / 4;
    let updated = format!(
        "2026-01-05 {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    let reference = |k: u128| hex_id(k * 7919 + n as u128 % 97);
    let state = ["1", "2", "3", "6", "7"][n % 5];
    let record = json!({
        "sys_id": id, "number": format!("INC{:07}", 10_000 + n),
        "short_description": format!("Printer {} on floor {} does not print", n % 40, n % 12),
        "description": "The printer reports a paper jam although no paper is jammed. Restarting \
            it did not help; the queue holds forty jobs from the finance team, who need the \
            month-end reports printed by noon. Tried another tray and a different driver.",
        "state": state, "priority": ((n % 4) + 1).to_string(),
        "urgency": ((n % 3) + 1).to_string(), "impact": ((n % 3) + 1).to_string(),
        "category": "hardware", "subcategory": "printer", "severity": "3",
        "caller_id": reference(1), "opened_by": reference(2), "assigned_to": reference(3),
        "assignment_group": reference(4), "company": reference(5), "location": reference(6),
        "cmdb_ci": reference(7), "opened_at": updated, "sys_created_on": updated,
        "sys_created_by": "integration", "sys_updated_on": updated,
        "sys_updated_by": "integration", "sys_mod_count": (n % 9).to_string(),
        "sys_class_name": "incident", "sys_domain": "global", "active": "true",
        "contact_type": "email", "escalation": "0", "made_sla": "true",
        "reassignment_count": "0", "reopen_count": "0", "close_code": "", "close_notes": "",
        "work_notes": "", "comments": "", "knowledge": "false", "upon_approval": "proceed",
    });
    Incident {
        updated,
        id,
        json: Bytes::from(record.to_string()),
    }
}

/// The incidents in `(sys_updated_on, sys_id)` order.
fn incidents() -> Vec<Incident> {
    let mut rows: Vec<Incident> = (0..RECORDS).map(incident).collect();
    rows.sort_by(|a, b| (&a.updated, &a.id).cmp(&(&b.updated, &b.id)));
    rows
}

/// Where the page a `sysparm_query` asks for starts.
fn page_start(rows: &[Incident], query: &str) -> Result<usize, String> {
    let unexpected = || format!("unexpected sysparm_query `{query}`");
    let conditions = query.strip_suffix(ORDER).ok_or_else(unexpected)?;
    let terms: Vec<&str> = conditions.split('^').filter(|t| !t.is_empty()).collect();
    match terms.as_slice() {
        [] => Ok(0),
        [from] => {
            let since = from
                .strip_prefix("sys_updated_on>=")
                .ok_or_else(unexpected)?;
            Ok(rows.partition_point(|r| r.updated.as_str() < since))
        }
        [from, after, or] => {
            let since = from
                .strip_prefix("sys_updated_on>=")
                .ok_or_else(unexpected)?;
            let last = or.strip_prefix("ORsys_id>").ok_or_else(unexpected)?;
            if *after != format!("sys_updated_on>{since}") {
                return Err(unexpected());
            }
            Ok(rows.partition_point(|r| (r.updated.as_str(), r.id.as_str()) <= (since, last)))
        }
        _ => Err(unexpected()),
    }
}

/// The `{"result": [...]}` page `uri` asks for.
fn table_page(rows: &[Incident], uri: &http::Uri) -> Result<Bytes, String> {
    if uri.path() != TABLE {
        return Err(format!("no table at {}", uri.path()));
    }
    let query = uri.query().unwrap_or_default().as_bytes();
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query).into_owned().collect();
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if param("sysparm_offset") != "0" || param("sysparm_exclude_reference_link") != "true" {
        return Err(format!("unexpected parameters {params:?}"));
    }
    let limit: usize = param("sysparm_limit")
        .parse()
        .map_err(|_| "no sysparm_limit")?;
    let start = page_start(rows, param("sysparm_query"))?;
    let page = &rows[start..(start + limit).min(rows.len())];
    let mut body =
        BytesMut::with_capacity(page.iter().map(|r| r.json.len() + 1).sum::<usize>() + 16);
    body.put_slice(b"{\"result\":[");
    for (i, row) in page.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(&row.json);
    }
    body.put_slice(b"]}");
    Ok(body.freeze())
}

/// A keep-alive HTTP/1.1 Table API on loopback, and its request count.
async fn serve_table(rows: Arc<Vec<Incident>>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let (rows, counter) = (rows.clone(), counter.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let response = match table_page(&rows, req.uri()) {
                        Ok(body) => hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body)),
                        Err(why) => hyper::Response::builder()
                            .status(400)
                            .body(Full::new(Bytes::from(why))),
                    };
                    async move { Ok::<_, Infallible>(response.unwrap()) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), requests)
}

// ---- the native side -----------------------------------------------------------------

/// airlock's tables for runs and records (migrations/0001_initial.sql),
/// without the reference to its connections table.
const SCHEMA: &str = "
CREATE TABLE sync_runs (
    id TEXT PRIMARY KEY, connection_id TEXT NOT NULL,
    full INTEGER NOT NULL CHECK (full IN (0, 1)), started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')), cursor TEXT,
    pages INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0, error TEXT
);
CREATE INDEX sync_runs_by_connection ON sync_runs (connection_id, started_at);
CREATE TABLE sync_records (
    connection_id TEXT NOT NULL, kind TEXT NOT NULL, record_id TEXT NOT NULL,
    updated_at TEXT, data TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    synced_at TEXT NOT NULL, PRIMARY KEY (connection_id, kind, record_id)
);";

const UPSERT: &str = "INSERT INTO sync_records
     (connection_id, kind, record_id, updated_at, data, run_id, synced_at)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
 ON CONFLICT (connection_id, kind, record_id) DO UPDATE SET
     updated_at = excluded.updated_at, data = excluded.data,
     run_id = excluded.run_id, synced_at = excluded.synced_at";

/// A SQLite file with airlock's pragmas and the sync tables.
fn native_db(path: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    for (pragma, value) in [
        ("journal_mode", "WAL"),
        ("foreign_keys", "ON"),
        ("synchronous", "FULL"),
        ("secure_delete", "ON"),
    ] {
        db.pragma_update(None, pragma, value).unwrap();
    }
    db.execute_batch(SCHEMA).unwrap();
    db
}

fn now() -> String {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc().format(rfc3339).unwrap()
}

/// Query components encoded as the plugin encodes them: all but RFC 3986
/// unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One record as stored: the row of `sync_records`.
struct Row {
    id: String,
    updated: String,
    updated_at: String,
    data: String,
}

/// The page after `cursor` (`(sys_updated_on, sys_id)` of the last record).
async fn native_page(
    client: &Client,
    base: &str,
    cursor: Option<&(String, String)>,
) -> Result<Vec<Row>, String> {
    let query = match cursor {
        None => ORDER.to_string(),
        Some((t, id)) => format!("sys_updated_on>={t}^sys_updated_on>{t}^ORsys_id>{id}^{ORDER}"),
    };
    let url = format!(
        "{base}{TABLE}?sysparm_query={}&sysparm_offset=0&sysparm_limit={PAGE}\
         &sysparm_no_count=true&sysparm_exclude_reference_link=true",
        utf8_percent_encode(&query, COMPONENT)
    );
    let req = http::Request::get(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut page: Value = serde_json::from_slice(&body.to_bytes()).map_err(|e| e.to_string())?;
    let Some(Value::Array(items)) = page.get_mut("result").map(Value::take) else {
        return Err("no `result` list".into());
    };
    let mut rows: Vec<Row> = Vec::with_capacity(items.len());
    for item in items {
        let field = |name: &str| item.get(name).and_then(Value::as_str).map(String::from);
        let (Some(id), Some(updated)) = (field("sys_id"), field("sys_updated_on")) else {
            return Err("a record without sys_id or sys_updated_on".into());
        };
        let after = cursor.map(|(t, id)| (t.as_str(), id.as_str()));
        let previous = rows
            .last()
            .map(|r| (r.updated.as_str(), r.id.as_str()))
            .or(after);
        if previous.is_some_and(|p| p >= (updated.as_str(), id.as_str())) {
            return Err(format!("record {id} is out of order"));
        }
        let updated_at = format!("{}T{}Z", &updated[..10], &updated[11..]);
        let data = item.to_string();
        rows.push(Row {
            id,
            updated,
            updated_at,
            data,
        });
    }
    Ok(rows)
}

/// The cursor the plugin stores for the same position.
fn cursor_text(since: &str, last: Option<&str>) -> String {
    let last = last.map_or(String::new(), |l| format!(",\"last\":\"{l}\""));
    let json = format!("{{\"v\":2,\"table\":\"incident\",\"since\":\"{since}\"{last}}}");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// One page's rows and cursor in one transaction, as `commit_page` does.
fn commit(
    db: &mut rusqlite::Connection,
    run: &str,
    connection: &str,
    rows: &[Row],
    cursor: Option<&str>,
) -> rusqlite::Result<()> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let synced_at = now();
    {
        let mut upsert = tx.prepare_cached(UPSERT)?;
        for r in rows {
            upsert.execute(params![
                connection,
                "incident",
                r.id,
                r.updated_at,
                r.data,
                run,
                synced_at
            ])?;
        }
    }
    tx.execute(
        "UPDATE sync_runs SET pages = pages + 1, records = records + ?2,
         cursor = COALESCE(?3, cursor) WHERE id = ?1",
        params![run, rows.len() as i64, cursor],
    )?;
    tx.commit()
}

/// A full sync into `db` for `connection`; the records written.
async fn native_sync(
    client: &Client,
    base: &str,
    db: &mut rusqlite::Connection,
    connection: &str,
) -> Result<u64, String> {
    let run = format!("run-{connection}");
    let sql = |e: rusqlite::Error| e.to_string();
    db.execute(
        "INSERT INTO sync_runs (id, connection_id, full, started_at, status)
         VALUES (?1, ?2, 1, ?3, 'running')",
        params![run, connection, now()],
    )
    .map_err(sql)?;
    let (mut cursor, mut records) = (None, 0);
    loop {
        let rows = native_page(client, base, cursor.as_ref()).await?;
        let has_more = rows.len() >= PAGE as usize;
        let next = rows.last().map(|r| (r.updated.clone(), r.id.clone()));
        let text = next
            .as_ref()
            .map(|(t, id)| cursor_text(t, has_more.then_some(id.as_str())));
        commit(db, &run, connection, &rows, text.as_deref()).map_err(sql)?;
        records += rows.len() as u64;
        cursor = next.or(cursor);
        if !has_more {
            break;
        }
    }
    db.execute(
        "UPDATE sync_runs SET finished_at = ?2, status = 'succeeded' WHERE id = ?1",
        params![run, now()],
    )
    .map_err(sql)?;
    Ok(records)
}

// ---- the plugin side and the run -------------------------------------------------------

/// A host on `dir` with the servicenow plugin installed.
fn plugin_host(dir: &std::path::Path) -> Airlock {
    let airlock = Airlock::open(config(dir)).unwrap();
    let plan = airlock.plan_install(plugin_wasm("servicenow")).unwrap();
    airlock.install(&plan, true).unwrap();
    airlock
}

fn add_connection(airlock: &Airlock, name: &str, base: &str) {
    airlock
        .add_connection(NewConnection {
            name: name.into(),
            plugin_id: "servicenow".into(),
            settings: BTreeMap::from([("base-url".to_string(), base.to_string())]),
            auth: AuthInput::Bearer {
                token: TOKEN.to_string().into(),
            },
            scope: Scope::Global,
        })
        .unwrap();
}

/// A full sync through the plugin; the records written.
async fn plugin_sync(airlock: &Airlock, name: &str) -> Result<u64, String> {
    let run = airlock
        .sync(name, true, PAGE, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    if run.status != "succeeded" {
        return Err(format!("the run ended {}: {:?}", run.status, run.error));
    }
    Ok(run.records)
}

/// One side's runs: wall time, CPU of the whole process, pages requested.
#[derive(Default)]
struct Runs {
    times: Vec<Duration>,
    cpu: Duration,
    pages: usize,
}

impl Runs {
    /// Time `sync`, which returns the records it wrote.
    async fn time(
        &mut self,
        requests: &AtomicUsize,
        sync: impl Future<Output = Result<u64, String>>,
    ) {
        let (pages, cpu, start) = (
            requests.load(Ordering::Relaxed),
            threads_cpu(),
            Instant::now(),
        );
        let records = sync.await.unwrap();
        self.times.push(start.elapsed());
        self.cpu += threads_cpu().saturating_sub(cpu);
        self.pages = requests.load(Ordering::Relaxed) - pages;
        assert_eq!(records, RECORDS as u64, "every record synced");
    }
}

pub async fn run(opts: &Options) {
    let (base, requests) = serve_table(Arc::new(incidents())).await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let airlock = Arc::new(plugin_host(&dir.path().join("airlock")));
    let mut db = native_db(&dir.path().join("native.db"));
    let n = if opts.quick { 3 } else { 5 };
    let (native, plugin, db) = on_worker(async move {
        let (mut native, mut plugin) = (Runs::default(), Runs::default());
        let client = native_client();
        for round in 0..n {
            let name = format!("sn-{round}");
            add_connection(&airlock, &name, &base);
            // Each side goes first in every other round.
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    let sync = native_sync(&client, &base, &mut db, &name);
                    native.time(&requests, sync).await;
                } else {
                    plugin.time(&requests, plugin_sync(&airlock, &name)).await;
                }
            }
            let stored = airlock.synced_records(&name, RECORDS + 1, 0).unwrap();
            assert_eq!(stored.len(), RECORDS);
        }
        (native, plugin, db)
    })
    .await;
    let stored: i64 = db
        .query_row("SELECT count(*) FROM sync_records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as usize, n * RECORDS);
    report(&native, &plugin);
}

fn report(native: &Runs, plugin: &Runs) {
    let rate = |r: &Runs| RECORDS as f64 / stats(r.times.clone()).median.as_secs_f64();
    let cpu = |r: &Runs| r.cpu.as_secs_f64() * 1e6 / (RECORDS * r.times.len()) as f64;
    let (n, p) = (rate(native), rate(plugin));
    println!(
        "## sync: {RECORDS} ServiceNow incidents (~1.3 KB each), {PAGE} a page, one transaction per page ({} runs)\n",
        native.times.len()
    );
    println!(
        "| side | whole sync (median) | records/s | vs native | pages fetched | CPU per record |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, runs, r) in [
        (
            "native (hyper, serde_json, rusqlite: same schema, pragmas, transactions)",
            native,
            n,
        ),
        ("plugin, full host path (`Airlock::sync`)", plugin, p),
    ] {
        println!(
            "| {label} | {:.0} ms | {r:.0} | {:.2}x | {} | {:.1} µs |",
            stats(runs.times.clone()).median.as_secs_f64() * 1e3,
            r / n,
            runs.pages,
            cpu(runs)
        );
    }
    println!();
    summary::add(
        format!("ServiceNow sync of {RECORDS} records: records/s"),
        format!("{p:.0} records/s"),
        format!("{n:.0} records/s native"),
        Some(p / n),
        Goal::Report,
    );
}
