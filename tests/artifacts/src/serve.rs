//! `airlock serve` processes for the tests and benchmarks that need several
//! real servers (the binary's path is the caller's `CARGO_BIN_EXE_airlock`),
//! and a plain HTTP/1.1 client for their API.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The master key the servers of one test cluster share (base64 of 32
/// bytes).
pub const MASTER_KEY: &str = "c2NhbGUtb3V0LXRlc3RzLW1hc3Rlci1rZXktMzJieXQ=";

/// One `airlock serve` process with a data directory of its own.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `127.0.0.1:<port>` it listens on.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Start `binary serve` on `database` (`None`: SQLite in its data
    /// directory), loopback egress allowed, the shared [`MASTER_KEY`]. The
    /// server and the first admin token if this start created one.
    pub fn start(binary: &Path, database: Option<&str>) -> (Self, Option<String>) {
        Self::start_with_env(binary, database, &[])
    }

    /// [`Server::start`] with more environment variables.
    pub fn start_with_env(
        binary: &Path,
        database: Option<&str>,
        env: &[(&str, &str)],
    ) -> (Self, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(binary);
        command.args(["serve", "--addr", "127.0.0.1:0"]);
        if let Some(database) = database {
            command.args(["--database", database]);
        }
        let mut child = command
            .env("AIRLOCK_DATA_DIR", dir.path())
            .env("AIRLOCK_MASTER_KEY", MASTER_KEY)
            .env_remove("AIRLOCK_MASTER_PASSPHRASE")
            .env_remove("AIRLOCK_DATABASE")
            .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
            .env("AIRLOCK_LOG", "error")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the server prints where it listens");
            if let Some(a) = line.split("listening on http://").nth(1) {
                addr = Some(a.trim().to_string());
            }
            if line.starts_with("API: ") {
                break;
            }
        }
        // A first start prints the admin token right after, in one write.
        let mut token = None;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.trim_start().starts_with("alk_") {
                token = Some(line.trim().to_string());
                break;
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let server = Self {
            child,
            addr: addr.unwrap(),
            _dir: dir,
        };
        (server, token)
    }

    /// The process id (for `kill -KILL`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop it at once and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP/1.1 request with `Connection: close`: status and body, or the
/// connection error (a killed server).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(&str, Vec<u8>)>,
) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (kind, bytes) = body.unwrap_or(("application/json", Vec::new()));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    )?;
    s.write_all(&bytes)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Upload `wasm` to the server at `addr` and approve it; its plugin id.
pub fn install(addr: &str, token: &str, wasm: Vec<u8>) -> String {
    let (status, plan) = request(
        addr,
        "POST",
        "/api/v1/plugins",
        token,
        Some(("application/wasm", wasm)),
    )
    .unwrap();
    assert_eq!(status, 202, "{plan}");
    let field = |name: &str| {
        let key = format!("\"{name}\":\"");
        let start = plan.find(&key).unwrap() + key.len();
        plan[start..start + plan[start..].find('"').unwrap()].to_string()
    };
    let (id, sha) = (field("id"), field("sha256"));
    let body = format!("{{\"sha256\":\"{sha}\"}}");
    let path = format!("/api/v1/plugins/{id}/approve");
    let (status, answer) = request(
        addr,
        "POST",
        &path,
        token,
        Some(("application/json", body.into_bytes())),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    id
}
