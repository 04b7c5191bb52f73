//! Shared fixtures: a runtime configured like a test deployment (loopback
//! explicitly allowed), connections, and probe helpers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use airlock::AddressPolicy;
use airlock::audit::MemoryAudit;
use airlock::credential::{Credential, StaticCredential};
use airlock::runtime::types::PluginError;
use airlock::{CallError, Connection, Limits, Plugin, Runtime, RuntimeConfig};
use serde_json::Value;

pub const CANARY: &str = "CANARY-7f3a9c-secret-token";

/// One compiled-component cache for the whole test binary: each guest is
/// compiled once, every later runtime loads it from disk.
pub fn cache_dir() -> std::path::PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_path_buf()
}

/// Limits tight enough that hostile guests fail fast.
pub fn test_limits() -> Limits {
    Limits {
        wall_clock: Duration::from_secs(10),
        cpu: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        request_body_bytes: 64 << 10,
        response_body_bytes: 256 << 10,
        outbound_requests: 8,
        first_byte_timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

pub struct Host {
    pub runtime: Arc<Runtime>,
    pub audit: Arc<MemoryAudit>,
    /// The probe's `transport` setting for every [`Host::probe_call`]:
    /// empty for the SDK's default (`airlock:plugin/outbound`), or
    /// `wasi-http`.
    pub transport: &'static str,
}

/// A runtime that, like a local test deployment, explicitly allows loopback.
pub fn host() -> Host {
    host_with(
        AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        test_limits(),
    )
}

pub fn host_with(address_policy: AddressPolicy, limits: Limits) -> Host {
    let audit = Arc::new(MemoryAudit::new());
    let runtime = Runtime::new(RuntimeConfig {
        limits,
        cache_dir: Some(cache_dir()),
        address_policy,
        pooling: true,
        max_concurrent_calls: 16,
        audit: audit.clone(),
        ..RuntimeConfig::default()
    })
    .unwrap();
    Host {
        runtime: Arc::new(runtime),
        audit,
        transport: "",
    }
}

impl Host {
    pub fn load(&self, path: &str) -> Arc<Plugin> {
        self.runtime.load_file(path).unwrap()
    }

    pub fn minimal(&self) -> Arc<Plugin> {
        self.load(airlock_test_artifacts::MINIMAL)
    }

    /// A real plugin from plugins/, by crate name.
    pub fn plugin(&self, name: &str) -> Arc<Plugin> {
        let (_, path) = airlock_test_artifacts::PLUGINS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("plugins/{name} is built by airlock-test-artifacts"));
        self.load(path)
    }

    pub fn probe(&self) -> Arc<Plugin> {
        self.load(airlock_test_artifacts::PROBE)
    }

    /// Run the probe with settings; `Ok` is the JSON it reported.
    pub async fn probe_call(
        &self,
        plugin: &Plugin,
        base_url: &str,
        settings: &[(&str, &str)],
    ) -> Result<Value, CallError> {
        let mut conn = bearer_connection(base_url).with_setting("transport", self.transport);
        for (k, v) in settings {
            conn = conn.with_setting(*k, *v);
        }
        self.runtime
            .test_connection(plugin, &conn)
            .await
            .map(|r| serde_json::from_str(&r.message).expect("probe reports JSON"))
    }

    /// After any failure, a well-behaved plugin must still answer on the same host.
    pub async fn assert_still_serving(&self) {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::path("/api/me"))
            .respond_with(
                wiremock::ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"name": "still-here"})),
            )
            .mount(&server)
            .await;
        let report = self
            .runtime
            .test_connection(&self.minimal(), &bearer_connection(&server.uri()))
            .await
            .expect("a well-behaved plugin still answers");
        assert_eq!(report.account.as_deref(), Some("still-here"));
    }
}

/// A connection to `base_url` whose bearer token is the canary.
pub fn bearer_connection(base_url: &str) -> Connection {
    Connection::new("conn-1", "test-connection")
        .with_setting("base-url", base_url)
        .with_credential(
            http::header::AUTHORIZATION,
            StaticCredential::new(Credential::Bearer {
                token: CANARY.to_string().into(),
            }),
        )
        .unwrap()
}

/// The typed plugin error of a failed call.
pub fn plugin_error(err: &CallError) -> &PluginError {
    err.plugin_error()
        .unwrap_or_else(|| panic!("expected a typed plugin error, got: {err}"))
}

pub fn assert_egress_denied(err: &CallError, needle: &str) {
    match plugin_error(err) {
        PluginError::EgressDenied(_) => {}
        other => panic!("expected egress-denied, got {other:?} ({err})"),
    }
    let text = err.to_string();
    assert!(
        text.contains(needle),
        "error should mention {needle:?}: {text}"
    );
}

/// The `airlock` binary as an operator runs it on data directory `dir`:
/// loopback egress allowed, the master key from the key file (never from
/// this process's environment), plus `env`. Exit code, stdout, stderr.
pub fn airlock_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .envs(env.iter().copied())
        .output()
        .expect("run airlock");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wasm` with its `airlock-manifest` custom sections (the SDK puts one in
/// the component's core module) replaced by one carrying `manifest`.
pub fn with_manifest(wasm: &[u8], manifest: &str) -> Vec<u8> {
    let mut out = strip_manifest(wasm);
    let mut section = Vec::new();
    leb("airlock-manifest".len(), &mut section);
    section.extend_from_slice(b"airlock-manifest");
    section.extend_from_slice(manifest.as_bytes());
    out.push(0);
    leb(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

/// `n` as LEB128, appended to `out`.
pub fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb(bytes: &[u8], at: &mut usize) -> usize {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

/// A module or component (header, then sections of id, LEB128 size and
/// body) without its `airlock-manifest` sections, at any depth: a
/// component's core modules (section 1) and nested components (section 4)
/// are rewritten too.
fn strip_manifest(wasm: &[u8]) -> Vec<u8> {
    let is_component = wasm[4..8] != [1, 0, 0, 0];
    let mut out = wasm[..8].to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = read_leb(wasm, &mut at);
        let body = &wasm[at..at + size];
        at += size;
        if id == 0 {
            let mut p = 0;
            let len = read_leb(body, &mut p);
            if &body[p..p + len] == b"airlock-manifest" {
                continue;
            }
        }
        let body = if is_component && (id == 1 || id == 4) {
            strip_manifest(body)
        } else {
            body.to_vec()
        };
        out.push(id);
        leb(body.len(), &mut out);
        out.extend_from_slice(&body);
    }
    out
}

/// One HTTP/1.1 request: the head, then the body by its length.
pub async fn read_http_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::io::AsyncReadExt::read(socket, &mut buf)
            .await
            .unwrap();
        assert!(n > 0, "the client closed early");
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Captures every log line (all levels) of the current thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Capture this thread's log lines until the guard is dropped.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
