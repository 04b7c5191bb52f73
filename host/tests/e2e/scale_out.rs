//! Several `airlock serve` processes on one real PostgreSQL (started by the
//! test harness, `airlock_test_artifacts::postgres`): they behave as one,
//! and the audit log keeps its promises when a server is killed or the
//! database restarts under load.
//!
//! The upstream the plugin calls checks, as each request arrives, that the
//! database already holds an audit row for it: a request that left without
//! its committed row is counted as a violation.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_test_artifacts::postgres::{self, TestPostgres};
use airlock_test_artifacts::serve::{MASTER_KEY, Server, install, request};
use serde_json::{Value, json};
use wiremock::Respond;

const TOKEN_ONE: &str = "CANARY-scale-out-first-credential";
const TOKEN_TWO: &str = "CANARY-scale-out-second-credential";

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_airlock"))
}

fn json_request(addr: &str, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let (status, text) = request(
        addr,
        method,
        path,
        token,
        Some(("application/json", body.to_string().into_bytes())),
    )
    .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The loopback upstream: answers `GET /api/me`, remembers the bearer token
/// it saw last, and checks each arriving request against the audit log.
struct Upstream {
    addr: String,
    received: Arc<AtomicU64>,
    violations: Arc<AtomicU64>,
    /// Arrivals while the database was down: (arrival number, time).
    deferred: Arc<std::sync::Mutex<Vec<(u64, String)>>>,
    last_token: Arc<std::sync::Mutex<String>>,
    connection_id: Arc<std::sync::Mutex<String>>,
    _runtime: tokio::runtime::Runtime,
}

impl Upstream {
    fn start(database: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let violations = Arc::new(AtomicU64::new(0));
        let deferred = Arc::new(std::sync::Mutex::new(Vec::new()));
        let last_token = Arc::new(std::sync::Mutex::new(String::new()));
        let connection_id = Arc::new(std::sync::Mutex::new(String::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let database = database.to_string();
        let (r, v, d, t, c) = (
            received.clone(),
            violations.clone(),
            deferred.clone(),
            last_token.clone(),
            connection_id.clone(),
        );
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (r, v, d, t, c, database) = (
                    r.clone(),
                    v.clone(),
                    d.clone(),
                    t.clone(),
                    c.clone(),
                    database.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (r, v, d, t, c, database) = (
                            r.clone(),
                            v.clone(),
                            d.clone(),
                            t.clone(),
                            c.clone(),
                            database.clone(),
                        );
                        async move {
                            let seen = r.fetch_add(1, Ordering::SeqCst) + 1;
                            if let Some(auth) = req.headers().get("authorization") {
                                *t.lock().unwrap() = auth.to_str().unwrap_or("").to_string();
                            }
                            let id = c.lock().unwrap().clone();
                            let arrived = airlock_time_now();
                            match audited(&database, &id, None).await {
                                Some(n) if n >= seen => {}
                                Some(_) => {
                                    v.fetch_add(1, Ordering::SeqCst);
                                }
                                // The database is down: its row, if any, was
                                // committed before; checked once it is back.
                                None => d.lock().unwrap().push((seen, arrived)),
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    br#"{"name":"alice"}"#,
                                )),
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
            received,
            violations,
            deferred,
            last_token,
            connection_id,
            _runtime: runtime,
        }
    }

    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that arrived without a committed audit row: those seen at
    /// once, and those that arrived while the database was down, checked
    /// now against the rows decided before they arrived.
    fn violations(&self, database: &str) -> u64 {
        let deferred = self.deferred.lock().unwrap().clone();
        let id = self.connection_id.lock().unwrap().clone();
        let late = self._runtime.block_on(async {
            let mut late = 0;
            for (seen, arrived) in deferred {
                if audited(database, &id, Some(&arrived)).await.unwrap() < seen {
                    late += 1;
                }
            }
            late
        });
        self.violations.load(Ordering::SeqCst) + late
    }
}

/// Allowed request rows of connection `id` committed so far (decided no
/// later than `until`, an audit timestamp, when given); `None` when the
/// database cannot say.
async fn audited(database: &str, id: &str, until: Option<&str>) -> Option<u64> {
    let (client, conn) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE kind = 'request' \
             AND decision = 'allowed' AND connection_id = $1 \
             AND ($2::text IS NULL OR time <= $2)",
            &[&id, &until],
        )
        .await
        .ok()?;
    u64::try_from(row.get::<_, i64>(0)).ok()
}

/// Now in the audit log's timestamp format.
fn airlock_time_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap()
}

/// Three servers on one fresh database, the minimal plugin installed (on
/// the first) and a bearer connection `c` to `upstream` created (on the
/// second).
struct Cluster {
    database: String,
    servers: Vec<Server>,
    token: String,
    upstream: Upstream,
}

impl Cluster {
    fn start(pg: &TestPostgres, servers: usize) -> Self {
        let database = pg.database();
        let mut started = Vec::new();
        let mut admin = None;
        for _ in 0..servers {
            let (server, token) = Server::start(binary(), Some(&database));
            started.push(server);
            admin = admin.or(token);
        }
        let token = admin.expect("the first server prints the first admin token");
        let upstream = Upstream::start(&database);
        let cluster = Self {
            database,
            servers: started,
            token,
            upstream,
        };
        cluster.install_and_connect();
        cluster
    }

    fn addr(&self, i: usize) -> &str {
        &self.servers[i].addr
    }

    fn install_and_connect(&self) {
        let wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
        assert_eq!(install(self.addr(0), &self.token, wasm), "minimal");
        let last = self.servers.len() - 1;
        let (status, body) = json_request(
            self.addr(last.min(1)),
            "POST",
            "/api/v1/connections",
            &self.token,
            json!({
                "name": "c", "plugin": "minimal",
                "settings": { "base-url": self.upstream.uri() },
                "auth": { "kind": "bearer", "token": TOKEN_ONE }
            }),
        );
        assert_eq!(status, 201, "{body}");
        *self.upstream.connection_id.lock().unwrap() = body["id"].as_str().unwrap().to_string();
    }

    /// `POST /api/v1/connections/c/test` on server `i`.
    fn test_on(&self, i: usize) -> std::io::Result<(u16, String)> {
        request(
            self.addr(i),
            "POST",
            "/api/v1/connections/c/test",
            &self.token,
            None,
        )
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["--database", &self.database])
            .args(args)
            .env("AIRLOCK_DATA_DIR", dir.path())
            .env("AIRLOCK_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn assert_chain_verifies(&self) {
        let (code, out, err) = self.cli(&["audit", "verify"]);
        assert_eq!(code, 0, "audit verify: {out}{err}");
    }
}

#[test]
fn three_servers_on_one_database_behave_as_one() {
    let cluster = Cluster::start(postgres::shared(), 3);
    // Installed on the first, created on the second: runs on every one.
    for i in 0..3 {
        let (status, body) = cluster.test_on(i).unwrap();
        assert_eq!(status, 200, "server {i}: {body}");
    }
    assert_eq!(
        *cluster.upstream.last_token.lock().unwrap(),
        format!("Bearer {TOKEN_ONE}")
    );

    // Paused on one: refused on the others at their next call.
    let (status, body) = json_request(
        cluster.addr(0),
        "POST",
        "/api/v1/connections/c/pause",
        &cluster.token,
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = cluster.test_on(2).unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("connection_paused"), "{body}");
    let (status, body) = json_request(
        cluster.addr(1),
        "POST",
        "/api/v1/connections/c/resume",
        &cluster.token,
        json!({}),
    );
    assert_eq!(status, 200, "{body}");

    // Keys rotated by the CLI next to the running servers: every server
    // opens the re-sealed credential without a restart.
    let (code, out, err) = cluster.cli(&["keys", "rotate"]);
    assert_eq!(code, 0, "keys rotate: {out}{err}");
    for i in 0..3 {
        let (status, body) = cluster.test_on(i).unwrap();
        assert_eq!(status, 200, "after rotation, server {i}: {body}");
    }

    // Re-keyed on one: the others send the new credential.
    let (status, body) = json_request(
        cluster.addr(2),
        "PUT",
        "/api/v1/connections/c/secret",
        &cluster.token,
        json!({ "kind": "bearer", "token": TOKEN_TWO }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = cluster.test_on(0).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        *cluster.upstream.last_token.lock().unwrap(),
        format!("Bearer {TOKEN_TWO}")
    );

    // One log in one order, whichever server is asked.
    let (status, text) = request(
        cluster.addr(1),
        "GET",
        "/api/v1/audit?limit=1000",
        &cluster.token,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let seqs: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs.len() as u64,
        cluster.upstream.received.load(Ordering::SeqCst)
    );
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(cluster.upstream.violations(&cluster.database), 0);
    cluster.assert_chain_verifies();

    // Deleted on one: gone on the others.
    let (status, body) = request(
        cluster.addr(0),
        "DELETE",
        "/api/v1/connections/c",
        &cluster.token,
        None,
    )
    .unwrap();
    assert!(status == 200 || status == 204, "{status} {body}");
    let (status, body) = cluster.test_on(1).unwrap();
    assert_eq!(status, 404, "{body}");
}

/// `callers` threads calling round-robin over the servers `alive` says are
/// up until `stop`; each failure to connect moves the caller on to the next
/// server. Counts of answers by status.
fn load(
    cluster: &Cluster,
    callers: usize,
    stop: &std::sync::atomic::AtomicBool,
    alive: &[std::sync::atomic::AtomicBool],
) -> std::collections::BTreeMap<u16, (u64, String)> {
    let counts = std::sync::Mutex::new(std::collections::BTreeMap::new());
    std::thread::scope(|s| {
        for c in 0..callers {
            let counts = &counts;
            s.spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    i = (i + 1) % cluster.servers.len();
                    if !alive[i].load(Ordering::SeqCst) {
                        continue;
                    }
                    match cluster.test_on(i) {
                        Ok((status, body)) => {
                            let mut counts = counts.lock().unwrap();
                            let entry = counts.entry(status).or_insert((0, body));
                            entry.0 += 1;
                        }
                        // The server was killed under this caller.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
    });
    counts.into_inner().unwrap()
}

#[test]
fn killing_one_of_three_servers_under_64_callers_loses_no_audit_row() {
    let mut cluster = Cluster::start(postgres::shared(), 3);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let alive: Vec<_> = (0..3)
        .map(|_| std::sync::atomic::AtomicBool::new(true))
        .collect();
    let (counts, at_kill) = std::thread::scope(|s| {
        let load = s.spawn(|| load(&cluster, 64, &stop, &alive));
        while cluster.upstream.received.load(Ordering::SeqCst) < 150 {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGKILL, mid-call: nothing of it gets to finish.
        let pid = cluster.servers[2].pid().to_string();
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let at_kill = cluster.upstream.received.load(Ordering::SeqCst);
        // The others go on serving.
        let until = Instant::now() + Duration::from_secs(60);
        while cluster.upstream.received.load(Ordering::SeqCst) < at_kill + 300
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::SeqCst);
        (load.join().unwrap(), at_kill)
    });
    alive[2].store(false, Ordering::SeqCst);
    cluster.servers[2].kill();
    let received = cluster.upstream.received.load(Ordering::SeqCst);
    assert!(
        received >= at_kill + 300,
        "the two servers left kept serving: {received} requests, {at_kill} at the kill; {counts:?}"
    );
    assert_eq!(
        cluster.upstream.violations(&cluster.database),
        0,
        "a request reached the upstream before its audit row was committed"
    );
    let errors: u64 = counts
        .iter()
        .filter(|(s, _)| **s != 200)
        .map(|(_, (n, _))| n)
        .sum();
    assert_eq!(errors, 0, "every answered call succeeded: {counts:?}");
    cluster.assert_chain_verifies();
}

#[test]
fn restarting_postgresql_under_load_fails_calls_clearly_then_recovers() {
    // A server of its own: the shared one serves other tests meanwhile.
    let pg = TestPostgres::start().unwrap();
    let cluster = Cluster::start(&pg, 2);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let alive: Vec<_> = (0..2)
        .map(|_| std::sync::atomic::AtomicBool::new(true))
        .collect();
    let (counts, during_outage) = std::thread::scope(|s| {
        let load = s.spawn(|| load(&cluster, 16, &stop, &alive));
        while cluster.upstream.received.load(Ordering::SeqCst) < 50 {
            std::thread::sleep(Duration::from_millis(10));
        }
        pg.kill();
        std::thread::sleep(Duration::from_secs(2));
        // What the servers answer while the database is down.
        let during_outage = cluster.test_on(0).unwrap();
        pg.start_server().unwrap();
        let back = cluster.upstream.received.load(Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(60);
        while cluster.upstream.received.load(Ordering::SeqCst) < back + 100
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::SeqCst);
        (load.join().unwrap(), during_outage)
    });
    let (status, body) = during_outage;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database_unavailable"), "{body}");
    assert!(body.contains("without restarting airlock"), "{body}");
    assert!(!body.contains(MASTER_KEY));
    assert!(
        counts.get(&200).map_or(0, |c| c.0) > 150,
        "calls succeed again once the database is back, without a restart: {counts:?}"
    );
    assert_eq!(
        cluster.upstream.violations(&cluster.database),
        0,
        "a request reached the upstream without a committed audit row: {counts:?}"
    );
    // Every failure says the database is down and that nothing was sent or
    // changed: 503 `database_unavailable` when the call could not start;
    // when the plugin's request was refused by the host (its credential or
    // its audit row could not be read or written), the plugin's upstream
    // error carrying the host's reason.
    for (status, (_, body)) in &counts {
        match status {
            200 => {}
            502 | 503 => assert!(
                body.contains("is unavailable")
                    && body.contains("without restarting airlock")
                    && (body.contains("database_unavailable") || body.contains("host refused")),
                "{body}"
            ),
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    cluster.assert_chain_verifies();
}

#[test]
fn a_database_from_a_newer_airlock_is_refused_untouched() {
    let pg = postgres::shared();
    let database = pg.database();
    let name = database.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["--database", &database, "plugin", "list"])
            .env("AIRLOCK_DATA_DIR", dir.path())
            .env("AIRLOCK_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    pg.psql(
        &name,
        "INSERT INTO schema_migrations VALUES (999, 'future', 'x', '2031-01-01T00:00:00Z')",
    );
    let tables = pg.psql(
        &name,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("schema version 999"), "{err}");
    assert!(err.contains("upgrade airlock"), "{err}");
    assert_eq!(
        pg.psql(
            &name,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        tables
    );
}

/// A ServiceNow instance whose pages take a while, so a sync is caught
/// mid-run.
struct SlowTable(crate::sync_complete::TableApi);

impl Respond for SlowTable {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        self.0
            .respond(request)
            .set_delay(Duration::from_millis(200))
    }
}

/// Pages committed by the latest run of connection `sn`, read straight
/// from the database.
fn committed_pages(pg: &TestPostgres, database: &str) -> u64 {
    let name = database.rsplit('/').next().unwrap();
    pg.psql(
        name,
        "SELECT COALESCE(MAX(pages), 0) FROM sync_runs WHERE status = 'running'",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_server_is_killed_resumes_from_its_cursor_on_another() {
    let api = crate::sync_complete::TableApi::default();
    api.add(
        "2026-11-20 09:00:00",
        (0..1000).map(crate::sync_complete::sn_id),
    );
    let upstream = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/api/now/table/incident"))
        .respond_with(SlowTable(api.clone()))
        .mount(&upstream)
        .await;

    let pg = postgres::shared();
    let database = pg.database();
    let env = [("AIRLOCK_SYNC_LEASE_SECS", "2")];
    let (mut a, token) = Server::start_with_env(binary(), Some(&database), &env);
    let (b, _) = Server::start_with_env(binary(), Some(&database), &env);
    let token = token.unwrap();
    let wasm = std::fs::read(crate::openai::plugin_path("servicenow")).unwrap();
    assert_eq!(install(&a.addr, &token, wasm), "servicenow");
    let (status, body) = json_request(
        &a.addr,
        "POST",
        "/api/v1/connections",
        &token,
        json!({
            "name": "sn", "plugin": "servicenow",
            "settings": { "base-url": upstream.uri() },
            "auth": { "kind": "basic", "username": "sync@acme.example", "password": TOKEN_ONE }
        }),
    );
    assert_eq!(status, 201, "{body}");

    // A full sync on A, 100 records a page; A is killed after three pages.
    let (addr_a, token_a) = (a.addr.clone(), token.clone());
    let running = std::thread::spawn(move || {
        request(
            &addr_a,
            "POST",
            "/api/v1/connections/sn/sync?full=true&page_size=100",
            &token_a,
            None,
        )
    });
    let until = Instant::now() + Duration::from_secs(60);
    while committed_pages(pg, &database) < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill();
    assert!(
        running.join().unwrap().is_err(),
        "the sync on A never answered"
    );

    // Its lease still stands: B refuses a second sync of the connection.
    let (status, body) =
        request(&b.addr, "POST", "/api/v1/connections/sn/sync", &token, None).unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("is running on"), "{body}");

    // Once it runs out, B resumes from A's last committed cursor.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, run) = request(
        &b.addr,
        "POST",
        "/api/v1/connections/sn/sync?page_size=100",
        &token,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{run}");
    let run: Value = serde_json::from_str(&run).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let pages = run["pages"].as_u64().unwrap();
    assert!(
        (1..=8).contains(&pages),
        "resumed after page 3, not from the start: {run}"
    );
    let name = database.rsplit('/').next().unwrap();
    let interrupted = pg.psql(
        name,
        "SELECT count(*) FROM sync_runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
    );
    assert_eq!(interrupted.trim(), "1");
    let stored = pg.psql(name, "SELECT count(DISTINCT record_id) FROM sync_records");
    assert_eq!(stored.trim(), api.ids().len().to_string());
}

#[test]
fn bad_database_and_lease_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (env, needle) in [
        (
            ("AIRLOCK_SYNC_LEASE_SECS", "0"),
            "invalid AIRLOCK_SYNC_LEASE_SECS `0`",
        ),
        (("AIRLOCK_SYNC_LEASE_SECS", "ten"), "expected whole seconds"),
        (
            ("AIRLOCK_DATABASE", "mysql://root:hunter2@db/airlock"),
            "use postgres://",
        ),
        (
            (
                "AIRLOCK_DATABASE",
                "postgres://a:hunter2@db/airlock?sslmode=require",
            ),
            "no TLS for PostgreSQL",
        ),
    ] {
        let (code, out, err) = crate::common::airlock_in(dir.path(), &["plugin", "list"], &[env]);
        assert_ne!(code, 0, "{env:?}: {out}");
        assert!(err.contains(needle), "{env:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
