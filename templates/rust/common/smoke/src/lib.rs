//! A loopback stand-in of the service and a runner for the `airlock`
//! binary, for the tests in `tests/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 answering every request with
/// `answer(method, path, body) -> (status, json)`.
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn start(answer: fn(&str, &str, &str) -> (u16, String)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let (mut length, mut authorization) = (0, None);
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "authorization" => authorization = Some(value.trim().to_string()),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8_lossy(&body).into_owned();
                let (status, json) = answer(&method, &path, &body);
                log.lock().unwrap().push(Seen { method, path, authorization, body });
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                );
            }
        });
        Self { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The `airlock` binary on a temporary data directory.
pub struct Airlock {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Airlock {
    pub fn new(name: &str) -> Self {
        let bin = std::env::var_os("AIRLOCK").map_or_else(|| PathBuf::from("airlock"), PathBuf::from);
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { bin, dir }
    }

    /// Run `airlock ARGS` with `env`; its stdout, or a panic with what it said.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--quiet")
            .args(args)
            .envs(env.iter().copied())
            // A test upstream on this machine: allow loopback for this run only.
            .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
            .output()
            .unwrap_or_else(|e| panic!("running {} (set AIRLOCK=/path/to/airlock): {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "airlock {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Airlock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Install the component and add connection `smoke` to `upstream` with a
/// bearer token; answers the token.
pub fn connect(airlock: &Airlock, upstream: &Upstream) -> &'static str {
    const TOKEN: &str = "smoke-test-token-0123456789";
    let wasm = component();
    airlock.run(&["plugin", "install", wasm.to_str().unwrap(), "--approve"], &[]);
    airlock.run(
        &[
            "connection", "add", "smoke", "--plugin", "{{id}}", "--auth", "bearer",
            "--secret-env", "SMOKE_TOKEN", "--setting", &format!("base-url={}", upstream.url), "--global",
        ],
        &[("SMOKE_TOKEN", TOKEN)],
    );
    TOKEN
}

/// The component `cargo build --release --target wasm32-wasip2` wrote.
pub fn component() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let path = target.join("wasm32-wasip2/release/{{crate}}.wasm");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --release --target wasm32-wasip2`",
        path.display()
    );
    path
}
