//! `airlock plugin pack`: a component from any toolchain plus its manifest
//! becomes a plugin that installs and runs; a manifest that does not fit the
//! component's exports, a second manifest, and files that are no component
//! are refused.

use std::path::{Path, PathBuf};

use airlock::LoadError;
use airlock::manifest::{MANIFEST_SECTION, Manifest};
use airlock::runtime::PackError;

use crate::common::*;

const MANIFEST: &str = r#"
id = "packed"
name = "Packed"
version = "1.2.3"
api-version = "0.1"
category = "connector"
description = "A component built without a manifest, packed with this one."

[auth]
kinds = ["none"]
"#;

/// `text` written to `name` in `dir`.
fn file(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn pack(dir: &Path, component: &str, manifest: &Path, out: &Path) -> (i32, String, String) {
    airlock_in(
        dir,
        &[
            "plugin",
            "pack",
            component,
            "--manifest",
            s(manifest),
            "-o",
            s(out),
        ],
        &[],
    )
}

#[test]
fn a_component_built_without_a_manifest_is_packed_installed_and_called() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = file(d, "airlock.toml", MANIFEST);
    let out = d.join("packed.wasm");
    let (code, stdout, stderr) = pack(d, airlock_test_artifacts::NO_MANIFEST, &manifest, &out);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("packed packed 1.2.3 (connector; exports connector) into "),
        "{stdout}"
    );
    let wasm = std::fs::read(&out).unwrap();
    assert_eq!(Manifest::from_wasm(&wasm).unwrap().id, "packed");

    // inspect shows the manifest and the exports of the packed file.
    let (code, stdout, stderr) = airlock_in(d, &["plugin", "inspect", s(&out)], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Packed (packed) 1.2.3"), "{stdout}");
    assert!(stdout.contains("exports:     connector"), "{stdout}");
    assert!(!stdout.contains("WARNING"), "{stdout}");

    // It installs, connects and runs like any plugin.
    for args in [
        &["plugin", "install", s(&out), "--approve"][..],
        &["connection", "add", "p", "--plugin", "packed", "--global"],
    ] {
        let (code, _, stderr) = airlock_in(d, args, &[]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    let (code, stdout, stderr) = airlock_in(d, &["call", "p", "connector.test-connection"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(r#"{\"ok\":true}"#), "{stdout}");
}

#[test]
fn a_category_the_exports_do_not_serve_is_refused_at_pack_and_install() {
    let runtime = &host().runtime;
    let component = std::fs::read(airlock_test_artifacts::NO_MANIFEST).unwrap();
    let tickets = MANIFEST.replace("category = \"connector\"", "category = \"tickets\"");
    let err = runtime.pack(&component, &tickets, false).unwrap_err();
    let PackError::Category(mismatch) = &err else {
        panic!("expected a category mismatch, got {err}");
    };
    assert_eq!(mismatch.missing, airlock::Interface::Tickets);
    assert!(
        err.to_string()
            .contains("category `tickets`, which needs the `airlock:plugin/tickets@0.1.0` export"),
        "{err}"
    );

    // The same file made by hand: inspect warns, install refuses.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let forged = file(d, "forged.wasm", with_manifest(&component, &tickets));
    let (code, stdout, _) = airlock_in(d, &["plugin", "inspect", s(&forged)], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("WARNING:     the manifest says category `tickets`"),
        "{stdout}"
    );
    let (_, json, _) = airlock_in(d, &["plugin", "inspect", s(&forged), "--json"], &[]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        doc["category_problem"]
            .as_str()
            .is_some_and(|p| p.contains("tickets")),
        "{doc}"
    );
    assert_eq!(doc["interfaces"], serde_json::json!(["connector"]));
    let (code, _, stderr) = airlock_in(d, &["plugin", "install", s(&forged), "--approve"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("needs the `airlock:plugin/tickets@0.1.0` export"),
        "{stderr}"
    );
    let airlock = crate::service::open(&d.join("service"));
    let err = airlock
        .plan_install(std::fs::read(&forged).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            airlock::ServiceError::Load(LoadError::Category(ref m))
                if m.missing == airlock::Interface::Tickets
        ),
        "{err}"
    );
}

#[test]
fn a_second_manifest_is_refused_unless_replacing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = file(d, "airlock.toml", MANIFEST);
    let out = d.join("again.wasm");
    // minimal was built with the SDK's export!, which embeds a manifest.
    let (code, _, stderr) = pack(d, airlock_test_artifacts::MINIMAL, &manifest, &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already carries a manifest"), "{stderr}");
    assert!(stderr.contains("--replace"), "{stderr}");
    assert!(!out.exists());

    let (code, stdout, stderr) = airlock_in(
        d,
        &[
            "plugin",
            "pack",
            airlock_test_artifacts::MINIMAL,
            "--manifest",
            s(&manifest),
            "-o",
            s(&out),
            "--replace",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["replaced"], 1, "{doc}");
    assert_eq!(doc["id"], "packed");
    // Exactly one manifest remains, the new one (the loader refuses two).
    let wasm = std::fs::read(&out).unwrap();
    assert_eq!(Manifest::from_wasm(&wasm).unwrap().id, "packed");
    let sections = wasmparser::Parser::new(0)
        .parse_all(&wasm)
        .filter(|p| {
            matches!(p, Ok(wasmparser::Payload::CustomSection(r)) if r.name() == MANIFEST_SECTION)
        })
        .count();
    assert_eq!(sections, 1);

    // Packing the packed file again is refused the same way.
    let runtime = &host().runtime;
    let err = runtime.pack(&wasm, MANIFEST, false).unwrap_err();
    assert!(
        matches!(err, PackError::AlreadyPacked { count: 1 }),
        "{err}"
    );

    // A signed file is never repacked (it would void the signature), even
    // when replacing: sign after packing.
    let mut signed = std::fs::read(airlock_test_artifacts::NO_MANIFEST).unwrap();
    let name = airlock::signing::SIGNATURE_SECTION;
    let body = [
        &[name.len() as u8][..],
        name.as_bytes(),
        b"-----BEGIN SSH SIGNATURE-----",
    ]
    .concat();
    signed.push(0);
    signed.push(body.len() as u8);
    signed.extend_from_slice(&body);
    let err = runtime.pack(&signed, MANIFEST, true).unwrap_err();
    assert!(matches!(err, PackError::Signed), "{err}");
    assert!(err.to_string().contains("then sign"), "{err}");
}

#[test]
fn files_that_are_no_component_and_invalid_manifests_are_refused() {
    let runtime = &host().runtime;
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let err = runtime.pack(&core, MANIFEST, false).unwrap_err();
    assert!(
        matches!(err, PackError::Load(LoadError::CoreModule)),
        "{err}"
    );
    assert!(err.to_string().contains("not a component"), "{err}");
    let err = runtime
        .pack(b"not wasm at all", MANIFEST, false)
        .unwrap_err();
    assert!(matches!(err, PackError::Load(LoadError::NotWasm)), "{err}");

    let component = std::fs::read(airlock_test_artifacts::NO_MANIFEST).unwrap();
    let err = runtime
        .pack(&component, &format!("{MANIFEST}colour = \"red\"\n"), false)
        .unwrap_err();
    assert!(matches!(err, PackError::Manifest(_)), "{err}");
    assert!(err.to_string().contains("colour"), "{err}");
    // A component with an import the host does not provide: what install
    // would say.
    let foreign = crate::wasi_deny::component_importing("acme:evil@1.0.0", "backdoor");
    let bare = airlock::manifest::embed::strip_manifests(&foreign).unwrap();
    let err = runtime.pack(&bare, MANIFEST, false).unwrap_err();
    assert!(
        matches!(err, PackError::Load(LoadError::ForbiddenImport { .. })),
        "{err}"
    );

    // Through the CLI: a reason, exit 1, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = file(d, "airlock.toml", MANIFEST);
    let junk = file(d, "junk.wasm", b"random bytes");
    let out = d.join("out.wasm");
    let (code, _, stderr) = pack(d, s(&junk), &manifest, &out);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");
    assert!(!out.exists());
}
