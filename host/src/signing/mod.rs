//! Publisher signatures of plugin files: what a signature is, where it
//! lives in a `.wasm`, how it is made and checked. Nothing here knows who
//! is trusted (that is the operator's policy, kept in the store and applied
//! by the service); this module only answers "who signed exactly these
//! bytes, if anyone".
//!
//! The format is OpenSSH's SSHSIG (`PROTOCOL.sshsig`), the one
//! `ssh-keygen -Y sign -n airlock-plugin -f KEY FILE` writes: an existing,
//! documented format every publisher already has a tool for, keys that are
//! plain OpenSSH public keys (publishable anywhere, e.g. on a forge), and
//! verification offline with no infrastructure.
//!
//! Where it lives: a custom section named [`SIGNATURE_SECTION`] that must
//! be the last top-level section of the file. Its content is the armored
//! signature (`-----BEGIN SSH SIGNATURE-----`...), made in namespace
//! [`NAMESPACE`] over exactly the file's bytes before that section: the
//! code and the embedded `airlock-manifest` alike. A file with more than
//! one such section, or with one that is not last, is refused.
//!
//! Everything is parsed once into [`Signature`] and [`PublisherKey`];
//! failures are [`SignatureError`]s whose messages say what to do.

mod section;

use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// Name of the custom section holding a plugin's signature.
pub const SIGNATURE_SECTION: &str = "airlock-signature";

/// The SSHSIG namespace of plugin signatures (`ssh-keygen -Y sign -n`).
pub const NAMESPACE: &str = "airlock-plugin";

/// Largest signature section accepted (an Ed25519 SSHSIG is ~300 bytes;
/// this leaves room for any key type without parsing megabytes).
const MAX_ARMOR_BYTES: usize = 16 * 1024;

/// Why a signature, key or signed file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The bytes do not start with a WebAssembly header.
    #[error("not a WebAssembly file (it does not start with `\\0asm`)")]
    NotWasm,
    /// A section's size or name does not fit the file.
    #[error(
        "the file is malformed at byte {offset}: {what}; it was cut short or corrupted: get \
         the plugin file again"
    )]
    Malformed {
        /// Where the bad section or number starts.
        offset: usize,
        /// What does not fit.
        what: &'static str,
    },
    /// More than one signature section.
    #[error(
        "the file carries {count} `{SIGNATURE_SECTION}` sections; a signed plugin has exactly \
         one, as its last section: sign the unsigned file once (`airlock plugin sign` replaces \
         a signature it finds last)"
    )]
    Duplicate {
        /// How many there are.
        count: usize,
    },
    /// A signature section followed by other sections.
    #[error(
        "the `{SIGNATURE_SECTION}` section (at byte {offset}) is not the file's last section: \
         {trailing} bytes were added after it was signed, and a signature covers exactly the \
         bytes before it; sign the final file again"
    )]
    NotLast {
        /// Where the signature section starts.
        offset: usize,
        /// How many bytes follow it.
        trailing: usize,
    },
    /// The section or signature file is not an armored SSH signature.
    #[error(
        "the signature is not an armored SSH signature (`-----BEGIN SSH SIGNATURE-----`): \
         {reason}; make one with `ssh-keygen -Y sign -n {NAMESPACE} -f KEY FILE` or `airlock \
         plugin sign`"
    )]
    Armor {
        /// What is wrong with it.
        reason: String,
    },
    /// Signed for another purpose than airlock plugins.
    #[error(
        "the signature was made for namespace `{found}`, not `{NAMESPACE}`: sign the file with \
         `ssh-keygen -Y sign -n {NAMESPACE} ...`"
    )]
    Namespace {
        /// The namespace it names.
        found: String,
    },
    /// A key type airlock does not verify.
    #[error(
        "{what} uses {algorithm}, which airlock does not accept: use an Ed25519 key \
         (`ssh-keygen -t ed25519`) or an ECDSA P-256/P-384 key"
    )]
    Unsupported {
        /// The signature or the key.
        what: &'static str,
        /// The key algorithm.
        algorithm: String,
    },
    /// The signature does not match the bytes.
    #[error(
        "the signature by {fingerprint} does not verify: the file was changed after it was \
         signed (or the signature is another file's); get the plugin file from its publisher \
         again, and never install it as it is"
    )]
    Mismatch {
        /// The key the signature names.
        fingerprint: String,
    },
    /// Not an OpenSSH public key line.
    #[error(
        "not an OpenSSH public key: {reason}; give the one line of the publisher's `.pub` file \
         (`ssh-ed25519 AAAA... comment`)"
    )]
    PublicKey {
        /// What is wrong with it.
        reason: String,
    },
    /// Not an OpenSSH private key file.
    #[error(
        "not an OpenSSH private key: {reason}; give the private key file (`-----BEGIN OPENSSH \
         PRIVATE KEY-----`), not the `.pub`"
    )]
    PrivateKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A passphrase-protected private key.
    #[error(
        "the private key is encrypted with a passphrase, which airlock does not read: sign with \
         `ssh-keygen -Y sign -n {NAMESPACE} -f KEY PLUGIN.wasm` and attach the result with \
         `airlock plugin sign PLUGIN.wasm --signature PLUGIN.wasm.sig`"
    )]
    EncryptedKey,
    /// The signing operation itself failed.
    #[error("signing failed: {reason}")]
    Sign {
        /// The library's reason.
        reason: String,
    },
}

/// Whether airlock verifies signatures of `algorithm`.
fn supported(algorithm: &Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::Ed25519
            | Algorithm::SkEd25519
            | Algorithm::SkEcdsaSha2NistP256
            | Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384
            }
    )
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The key as one OpenSSH line (`ssh-ed25519 AAAA... comment`).
fn openssh_line(key: &PublicKey) -> String {
    // Encoding a key that was just decoded cannot fail.
    key.to_openssh()
        .expect("an OpenSSH key encodes")
        .trim()
        .to_string()
}

/// A parsed SSHSIG in the plugin namespace, with its signer. Verifying it
/// against bytes is [`Signature::verify`]; a `Signature` alone says nothing
/// about any file.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The signer's public key as an OpenSSH line (`ssh-ed25519 AAAA...`).
    pub public_key: String,
    /// The signer key's SHA-256 fingerprint, as `ssh-keygen -l` prints it
    /// (`SHA256:...`).
    pub fingerprint: String,
    /// The key algorithm (`ssh-ed25519`, `ecdsa-sha2-nistp256`, ...).
    pub algorithm: String,
    /// The armored signature, as stored in the section.
    pub armored: String,
    sshsig: SshSig,
}

impl Signature {
    /// Parse an armored SSHSIG: it must be one, in [`NAMESPACE`], by a key
    /// type airlock verifies.
    pub fn from_armored(text: &str) -> Result<Self, SignatureError> {
        let trimmed = text.trim();
        if !trimmed.starts_with("-----BEGIN SSH SIGNATURE-----") {
            return Err(SignatureError::Armor {
                reason: "it does not start with `-----BEGIN SSH SIGNATURE-----`".into(),
            });
        }
        let sshsig = SshSig::from_pem(trimmed).map_err(|e| SignatureError::Armor {
            reason: e.to_string(),
        })?;
        if sshsig.namespace() != NAMESPACE {
            return Err(SignatureError::Namespace {
                found: sshsig.namespace().to_string(),
            });
        }
        let key = PublicKey::new(sshsig.public_key().clone(), "");
        if !supported(&key.algorithm()) {
            return Err(SignatureError::Unsupported {
                what: "the signature",
                algorithm: key.algorithm().to_string(),
            });
        }
        Ok(Self {
            public_key: openssh_line(&key),
            fingerprint: fingerprint(&key),
            algorithm: key.algorithm().to_string(),
            armored: format!("{trimmed}\n"),
            sshsig,
        })
    }

    /// Check that this signature was made over exactly `message` by the key
    /// it names.
    pub fn verify(&self, message: &[u8]) -> Result<(), SignatureError> {
        PublicKey::new(self.sshsig.public_key().clone(), "")
            .verify(NAMESPACE, message, &self.sshsig)
            .map_err(|_| SignatureError::Mismatch {
                fingerprint: self.fingerprint.clone(),
            })
    }
}

/// A plugin file split at its signature: the signed bytes and the
/// signature, parsed but not yet verified.
#[derive(Debug, Clone)]
pub struct SignedFile<'a> {
    /// The bytes a signature covers: the whole file when it is unsigned.
    pub message: &'a [u8],
    /// The signature section's signature, if the file has one.
    pub signature: Option<Signature>,
}

impl SignedFile<'_> {
    /// The signature, verified against the signed bytes; `None` for an
    /// unsigned file.
    pub fn verified(self) -> Result<Option<Signature>, SignatureError> {
        if let Some(signature) = &self.signature {
            signature.verify(self.message)?;
        }
        Ok(self.signature)
    }
}

/// Split `wasm` at its signature section: at most one, and last.
pub fn read(wasm: &[u8]) -> Result<SignedFile<'_>, SignatureError> {
    let found = section::find_custom(wasm, SIGNATURE_SECTION)?;
    let section = match found.as_slice() {
        [] => {
            return Ok(SignedFile {
                message: wasm,
                signature: None,
            });
        }
        [one] => one,
        more => return Err(SignatureError::Duplicate { count: more.len() }),
    };
    if section.end != wasm.len() {
        return Err(SignatureError::NotLast {
            offset: section.start,
            trailing: wasm.len() - section.end,
        });
    }
    let content = &wasm[section.content.clone()];
    if content.len() > MAX_ARMOR_BYTES {
        return Err(SignatureError::Armor {
            reason: format!(
                "the section holds {} bytes, more than the {MAX_ARMOR_BYTES} a signature takes",
                content.len()
            ),
        });
    }
    let text = std::str::from_utf8(content).map_err(|_| SignatureError::Armor {
        reason: "the section is not text".into(),
    })?;
    Ok(SignedFile {
        message: &wasm[..section.start],
        signature: Some(Signature::from_armored(text)?),
    })
}

/// Who signed `wasm`, verified; `None` when it is unsigned. A signature
/// that is malformed, misplaced or does not match the bytes is an error.
pub fn verify(wasm: &[u8]) -> Result<Option<Signature>, SignatureError> {
    read(wasm)?.verified()
}

/// `wasm` signed with `key`: any signature it carried (as its last
/// section) is replaced. Returns the signed file and its signature.
pub fn sign(wasm: &[u8], key: &SigningKey) -> Result<(Vec<u8>, Signature), SignatureError> {
    let message = read(wasm)?.message;
    let sshsig = key
        .key
        .sign(NAMESPACE, HashAlg::Sha512, message)
        .map_err(|e| SignatureError::Sign {
            reason: e.to_string(),
        })?;
    let armored = sshsig
        .to_pem(LineEnding::LF)
        .map_err(|e| SignatureError::Sign {
            reason: e.to_string(),
        })?;
    embed(message, &armored)
}

/// `wasm` with `armored` (made by `ssh-keygen -Y sign -n airlock-plugin`
/// over the file without a signature section) as its signature, once it
/// is checked to verify. Any signature the file carried is replaced.
pub fn attach(wasm: &[u8], armored: &str) -> Result<(Vec<u8>, Signature), SignatureError> {
    embed(read(wasm)?.message, armored)
}

/// `message` with `armored` appended as its signature section, verified.
fn embed(message: &[u8], armored: &str) -> Result<(Vec<u8>, Signature), SignatureError> {
    let signature = Signature::from_armored(armored)?;
    signature.verify(message)?;
    let signed = section::append_custom(message, SIGNATURE_SECTION, signature.armored.as_bytes());
    Ok((signed, signature))
}

/// A publisher's public key as the operator gives it: one OpenSSH line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherKey {
    /// The key as one OpenSSH line, its comment kept.
    pub public_key: String,
    /// Its SHA-256 fingerprint (`SHA256:...`), what signatures are matched
    /// by.
    pub fingerprint: String,
    /// The key algorithm.
    pub algorithm: String,
}

impl PublisherKey {
    /// Parse one OpenSSH public key line of a type airlock verifies.
    pub fn parse(line: &str) -> Result<Self, SignatureError> {
        let line = line.trim();
        if line.lines().count() > 1 {
            return Err(SignatureError::PublicKey {
                reason: "it has more than one line".into(),
            });
        }
        let key = PublicKey::from_openssh(line).map_err(|e| SignatureError::PublicKey {
            reason: e.to_string(),
        })?;
        if !supported(&key.algorithm()) {
            return Err(SignatureError::Unsupported {
                what: "the key",
                algorithm: key.algorithm().to_string(),
            });
        }
        Ok(Self {
            public_key: openssh_line(&key),
            fingerprint: fingerprint(&key),
            algorithm: key.algorithm().to_string(),
        })
    }
}

/// An unencrypted OpenSSH private key to sign plugins with.
pub struct SigningKey {
    key: PrivateKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parse an OpenSSH private key file's text (`-----BEGIN OPENSSH
    /// PRIVATE KEY-----`); an encrypted one is refused with what to do.
    pub fn from_openssh(text: &str) -> Result<Self, SignatureError> {
        let key = PrivateKey::from_openssh(text).map_err(|e| SignatureError::PrivateKey {
            reason: e.to_string(),
        })?;
        if key.is_encrypted() {
            return Err(SignatureError::EncryptedKey);
        }
        if !supported(&key.algorithm()) {
            return Err(SignatureError::Unsupported {
                what: "the key",
                algorithm: key.algorithm().to_string(),
            });
        }
        Ok(Self { key })
    }

    /// The public half's fingerprint (`SHA256:...`).
    pub fn fingerprint(&self) -> String {
        fingerprint(self.key.public_key())
    }

    /// The public half as one OpenSSH line, to publish and to trust.
    pub fn public_key(&self) -> String {
        openssh_line(self.key.public_key())
    }
}

#[cfg(test)]
mod tests;
