//! The `airlock` binary, run as an operator would.

use std::process::Command;

use crate::common::airlock_in;

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
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.wasm");
    std::fs::write(
        &foreign,
        crate::wasi_deny::component_importing("acme:evil@1.0.0", "backdoor"),
    )
    .unwrap();
    let (ok, _, stderr) = airlock(&["plugin", "inspect", foreign.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("acme:evil/backdoor"), "{stderr}");

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"random bytes, not wasm").unwrap();
    let (ok, _, stderr) = airlock(&["plugin", "inspect", junk.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");

    let (ok, _, stderr) = airlock(&["plugin", "inspect", "/nonexistent/x.wasm"]);
    assert!(!ok);
    assert!(stderr.contains("reading /nonexistent/x.wasm"), "{stderr}");
}

fn json_of(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = airlock_in(dir, args, &[]);
    assert_eq!(code, 0, "airlock {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {out}"))
}

#[test]
fn results_are_json_on_request_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let installed = json_of(
        d,
        &[
            "plugin",
            "install",
            airlock_test_artifacts::PROBE,
            "--approve",
            "--json",
        ],
    );
    assert_eq!(installed["id"], "probe");
    assert_eq!(installed["installed"], true);
    let added = json_of(
        d,
        &[
            "connection",
            "add",
            "p",
            "--plugin",
            "probe",
            "--setting",
            "action=ok",
            "--global",
            "--test",
            "--json",
        ],
    );
    assert_eq!(added["name"], "p");
    assert_eq!(added["test"]["ok"], true, "{added}");
    assert_eq!(
        json_of(d, &["connection", "test", "p", "--json"])["ok"],
        true
    );
    assert_eq!(
        json_of(d, &["keys", "rotate", "--json"])["active_version"],
        2
    );
    let verified = json_of(d, &["audit", "verify", "--json"]);
    assert!(verified["problem"].is_null(), "{verified}");

    for args in [
        &["call", "p", "tickets.nope"][..],
        &["call", "p", "tickets.get", "--input", "{not json"],
        &["connection", "add", "q", "--plugin", "probe"],
    ] {
        let (code, _, err) = airlock_in(d, args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    // A failure that is not the command line's is 1.
    let (code, _, err) = airlock_in(d, &["connection", "test", "nope"], &[]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn quiet_commands_print_only_their_result_and_logs_have_no_colour_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, err) = airlock_in(d, &["connection", "list", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "[]");
    assert!(err.contains("data directory:"), "{err}");
    let (code, _, err) = airlock_in(d, &["--quiet", "connection", "list"], &[]);
    assert_eq!((code, err.as_str()), (0, ""), "nothing but the result");
    let (code, _, err) = airlock_in(d, &["-q", "keys", "list"], &[("AIRLOCK_LOG", "debug")]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.is_empty(), "debug logs are written");
    assert!(
        !err.contains('\u{1b}'),
        "no escape codes into a pipe: {err:?}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = airlock_in(d, &["completions", shell], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("set-secret") && out.contains("--secret-env"),
            "{shell}"
        );
    }
    let (code, out, _) = airlock_in(d, &["man"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie") || out.contains(".TH airlock"),
        "{out}"
    );
    let pages = d.join("man");
    let (code, _, err) = airlock_in(d, &["man", "--dir", pages.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let page = std::fs::read_to_string(pages.join("airlock-connection-set-secret.1")).unwrap();
    assert!(page.contains("secret"), "{page}");
}

#[test]
fn tables_name_connections_and_errors_say_the_command_that_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json_of(
        d,
        &[
            "plugin",
            "install",
            airlock_test_artifacts::PROBE,
            "--approve",
            "--json",
        ],
    );
    json_of(
        d,
        &[
            "connection",
            "add",
            "p",
            "--plugin",
            "probe",
            "--setting",
            "action=fetch",
            "--setting",
            "url=http://127.0.0.1:9/x",
            "--global",
            "--json",
        ],
    );
    let (_, _, _) = airlock_in(d, &["connection", "test", "p"], &[]);
    let (code, out, err) = airlock_in(d, &["-q", "audit", "list"], &[]);
    assert_eq!(code, 0, "{err}");
    let row = out.lines().nth(1).expect("one request row");
    assert!(row.split_whitespace().any(|cell| cell == "p"), "{out}");
    let (_, show, _) = airlock_in(d, &["-q", "connection", "show", "p"], &[]);
    assert!(show.contains("auth:    none"), "{show}");

    airlock_in(d, &["connection", "pause", "p"], &[]);
    let (code, _, err) = airlock_in(d, &["-q", "connection", "test", "p"], &[]);
    assert_eq!(code, 1);
    let mut lines = err.lines();
    let error = lines.next().unwrap();
    assert!(error.contains("connection `p` is paused"), "{err}");
    assert!(
        !error.contains("airlock "),
        "the message is the library's: {err}"
    );
    assert_eq!(
        lines.next(),
        Some("hint: airlock connection resume p"),
        "{err}"
    );
}
