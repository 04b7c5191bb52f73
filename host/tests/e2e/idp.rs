//! The local OAuth 2.0 identity provider of the end-to-end tests: the npm
//! package `oauth2-mock-server` (pinned in tests/idp/package-lock.json),
//! started by tests/idp/idp.mjs. The protocol (authorization code with PKCE,
//! refresh, signed tokens) is the package's; the launcher only configures
//! its hooks (see its header).
//!
//! The package is installed with `npm ci` into tests/idp/node_modules the
//! first time a test needs it, once for all test processes (a file lock).
//! Without Node.js and npm the tests fail and say what to install.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/idp")
}

/// Run `program --version`, or fail the test saying what is missing.
fn require(program: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the OAuth end-to-end tests need `{program}` (Node.js 20.19 or later with npm) to run \
         their identity provider, oauth2-mock-server from tests/idp/package-lock.json: install \
         Node.js and npm (e.g. `apt-get install nodejs npm`) and run the tests again"
    );
}

/// `npm ci` in tests/idp unless the package is there; once per process,
/// and under a file lock so parallel test processes install it once.
fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        require("node");
        let dir = dir();
        let marker = dir.join("node_modules/oauth2-mock-server/package.json");
        if marker.exists() {
            return;
        }
        require("npm");
        let lock = std::fs::File::create(dir.join(".install.lock")).expect("tests/idp is writable");
        lock.lock().expect("locking tests/idp/.install.lock");
        if marker.exists() {
            return;
        }
        let started = Instant::now();
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .output()
            .expect("running npm ci");
        assert!(
            out.status.success(),
            "`npm ci --prefix tests/idp` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "installed the test identity provider (oauth2-mock-server) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    });
}

/// A running identity provider; stopped when dropped.
pub struct Idp {
    child: Child,
    stdin: ChildStdin,
    /// `http://127.0.0.1:PORT`: `/authorize`, `/token` and the rest.
    pub url: String,
    /// The issuer identifier it names in `iss` (`http://localhost:PORT`).
    pub issuer: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Idp {
    /// Install if needed, start, and wait until it listens.
    pub fn start() -> Self {
        ensure_installed();
        let mut child = Command::new("node")
            .arg(dir().join("idp.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting node tests/idp/idp.mjs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["event"] == "ready" {
                    let _ = ready_tx.send(event.clone());
                }
                sink.lock().unwrap().push(event);
            }
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the identity provider did not start within 30 s");
        Self {
            child,
            stdin,
            url: ready["url"].as_str().unwrap().to_string(),
            issuer: ready["issuer"].as_str().unwrap().to_string(),
            events,
        }
    }

    /// Send one configuration line (see tests/idp/idp.mjs) and wait until
    /// it is applied.
    pub fn configure(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .events()
            .iter()
            .any(|e| e["event"] == "configured" && e["line"] == line)
        {
            assert!(Instant::now() < deadline, "`{line}` was not applied");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The `token` events so far, of one grant type.
    pub fn token_requests(&self, grant_type: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "token" && e["grant_type"] == grant_type)
            .collect()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
