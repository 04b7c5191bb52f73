//! The real plugins' own unit tests (Markdown to storage format, query
//! encoding, SSE decoding, mappings...), run natively as part of
//! `cargo test --workspace`. The plugins are a workspace of their own (they
//! build for wasm32-wasip2), so without this the root test command would
//! never run them.

use std::path::Path;
use std::process::Command;

#[test]
fn every_plugin_passes_its_unit_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&root)
        .args([
            "test",
            "--workspace",
            "--manifest-path",
            "plugins/Cargo.toml",
        ])
        // Native builds of their own, apart from the wasm ones in target/wasm.
        .args(["--target-dir", "target/plugins-native"])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stdout.lines().filter(|l| l.starts_with("test result:")) {
        println!("{line}");
    }
    assert!(
        output.status.success(),
        "plugin unit tests failed:\n{stdout}\n{stderr}"
    );
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    // servicenow, azure-devops, confluence, openai and custom-rest each
    // have unit tests; a run that found none did not test them.
    assert!(
        passed >= 50,
        "only {passed} plugin unit tests ran:\n{stdout}"
    );
}
