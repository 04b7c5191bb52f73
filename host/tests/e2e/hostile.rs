//! Guests that misbehave: each fails its own call with a clear error and the
//! host goes on serving.

use std::time::Duration;

use airlock::CallError;
use airlock::runtime::LimitKind;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

async fn expect_limit(action: &str, kind: LimitKind) -> String {
    let host = host();
    let probe = host.probe();
    let err = host
        .probe_call(&probe, "http://127.0.0.1:9", &[("action", action)])
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(kind), "{action}: {err}");
    let text = err.to_string();
    assert!(
        text.contains("plugin probe@") && text.contains("test-connection"),
        "{text}"
    );
    host.assert_still_serving().await;
    text
}

#[tokio::test]
async fn infinite_loop_hits_the_cpu_limit() {
    let text = expect_limit("loop", LimitKind::Cpu).await;
    assert!(text.contains("CPU time"), "{text}");
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_memory_limit() {
    let text = expect_limit("grow-memory", LimitKind::Memory).await;
    assert!(text.contains("33554432 bytes"), "{text}");
}

#[tokio::test]
async fn unbounded_recursion_is_stopped() {
    // Rust guests keep their stack in linear memory, so unbounded recursion
    // either overflows that (an out-of-bounds trap) or the host's wasm stack
    // limit, whichever comes first. Both end the call cleanly.
    let host = host();
    let err = host
        .probe_call(
            &host.probe(),
            "http://127.0.0.1:9",
            &[("action", "recurse")],
        )
        .await
        .unwrap_err();
    match &err {
        CallError::Limit {
            limit: LimitKind::Stack,
            ..
        } => {}
        CallError::Trap { message, .. } => assert!(message.contains("stack overflow"), "{message}"),
        other => panic!("expected a stack limit or trap, got {other}"),
    }
    host.assert_still_serving().await;
}

#[tokio::test]
async fn unreachable_is_reported_as_a_crash() {
    let host = host();
    let err = host
        .probe_call(&host.probe(), "http://127.0.0.1:9", &[("action", "trap")])
        .await
        .unwrap_err();
    match &err {
        CallError::Trap { message, .. } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("report this to the plugin's author")
    );
    host.assert_still_serving().await;
}

/// A component whose core module declares a table of 100 million entries,
/// built with wit-component so its exports match the contract exactly.
fn huge_table_component() -> Vec<u8> {
    let manifest = "id = \"huge-table\"\nname = \"Huge table\"\nversion = \"0.1.0\"\n\
                    api-version = \"0.1\"\ncategory = \"connector\"\n";
    let wat = format!(
        r#"(module
            (table 100000000 funcref)
            (memory (export "memory") 1)
            (func (export "airlock:plugin/connector@0.1.0#test-connection") (result i32) unreachable)
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)
            (@custom "airlock-manifest" "{}")
        )"#,
        manifest.replace('"', "\\\"").replace('\n', "\\n")
    );
    let mut module = wat::parse_str(&wat).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
        .unwrap();
    let world = resolve
        .select_world(&[pkg], Some("connector-plugin"))
        .unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[tokio::test]
async fn a_huge_table_is_refused() {
    let host = host();
    let wasm = huge_table_component();
    // Refused at load or at instantiation, but always naming the table.
    let text = match host.runtime.load(&wasm) {
        Err(e) => e.to_string(),
        Ok(plugin) => host
            .runtime
            .test_connection(&plugin, &bearer_connection("http://127.0.0.1:9"))
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(text.contains("table"), "{text}");
    assert!(
        text.contains("huge-table"),
        "error names the plugin: {text}"
    );
    host.assert_still_serving().await;
}

#[tokio::test]
async fn a_slow_upstream_hits_the_wall_clock_deadline() {
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let host = host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        airlock::Limits {
            wall_clock: Duration::from_millis(700),
            ..test_limits()
        },
    );
    let started = std::time::Instant::now();
    let err = host
        .probe_call(
            &host.probe(),
            &server.uri(),
            &[
                ("action", "fetch"),
                ("url", &format!("{}/slow", server.uri())),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::WallClock), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    host.assert_still_serving().await;
}

#[tokio::test]
async fn a_looping_guest_does_not_stall_other_calls() {
    let host = host();
    let probe = host.probe();
    let runtime = host.runtime.clone();
    let spinning = tokio::spawn(async move {
        let conn = bearer_connection("http://127.0.0.1:9").with_setting("action", "loop");
        runtime.test_connection(&probe, &conn).await
    });
    // While the loop burns its CPU budget, good calls complete.
    for _ in 0..3 {
        host.assert_still_serving().await;
    }
    let err = spinning.await.unwrap().unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::Cpu));
}
