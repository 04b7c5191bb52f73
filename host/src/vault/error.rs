//! What can go wrong in the vault. No variant ever carries a secret, a key or
//! any part of one: values are named (which secret, which file, which
//! variable), never shown.

use std::path::PathBuf;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "{var} is set but is not a usable master key: it {problem}; it must be the base64 \
         encoding of exactly 32 random bytes (for example the output of \
         `head -c 32 /dev/urandom | base64`)"
    )]
    BadEnvKey { var: &'static str, problem: String },

    #[error("{var} is set but {problem}")]
    BadPassphrase { var: &'static str, problem: String },

    #[error(
        "master key file {path} {problem}: expected 32 raw bytes or the base64 encoding of 32 \
         bytes. The file is never replaced automatically; restore the original key file (or \
         set AIRLOCK_MASTER_KEY to the original key)"
    )]
    BadKeyFile { path: PathBuf, problem: String },

    #[error(
        "master key file {path} does not exist, but the vault in {db} already holds encryption \
         keys: restore the original key file (or set AIRLOCK_MASTER_KEY to its contents). A new \
         key would not decrypt the stored secrets, so none is created"
    )]
    MissingKeyFile { path: PathBuf, db: PathBuf },

    #[error("cannot {action} master key file {path}: {source}")]
    KeyFileIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "wrong master key: the key from {key_source} does not open the vault in {db}{hint}. \
         Nothing was changed; start airlock with the master key the vault was created with"
    )]
    WrongMasterKey {
        key_source: String,
        db: PathBuf,
        hint: String,
    },

    #[error(
        "cannot decrypt {what}: the stored ciphertext was altered, copied from another secret \
         or field, or sealed under another key; re-enter the secret"
    )]
    Decrypt { what: String },

    #[error(
        "{what} is sealed under key version {found}, but every secret is re-encrypted under the \
         active key version {active} on rotation: an older ciphertext was restored over this \
         secret; re-enter it"
    )]
    StaleCiphertext {
        what: String,
        found: u32,
        active: u32,
    },

    #[error(
        "{what} is sealed under key version {version}, which this vault does not have (retired, \
         or the row was restored from an old backup); re-enter the secret"
    )]
    UnknownKeyVersion { what: String, version: u32 },

    #[error("key version {version} does not exist")]
    NoSuchVersion { version: u32 },

    #[error(
        "key version {version} is the active key version and cannot be retired; rotate to a new \
         version first"
    )]
    RetireActive { version: u32 },

    #[error(
        "key version {version} still encrypts {secrets} secret(s) and {oauth_states} pending \
         OAuth authorisation(s), so it cannot be retired: those rows were restored from before \
         the last rotation; re-enter or delete them first"
    )]
    VersionInUse {
        version: u32,
        secrets: usize,
        oauth_states: usize,
    },

    #[error("passphrase key derivation (Argon2id) failed: {0}")]
    Kdf(String),

    #[error("the operating system's random number generator failed: {0}")]
    Random(String),

    #[error("vault data is inconsistent: {0}")]
    Corrupt(String),

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for VaultError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}
