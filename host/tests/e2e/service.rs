//! The embedded service: data directory, vault, connections, audit trail,
//! through real SQLite files and built plugins.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock::KeySource;
use airlock::service::{AuthInput, NewConnection};
use airlock::service::{ConnectionFilter, ConnectionStatus, Scope};
use airlock::{Airlock, AirlockConfig, ServiceError};
use secrecy::SecretString;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{CANARY, test_limits};

pub fn config(dir: &std::path::Path) -> AirlockConfig {
    let mut c = AirlockConfig::new(dir).unwrap();
    c.key_source = Some(KeySource::File(dir.join("master.key")));
    c.address_policy = airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap();
    c.limits = test_limits();
    c.max_concurrent_calls = 8;
    c
}

pub fn open(dir: &std::path::Path) -> Airlock {
    Airlock::open(config(dir)).unwrap()
}

pub fn install(airlock: &Airlock, path: &str) {
    let plan = airlock.plan_install(std::fs::read(path).unwrap()).unwrap();
    airlock.install(&plan, true).unwrap();
}

fn settings(base: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("base-url".to_string(), base.to_string())])
}

fn bearer(name: &str, base: &str, scope: Scope) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "minimal".into(),
        settings: settings(base),
        auth: AuthInput::Bearer {
            token: SecretString::from(CANARY),
        },
        scope,
    }
}

async fn me_server(name: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .and(header("authorization", format!("Bearer {CANARY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "name": name })))
        .mount(&server)
        .await;
    server
}

/// A host in a fresh data directory with the minimal plugin and one global
/// bearer connection, `main`, to a server answering as alice.
async fn one_connection() -> (tempfile::TempDir, Airlock, MockServer) {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::MINIMAL);
    let server = me_server("alice").await;
    airlock
        .add_connection(bearer("main", &server.uri(), Scope::Global))
        .unwrap();
    (dir, airlock, server)
}

#[tokio::test]
async fn a_connection_calls_through_the_vault_and_is_audited() {
    let (dir, airlock, _server) = one_connection().await;
    let report = airlock.test_connection("main").await.unwrap();
    assert_eq!(report.account.as_deref(), Some("alice"));

    // The send is in the audit log, chained and verifiable.
    let entries = airlock
        .list_audit(&airlock::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert!(airlock.verify_audit().unwrap().is_ok());

    // A second start (same data dir, same key) serves the same connection.
    drop(airlock);
    let airlock = open(dir.path());
    assert_eq!(
        airlock
            .test_connection("main")
            .await
            .unwrap()
            .account
            .as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn a_log_kept_in_the_store_by_an_older_airlock_moves_to_its_own_file_on_start() {
    let (dir, airlock, _server) = one_connection().await;
    for _ in 0..3 {
        airlock.test_connection("main").await.unwrap();
    }
    let before = airlock
        .list_audit(&airlock::audit::AuditFilter::default())
        .unwrap();
    assert_eq!(before.len(), 3);
    drop(airlock);

    // Put the data directory back in the layout of an airlock from before
    // audit.db: the log's rows in airlock.db's own audit_log table.
    let store = dir.path().join(airlock::DB_FILE);
    let audit = dir.path().join(airlock::audit::AUDIT_FILE);
    let ddl: String = rusqlite::Connection::open(&audit)
        .unwrap()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'audit_log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let raw = rusqlite::Connection::open(&store).unwrap();
    raw.execute_batch(&ddl).unwrap();
    raw.execute("ATTACH DATABASE ?1 AS old", [audit.to_string_lossy()])
        .unwrap();
    raw.execute_batch("INSERT INTO main.audit_log SELECT * FROM old.audit_log; DETACH old;")
        .unwrap();
    drop(raw);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", audit.display()));
    }

    // The next start moves the rows; the log lists and verifies as before,
    // and the next call continues its chain.
    let airlock = open(dir.path());
    let after = airlock
        .list_audit(&airlock::audit::AuditFilter::default())
        .unwrap();
    let key = |entries: &[airlock::audit::AuditEntry]| -> Vec<(i64, String)> {
        entries.iter().map(|e| (e.seq, e.url.clone())).collect()
    };
    assert_eq!(key(&after), key(&before));
    assert!(after.iter().all(|e| e.outcome.is_some()));
    airlock.test_connection("main").await.unwrap();
    let report = airlock.verify_audit().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.rows, 8);
    let left: bool = rusqlite::Connection::open(&store)
        .unwrap()
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'audit_log')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!left, "airlock.db keeps no audit_log table");
}

#[tokio::test]
async fn project_scoped_connections_win_and_misses_name_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::MINIMAL);
    let global = me_server("global-user").await;
    let scoped = me_server("web-user").await;
    airlock
        .add_connection(bearer("everyone", &global.uri(), Scope::Global))
        .unwrap();
    airlock
        .add_connection(bearer(
            "web-only",
            &scoped.uri(),
            Scope::Projects(vec!["web".into()]),
        ))
        .unwrap();
    assert_eq!(airlock.resolve("minimal", "web").unwrap().name, "web-only");
    assert_eq!(airlock.resolve("minimal", "api").unwrap().name, "everyone");
    let listed = airlock
        .connections(&ConnectionFilter {
            project: Some("api".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);

    airlock.remove_connection("everyone").unwrap();
    let err = airlock.resolve("minimal", "api").unwrap_err().to_string();
    assert!(
        err.contains("no connection for project `api`") && err.contains("web-only"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_connections_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::MINIMAL);
    airlock
        .add_connection(bearer("dup", "https://one.example", Scope::Global))
        .unwrap();
    let err = airlock
        .add_connection(bearer("dup", "https://two.example", Scope::Global))
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    let mut bad = bearer("bad-url", "ftp://x", Scope::Global);
    let err = airlock.add_connection(bad).unwrap_err();
    assert!(matches!(err, ServiceError::Settings(_)), "{err}");
    bad = bearer("unknown-setting", "https://x.example", Scope::Global);
    bad.settings.insert("colour".into(), "red".into());
    let err = airlock.add_connection(bad).unwrap_err();
    assert!(err.to_string().contains("has no setting `colour`"), "{err}");

    let mut missing = bearer("no-url", "https://x.example", Scope::Global);
    missing.settings.clear();
    assert!(airlock.add_connection(missing).is_err());

    let no_plugin = NewConnection {
        plugin_id: "nope".into(),
        ..bearer("x", "https://x.example", Scope::Global)
    };
    assert!(
        airlock
            .add_connection(no_plugin)
            .unwrap_err()
            .to_string()
            .contains("nope")
    );

    // Only the first connection exists, with exactly one secret.
    let all = airlock.connections(&ConnectionFilter::default()).unwrap();
    assert_eq!(all.len(), 1);
    let secrets: i64 = rusqlite::Connection::open(dir.path().join(airlock::DB_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM secrets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(secrets, 1);
}

#[tokio::test]
async fn paused_connections_refuse_calls_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::MINIMAL);
    let server = me_server("bob").await;
    airlock
        .add_connection(bearer("p", &server.uri(), Scope::Global))
        .unwrap();
    assert_eq!(
        airlock.pause_connection("p").unwrap().status,
        ConnectionStatus::Paused
    );
    let err = airlock.test_connection("p").await.unwrap_err();
    assert!(err.to_string().contains("resume it"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    airlock.resume_connection("p").unwrap();
    airlock.test_connection("p").await.unwrap();
}

/// The server caches the records a call reads; a CLI (another process,
/// its own database connection) changing them must still take effect on the
/// very next call, and a tampered secret must never be served from memory.
#[tokio::test]
async fn changes_made_by_another_process_take_effect_on_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let server_side = open(dir.path());
    install(&server_side, airlock_test_artifacts::MINIMAL);
    let server = me_server("alice").await;
    Mock::given(path("/api/me"))
        .and(header("authorization", "Bearer second-token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({ "name": "bob" })),
        )
        .mount(&server)
        .await;
    server_side
        .add_connection(bearer("main", &server.uri(), Scope::Global))
        .unwrap();
    for _ in 0..2 {
        let report = server_side.test_connection("main").await.unwrap();
        assert_eq!(report.account.as_deref(), Some("alice"));
    }

    // The "CLI": its own Airlock on the same data directory.
    let cli = open(dir.path());
    cli.pause_connection("main").unwrap();
    let err = server_side.test_connection("main").await.unwrap_err();
    assert!(err.to_string().contains("resume it"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // Replaced with another credential under the same name.
    cli.remove_connection("main").unwrap();
    cli.add_connection(NewConnection {
        auth: AuthInput::Bearer {
            token: SecretString::from("second-token"),
        },
        ..bearer("main", &server.uri(), Scope::Global)
    })
    .unwrap();
    let report = server_side.test_connection("main").await.unwrap();
    assert_eq!(report.account.as_deref(), Some("bob"));

    // A ciphertext changed behind the host's back fails to open; the copy
    // read before is not used.
    let raw = rusqlite::Connection::open(dir.path().join(airlock::DB_FILE)).unwrap();
    raw.busy_timeout(Duration::from_secs(5)).unwrap();
    raw.execute(
        "UPDATE secrets SET ciphertext = zeroblob(length(ciphertext))",
        [],
    )
    .unwrap();
    let before = server.received_requests().await.unwrap().len();
    let err = server_side.test_connection("main").await.unwrap_err();
    assert!(!err.to_string().contains("second-token"), "{err}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        before,
        "no request leaves without its credential: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_connection_mid_call_fails_cleanly_and_destroys_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = std::sync::Arc::new(open(dir.path()));
    install(&airlock, airlock_test_artifacts::PROBE);
    let server = MockServer::start().await;
    // First request is slow and redirects; the guest's second request needs
    // the credential again, after the connection is gone.
    Mock::given(path("/slow"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/next", server.uri()).as_str())
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&server)
        .await;
    Mock::given(path("/next"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut s = settings(&server.uri());
    s.insert("action".into(), "fetch-follow".into());
    s.insert("url".into(), format!("{}/slow", server.uri()));
    airlock
        .add_connection(NewConnection {
            name: "doomed".into(),
            plugin_id: "probe".into(),
            settings: s,
            auth: AuthInput::Bearer {
                token: SecretString::from(CANARY),
            },
            scope: Scope::Global,
        })
        .unwrap();
    let a = airlock.clone();
    let call = tokio::spawn(async move { a.test_connection("doomed").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    airlock.remove_connection("doomed").unwrap();
    let out = call.await.unwrap().unwrap();
    // The first request went out with the credential; the second was refused
    // because the credential no longer exists.
    assert!(out.message.contains("\"status\":302"), "{}", out.message);
    assert!(
        out.message.contains("no stored credential")
            || out.message.contains("EgressDenied")
            || out.message.contains("Upstream"),
        "{}",
        out.message
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let secrets: i64 = rusqlite::Connection::open(dir.path().join(airlock::DB_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM secrets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(secrets, 0);
    assert!(airlock.connection("doomed").is_err());
}

#[test]
fn a_wrong_master_key_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let db = dir.path().join("airlock.db");
    let before = std::fs::read(&db).unwrap();
    std::fs::write(dir.path().join("master.key"), [7u8; 32]).unwrap();
    let err = Airlock::open(config(dir.path())).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("master key"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn a_database_from_a_newer_airlock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = rusqlite::Connection::open(dir.path().join("airlock.db")).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations VALUES (42, 'future', 'x', '2030-01-01T00:00:00Z')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Airlock::open(config(dir.path())).unwrap_err();
    assert!(err.to_string().contains("upgrade airlock"), "{err}");
}

#[test]
fn a_changed_plugin_file_needs_approval_and_shows_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::MINIMAL);
    // Same id, different bytes: the bad-manifest guest can't load, so use
    // the minimal file with a trailing custom section appended.
    let mut wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    wasm.extend_from_slice(&[0, 6, 5, b'e', b'x', b't', b'r', b'a']);
    let plan = airlock.plan_install(wasm).unwrap();
    assert!(!plan.unchanged());
    let err = airlock.install(&plan, false).unwrap_err();
    assert!(matches!(err, ServiceError::NeedsApproval { .. }), "{err}");
    assert!(err.to_string().contains("file changed"), "{err}");
    airlock.install(&plan, true).unwrap();
    assert_eq!(airlock.list_plugins().unwrap()[0].sha256, plan.sha256);
}

fn feed_page(records: &[&str], next: Option<&str>, more: bool) -> ResponseTemplate {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|id| serde_json::json!({"id": id, "updated_at": "2026-11-20T10:00:00Z", "title": format!("item {id}")}))
        .collect();
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "records": records, "next_cursor": next, "has_more": more
    }))
}

#[tokio::test]
async fn sync_commits_each_page_and_resumes_from_the_last_committed_cursor() {
    use wiremock::matchers::query_param;
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::PROBE);
    let feed = MockServer::start().await;
    let page = |cursor: &str, body: ResponseTemplate| {
        Mock::given(path("/feed"))
            .and(query_param("cursor", cursor))
            .respond_with(body)
    };
    page("", feed_page(&["a", "b"], Some("c1"), true))
        .mount(&feed)
        .await;
    page("c1", feed_page(&["c", "d"], Some("c2"), true))
        .mount(&feed)
        .await;
    page("c2", feed_page(&["e"], Some("c3"), false))
        .mount(&feed)
        .await;
    let mut s = settings(&feed.uri());
    s.insert("action".into(), "ok".into());
    s.insert("url".into(), format!("{}/feed", feed.uri()));
    airlock
        .add_connection(NewConnection {
            name: "feed".into(),
            plugin_id: "probe".into(),
            settings: s,
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap();

    let mut seen = Vec::new();
    let run = airlock
        .sync("feed", false, 2, |r| seen.push(r.pages))
        .await
        .unwrap();
    assert_eq!(
        (run.status.as_str(), run.pages, run.records),
        ("succeeded", 3, 5)
    );
    assert!(run.full);
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(run.cursor.as_deref(), Some("c3"));
    assert_eq!(airlock.synced_records("feed", 100, 0).unwrap().len(), 5);

    // A delta: the first page commits, the second fails upstream.
    page("c3", feed_page(&["f"], Some("c4"), true))
        .mount(&feed)
        .await;
    page(
        "c4",
        ResponseTemplate::new(500).set_body_json(serde_json::json!({"message": "feed down"})),
    )
    .mount(&feed)
    .await;
    let err = airlock.sync("feed", false, 2, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("feed down"), "{err}");
    let runs = airlock.sync_runs("feed", 10).unwrap();
    assert_eq!(runs[0].status, "failed");
    assert!(!runs[0].full);
    assert_eq!(
        runs[0].cursor.as_deref(),
        Some("c4"),
        "the committed page's cursor is kept"
    );
    assert!(runs[0].error.as_deref().unwrap_or("").contains("feed down"));
    assert_eq!(airlock.synced_records("feed", 100, 0).unwrap().len(), 6);

    // Fixed upstream: the next sync resumes at c4, not from the start.
    feed.reset().await;
    page("c4", feed_page(&["g"], Some("c5"), false))
        .mount(&feed)
        .await;
    let run = airlock.sync("feed", false, 2, |_| {}).await.unwrap();
    assert_eq!((run.pages, run.records), (1, 1));
    assert_eq!(airlock.synced_records("feed", 100, 0).unwrap().len(), 7);
    let asked: Vec<String> = feed
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.query().unwrap_or_default().to_string())
        .collect();
    assert_eq!(asked, vec!["cursor=c4&size=2"]);

    // --full starts over.
    page("", feed_page(&["a"], Some("z"), false))
        .mount(&feed)
        .await;
    let run = airlock.sync("feed", true, 2, |_| {}).await.unwrap();
    assert!(run.full);
    assert_eq!(run.cursor.as_deref(), Some("z"));
}

#[tokio::test]
async fn a_plugin_that_never_advances_its_cursor_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::PROBE);
    let feed = MockServer::start().await;
    Mock::given(path("/feed"))
        .respond_with(feed_page(&["a"], Some("same"), true))
        .mount(&feed)
        .await;
    let mut s = settings(&feed.uri());
    s.insert("action".into(), "ok".into());
    s.insert("url".into(), format!("{}/feed", feed.uri()));
    airlock
        .add_connection(NewConnection {
            name: "stuck".into(),
            plugin_id: "probe".into(),
            settings: s,
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap();
    let err = airlock.sync("stuck", true, 10, |_| {}).await.unwrap_err();
    assert!(
        err.to_string().contains("without advancing its cursor"),
        "{err}"
    );
    assert_eq!(airlock.sync_runs("stuck", 1).unwrap()[0].status, "failed");
}

/// A connection whose credential would travel over plain http to a remote
/// host is refused at creation, naming how to allow it; an origin the
/// operator names (AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS) is accepted.
#[test]
fn a_credential_bound_to_a_remote_http_origin_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    install(&airlock, airlock_test_artifacts::MINIMAL);
    let err = airlock
        .add_connection(bearer(
            "intranet",
            "http://intranet.example:8080",
            Scope::Global,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clear text")
            && err.contains("AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS=http://intranet.example:8080"),
        "{err}"
    );
    // https and loopback need no allowance.
    airlock
        .add_connection(bearer("tls", "https://intranet.example", Scope::Global))
        .unwrap();
    airlock
        .add_connection(bearer("local", "http://127.0.0.1:9", Scope::Global))
        .unwrap();
    drop(airlock);

    let mut c = config(dir.path());
    c.cleartext_credential_origins =
        vec![airlock::Origin::parse("http://intranet.example:8080").unwrap()];
    let airlock = Airlock::open(c).unwrap();
    airlock
        .add_connection(bearer(
            "intranet",
            "http://intranet.example:8080",
            Scope::Global,
        ))
        .unwrap();
}

/// Install the minimal plugin with `airlock`, close it, and return the one
/// installed file in the data directory.
fn installed_minimal(airlock: Airlock, dir: &std::path::Path) -> std::path::PathBuf {
    install(&airlock, airlock_test_artifacts::MINIMAL);
    drop(airlock);
    let mut installed: Vec<_> = std::fs::read_dir(dir.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(installed.len(), 1, "{installed:?}");
    installed.remove(0)
}

/// An installed `.wasm` is pinned by SHA-256: a file swapped in the data
/// directory is refused when it is loaded, never run.
#[test]
fn a_swapped_installed_file_is_refused_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    let installed = installed_minimal(airlock, dir.path());
    std::fs::copy(airlock_test_artifacts::PROBE, &installed).unwrap();
    let reopened = open(dir.path());
    let err = reopened.loaded_plugin("minimal").unwrap_err();
    assert!(matches!(err, ServiceError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("reinstall the plugin"), "{err}");
}

/// The installed bytes are kept in the database too: a data directory that
/// lost the file (or a server that never had it) restores it, checked
/// against the pinned hash; bytes that do not match are refused and never
/// written to the data directory.
#[test]
fn a_missing_installed_file_is_restored_from_the_database_only_when_it_matches() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = open(dir.path());
    let installed = installed_minimal(airlock, dir.path());
    std::fs::remove_file(&installed).unwrap();
    let reopened = open(dir.path());
    reopened.loaded_plugin("minimal").unwrap();
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(airlock_test_artifacts::MINIMAL).unwrap(),
        "restored byte for byte"
    );
    drop(reopened);

    // Someone who can write the database swaps the kept bytes.
    std::fs::remove_file(&installed).unwrap();
    let db = rusqlite::Connection::open(dir.path().join(airlock::DB_FILE)).unwrap();
    db.execute(
        "UPDATE plugin_files SET bytes = ?1",
        [std::fs::read(airlock_test_artifacts::PROBE).unwrap()],
    )
    .unwrap();
    let reopened = open(dir.path());
    let err = reopened.loaded_plugin("minimal").unwrap_err();
    assert!(matches!(err, ServiceError::Tampered { .. }), "{err}");
    assert!(!installed.exists(), "refused bytes are not written");
}
