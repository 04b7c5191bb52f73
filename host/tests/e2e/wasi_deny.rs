//! Components that import `wasi:sockets` and `wasi:filesystem` (as
//! componentize-py's and Rust's std do) load; every use of them is refused
//! with access-denied, reaches nothing, and is counted in the metrics.

use std::collections::BTreeMap;

use airlock::Connection;
use airlock::service::{AuthInput, NewConnection, Scope};
use serde_json::Value;

use crate::common::*;

/// Every attempt the `sockets` guest makes (see tests/guests/README.md).
const ATTEMPTS: [&str; 10] = [
    "connect",
    "connect_v6",
    "listen",
    "udp",
    "lookup",
    "read_passwd",
    "read_dot",
    "read_dir",
    "write",
    "metadata",
];

/// The `sockets` guest's report: each attempt's outcome.
fn report(message: &str) -> BTreeMap<String, Value> {
    serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {message}"))
}

/// The value of `metric{plugin="sockets",connection="<connection>"}`.
fn metric(text: &str, metric: &str, connection: &str) -> u64 {
    let series = format!("{metric}{{plugin=\"sockets\",connection=\"{connection}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sockets_and_files_are_refused_with_access_denied_and_counted() {
    let host = host();
    // It loads: the sockets and filesystem imports are linked.
    let plugin = host.load(airlock_test_artifacts::SOCKETS);
    let conn = Connection::new("c-sockets", "deny-me");
    let answer = host.runtime.test_connection(&plugin, &conn).await.unwrap();
    let outcomes = report(&answer.message);
    for attempt in ATTEMPTS {
        let o = &outcomes[attempt];
        assert_eq!(o["ok"], false, "{attempt} was allowed: {o}");
        assert_eq!(o["kind"], "PermissionDenied", "{attempt}: {o}");
    }
    assert_eq!(answer.details, [("all-refused".into(), "true".into())]);

    // Each refused operation counted once: the listen is refused at bind,
    // the UDP send at bind; a TCP connect is one start-connect.
    let text = host.runtime.metrics().render();
    let denied = metric(&text, "airlock_wasi_denials_total", "deny-me");
    assert_eq!(denied, ATTEMPTS.len() as u64, "{text}");

    // A second call counts again, on the same series.
    host.runtime.test_connection(&plugin, &conn).await.unwrap();
    let text = host.runtime.metrics().render();
    assert_eq!(
        metric(&text, "airlock_wasi_denials_total", "deny-me"),
        2 * ATTEMPTS.len() as u64
    );
}

#[tokio::test]
async fn a_refused_connect_reaches_no_listener() {
    // A real listener on loopback, which the host's own egress policy in
    // these tests would allow: the guest's raw socket still never arrives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        tokio::time::timeout(std::time::Duration::from_secs(2), listener.accept()).await
    });
    let host = host();
    let plugin = host.load(airlock_test_artifacts::SOCKETS);
    let conn =
        Connection::new("c-quiet", "quiet").with_setting("target", format!("127.0.0.1:{port}"));
    let answer = host.runtime.test_connection(&plugin, &conn).await.unwrap();
    assert_eq!(
        report(&answer.message)["connect"]["kind"],
        "PermissionDenied"
    );
    assert!(
        accepted.await.unwrap().is_err(),
        "something connected to 127.0.0.1:{port}"
    );
}

#[tokio::test]
async fn a_service_call_counts_its_refusals_in_the_served_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    crate::service::install(&airlock, airlock_test_artifacts::SOCKETS);
    airlock
        .add_connection(NewConnection {
            name: "raw".into(),
            plugin_id: "sockets".into(),
            settings: BTreeMap::new(),
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap();
    let answer = airlock
        .call("raw", "connector.test-connection", Value::Null, None)
        .await
        .unwrap();
    assert_eq!(answer["details"][0][1], "true", "{answer}");
    let text = airlock.metrics().render();
    assert_eq!(metric(&text, "airlock_calls_total", "raw"), 1, "{text}");
    assert_eq!(
        metric(&text, "airlock_wasi_denials_total", "raw"),
        ATTEMPTS.len() as u64
    );
}

/// A component (with a valid manifest) whose one import is `function` of
/// `interface` in package `package` (`acme:evil@1.0.0`): for imports the
/// host must refuse.
pub fn component_importing(package: &str, interface: &str) -> Vec<u8> {
    let wit = format!(
        "package {package};\ninterface {interface} {{\n  open: func() -> u32;\n}}\n\
         world plugin {{\n  import {interface};\n}}\n"
    );
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("plugin.wit", &wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("plugin")).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();
    let manifest = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let manifest = airlock::manifest::Manifest::from_wasm(&manifest).unwrap();
    with_manifest(&component, &toml::to_string(&manifest).unwrap())
}

/// A component instantiating `instances` times a core module (`module`,
/// WAT), with `minimal`'s manifest and no exports.
fn component_with_core_instances(module: &str, instances: usize) -> Vec<u8> {
    let wat = format!(
        "(component (core module $m {module}) {})",
        "(core instance (instantiate $m)) ".repeat(instances)
    );
    let manifest = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let manifest = airlock::manifest::Manifest::from_wasm(&manifest).unwrap();
    with_manifest(
        &wat::parse_str(wat).unwrap(),
        &toml::to_string(&manifest).unwrap(),
    )
}

#[test]
fn the_default_limits_fit_what_component_toolchains_emit() {
    // The defaults, pooled as a deployment runs them (256 calls).
    let runtime = airlock::Runtime::new(airlock::RuntimeConfig::default()).unwrap();
    let limits = runtime.limits().clone();
    // componentize-py built with --stub-wasi instantiates 44 core modules
    // (see `Limits::instances`): it compiles and fails only for what it
    // lacks here, a connector export.
    let err = runtime
        .load(&component_with_core_instances("", 44))
        .expect_err("it exports nothing");
    assert!(matches!(err, airlock::LoadError::NoConnector), "{err}");

    // One instance more than the limit, or more memories than a call may
    // have (memory stays bounded), is refused at load, naming the limit.
    let err = runtime
        .load(&component_with_core_instances("", limits.instances + 1))
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "exceeds the configured maximum of {}",
            limits.instances
        )),
        "{err}"
    );
    let err = runtime
        .load(&component_with_core_instances(
            "(memory 1)",
            limits.memories + 1,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("memories"), "{err}");
}
