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
        let mut conn = bearer_connection(base_url);
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
