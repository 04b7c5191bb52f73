//! A Rust plugin as an outside author makes it: `cargo package` of the
//! SDK (the form a registry would serve), `airlock plugin new` against the
//! packaged crate and against the copy it vendors, the documented build
//! command, the project's own smoke tests, and the component in a real host
//! against a loopback service with the credential injected and audited.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::audit::AuditFilter;
use airlock::service::{AuthInput, NewConnection, Scope};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where these builds keep their output between runs (outside the
/// workspace's own target directory, which the running `cargo test` holds).
fn target(name: &str) -> PathBuf {
    repo().join("target/authors").join(name)
}

/// [`crate::authors::run`]'s output.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    crate::authors::run(dir, program, args, env).0
}

/// `cargo package -p airlock-sdk`, verified (the packaged crate builds on
/// its own); answers the unpacked crate's directory.
fn packaged_sdk() -> PathBuf {
    let dir = target("package");
    let target_dir = dir.to_str().unwrap().to_string();
    let listed = run(
        &repo(),
        "cargo",
        &["package", "-p", "airlock-sdk", "--allow-dirty", "--list"],
        &[],
    );
    for needed in [
        "src/lib.rs",
        "wit/worlds.wit",
        "wit/deps/http.wit",
        "README.md",
    ] {
        assert!(
            listed.lines().any(|l| l == needed),
            "the packaged SDK lacks {needed}:\n{listed}"
        );
    }
    run(
        &repo(),
        "cargo",
        &[
            "package",
            "-p",
            "airlock-sdk",
            "--allow-dirty",
            "--target-dir",
            &target_dir,
        ],
        &[],
    );
    let unpacked = dir
        .join("package")
        .join(format!("airlock-sdk-{}", env!("CARGO_PKG_VERSION")));
    assert!(
        unpacked.join("Cargo.toml").exists(),
        "{}",
        unpacked.display()
    );
    unpacked
}

/// `airlock plugin new` into `parent`; answers the project directory.
fn new_project(parent: &Path, name: &str, kind: &str, sdk: Option<&Path>) -> PathBuf {
    let mut args = vec!["plugin", "new", name, "--kind", kind, "--lang", "rust"];
    let sdk = sdk.map(|p| p.to_str().unwrap().to_string());
    if let Some(sdk) = &sdk {
        args.extend(["--sdk-path", sdk.as_str()]);
    }
    let out = run(parent, env!("CARGO_BIN_EXE_airlock"), &args, &[]);
    assert!(
        out.contains("cargo build --release --target wasm32-wasip2"),
        "{out}"
    );
    parent.join(name)
}

/// The documented build, then the project's own tests; answers the
/// component.
fn build_and_smoke(project: &Path, crate_name: &str) -> PathBuf {
    let target_dir = target("rust");
    let env = [("CARGO_TARGET_DIR", target_dir.as_path())];
    run(
        project,
        "cargo",
        &["build", "--release", "--target", "wasm32-wasip2"],
        &env,
    );
    let airlock = PathBuf::from(env!("CARGO_BIN_EXE_airlock"));
    let tests = run(
        project,
        "cargo",
        &["test", "-p", "smoke"],
        &[
            ("CARGO_TARGET_DIR", target_dir.as_path()),
            ("AIRLOCK", airlock.as_path()),
        ],
    );
    assert!(
        !tests.contains("FAILED") && tests.contains("test result: ok. 1 passed"),
        "{tests}"
    );
    target_dir.join(format!("wasm32-wasip2/release/{crate_name}.wasm"))
}

#[test]
fn a_plugin_built_outside_the_repository_against_the_packaged_sdk_runs_in_the_host() {
    let sdk = packaged_sdk();
    let parent = tempfile::tempdir().unwrap();
    let project = new_project(parent.path(), "acme-desk", "tickets", Some(&sdk));
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("path = {:?}", sdk.display().to_string())),
        "{manifest}"
    );
    let wasm = build_and_smoke(&project, "acme_desk");

    // In a real host: the credential injected and every request audited.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(in_the_host(&wasm));
}

async fn in_the_host(wasm: &Path) {
    let upstream = MockServer::start().await;
    let ticket =
        json!({"id": "7", "number": "T-7", "title": "Disk full", "state": "new", "priority": "p1"});
    for (verb, at) in [("GET", "/api/me"), ("POST", "/api/tickets")] {
        let answer = if at == "/api/me" {
            json!({"name": "Ada"})
        } else {
            ticket.clone()
        };
        Mock::given(method(verb))
            .and(path(at))
            .and(header("authorization", "Bearer CANARY-author-token-1234"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&upstream)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    crate::service::install(&airlock, wasm.to_str().unwrap());
    airlock
        .add_connection(NewConnection {
            name: "desk".into(),
            plugin_id: "acme-desk".into(),
            settings: [("base-url".to_string(), upstream.uri())].into(),
            auth: AuthInput::Bearer {
                token: SecretString::from("CANARY-author-token-1234"),
            },
            scope: Scope::Global,
        })
        .unwrap();
    let report = airlock
        .call("desk", "connector.test-connection", json!({}), None)
        .await
        .unwrap();
    assert_eq!(report["account"], "Ada");
    let created = airlock
        .call(
            "desk",
            "tickets.create",
            json!({"title": "Disk full", "description": null, "kind": null, "priority": "p1", "fields": null}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(created["number"], "T-7");
    assert_eq!(created["priority"], "p1");
    let rows = airlock
        .list_audit(&AuditFilter {
            plugin_id: Some("acme-desk".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 2, "one row per request: {rows:?}");
    assert!(rows.iter().all(|r| r.credential_used));
}

#[test]
fn a_new_project_with_the_vendored_sdk_builds_as_small_as_the_repositorys_own() {
    let parent = tempfile::tempdir().unwrap();
    let project = new_project(parent.path(), "tiny-probe", "connector", None);
    assert!(project.join("vendor/airlock-sdk/wit/worlds.wit").exists());
    let wasm = build_and_smoke(&project, "tiny_probe");
    // The template's connector does what tests/guests/minimal does, built
    // with the same size profile: the sizes must be close.
    let ours = std::fs::metadata(&wasm).unwrap().len() as f64;
    let repos = std::fs::metadata(airlock_test_artifacts::MINIMAL)
        .unwrap()
        .len() as f64;
    eprintln!("template connector {ours} bytes, tests/guests/minimal {repos} bytes");
    assert!(
        ours <= repos * 1.15,
        "the template builds {ours} bytes against minimal's {repos}: is the size profile there?"
    );
}

#[test]
fn plugin_new_refuses_bad_names_and_an_existing_directory() {
    let parent = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_airlock");
    let bad = Command::new(bin)
        .args(["plugin", "new", "Acme_Desk"])
        .current_dir(parent.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot be a plugin id"));
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/keep.txt"), "mine").unwrap();
    let taken = Command::new(bin)
        .args(["plugin", "new", "taken"])
        .current_dir(parent.path())
        .output()
        .unwrap();
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("is not empty"));
    assert_eq!(
        std::fs::read_to_string(parent.path().join("taken/keep.txt")).unwrap(),
        "mine",
        "nothing overwritten"
    );
    let wrong = Command::new(bin)
        .args([
            "plugin",
            "new",
            "x-py",
            "--lang",
            "python",
            "--sdk-path",
            ".",
        ])
        .current_dir(parent.path())
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
}
