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
fn components_importing_sockets_and_files_load() {
    // std::net and std::fs: wasi:sockets and wasi:filesystem, linked to
    // implementations that refuse every operation (see wasi_deny.rs).
    let plugin = host().load(airlock_test_artifacts::SOCKETS);
    assert_eq!(plugin.id(), "sockets");
}

#[test]
fn a_component_importing_an_interface_the_host_does_not_provide_is_refused() {
    for (package, interface, import) in [
        ("acme:evil@1.0.0", "backdoor", "acme:evil/backdoor@1.0.0"),
        ("wasi:keyvalue@0.2.0", "store", "wasi:keyvalue/store@0.2.0"),
        // Serving requests is the host's job, never a plugin's import.
        (
            "wasi:http@0.2.0",
            "incoming-handler",
            "wasi:http/incoming-handler@0.2.0",
        ),
    ] {
        let wasm = crate::wasi_deny::component_importing(package, interface);
        let err = refuse(&wasm);
        match &err {
            LoadError::ForbiddenImport { import: got } => assert_eq!(got, import),
            other => panic!("expected a forbidden import, got {other}"),
        }
        assert!(
            err.to_string().contains("airlock does not provide"),
            "{err}"
        );
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

/// The cache file a runtime wrote for `wasm` (named by its SHA-256).
fn cache_file_of(dir: &std::path::Path, wasm: &[u8]) -> std::path::PathBuf {
    use sha2::Digest as _;
    let sha = hex::encode(sha2::Sha256::digest(wasm));
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&sha))
        .unwrap_or_else(|| panic!("no cache file for {sha}"))
}

#[tokio::test]
async fn a_compiled_artifact_that_was_not_written_for_this_plugin_is_never_run() {
    use airlock::runtime::{ArtifactKey, CacheOutcome};
    let dir = tempfile::tempdir().unwrap();
    let start = |key: [u8; 32]| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            artifact_key: Some(ArtifactKey::from_bytes(key)),
            max_concurrent_calls: 4,
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let minimal = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let probe = std::fs::read(airlock_test_artifacts::PROBE).unwrap();
    let host_key = [1; 32];
    assert_eq!(
        start(host_key).load(&minimal).unwrap().cache_outcome(),
        CacheOutcome::Compiled
    );
    assert_eq!(
        start(host_key).load(&probe).unwrap().cache_outcome(),
        CacheOutcome::Compiled
    );
    assert_eq!(
        start(host_key).load(&minimal).unwrap().cache_outcome(),
        CacheOutcome::Cached
    );

    // Another plugin's valid artifact (with its own valid tag) copied over
    // this plugin's entry: refused, recompiled from the pinned .wasm.
    let minimal_file = cache_file_of(dir.path(), &minimal);
    std::fs::copy(cache_file_of(dir.path(), &probe), &minimal_file).unwrap();
    let runtime = start(host_key);
    let reloaded = runtime.load(&minimal).unwrap();
    assert_eq!(reloaded.cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(reloaded.id(), "minimal");
    // What runs is minimal's code: it needs a base-url, which probe does not.
    let err = runtime
        .test_connection(&reloaded, &airlock::Connection::new("c1", "m"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("base-url"), "{err}");

    // Truncated to less than a tag, or cut inside the artifact: recompiled.
    for keep in [
        10,
        std::fs::metadata(&minimal_file).unwrap().len() as usize / 2,
    ] {
        let bytes = std::fs::read(&minimal_file).unwrap();
        std::fs::write(&minimal_file, &bytes[..keep]).unwrap();
        let again = start(host_key).load(&minimal).unwrap();
        assert_eq!(
            again.cache_outcome(),
            CacheOutcome::Compiled,
            "kept {keep} bytes"
        );
    }

    // An artifact written under another key (another host, or someone who
    // can write the directory but does not hold the key): recompiled.
    assert_eq!(
        start([2; 32]).load(&minimal).unwrap().cache_outcome(),
        CacheOutcome::Compiled
    );
    assert_eq!(
        start(host_key).load(&minimal).unwrap().cache_outcome(),
        CacheOutcome::Compiled
    );
    assert_eq!(
        start(host_key).load(&minimal).unwrap().cache_outcome(),
        CacheOutcome::Cached
    );
}

#[test]
fn a_reopened_data_directory_loads_its_plugins_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    crate::service::install(&airlock, airlock_test_artifacts::MINIMAL);
    drop(airlock);
    // The artifact key is derived from the master key: stable across starts.
    let reopened = crate::service::open(dir.path());
    let plugin = reopened.loaded_plugin("minimal").unwrap();
    assert_eq!(
        plugin.cache_outcome(),
        airlock::runtime::CacheOutcome::Cached
    );
}
