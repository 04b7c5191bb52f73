//! JavaScript and Python plugins as outside authors make them: `airlock
//! plugin new --lang js|python --kind tickets`, the one documented build
//! (`npm run build`: jco componentize; `python3 build.py`: componentize-py;
//! both then `airlock plugin pack`) with the tools the build installs from
//! npm and PyPI at the versions the template pins, the project's own test
//! against its loopback stand-in, and the component in a real host against
//! a wiremock service: `connector.test-connection` and `tickets.create`
//! with the credential injected by the host and every request audited.
//!
//! What the registries served is kept under `target/authors/` (npm's
//! cache; the wheels requirements.txt names, since pip's own HTTP cache
//! does not keep them behind every index), so a repeated run installs the
//! same tools without downloading them. Each step prints how long it took.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use airlock::audit::{AuditFilter, DecisionKind};
use airlock::service::{AuthInput, NewConnection, Scope};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "CANARY-js-py-author-token-5678";

/// One build at a time: each takes both cores for a while, and the times
/// printed should be the build's own.
static BUILDS: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Kept between runs: the package managers' caches.
fn cache(name: &str) -> PathBuf {
    repo().join("target/authors").join(name)
}

/// Run `program args` in `dir` with `env` (and `AIRLOCK` naming this
/// build's binary); its output and how long it took.
pub fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("AIRLOCK", env!("CARGO_BIN_EXE_airlock"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{program} {}` in {} failed:\n{text}",
        args.join(" "),
        dir.display()
    );
    eprintln!(
        "`{program} {}` took {:.1} s",
        args.join(" "),
        took.as_secs_f64()
    );
    (text, took)
}

/// `airlock plugin new NAME --kind tickets --lang LANG` in `parent`.
fn new_project(parent: &Path, name: &str, lang: &str, next: &str) -> PathBuf {
    let args = ["plugin", "new", name, "--kind", "tickets", "--lang", lang];
    let (out, _) = run(parent, env!("CARGO_BIN_EXE_airlock"), &args, &[]);
    assert!(out.contains(next), "the next steps name `{next}`: {out}");
    let project = parent.join(name);
    assert!(project.join("wit/worlds.wit").exists());
    assert!(project.join("wit/deps/http.wit").exists());
    let manifest = std::fs::read_to_string(project.join("airlock.toml")).unwrap();
    assert!(
        manifest.contains(&format!("id = \"{name}\""))
            && manifest.contains("category = \"tickets\""),
        "{manifest}"
    );
    project
}

#[test]
fn a_javascript_plugin_builds_with_npm_and_runs_in_the_host() {
    let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let parent = tempfile::tempdir().unwrap();
    let project = new_project(parent.path(), "js-desk", "js", "npm run build");
    let npm_cache = cache("npm-cache");
    let env = [
        ("npm_config_cache", npm_cache.as_path()),
        ("npm_config_prefer_offline", Path::new("true")),
        ("npm_config_update_notifier", Path::new("false")),
    ];
    let (_, build) = run(&project, "npm", &["run", "build"], &env);
    let (tests, test) = run(&project, "npm", &["test"], &env);
    assert!(
        tests.contains("# fail 0") && tests.contains("# pass 4"),
        "{tests}"
    );
    let wasm = project.join("dist/js-desk.wasm");
    let size = std::fs::metadata(&wasm).unwrap().len();
    eprintln!(
        "javascript: build {:.1} s (npm ci, jco componentize, airlock plugin pack), npm test {:.1} s, {size} bytes",
        build.as_secs_f64(),
        test.as_secs_f64()
    );
    in_the_host(&wasm, "js-desk");
}

#[test]
fn a_python_plugin_builds_with_componentize_py_and_runs_in_the_host() {
    let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let parent = tempfile::tempdir().unwrap();
    let project = new_project(parent.path(), "py-desk", "python", "python3 build.py");
    // The first run installs from PyPI, then keeps the wheels; later runs
    // install the same files from there, offline.
    let wheels = cache("pip-wheels");
    let requirements = std::fs::read_to_string(project.join("requirements.txt")).unwrap();
    let stamp = wheels.join("requirements.txt");
    let kept = std::fs::read_to_string(&stamp).is_ok_and(|r| r == requirements);
    let mut env = vec![("PIP_DISABLE_PIP_VERSION_CHECK", Path::new("1"))];
    if kept {
        env.extend([
            ("PIP_NO_INDEX", Path::new("1")),
            ("PIP_FIND_LINKS", wheels.as_path()),
        ]);
    }
    let (_, build) = run(&project, "python3", &["build.py"], &env);
    if !kept {
        let mut args: Vec<&str> = "-m pip download -r requirements.txt -d"
            .split(' ')
            .collect();
        args.push(wheels.to_str().unwrap());
        run(&project, "python3", &args, &env);
        std::fs::write(&stamp, &requirements).unwrap();
    }
    let (tests, test) = run(&project, "python3", &["-m", "unittest", "-v"], &env);
    assert!(
        tests.contains("Ran 3 tests") && tests.contains("\nOK"),
        "{tests}"
    );
    let wasm = project.join("dist/py-desk.wasm");
    let size = std::fs::metadata(&wasm).unwrap().len();
    eprintln!(
        "python: build {:.1} s (venv + pip, componentize-py, airlock plugin pack), unittest {:.1} s, {size} bytes",
        build.as_secs_f64(),
        test.as_secs_f64()
    );
    in_the_host(&wasm, "py-desk");
}

/// Install `wasm` in a real host and run `connector.test-connection` and
/// `tickets.create` against a wiremock service that answers only requests
/// carrying the bearer token; every request is one audited row that used
/// the credential.
fn in_the_host(wasm: &Path, id: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let upstream = MockServer::start().await;
        let ticket = json!({"id": "7", "number": "T-7", "title": "Disk full", "state": "new", "priority": "p1"});
        for (verb, at, answer) in [
            ("GET", "/api/me", json!({"name": "Ada"})),
            ("POST", "/api/tickets", ticket),
        ] {
            Mock::given(method(verb))
                .and(path(at))
                .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
                .respond_with(ResponseTemplate::new(200).set_body_json(answer))
                .expect(1)
                .mount(&upstream)
                .await;
        }
        let dir = tempfile::tempdir().unwrap();
        let airlock = crate::service::open(dir.path());
        let started = Instant::now();
        crate::service::install(&airlock, wasm.to_str().unwrap());
        eprintln!(
            "{id}: installed (compiled) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        airlock
            .add_connection(NewConnection {
                name: "desk".into(),
                plugin_id: id.into(),
                settings: [("base-url".to_string(), upstream.uri())].into(),
                auth: AuthInput::Bearer {
                    token: SecretString::from(TOKEN),
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
                json!({"title": "Disk full", "description": "since 9:00", "kind": null, "priority": "p1", "fields": null}),
                None,
            )
            .await
            .unwrap();
        assert_eq!(created["number"], "T-7");
        assert_eq!(created["priority"], "p1");

        // What the service saw: the host's token, the plugin's JSON body.
        let seen = upstream.received_requests().await.unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
        assert_eq!(
            body,
            json!({"title": "Disk full", "description": "since 9:00", "priority": "p1"})
        );
        let rows = airlock
            .list_audit(&AuditFilter {
                plugin_id: Some(id.into()),
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(rows.len(), 2, "one row per request: {rows:?}");
        assert!(
            rows.iter()
                .all(|r| r.credential_used && r.decision == DecisionKind::Allowed),
            "{rows:?}"
        );
        let mut methods: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
        methods.sort();
        assert_eq!(methods, ["GET", "POST"]);
    });
}
