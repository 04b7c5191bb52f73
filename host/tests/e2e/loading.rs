//! Bad files are refused at load with a message naming the problem; good
//! ones are compiled once and then loaded from the cache.

use airlock::manifest::ManifestError;
use airlock::{LoadError, Runtime, RuntimeConfig};

use crate::common::*;

fn refuse(wasm: &[u8]) -> LoadError {
    host().runtime.load(wasm).expect_err("must be refused")
}

#[tokio::test]
async fn malformed_files_are_refused() {
    let good = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();

    let truncated = &good[..good.len() / 2];
    let err = refuse(truncated);
    assert!(
        matches!(err, LoadError::Invalid(_) | LoadError::Manifest(_)),
        "{err}"
    );

    let err = refuse(b"definitely not wasm, just some random bytes");
    assert!(matches!(err, LoadError::NotWasm), "{err}");
    assert!(err.to_string().contains("not a WebAssembly file"));

    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let err = refuse(&core);
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"));

    host().assert_still_serving().await;
}

#[test]
fn component_without_manifest_is_refused() {
    let wasm = std::fs::read(airlock_test_artifacts::NO_MANIFEST).unwrap();
    let err = refuse(&wasm);
    assert!(
        matches!(err, LoadError::Manifest(ManifestError::Missing)),
        "{err}"
    );
    assert!(err.to_string().contains("airlock-manifest"));
}

#[test]
fn component_importing_sockets_is_refused() {
    let wasm = std::fs::read(airlock_test_artifacts::SOCKETS).unwrap();
    let err = refuse(&wasm);
    match &err {
        LoadError::ForbiddenImport { import } => {
            assert!(import.starts_with("wasi:sockets/"), "{import}")
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn invalid_manifests_are_refused() {
    let wasm = std::fs::read(airlock_test_artifacts::BAD_MANIFEST).unwrap();
    let err = refuse(&wasm);
    assert!(err.to_string().contains("colour"), "{err}");

    let wasm = std::fs::read(airlock_test_artifacts::FUTURE_API).unwrap();
    let err = refuse(&wasm);
    assert!(
        matches!(
            err,
            LoadError::Manifest(ManifestError::UnsupportedApi { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("9.0"));
}

#[test]
fn manifest_and_exports_are_read_without_running_anything() {
    let plugin = host().probe();
    assert_eq!(plugin.id(), "probe");
    assert!(plugin.exports(airlock::Interface::Connector));
    assert!(!plugin.exports(airlock::Interface::Chat));
    assert_eq!(plugin.sha256().len(), 64);
}

#[test]
fn a_second_start_loads_from_the_cache_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            max_concurrent_calls: 4,
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let wasm = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let first = start().load(&wasm).unwrap();
    assert_eq!(
        first.cache_outcome(),
        airlock::runtime::CacheOutcome::Compiled
    );
    let second = start().load(&wasm).unwrap();
    assert_eq!(
        second.cache_outcome(),
        airlock::runtime::CacheOutcome::Cached
    );

    // A corrupted cache entry is ignored and rebuilt, never trusted.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::write(&path, b"garbage").unwrap();
    }
    let third = start().load(&wasm).unwrap();
    assert_eq!(
        third.cache_outcome(),
        airlock::runtime::CacheOutcome::Compiled
    );
}

#[tokio::test]
async fn calling_an_interface_the_plugin_does_not_export_is_a_clear_error() {
    let host = host();
    let err = host
        .runtime
        .list_models(&host.minimal(), &bearer_connection("http://127.0.0.1:9"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not export the `chat` interface"),
        "{err}"
    );
}
