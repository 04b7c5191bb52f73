//! The README's API walk-through, pasted as it is into bash against a real
//! `airlock serve` and a loopback ServiceNow instance: if the README's
//! commands stop working, this fails.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::api_scenario::{USER, servicenow};
use crate::common::CANARY;

const README: &str = include_str!("../../../README.md");

/// The fenced `sh` blocks after `marker`, in order.
fn sh_blocks_after(marker: &str) -> Vec<String> {
    let start = README
        .find(marker)
        .expect("the walk-through is in the README");
    let mut blocks = Vec::new();
    let mut rest = &README[start..];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed block");
        blocks.push(body[..close].to_string());
        rest = &body[close + 4..];
        if blocks.len() == 2 {
            break;
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_api_walk_through_runs_as_written() {
    let blocks = sh_blocks_after("A walk through with the ServiceNow plugin");
    let [serve_block, walk] = &blocks[..] else {
        panic!("expected the serve command and the walk-through: {blocks:?}")
    };
    assert!(
        serve_block.contains("AIRLOCK_EGRESS_ALLOW_PRIVATE=127.0.0.0/8")
            && serve_block.contains("-- serve"),
        "the README says how a loopback upstream is allowed: {serve_block}"
    );
    let instance = servicenow().await;

    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("AIRLOCK_DATA_DIR", data.path())
        .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (addr, token) = tokio::task::block_in_place(|| first_start(&mut server));

    // Run where the README says: the repository root's target/ is where
    // the plugins are built (a link, so the script's files land elsewhere).
    let cwd = tempfile::tempdir().unwrap();
    let repo_target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::os::unix::fs::symlink(repo_target, cwd.path().join("target")).unwrap();
    let script = walk.replace("http://127.0.0.1:7300", &format!("http://{addr}"));
    let out = tokio::task::block_in_place(|| {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(cwd.path())
            .env("TOKEN", &token)
            .env("SN", instance.uri())
            .env("SN_USER", USER)
            .env("SN_PASSWORD", CANARY)
            .output()
            .unwrap()
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walk-through failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("INC0010003"),
        "the ticket was created: {stdout}"
    );
    assert!(
        stdout.contains("\"problem\":null"),
        "the chain verifies: {stdout}"
    );
    assert!(!stdout.contains(CANARY), "no answer carries the password");
    let created = instance
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "POST")
        .expect("the ticket reached the instance");
    let body: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(body["category"], "hardware", "{body}");
}

/// The address and the first admin token `airlock serve` prints.
fn first_start(server: &mut std::process::Child) -> (String, String) {
    let lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut addr, mut token) = (None, None);
    while addr.is_none() || token.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("airlock serve prints its address and a first token");
        if let Some(a) = line.split("listening on http://").nth(1) {
            addr = Some(a.trim().to_string());
        }
        if line.trim().starts_with("alk_") {
            token = Some(line.trim().to_string());
        }
    }
    (addr.unwrap(), token.unwrap())
}
