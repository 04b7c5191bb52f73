//! Compiled components cached on disk, keyed by the `.wasm`'s SHA-256 and the
//! engine's compatibility hash, so a restarted host loads without compiling.
//!
//! A compiled artifact is native code the host runs after an `unsafe`
//! deserialisation, so it is authenticated before it is deserialised: each
//! file is `tag | artifact`, where `tag` is HMAC-SHA256 under an
//! [`ArtifactKey`] over the source's SHA-256 and the artifact. A file
//! written by anyone without the key (a substituted artifact of another
//! plugin, a truncated or foreign one) fails the check and is recompiled
//! from the pinned `.wasm`, never run. [`crate::service::Airlock`] derives
//! the key from the master key, so the cache survives restarts yet stays
//! out of reach of whoever can write the data directory but does not hold
//! the master key; a bare [`Runtime`](super::Runtime) without a key uses one
//! random key per process.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;
use zeroize::Zeroizing;

/// Whether a load compiled or came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The component was compiled (cache off, miss, or an entry refused).
    Compiled,
    /// An authenticated compiled artifact was loaded from the cache.
    Cached,
}

/// The key that authenticates compiled artifacts in the cache. Its `Debug`
/// never shows it.
#[derive(Clone)]
pub struct ArtifactKey(Zeroizing<[u8; 32]>);

impl ArtifactKey {
    /// A key from 32 secret bytes (e.g. derived from the master key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// This process's random key: artifacts another process wrote do not
    /// verify, so they are recompiled.
    fn per_process() -> Self {
        static KEY: OnceLock<ArtifactKey> = OnceLock::new();
        KEY.get_or_init(|| Self::from_bytes(rand::random())).clone()
    }

    /// The MAC of one artifact, bound to the source it was compiled from.
    fn mac(&self, sha256: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(b"airlock compiled component v1\0");
        mac.update(sha256.as_bytes());
        mac.update(b"\0");
        mac.update(artifact);
        mac
    }

    fn tag(&self, sha256: &str, artifact: &[u8]) -> [u8; TAG_LEN] {
        self.mac(sha256, artifact).finalize().into_bytes().into()
    }

    /// Constant-time comparison of `tag` with the artifact's MAC.
    fn verify(&self, sha256: &str, tag: &[u8], artifact: &[u8]) -> bool {
        self.mac(sha256, artifact).verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey([redacted])")
    }
}

const TAG_LEN: usize = 32;

/// The on-disk cache of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    key: ArtifactKey,
}

impl ComponentCache {
    /// A cache in `dir` (`None`: compile every load) whose entries are
    /// authenticated with `key` (`None`: this process's random key).
    pub fn new(dir: Option<PathBuf>, key: Option<ArtifactKey>) -> Self {
        Self {
            dir,
            key: key.unwrap_or_else(ArtifactKey::per_process),
        }
    }

    fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        let key = format!("{sha256}-{:016x}.cwasm", h.finish());
        self.dir.as_ref().map(|d| d.join(key))
    }

    /// Load the compiled form of `wasm`, compiling (and storing) it on a miss
    /// or when the stored entry does not authenticate.
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
        // would crash the host with SIGBUS, and the bytes checked must be
        // the bytes deserialised.
        if let Ok(bytes) = std::fs::read(&path) {
            match self.open(engine, sha256, &bytes) {
                Ok(c) => return Ok((c, CacheOutcome::Cached)),
                Err(why) => {
                    tracing::warn!("recompiling: compiled cache {} {why}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        let artifact = component.serialize()?;
        let mut file = self.key.tag(sha256, &artifact).to_vec();
        file.extend_from_slice(&artifact);
        if let Err(e) = store(&path, &file) {
            tracing::warn!("could not write compiled cache {}: {e}", path.display());
        }
        Ok((component, CacheOutcome::Compiled))
    }

    /// Authenticate a cache file, then deserialise it.
    fn open(&self, engine: &Engine, sha256: &str, file: &[u8]) -> Result<Component, String> {
        if file.len() < TAG_LEN {
            return Err("is truncated".into());
        }
        let (tag, artifact) = file.split_at(TAG_LEN);
        if !self.key.verify(sha256, tag, artifact) {
            return Err(format!(
                "was not written by this host for the component with SHA-256 {sha256}"
            ));
        }
        // SAFETY: the bytes carry a valid HMAC under a key only this host
        // holds, over this source's SHA-256: they are exactly what
        // `Component::serialize` of this engine produced for this `.wasm`
        // (see `load`). wasmtime still validates the header and refuses
        // artifacts from another engine or version.
        #[allow(unsafe_code)]
        unsafe { Component::deserialize(engine, artifact) }.map_err(|e| format!("is unusable: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_bind_key_source_and_artifact() {
        let key = ArtifactKey::from_bytes([7; 32]);
        let tag = key.tag("aa", b"code");
        assert!(key.verify("aa", &tag, b"code"));
        assert!(!key.verify("bb", &tag, b"code"), "another source's hash");
        assert!(!key.verify("aa", &tag, b"c0de"), "other bytes");
        assert!(!ArtifactKey::from_bytes([8; 32]).verify("aa", &tag, b"code"));
        assert!(!format!("{key:?}").contains('7'));
    }
}
