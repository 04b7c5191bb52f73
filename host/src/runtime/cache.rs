//! Compiled components cached on disk, keyed by the `.wasm`'s SHA-256 and the
//! engine's compatibility hash, so a restarted host loads without compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load compiled or came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Compiled,
    Cached,
}

#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        let key = format!("{sha256}-{:016x}.cwasm", h.finish());
        self.dir.as_ref().map(|d| d.join(key))
    }

    /// Load the compiled form of `wasm`, compiling (and storing) it on a miss.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.path(engine, sha256) else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Compiled));
        };
        // Read into memory rather than mapping the file: a mapped artifact
        // truncated by anyone (a full disk, an operator clearing the cache)
        // would crash the host with SIGBUS.
        if let Ok(bytes) = std::fs::read(&path) {
            // SAFETY: the file is named by the SHA-256 of the source and the
            // engine's compatibility hash, and was written by `store` below
            // from `Component::serialize` of this engine's compilation. The
            // cache directory belongs to the host (created 0700) and is
            // trusted like the binary itself; wasmtime still validates the
            // header and refuses artifacts from another engine or version.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok((c, CacheOutcome::Cached)),
                Err(e) => {
                    tracing::warn!("ignoring unusable compiled cache {}: {e}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = store(&path, &component.serialize()?) {
            tracing::warn!("could not write compiled cache {}: {e}", path.display());
        }
        Ok((component, CacheOutcome::Compiled))
    }
}

/// Write atomically: a reader never sees a half-written artifact, and a
/// file another thread has mapped is replaced, never truncated under it.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("cache path has a parent");
    crate::dirs::create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("c"),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
