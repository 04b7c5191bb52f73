//! Operating airlock from the command line, as an operator would: install,
//! connect with every auth kind, test, rotate, audit. Afterwards the canary
//! secret is hunted for in every output, log and file: zero hits.

use std::process::{Command, Output};

use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::CANARY;

struct Cli {
    dir: tempfile::TempDir,
    transcript: std::sync::Mutex<String>,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            transcript: Default::default(),
        }
    }

    /// Run `airlock` in a blocking thread (the mock servers keep answering on
    /// the test runtime meanwhile), recording everything it printed.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.args(args)
            .env("AIRLOCK_DATA_DIR", self.dir.path())
            .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
            .env("AIRLOCK_LOG", "debug")
            .env("CANARY_SECRET", CANARY)
            .env_remove("AIRLOCK_MASTER_KEY")
            .env_remove("AIRLOCK_MASTER_PASSPHRASE");
        let input = stdin.map(String::from);
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            if let Some(i) = input {
                child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
            } else {
                drop(child.stdin.take());
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let mut t = self.transcript.lock().unwrap();
        t.push_str(&String::from_utf8_lossy(&out.stdout));
        t.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(
            out.status.success(),
            "airlock {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn server_expecting(header_name: &str, value: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .and(header(header_name, value))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "op"})))
        .expect(1..)
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn every_auth_kind_works_and_the_secret_never_shows() {
    use base64::Engine as _;
    let cli = Cli::new();
    // Installing needs approval.
    let out = cli
        .run(
            &["plugin", "install", airlock_test_artifacts::MINIMAL],
            None,
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli.ok(&[
        "plugin",
        "install",
        airlock_test_artifacts::MINIMAL,
        "--approve",
    ])
    .await;

    let basic = server_expecting(
        "authorization",
        &format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("ops@example.com:{CANARY}"))
        ),
    )
    .await;
    let bearer = server_expecting("authorization", &format!("Bearer {CANARY}")).await;
    let apikey = server_expecting("x-api-key", CANARY).await;
    let prefixed = server_expecting("authorization", &format!("Token {CANARY}")).await;
    let none = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "anon"})))
        .mount(&none)
        .await;

    let url = |s: &MockServer| format!("base-url={}", s.uri());
    let common = |name: &'static str, s: &MockServer| {
        vec![
            "connection".to_string(),
            "add".into(),
            name.into(),
            "--plugin".into(),
            "minimal".into(),
            "--setting".into(),
            url(s),
            "--global".into(),
        ]
    };
    let add = |mut base: Vec<String>, extra: &[&str]| {
        base.extend(extra.iter().map(|s| s.to_string()));
        base
    };
    let as_refs = |v: &Vec<String>| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{1}")
    };
    for (args, stdin) in [
        (
            add(
                common("c-basic", &basic),
                &[
                    "--auth",
                    "basic",
                    "--username",
                    "ops@example.com",
                    "--secret-env",
                    "CANARY_SECRET",
                ],
            ),
            None,
        ),
        (
            add(
                common("c-bearer", &bearer),
                &["--auth", "bearer", "--secret-stdin"],
            ),
            Some(format!("{CANARY}\n")),
        ),
        (
            add(
                common("c-apikey", &apikey),
                &[
                    "--auth",
                    "api-key",
                    "--header",
                    "x-api-key",
                    "--secret-env",
                    "CANARY_SECRET",
                ],
            ),
            None,
        ),
        (
            add(
                common("c-prefixed", &prefixed),
                &[
                    "--auth",
                    "api-key",
                    "--header",
                    "Authorization",
                    "--prefix",
                    "Token ",
                    "--secret-env",
                    "CANARY_SECRET",
                ],
            ),
            None,
        ),
        (add(common("c-none", &none), &["--auth", "none"]), None),
    ] {
        let joined = as_refs(&args);
        let argv: Vec<&str> = joined.split('\u{1}').collect();
        let out = cli.run(&argv, stdin.as_deref()).await;
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A secret on the command line is not even an option.
    let out = cli
        .run(
            &[
                "connection",
                "add",
                "x",
                "--plugin",
                "minimal",
                "--auth",
                "bearer",
                "--global",
                "--setting",
                "base-url=https://x.example",
                "--token",
                CANARY,
            ],
            None,
        )
        .await;
    assert!(!out.status.success());

    for name in ["c-basic", "c-bearer", "c-apikey", "c-prefixed", "c-none"] {
        let out = cli.ok(&["connection", "test", name]).await;
        assert!(out.contains("connected as"), "{name}: {out}");
    }
    let list = cli.ok(&["connection", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );
    cli.ok(&["connection", "show", "c-basic"]).await;
    cli.ok(&["connection", "show", "c-apikey", "--json"]).await;

    cli.ok(&["keys", "rotate"]).await;
    cli.ok(&["connection", "test", "c-bearer"]).await;
    cli.ok(&["keys", "retire", "1"]).await;
    cli.ok(&["connection", "test", "c-apikey"]).await;
    let keys = cli.ok(&["keys", "list"]).await;
    assert!(keys.contains("active"), "{keys}");

    let audit = cli.ok(&["audit", "list", "--json"]).await;
    assert!(
        serde_json::from_str::<serde_json::Value>(&audit)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            >= 7
    );
    let verify = cli.ok(&["audit", "verify"]).await;
    assert!(verify.to_lowercase().contains("ok"), "{verify}");

    cli.ok(&["connection", "pause", "c-none"]).await;
    let out = cli.run(&["connection", "test", "c-none"], None).await;
    assert_eq!(out.status.code(), Some(1));
    cli.ok(&["connection", "rm", "c-basic"]).await;

    // The hunt: transcripts (stdout, stderr, debug logs), then every file.
    let transcript = cli.transcript.lock().unwrap().clone();
    assert!(!transcript.is_empty());
    assert!(!transcript.contains(CANARY), "canary in CLI output or logs");
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    for entry in walk(cli.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in [CANARY.as_bytes(), b64.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "canary found in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_reports_a_tampered_row() {
    let cli = Cli::new();
    cli.ok(&[
        "plugin",
        "install",
        airlock_test_artifacts::MINIMAL,
        "--approve",
    ])
    .await;
    let server = server_expecting("authorization", &format!("Bearer {CANARY}")).await;
    let out = cli
        .run(
            &[
                "connection",
                "add",
                "t",
                "--plugin",
                "minimal",
                "--setting",
                &format!("base-url={}", server.uri()),
                "--global",
                "--auth",
                "bearer",
                "--secret-stdin",
            ],
            Some(CANARY),
        )
        .await;
    assert!(out.status.success());
    for _ in 0..3 {
        cli.ok(&["connection", "test", "t"]).await;
    }
    cli.ok(&["audit", "verify"]).await;
    let db = rusqlite::Connection::open(cli.dir.path().join(airlock::audit::AUDIT_FILE)).unwrap();
    db.execute(
        "UPDATE audit_log SET url = 'http://elsewhere.example/' WHERE seq = 3",
        [],
    )
    .unwrap();
    drop(db);
    let out = cli.run(&["audit", "verify"], None).await;
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains('3'), "names the row: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn call_runs_any_operation_and_fails_clearly() {
    let cli = Cli::new();
    cli.ok(&[
        "plugin",
        "install",
        airlock_test_artifacts::MINIMAL,
        "--approve",
    ])
    .await;
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "caller"})),
        )
        .mount(&server)
        .await;
    let base = format!("base-url={}", server.uri());
    cli.ok(&[
        "connection",
        "add",
        "c",
        "--plugin",
        "minimal",
        "--setting",
        &base,
        "--global",
    ])
    .await;

    let out = cli.ok(&["call", "c", "connector.test-connection"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["account"], "caller", "{out}");

    // Exit 2 for what the command line got wrong (operation, input), 1 for
    // the rest.
    for (args, needle) in [
        (
            vec![
                "call",
                "c",
                "tickets.get",
                "--input",
                r#"{"id": "INC0010001"}"#,
            ],
            "does not export the `tickets` interface",
        ),
        (
            vec!["call", "c", "tickets.launch"],
            "unknown operation `tickets.launch`",
        ),
        (
            vec![
                "call",
                "c",
                "documents.list-spaces",
                "--input",
                r#"{"limit": "ten"}"#,
            ],
            "input for documents.list-spaces",
        ),
        (
            vec!["call", "c", "tickets.get", "--input", "{not json"],
            "not valid JSON",
        ),
        (
            vec!["call", "nobody", "connector.test-connection"],
            "connection `nobody` not found",
        ),
    ] {
        let out = cli.run(&args, None).await;
        let expected = if args[1] == "nobody" { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
