//! The guest's WASI world is empty: no environment, arguments, files or
//! sockets; stdio goes to the host log; state is per connection (and
//! project: see scoping.rs).

use crate::common::*;

#[tokio::test]
async fn environment_and_arguments_are_empty() {
    // Make sure there is something to leak.
    assert!(std::env::var("PATH").is_ok());
    let host = host();
    let out = host
        .probe_call(
            &host.probe(),
            "http://127.0.0.1:9",
            &[("action", "env"), ("name", "PATH")],
        )
        .await
        .unwrap();
    assert_eq!(out["var"], serde_json::Value::Null, "{out}");
    assert_eq!(out["count"], 0, "{out}");
    assert_eq!(out["args"], 0, "{out}");
}

#[tokio::test]
async fn no_file_can_be_opened() {
    let host = host();
    let out = host
        .probe_call(
            &host.probe(),
            "http://127.0.0.1:9",
            &[("action", "file"), ("path", "/etc/passwd")],
        )
        .await
        .unwrap();
    assert_ne!(out["read"], "ok", "{out}");
    assert_ne!(out["read_dir"], "ok", "{out}");
}

/// stdout and stderr reach the host log, line by line, tagged with the
/// plugin and the connection, and printing does not fail the call.
#[tokio::test]
async fn printing_goes_to_the_host_log_tagged_and_does_not_fail_the_call() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let host = host();
    let out = host
        .probe_call(
            &host.probe(),
            "http://127.0.0.1:9",
            &[("action", "print"), ("text", "hello from the guest")],
        )
        .await
        .unwrap();
    assert_eq!(out["ok"], true);
    let text = logs.text();
    for stream in ["stdout", "stderr"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("probe {stream}: hello from the guest")))
            .unwrap_or_else(|| panic!("no {stream} line in the log:\n{text}"));
        assert!(line.contains("plugin=probe"), "{line}");
        assert!(line.contains("connection="), "{line}");
        assert!(line.contains(&format!("stream=\"{stream}\"")), "{line}");
    }
}

#[tokio::test]
async fn state_is_kept_per_connection_and_bounded() {
    let host = host();
    let probe = host.probe();
    let out = host
        .probe_call(
            &probe,
            "http://127.0.0.1:9",
            &[("action", "state"), ("key", "session"), ("value", "abc")],
        )
        .await
        .unwrap();
    assert_eq!(out["got"], "abc", "{out}");
    let big = "x".repeat(test_limits().hostcall_data_bytes + 1);
    let out = host
        .probe_call(
            &probe,
            "http://127.0.0.1:9",
            &[("action", "state"), ("key", "session"), ("value", &big)],
        )
        .await;
    let text = match out {
        Ok(v) => v.to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("exceeds the limit"),
        "{}",
        &text[..text.len().min(300)]
    );
}
