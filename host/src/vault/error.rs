//! What can go wrong in the vault. No variant ever carries a secret, a key or
//! any part of one: values are named (which secret, which file, which
//! variable), never shown.

use std::path::PathBuf;

use crate::store::StoreError;

/// Why the vault could not open, seal or open a secret, or manage its key
/// versions.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// `AIRLOCK_MASTER_KEY` is set (or was, when the key source was chosen)
    /// but is not the base64 of exactly 32 bytes.
    #[error(
        "{var} is set but is not a usable master key: it {problem}; it must be the base64 \
         encoding of exactly 32 random bytes (for example the output of \
         `head -c 32 /dev/urandom | base64`)"
    )]
    BadEnvKey {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with the value (`is not valid base64`), never the
        /// value.
        problem: String,
    },

    /// `AIRLOCK_MASTER_PASSPHRASE` is set but empty or not UTF-8.
    #[error("{var} is set but {problem}")]
    BadPassphrase {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with the value.
        problem: String,
    },

    /// The key file exists but holds neither 32 raw bytes nor their base64
    /// (empty, truncated, corrupted). It is never replaced: restore it.
    #[error(
        "master key file {path} {problem}: expected 32 raw bytes or the base64 encoding of 32 \
         bytes. The file is never replaced automatically; restore the original key file (or \
         set AIRLOCK_MASTER_KEY to the original key)"
    )]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its content.
        problem: String,
    },

    /// The key file is missing but the database already holds a vault; no
    /// new key is made, as it could not open the stored secrets.
    #[error(
        "master key file {path} does not exist, but the vault in {db} already holds encryption \
         keys: restore the original key file (or set AIRLOCK_MASTER_KEY to its contents). A new \
         key would not decrypt the stored secrets, so none is created"
    )]
    MissingKeyFile {
        /// Where the key file was expected.
        path: PathBuf,
        /// The database whose vault needs it: its file, or its URL without
        /// the password.
        db: String,
    },

    /// Reading or creating the key file failed in the file system
    /// (permissions, disk, a missing directory).
    #[error("cannot {action} master key file {path}: {source}")]
    KeyFileIo {
        /// What was being done (`read`, `create`, ...).
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The master key does not open the existing vault: it fails the check
    /// value, or it is a key where the vault was made with a passphrase (or
    /// the reverse). Nothing was written.
    #[error(
        "wrong master key: the key from {key_source} does not open the vault in {db}{hint}. \
         Nothing was changed; start airlock with the master key the vault was created with"
    )]
    WrongMasterKey {
        /// Where the key came from, as [`KeySource::describe`](crate::KeySource::describe)
        /// puts it.
        key_source: String,
        /// The database: its file, or its URL without the password.
        db: String,
        /// Advice when the vault was made with the other kind of master key
        /// (a parenthesis with a leading space); empty otherwise.
        hint: String,
    },

    /// A sealed value does not decrypt: altered, copied from another row,
    /// owner or field, or sealed under another key. Re-enter the secret.
    #[error(
        "cannot decrypt {what}: the stored ciphertext was altered, copied from another secret \
         or field, or sealed under another key; re-enter the secret"
    )]
    Decrypt {
        /// Which value (`secret 'token' of connection ...`), never its
        /// content.
        what: String,
    },

    /// A sealed value is not under the active key version (or its header
    /// and its row's `key_version` disagree): a row restored from before a
    /// rotation. Re-enter the secret.
    #[error(
        "{what} is sealed under key version {found}, but every secret is re-encrypted under the \
         active key version {active} on rotation: an older ciphertext was restored over this \
         secret; re-enter it"
    )]
    StaleCiphertext {
        /// Which value.
        what: String,
        /// The version the value is sealed under.
        found: u32,
        /// The active version.
        active: u32,
    },

    /// A secret's row decrypts, but it is not the row the vault last wrote
    /// for its owner and field (the vault's ledger names another, or none):
    /// an older copy was restored, or a deleted one put back, without a key
    /// rotation in between. Re-enter the secret.
    #[error(
        "{what} is not the value airlock last stored: {}. It is refused; re-enter the secret \
         (for an OAuth connection, run its OAuth flow again), \
         and find out who else can write the data directory",
        restored_detail(*.deleted)
    )]
    RestoredSecret {
        /// Which secret (`secret 'access-token' of connection ...`), never
        /// its content.
        what: String,
        /// Whether the vault had no current row for it at all (deleted, or
        /// never written by airlock), rather than a newer one.
        deleted: bool,
    },

    /// The vault's record of which secret rows are current (`vault_meta`
    /// `secret-ledger` and its tag) is missing or does not verify under the
    /// master key: altered or removed outside airlock. No secret is trusted
    /// until re-entered.
    #[error(
        "the vault's record of which secret rows are current {problem}: it was altered or \
         removed outside airlock, so no stored secret can be trusted and each is refused until \
         it is re-entered. Restore the database from your newest backup, or re-enter the secrets \
         (for OAuth connections, by running their OAuth flow again)"
    )]
    LedgerInvalid {
        /// What is wrong (`is missing`, `does not verify under the master
        /// key`, ...).
        problem: &'static str,
    },

    /// The vault's record of which secret rows are current is older than
    /// one this process already verified: the database, or its `vault_meta`
    /// table, was replaced with an older copy while airlock was running.
    #[error(
        "the vault's record of which secret rows are current went back from generation {seen} \
         to {found} while airlock was running: the database (or part of it) was replaced with an \
         older copy, so this process refuses every stored secret. Find out who replaced it and \
         restore the newest copy, or re-enter the secrets; note that a restarted airlock cannot \
         tell an older copy from the current one"
    )]
    LedgerRolledBack {
        /// The highest generation this process verified.
        seen: u64,
        /// The generation found now.
        found: u64,
    },

    /// A sealed value names a key version the vault does not have (retired,
    /// or the row was restored from an old backup). Re-enter the secret.
    #[error(
        "{what} is sealed under key version {version}, which this vault does not have (retired, \
         or the row was restored from an old backup); re-enter the secret"
    )]
    UnknownKeyVersion {
        /// Which value.
        what: String,
        /// The version it names.
        version: u32,
    },

    /// Retiring a key version that does not exist.
    #[error("key version {version} does not exist")]
    NoSuchVersion {
        /// The version asked for.
        version: u32,
    },

    /// Retiring the active key version is refused: rotate first.
    #[error(
        "key version {version} is the active key version and cannot be retired; rotate to a new \
         version first"
    )]
    RetireActive {
        /// The active version.
        version: u32,
    },

    /// Retiring a key version that rows still use (restored from before the
    /// last rotation) is refused: re-enter or delete them first.
    #[error(
        "key version {version} still encrypts {secrets} secret(s) and {oauth_states} pending \
         OAuth authorisation(s), so it cannot be retired: those rows were restored from before \
         the last rotation; re-enter or delete them first"
    )]
    VersionInUse {
        /// The version asked for.
        version: u32,
        /// Secrets still sealed under it.
        secrets: usize,
        /// Pending OAuth authorisations still sealed under it.
        oauth_states: usize,
    },

    /// Argon2id could not derive the master key from the passphrase (e.g.
    /// stored cost parameters it rejects).
    #[error("passphrase key derivation (Argon2id) failed: {0}")]
    Kdf(String),

    /// The operating system's random number generator failed, so no key or
    /// nonce could be made.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),

    /// The vault's own tables are inconsistent (no check value or active
    /// version, an altered wrapped key, a secret that is not UTF-8, ...);
    /// the text says what.
    #[error("vault data is inconsistent: {0}")]
    Corrupt(String),

    /// The database failed underneath (a SQLite or PostgreSQL error, busy,
    /// unavailable, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The middle of [`VaultError::RestoredSecret`]'s message.
fn restored_detail(deleted: bool) -> &'static str {
    if deleted {
        "airlock deleted it (or never wrote it), so a deleted row was put back into the database \
         or one was added outside airlock"
    } else {
        "airlock has since replaced it, so an older copy of its row was restored into the database"
    }
}
