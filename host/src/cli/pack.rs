//! `airlock plugin pack`: a component from any toolchain plus its
//! `airlock.toml` becomes an installable plugin file (the library's
//! [`Runtime::pack`]: validated, embedded, loaded as an install would).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::{UsageError, output};
use airlock::runtime::PackError;
use airlock::{Runtime, RuntimeConfig};

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The component (`.wasm`) to pack: from cargo, componentize-js,
    /// componentize-py or any other component toolchain.
    component: PathBuf,
    /// The plugin's manifest (`airlock.toml`).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// Where to write the plugin (may be the component itself).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Replace a manifest the component already carries.
    #[arg(long)]
    replace: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PackArgs) -> anyhow::Result<()> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let component = read(&args.component)?;
    let manifest = String::from_utf8(read(&args.manifest)?)
        .with_context(|| format!("{} is not UTF-8 text", args.manifest.display()))?;
    // Pooled like an install (so the per-component instance, memory and
    // table limits are checked the same way), with one slot: it reserves
    // little, and the packed file is compiled once, without a cache.
    let runtime = Runtime::new(RuntimeConfig {
        pooling: true,
        max_concurrent_calls: 1,
        ..RuntimeConfig::default()
    })?;
    let packed = match runtime.pack(&component, &manifest, args.replace) {
        Err(e @ PackError::AlreadyPacked { .. }) => bail!(UsageError(format!(
            "not packed: {e}\nhint: airlock plugin pack {} --manifest {} -o {} --replace",
            args.component.display(),
            args.manifest.display(),
            args.output.display()
        ))),
        other => other.with_context(|| format!("packing {}", args.component.display()))?,
    };
    write_atomically(&args.output, &packed.wasm)?;
    let plugin = &packed.plugin;
    let m = plugin.manifest();
    let doc = serde_json::json!({
        "id": m.id,
        "version": m.version,
        "category": m.category,
        "exports": plugin.interfaces(),
        "sha256": plugin.sha256(),
        "output": args.output,
        "replaced": packed.replaced,
    });
    output::emit(args.json, &doc, |_| {
        let exports: Vec<&str> = plugin.interfaces().iter().map(|i| i.name()).collect();
        println!(
            "packed {} {} ({}; exports {}) into {}",
            m.id,
            m.version,
            m.category,
            exports.join(", "),
            args.output.display()
        );
        if packed.replaced > 0 {
            println!("  replaced the manifest the component carried");
        }
        println!("  sha256: {}", plugin.sha256());
    })
}

/// Write `bytes` to `path` through a temporary file beside it, so a failed
/// write never leaves half a plugin under the name.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
