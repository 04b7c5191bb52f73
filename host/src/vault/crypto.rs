//! AES-256-GCM and the byte formats the vault stores.
//!
//! Every sealed value has the same layout:
//!
//! ```text
//! magic (3 bytes) | version (u32 big-endian) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! `magic` says what the bytes are (`AL1` a secret or blob under a data key,
//! `ALW` a data key wrapped by the key-encryption key, `ALC` the
//! key-encryption key's check value); `version` is the data-key version for
//! `AL1`/`ALW`. The associated data always repeats the version, so the header
//! cannot be edited to pick another key.

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use rand::TryRngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::VaultError;

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
const MAGIC_LEN: usize = 3;
pub(crate) const HEADER_LEN: usize = MAGIC_LEN + 4 + NONCE_LEN;

/// A secret or blob sealed under a data key.
pub(crate) const MAGIC_SEALED: &[u8; MAGIC_LEN] = b"AL1";
/// A data key wrapped by the key-encryption key.
pub(crate) const MAGIC_WRAPPED: &[u8; MAGIC_LEN] = b"ALW";
/// The key-encryption key's check value.
pub(crate) const MAGIC_CHECK: &[u8; MAGIC_LEN] = b"ALC";

/// A 256-bit AES key, wiped from memory when dropped.
#[derive(Clone)]
pub(crate) struct Key256(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256([REDACTED])")
    }
}

impl Key256 {
    /// A fresh key from the operating system's random number generator.
    pub(crate) fn random() -> Result<Self, VaultError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut key[..])?;
        Ok(Self(key))
    }

    /// The key in `bytes`, which must be exactly 32 bytes long.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self(key))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0[..]))
    }
}

/// Fill `buf` from the operating system's random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), VaultError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| VaultError::Random(e.to_string()))
}

/// Associated data: a domain string, then each part, each length-prefixed
/// (u32 big-endian) so no two different inputs encode the same, then the key
/// version.
pub(crate) fn aad(domain: &str, parts: &[&[u8]], version: u32) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(4 + domain.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>() + 4);
    for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
        let len = u32::try_from(part.len()).expect("associated data part under 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Seal `plaintext` under `key` with a fresh random nonce.
///
/// The plaintext is copied into an output buffer of exactly the final size
/// and encrypted there, so no stray unencrypted copy is left in freed memory.
pub(crate) fn seal(
    key: &Key256,
    magic: &[u8; MAGIC_LEN],
    version: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .cipher()
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[HEADER_LEN..])
        .map_err(|_| {
            // Only possible for inputs beyond AES-GCM's size limit (64 GiB).
            VaultError::Corrupt("value too large to encrypt".to_string())
        });
    let tag = match tag {
        Ok(tag) => tag,
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            return Err(e);
        }
    };
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The version in the header of `blob`, if it is a well-formed `magic` blob.
pub(crate) fn header_version(magic: &[u8; MAGIC_LEN], blob: &[u8]) -> Option<u32> {
    if blob.len() < HEADER_LEN + TAG_LEN || &blob[..MAGIC_LEN] != magic {
        return None;
    }
    let version: [u8; 4] = blob[MAGIC_LEN..MAGIC_LEN + 4].try_into().ok()?;
    Some(u32::from_be_bytes(version))
}

/// Why a blob did not open. Carries nothing about the contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFailed;

/// Open a blob produced by [`seal`] with the same `magic`, key and
/// associated data. The caller checks the header version first.
pub(crate) fn open(
    key: &Key256,
    magic: &[u8; MAGIC_LEN],
    aad: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenFailed> {
    header_version(magic, blob).ok_or(OpenFailed)?;
    let nonce = &blob[MAGIC_LEN + 4..HEADER_LEN];
    let (body, tag) = blob[HEADER_LEN..].split_at(blob.len() - HEADER_LEN - TAG_LEN);
    let mut buf = Zeroizing::new(body.to_vec());
    key.cipher()
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            &mut buf[..],
            Tag::from_slice(tag),
        )
        .map_err(|_| OpenFailed)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_layout() {
        let key = Key256::random().unwrap();
        let ad = aad("d", &[b"a", b"b"], 7);
        let blob = seal(&key, MAGIC_SEALED, 7, &ad, b"hello").unwrap();
        assert_eq!(blob.len(), HEADER_LEN + 5 + TAG_LEN);
        assert_eq!(&blob[..3], b"AL1");
        assert_eq!(header_version(MAGIC_SEALED, &blob), Some(7));
        assert_eq!(header_version(MAGIC_WRAPPED, &blob), None);
        assert_eq!(&open(&key, MAGIC_SEALED, &ad, &blob).unwrap()[..], b"hello");
        // Same input, different nonce.
        assert_ne!(seal(&key, MAGIC_SEALED, 7, &ad, b"hello").unwrap(), blob);
        // Wrong associated data, key or magic.
        let other = aad("d", &[b"a", b"c"], 7);
        assert_eq!(open(&key, MAGIC_SEALED, &other, &blob), Err(OpenFailed));
        let key2 = Key256::random().unwrap();
        assert_eq!(open(&key2, MAGIC_SEALED, &ad, &blob), Err(OpenFailed));
        assert_eq!(open(&key, MAGIC_CHECK, &ad, &blob), Err(OpenFailed));
        assert_eq!(open(&key, MAGIC_SEALED, &ad, &blob[..10]), Err(OpenFailed));
    }

    #[test]
    fn aad_is_unambiguous() {
        assert_ne!(aad("d", &[b"ab", b"c"], 1), aad("d", &[b"a", b"bc"], 1));
        assert_ne!(aad("d", &[b"a"], 1), aad("d", &[b"a"], 2));
        assert_ne!(aad("d", &[b"a"], 1), aad("e", &[b"a"], 1));
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = Key256::from_slice(&[0x41; 32]).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("65") && !debug.contains("AAAA"), "{debug}");
        assert!(Key256::from_slice(&[0; 31]).is_none());
    }
}
