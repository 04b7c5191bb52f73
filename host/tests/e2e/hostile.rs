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

/// A `connector-plugin` component named `id` from the body of a core module
/// (which must export `memory`, `cabi_realloc` and the `test-connection`
/// function), built with wit-component so its exports match the contract
/// exactly.
fn connector_component(id: &str, module_body: &str) -> Vec<u8> {
    let manifest = format!(
        "id = \"{id}\"\nname = \"{id}\"\nversion = \"0.1.0\"\n\
         api-version = \"0.1\"\ncategory = \"connector\"\n"
    );
    let wat = format!(
        r#"(module
            {module_body}
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

/// A component whose core module declares a table of 100 million entries.
fn huge_table_component() -> Vec<u8> {
    connector_component(
        "huge-table",
        r#"(table 100000000 funcref)
           (memory (export "memory") 1)
           (func (export "airlock:plugin/connector@0.1.0#test-connection") (result i32) unreachable)
           (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)"#,
    )
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

// ---- what crosses from a plugin into the host ---------------------------------

/// The probe's `test-connection` with `settings`, on a host with `limits`.
async fn probe_with(
    limits: airlock::Limits,
    settings: &[(&str, &str)],
) -> Result<airlock::runtime::types::ConnectionReport, CallError> {
    let host = host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        limits,
    );
    let mut conn = bearer_connection("http://127.0.0.1:9");
    for (k, v) in settings {
        conn = conn.with_setting(*k, *v);
    }
    host.runtime.test_connection(&host.probe(), &conn).await
}

/// A limit error names the plugin, the connection, the limit and the
/// `Limits` field that sets it.
fn assert_names_limit(err: &CallError, kind: LimitKind, field: &str) {
    assert_eq!(err.limit(), Some(kind), "{err}");
    let text = err.to_string();
    for needle in [
        "plugin probe@",
        "`test-connection`",
        "test-connection stopped",
        &kind.to_string(),
        &format!("Limits::{field}"),
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

#[tokio::test]
async fn a_result_over_the_result_limit_fails_the_call() {
    let limits = airlock::Limits {
        result_bytes: 1 << 20,
        ..test_limits()
    };
    let size = (2 << 20).to_string();
    let err = probe_with(limits.clone(), &[("action", "big-result"), ("size", &size)])
        .await
        .unwrap_err();
    assert_names_limit(&err, LimitKind::Result, "result_bytes");
    assert!(err.to_string().contains("1048576 bytes of result"), "{err}");
    let size = (512 << 10).to_string();
    let report = probe_with(limits, &[("action", "big-result"), ("size", &size)])
        .await
        .expect("a result under the limit is returned whole");
    assert_eq!(report.message.len(), 512 << 10);
}

#[tokio::test]
async fn a_host_call_carrying_too_much_data_fails_the_call() {
    let limits = test_limits();
    let huge = (4 * limits.hostcall_data_bytes).to_string();
    let err = probe_with(
        limits.clone(),
        &[("action", "log"), ("text", "x"), ("repeat", &huge)],
    )
    .await
    .unwrap_err();
    assert_names_limit(&err, LimitKind::HostcallData, "hostcall_data_bytes");
    // Just over the value limit, the message is still truncated, as the WIT
    // promises, rather than failing the call.
    let over = (limits.hostcall_data_bytes + 1).to_string();
    probe_with(
        limits,
        &[("action", "log"), ("text", "x"), ("repeat", &over)],
    )
    .await
    .expect("a log message just over the limit is truncated");
}

#[tokio::test]
async fn hoarding_resource_handles_fails_the_call() {
    let host = host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        airlock::Limits {
            resource_handles: 1000,
            ..test_limits()
        },
    );
    let hoard = host.load(airlock_test_artifacts::HOARD);
    let conn = |count: &str| bearer_connection("http://127.0.0.1:9").with_setting("count", count);
    let report = host.runtime.test_connection(&hoard, &conn("100")).await;
    assert_eq!(report.unwrap().message, "held 100");
    // wasmtime's own caps are a million host entries and 100,000 handles.
    let err = host
        .runtime
        .test_connection(&hoard, &conn("5000"))
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::Handles), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("plugin hoard@")
            && text.contains("`test-connection`")
            && text.contains("1000 resource handles")
            && text.contains("Limits::resource_handles"),
        "{text}"
    );
    host.assert_still_serving().await;
}

/// A result that costs the guest 1 MiB of memory and the host
/// `pairs` x 2 MiB: `details` lists `pairs` (key, value) pairs whose strings
/// all point at the same 1 MiB of zero bytes (valid UTF-8) in linear memory.
fn aliased_result_component(pairs: u32) -> Vec<u8> {
    const CHUNK: u32 = 1 << 20;
    let (array, result) = (CHUNK, CHUNK + pairs * 16);
    let pages = (result + 64).div_ceil(65536);
    let body = format!(
        r#"(memory (export "memory") {pages})
           (func (export "airlock:plugin/connector@0.1.0#test-connection") (result i32)
             (local $i i32) (local $at i32)
             (block $done
               (loop $fill
                 (br_if $done (i32.ge_u (local.get $i) (i32.const {pairs})))
                 (local.set $at (i32.add (i32.const {array}) (i32.mul (local.get $i) (i32.const 16))))
                 (i32.store (local.get $at) (i32.const 0))
                 (i32.store offset=4 (local.get $at) (i32.const {CHUNK}))
                 (i32.store offset=8 (local.get $at) (i32.const 0))
                 (i32.store offset=12 (local.get $at) (i32.const {CHUNK}))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br $fill)))
             ;; result::ok(connection-report {{ account: none, message: 2 bytes, details }}),
             ;; the report at offset 8 (plugin-error holds a u64)
             (i32.store8 (i32.const {result}) (i32.const 0))
             (i32.store8 offset=8 (i32.const {result}) (i32.const 0))
             (i32.store offset=20 (i32.const {result}) (i32.const 0))
             (i32.store offset=24 (i32.const {result}) (i32.const 2))
             (i32.store offset=28 (i32.const {result}) (i32.const {array}))
             (i32.store offset=32 (i32.const {result}) (i32.const {pairs}))
             (i32.const {result}))
           (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)"#
    );
    connector_component("aliased-result", &body)
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn resident() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb << 10)
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_do_not_grow_the_host_s_memory() {
    const CALLS: usize = 16;
    const MIB: u64 = 1 << 20;
    let host = host();
    // 64 MiB of strings per result from 1 MiB of guest memory: wasmtime's
    // default budget (128 MiB) would lift every one whole.
    let plugin = host.runtime.load(&aliased_result_component(32)).unwrap();
    let conn = bearer_connection("http://127.0.0.1:9");
    let (rss_before, hwm_before) = resident();
    let calls = (0..CALLS).map(|_| {
        let (runtime, plugin, conn) = (host.runtime.clone(), plugin.clone(), conn.clone());
        tokio::spawn(async move { runtime.test_connection(&plugin, &conn).await })
    });
    // Keep every outcome alive until memory is read: unbounded results
    // would all be resident here at once.
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    let (rss_after, hwm_after) = resident();
    let (grew, peak) = (
        rss_after.saturating_sub(rss_before),
        hwm_after.saturating_sub(hwm_before),
    );
    println!(
        "{CALLS} oversized results: resident memory grew {} MiB, its peak {} MiB",
        grew / MIB,
        peak / MIB
    );
    // Unbounded, the outcomes alone hold CALLS x 64 MiB = 1 GiB; bounded,
    // at most one result budget (16 MiB) per worker is live at a time.
    assert!(
        grew < 256 * MIB && peak < 256 * MIB,
        "{CALLS} oversized results: resident memory grew {} MiB, its peak {} MiB",
        grew / MIB,
        peak / MIB
    );
    for outcome in outcomes {
        let err = match outcome {
            Err(err) => err,
            Ok(report) => panic!(
                "a result of {} pairs of 1 MiB strings was returned",
                report.details.len()
            ),
        };
        assert_eq!(err.limit(), Some(LimitKind::Result), "{err}");
        assert!(err.to_string().contains("aliased-result"), "{err}");
    }
    host.assert_still_serving().await;
}

// ---- calls per connection -------------------------------------------------------

/// An HTTP server on loopback that counts the requests reaching it and
/// answers none until released; with `stream`, it first sends the head of a
/// server-sent event stream whose body stays open until then.
struct HoldingServer {
    url: String,
    arrived: tokio::sync::watch::Receiver<usize>,
    release: tokio::sync::watch::Sender<bool>,
}

async fn holding_server(stream: bool) -> HoldingServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived_tx, arrived) = tokio::sync::watch::channel(0usize);
    let (release, release_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (arrived_tx, mut release_rx) = (arrived_tx.clone(), release_rx.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                arrived_tx.send_modify(|n| *n += 1);
                let answer: &[u8] = if stream {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
                } else {
                    b""
                };
                let _ = socket.write_all(answer).await;
                let _ = release_rx.wait_for(|released| *released).await;
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                if !stream {
                    let _ = socket.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    HoldingServer {
        url,
        arrived,
        release,
    }
}

/// Wait (without a clock) until `runtime` reports `waiting` calls queued on
/// the connection with id `connection_id`.
async fn until_waiting(runtime: &airlock::Runtime, connection_id: &str, waiting: usize) {
    while runtime.connection_load(connection_id).waiting != waiting {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_call_beyond_the_connection_s_limit_waits_for_a_slot() {
    let host = host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        airlock::Limits {
            connection_calls: 2,
            ..test_limits()
        },
    );
    let probe = host.probe();
    let mut server = holding_server(false).await;
    let conn = bearer_connection(&server.url)
        .with_setting("action", "fetch")
        .with_setting("url", format!("{}/hold", server.url));
    let call = || {
        let (runtime, probe, conn) = (host.runtime.clone(), probe.clone(), conn.clone());
        tokio::spawn(async move { runtime.test_connection(&probe, &conn).await })
    };
    // Two calls wait on the upstream, holding both of the connection's slots.
    let held = [call(), call()];
    server.arrived.wait_for(|n| *n == 2).await.unwrap();

    // A third waits for a slot, and so never reaches the upstream meanwhile.
    let third = call();
    until_waiting(&host.runtime, &conn.id, 1).await;
    let load = host.runtime.connection_load(&conn.id);
    assert_eq!((load.running, load.waiting), (2, 1));
    assert_eq!(*server.arrived.borrow(), 2);

    // Another connection has slots of its own.
    let other = airlock::Connection::new("conn-2", "other").with_setting("action", "ok");
    host.runtime.test_connection(&probe, &other).await.unwrap();

    server.release.send(true).unwrap();
    for call in held.into_iter().chain([third]) {
        let report = call.await.unwrap().expect("every call completes in turn");
        assert!(
            report.message.contains("\"status\":200"),
            "{}",
            report.message
        );
    }
    assert_eq!(*server.arrived.borrow(), 3);
    assert_eq!(
        host.runtime.connection_load(&conn.id),
        airlock::runtime::ConnectionLoad::default()
    );
}

#[tokio::test]
async fn a_call_that_waits_out_its_deadline_for_a_slot_says_so() {
    let host = host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        airlock::Limits {
            connection_calls: 1,
            wall_clock: Duration::from_secs(1),
            ..test_limits()
        },
    );
    let openai = host.plugin("openai");
    let server = holding_server(true).await;
    let conn = bearer_connection(&server.url).with_setting("model", "gpt-4o-mini");
    let request = || airlock::runtime::types::ChatRequest {
        model: None,
        messages: vec![airlock::runtime::types::ChatMessage {
            role: airlock::runtime::types::Role::User,
            content: "hi".into(),
        }],
        temperature: None,
        max_tokens: None,
        conversation_id: None,
    };
    // An open stream holds the connection's one slot until it is dropped,
    // however long that is.
    let stream = host
        .runtime
        .chat_stream(&openai, &conn, request())
        .await
        .unwrap();
    let err = host
        .runtime
        .chat_stream(&openai, &conn, request())
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::ConnectionCalls), "{err}");
    let text = err.to_string();
    for needle in [
        "plugin openai@",
        "`test-connection`",
        "1 calls in flight on this connection",
        "waited its whole 1s deadline",
        "Limits::connection_calls",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert_eq!(
        *server.arrived.borrow(),
        1,
        "the waiting call never started"
    );
    drop(stream);
    let again = host.runtime.chat_stream(&openai, &conn, request()).await;
    assert!(again.is_ok(), "the dropped stream's slot is free again");
    server.release.send(true).unwrap();
}

/// An upstream that promises 100 000 bytes, sends 10 and hangs up.
async fn cutting_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789";
            let _ = socket.write_all(head.as_bytes()).await;
            drop(socket);
        }
    });
    origin
}

/// With backtraces switched on in the host's environment, a guest reading a
/// cut body is told what failed in one bounded line: no host frames, no
/// host source paths (the issue measured 64 KB of them per error).
#[tokio::test(flavor = "multi_thread")]
async fn a_cut_upstream_gives_the_guest_a_bounded_error_without_host_internals() {
    let origin = cutting_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let env = [("RUST_BACKTRACE", "full"), ("RUST_LIB_BACKTRACE", "1")];
        let (code, stdout, stderr) =
            tokio::task::block_in_place(|| airlock_in(dir.path(), args, &env));
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    run(&[
        "plugin",
        "install",
        airlock_test_artifacts::PROBE,
        "--approve",
    ]);
    run(&[
        "connection",
        "add",
        "cut",
        "--plugin",
        "probe",
        "--setting",
        "action=raw-body",
        "--setting",
        &format!("base-url={origin}"),
        "--setting",
        &format!("url={origin}/page"),
        "--global",
    ]);
    let out = run(&["call", "cut", "connector.test-connection"]);
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(answer["message"].as_str().unwrap()).unwrap();
    assert_eq!(report["read"], 10, "{report}");
    let error = report["error"].as_str().expect("the read failed");
    assert!(
        !error.is_empty() && error.len() <= 512 && !error.contains('\n'),
        "{} bytes: {error}",
        error.len()
    );
    for internal in [".rs:", "backtrace", "src/", "Caused by"] {
        assert!(!error.contains(internal), "{internal}: {error}");
    }
}
