//! The `airlock` binary, run as an operator would.

use std::process::Command;

fn airlock(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .output()
        .expect("run airlock");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_inspect_prints_the_manifest_and_contract() {
    let (ok, stdout, stderr) = airlock(&[
        "plugin",
        "inspect",
        airlock_test_artifacts::MINIMAL,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["id"], "minimal");
    assert_eq!(doc["api_version"], "0.1");
    assert_eq!(doc["interfaces"], serde_json::json!(["connector"]));
    assert_eq!(doc["sha256"].as_str().unwrap().len(), 64);
    assert!(
        doc["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "base-url")
    );

    let (ok, stdout, _) = airlock(&["plugin", "inspect", airlock_test_artifacts::MINIMAL]);
    assert!(ok);
    assert!(stdout.contains("exports:     connector"), "{stdout}");
    assert!(stdout.contains("egress:"), "{stdout}");
}

#[test]
fn plugin_inspect_refuses_bad_files_with_a_reason() {
    let (ok, _, stderr) = airlock(&["plugin", "inspect", airlock_test_artifacts::SOCKETS]);
    assert!(!ok);
    assert!(stderr.contains("wasi:sockets"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"random bytes, not wasm").unwrap();
    let (ok, _, stderr) = airlock(&["plugin", "inspect", junk.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");

    let (ok, _, stderr) = airlock(&["plugin", "inspect", "/nonexistent/x.wasm"]);
    assert!(!ok);
    assert!(stderr.contains("reading /nonexistent/x.wasm"), "{stderr}");
}
