//! The protocol layer of the browser harness: a ChromeDriver process and a
//! minimal W3C WebDriver client over hyper (JSON over HTTP/1.1 on loopback).
//! Everything here returns `Result<_, WdError>`; the panicking, test-facing
//! API is in the parent module.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// The key under which WebDriver passes element references.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One command longer than this is a hung browser, not a slow one.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A WebDriver error answer (`value.error`, `value.message`), or a
/// transport failure reported in the same shape.
#[derive(Debug, Clone)]
pub struct WdError {
    /// The HTTP status; 0 when there was no answer.
    pub status: u16,
    /// The W3C error code, e.g. `no such element`.
    pub error: String,
    pub message: String,
}

impl WdError {
    fn transport(message: String) -> Self {
        WdError {
            status: 0,
            error: "harness transport error".into(),
            message,
        }
    }
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // ChromeDriver appends a native stack trace to some messages; the
        // first lines are the useful part.
        let message: Vec<&str> = self.message.lines().take(4).collect();
        write!(
            f,
            "{} (HTTP {}): {}",
            self.error,
            self.status,
            message.join(" | ")
        )
    }
}

/// A running `chromedriver`; killed, with any browser it still runs, when
/// dropped (also while a failing test unwinds).
pub struct Driver {
    child: Child,
    pub port: u16,
    /// Everything it printed, for error messages.
    output: Arc<Mutex<String>>,
}

impl Driver {
    /// Start `program` on a free loopback port and return once it prints
    /// that it listens. `--port=0` lets the driver pick the port and print
    /// it (ChromeDriver 1xx does); a driver that does not report it is
    /// started again on a port found free by binding 127.0.0.1:0, twice at
    /// most, in case another process takes that port in between.
    pub fn spawn(program: &Path) -> Result<Driver, String> {
        let mut failures = Vec::new();
        for attempt in 0..3 {
            let port = if attempt == 0 { 0 } else { free_port() };
            match Self::spawn_on(program, port) {
                Ok(driver) => return Ok(driver),
                Err(e) => failures.push(format!("--port={port}: {e}")),
            }
        }
        Err(failures.join("; "))
    }

    fn spawn_on(program: &Path, port: u16) -> Result<Driver, String> {
        let mut child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        // Drain both pipes for the driver's whole life so it never blocks
        // on a full pipe; stdout lines also go to the port watcher.
        for (pipe, tx) in [
            (Box::new(stdout) as Box<dyn Read + Send>, Some(tx)),
            (Box::new(stderr), None),
        ] {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    {
                        let mut out = sink.lock().unwrap();
                        out.push_str(&line);
                        out.push('\n');
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if !line.contains("started successfully") {
                        continue;
                    }
                    // "ChromeDriver was started successfully on port 45079."
                    let said = line
                        .split("on port ")
                        .nth(1)
                        .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                        .filter(|&p| p != 0);
                    break said.or((port != 0).then_some(port));
                }
                Err(_) => break None,
            }
        };
        let mut driver = Driver {
            child,
            port: 0,
            output,
        };
        match found {
            Some(port) => {
                driver.port = port;
                Ok(driver)
            }
            None => Err(format!(
                "it did not report a listening port within 20 s; it printed: {}",
                driver.output()
            )),
        }
    }

    /// Everything the driver printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The processes the driver started (the browser), from
    /// /proc/PID/task/*/children.
    fn children(&self) -> Vec<u32> {
        let pid = self.child.id();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        tasks
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // After a clean quit the browser is gone already; if the quit
        // failed, kill the browser the driver started (by its pid, while
        // it is still the driver's child) before the driver itself.
        for pid in self.children() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// JSON over HTTP to the driver.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    pub fn new(base: String) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Http { client, base }
    }

    /// One command: `body` is sent as JSON (POST needs one, even `{}`);
    /// the answer's `value` is returned, or its error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let bytes = match &body {
            Some(v) => Bytes::from(serde_json::to_vec(v).unwrap()),
            None => Bytes::new(),
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            req = req.header("content-type", "application/json; charset=utf-8");
        }
        let req = req.body(Full::new(bytes)).unwrap();
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| WdError::transport(format!("{method} {path}: {e}")))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| WdError::transport(format!("{method} {path}: body: {e}")))?
                .to_bytes();
            Ok::<_, WdError>((status, body))
        };
        let (status, body) = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                WdError::transport(format!(
                    "{method} {path}: no answer within {} s",
                    COMMAND_TIMEOUT.as_secs()
                ))
            })??;
        let v: Value = serde_json::from_slice(&body).map_err(|e| WdError {
            status,
            error: "harness: answer is not JSON".into(),
            message: format!("{e}: {}", String::from_utf8_lossy(&body)),
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(WdError {
            status,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Poll `GET /status` until the driver says it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), WdError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.call(Method::GET, "/status", None).await {
                Ok(v) if v["ready"] == true => return Ok(()),
                Ok(v) => WdError::transport(format!("not ready: {v}")),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A WebDriver session.
pub struct Session {
    http: Http,
    pub id: String,
    port: u16,
}

impl Session {
    /// `POST /session` with these `alwaysMatch` capabilities.
    pub async fn create(http: Http, port: u16, capabilities: Value) -> Result<Session, WdError> {
        let v = http
            .call(
                Method::POST,
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
            )
            .await?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| WdError::transport(format!("no sessionId in {v}")))?
            .to_string();
        Ok(Session { http, id, port })
    }

    /// A command on this session: `suffix` is the path after
    /// `/session/{id}`, e.g. `/url`.
    pub async fn cmd(
        &self,
        method: Method,
        suffix: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        self.http
            .call(method, &format!("/session/{}{suffix}", self.id), body)
            .await
    }

    pub async fn get(&self, suffix: &str) -> Result<Value, WdError> {
        self.cmd(Method::GET, suffix, None).await
    }

    pub async fn post(&self, suffix: &str, body: Value) -> Result<Value, WdError> {
        self.cmd(Method::POST, suffix, Some(body)).await
    }

    /// `DELETE /session/{id}` (closes the browser) over a plain blocking
    /// socket, so that it works from `Drop`, also while a test unwinds and
    /// whatever the state of the async runtime.
    pub fn quit_blocking(&self) -> std::io::Result<()> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        write!(
            stream,
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Length: 0\r\n\r\n",
            self.id, self.port
        )?;
        // ChromeDriver keeps the connection open despite `Connection:
        // close`: read the head and `Content-Length` bytes of body, not to
        // the end of the stream.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            answer.extend_from_slice(&buf[..n]);
            let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return Ok(());
            }
        }
    }
}

/// The element id in a WebDriver element reference.
pub fn element_id(v: &Value) -> Option<String> {
    v.get(ELEMENT_KEY)?.as_str().map(str::to_string)
}
