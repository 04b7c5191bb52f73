//! The vault: encrypted secrets at rest.
//!
//! # Key hierarchy
//!
//! A master key, the key-encryption key (KEK), comes from a [`KeySource`]:
//! `AIRLOCK_MASTER_KEY`, a passphrase (Argon2id), or a key file. It never
//! encrypts data itself. Each *key version* is a random 256-bit data key,
//! stored in `key_versions` wrapped (AES-256-GCM) by the KEK. Exactly one
//! version is active: every secret is sealed under it, and [`Vault::rotate`]
//! re-encrypts every secret under a new one in a single transaction.
//!
//! `vault_meta` holds a check value sealed under the KEK, so a wrong master
//! key is reported ([`VaultError::WrongMasterKey`]) before anything is
//! written, plus the Argon2id salt and parameters for a passphrase.
//!
//! # Ciphertext format
//!
//! ```text
//! "AL1" | key version (u32 BE) | nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16)
//! ```
//!
//! The associated data binds a ciphertext to where it lives: for `secrets`
//! the row id, the owner (connection or OAuth app and its id), the field and
//! the key version, under the domain `airlock/secret/ledger`
//! (`airlock/secret` before the ledger existed, see below); for
//! [`Vault::seal_blob_in`] the caller's id (for `oauth_states` the
//! `state_hash`), the field (`pkce-verifier`) and the key version. A
//! ciphertext copied to another row, owner or field does not decrypt.
//!
//! # Restore detection
//!
//! The attacker in mind can write the data directory (`airlock.db`) but
//! does not hold the master key (e.g. `AIRLOCK_MASTER_KEY` in the server's
//! environment). They can make no ciphertext and no MAC, but they can put
//! back any row, or the whole file, as it was at an earlier moment: every
//! such row is genuine, and decrypts.
//!
//! **Across key versions.** Rotation re-encrypts everything, so every row is
//! under the active version. A row whose ciphertext names another version
//! than its `key_version` column, or whose version is not the active one,
//! is refused with [`VaultError::StaleCiphertext`].
//!
//! **Within one key version: the ledger.** Every write of a secret gets a
//! fresh row id, bound into the associated data; but an older row put back
//! whole carries its old id with it and decrypts. So the vault keeps a
//! *ledger* (module `ledger`): the current row id of every (owner, field)
//! and a generation, one more on every change, in `vault_meta`
//! (`secret-ledger`), with `secret-ledger-tag`, its HMAC-SHA256 under a key
//! derived from the master key. [`Vault::seal_secret`],
//! [`Vault::delete_secret`] and [`Vault::delete_secrets`] rewrite both in
//! the caller's transaction, so a secret and the record of it commit or
//! roll back together. [`Vault::open_secret`] refuses, with
//! [`VaultError::RestoredSecret`], a row that decrypts but is not the one
//! the ledger names (an older copy of any field: access or refresh token,
//! password, API key, client secret) or that the ledger does not name (a
//! deleted secret put back). Re-entering the secret replaces the row and
//! the entry. Rotation keeps row ids and leaves the ledger alone; a
//! restored row stops it, as a stale one does, since re-encrypting would
//! launder it.
//!
//! Why one tag over all entries, not a record or counter per secret: a
//! per-secret record can be put back together with its row, a consistent
//! pair. With one tag, an older ledger names older rows for *every* secret
//! changed since, so it fits only if all of them are put back with it: the
//! whole vault rolled back to one moment (below). Why a key derived from
//! the master key, not a data key: the ledger must outlive rotation and
//! retirement, and the master key is the one thing the attacker lacks.
//! Why not derive the tag from the `secrets` table itself: a mismatch would
//! then not say which secret is wrong, and every write would bless whatever
//! row sits in the table.
//!
//! A ledger that is missing or does not verify refuses every secret
//! ([`VaultError::LedgerInvalid`]). The next write then starts a new, empty
//! ledger, so each secret re-entered is trusted again and nothing else is
//! (building on the altered ledger would bless the rows it names). A vault
//! from before the ledger has none: when it is opened, every secret that
//! verifies is resealed under the new associated-data domain and recorded,
//! in one transaction. That domain is what tells "never had a ledger" from
//! "its ledger was removed": a vault with no ledger but a row sealed under
//! the new domain is not adopted. Having rows adopted again thus takes
//! putting back every row as it was before the upgrade, a snapshot again.
//!
//! Entries whose row is gone are dropped at the next write, so a secret
//! deleted by a cascade the vault did not see (an owner row deleted with
//! SQL; airlock itself deletes secrets through the vault first) is
//! recognised as deleted from then on; until then, its last row put back
//! with its owner opens.
//!
//! **What a whole-database snapshot defeats.** A copy of the whole
//! `airlock.db` taken under the same master key is self-consistent: rows,
//! key versions, ledger, tag and generation as the vault wrote them at one
//! moment. Restoring the `secrets`, `key_versions` and `vault_meta` tables
//! together from one moment is the same. Nothing in the database tells it
//! from the present, and the master key carries no state, so:
//!
//! - *Detected* only by a process that was already running and had verified
//!   a newer ledger: it keeps the highest generation it verified, in
//!   memory, and refuses an older one with [`VaultError::LedgerRolledBack`]
//!   (on its next read of any secret, when the copy was written into the
//!   file it has open; a file swapped in by rename is generally not seen
//!   until the database is opened again, by a process that cannot tell).
//! - *Not detected* by a process started after the restore (a restart of
//!   the server, any CLI command): it accepts the copy, superseded tokens
//!   included. Key rotation does not help, since the copy holds its own key
//!   versions, wrapped under the same master key. What remains is outside
//!   the vault: keeping the data directory writable by airlock's user only,
//!   backups and file-integrity monitoring, and providers that rotate
//!   refresh tokens and revoke a grant when an old one is reused.
//!
//! Pending OAuth authorisations (`oauth_states`) are single-use rows
//! deleted on use; the ledger does not cover them.
//!
//! # Concurrency
//!
//! Keys live in memory behind an `RwLock`, taken only briefly and never while
//! waiting for the store, so it cannot deadlock with [`Store`]'s connection
//! lock. Rotation adds the new key to memory before its transaction commits
//! and keeps the old one, so a reader on either side of the commit finds its
//! key; [`Vault::open_secret`] compares a row against the active version read
//! in the same statement, never against a cached value.
//!
//! The ledger is checked on every read, cheaply: the row may come from the
//! record cache, but the ledger's tag is read fresh (one point query, since
//! the counter that keeps the record cache current is not protected and can
//! be set back). When it equals the tag this process last verified and
//! that ledger names the row, the row is current. Otherwise the row and the
//! whole ledger are read again in one statement, so a write another process
//! commits in between cannot pair a row with a ledger it does not belong
//! to, and the ledger is verified. Only a ledger read outside a transaction
//! is remembered (one read inside may yet roll back). Writes read the
//! ledger inside their `BEGIN IMMEDIATE` transaction, so writers in several
//! processes serialise on SQLite's lock and each builds on the last
//! committed ledger; the generation only grows. The ledger's lock, like the
//! keys', is held for memory operations only.

mod crypto;
mod error;
mod key_source;
mod ledger;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::sql::{Backend, Db, DbExt, Row, Tx, params};
use crate::store::{ConfigVersion, RecordCache, Store, StoreError, new_id, now};
use crypto::{Key256, MAGIC_CHECK, MAGIC_SEALED, MAGIC_WRAPPED};
pub use error::VaultError;
use key_source::{EnvLookup, META_KIND};
pub use key_source::{KeySource, MASTER_KEY_VAR, MASTER_PASSPHRASE_VAR};

/// Field name of the PKCE verifier sealed in `oauth_states.verifier`.
pub const PKCE_VERIFIER_FIELD: &str = "pkce-verifier";

/// `vault_meta` name of the KEK check value.
const META_CHECK: &str = "kek-check";
/// The check value's plaintext and associated data.
const CHECK_PLAINTEXT: &[u8] = b"airlock vault master key check v1";
const CHECK_AAD: &str = "airlock/kek-check";
/// Associated-data domains.
const AAD_WRAPPED_KEY: &str = "airlock/wrapped-key";
/// Secrets sealed since the ledger (see "Restore detection"): a ciphertext
/// that opens under this domain was written while a ledger existed.
const AAD_SECRET: &str = "airlock/secret/ledger";
/// Secrets sealed before the ledger; opened only to adopt them into one.
const AAD_SECRET_LEGACY: &str = "airlock/secret";
const AAD_BLOB: &str = "airlock/blob";

/// Who a secret belongs to. Exactly one of `secrets.connection_id` or
/// `secrets.oauth_app_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretOwner {
    /// A connection (`connections.id`).
    Connection(String),
    /// An organisation-level OAuth app (`oauth_apps.id`).
    OAuthApp(String),
}

impl SecretOwner {
    fn kind(&self) -> &'static str {
        match self {
            Self::Connection(_) => "connection",
            Self::OAuthApp(_) => "oauth-app",
        }
    }

    fn id(&self) -> &str {
        match self {
            Self::Connection(id) | Self::OAuthApp(id) => id,
        }
    }

    /// `secrets` column holding this kind of owner.
    fn column(&self) -> &'static str {
        match self {
            Self::Connection(_) => "connection_id",
            Self::OAuthApp(_) => "oauth_app_id",
        }
    }

    /// How errors name a secret: never its value.
    fn describe(&self, field: &str) -> String {
        match self {
            Self::Connection(id) => format!("secret '{field}' of connection {id}"),
            Self::OAuthApp(id) => format!("secret '{field}' of OAuth app {id}"),
        }
    }
}

/// One key version, as [`crate::Airlock::key_versions`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyVersionInfo {
    /// The version number: 1 for the vault's first key, one more for each
    /// rotation.
    pub version: u32,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
    /// Whether it is the active version, the one every secret is sealed
    /// under; exactly one is.
    pub active: bool,
    /// Rows of `secrets` under this version.
    pub secrets: usize,
    /// Rows of `oauth_states` under this version.
    pub oauth_states: usize,
}

/// A row of [`Vault::versions`]' query.
fn key_version_info(r: &Row) -> Result<KeyVersionInfo, StoreError> {
    Ok(KeyVersionInfo {
        version: r.get(0)?,
        created_at: r.get(1)?,
        active: r.get(2)?,
        secrets: r.get(3)?,
        oauth_states: r.get(4)?,
    })
}

/// The unwrapped data keys.
struct KeyRing {
    keys: BTreeMap<u32, Key256>,
    /// The active version as this process last saw it; only
    /// [`Vault::seal_blob`] and [`Vault::open_blob`] rely on it.
    active: u32,
}

/// Encrypts and decrypts secrets. Share it behind an `Arc`.
pub struct Vault {
    store: Arc<Store>,
    kek: Key256,
    ring: RwLock<KeyRing>,
    source_description: String,
    /// Sealed secret rows by owner and field (see [`RecordCache`]).
    sealed: RecordCache<Option<SealedRow>>,
    /// Which row is current for each secret (see "Restore detection").
    ledger: ledger::Keeper,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring();
        f.debug_struct("Vault")
            .field("db", &self.store.describe())
            .field("key_source", &self.source_description)
            .field("versions", &ring.keys.keys().collect::<Vec<_>>())
            .field("active", &ring.active)
            .finish_non_exhaustive()
    }
}

/// What [`Vault::open`] found in the database.
struct StoredState {
    meta: BTreeMap<String, Vec<u8>>,
    /// `(version, wrapped_key, active)`.
    versions: Vec<(u32, Vec<u8>, bool)>,
}

fn read_state(conn: &dyn Db) -> Result<StoredState, VaultError> {
    let meta = conn
        .query_map("SELECT name, value FROM vault_meta", params![], |r| {
            Ok((r.get::<String>(0)?, r.get::<Vec<u8>>(1)?))
        })?
        .into_iter()
        .collect();
    let versions = conn.query_map(
        "SELECT version, wrapped_key, active FROM key_versions ORDER BY version",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(StoredState { meta, versions })
}

fn active_version(conn: &dyn Db) -> Result<u32, VaultError> {
    conn.query_opt(
        "SELECT version FROM key_versions WHERE active = 1",
        params![],
        |r| r.get(0),
    )?
    .ok_or_else(|| VaultError::Corrupt("no active key version".to_string()))
}

fn wrap_aad(version: u32) -> Vec<u8> {
    crypto::aad(AAD_WRAPPED_KEY, &[], version)
}

fn secret_aad(row_id: &str, owner: &SecretOwner, field: &str, version: u32) -> Vec<u8> {
    secret_aad_in(AAD_SECRET, row_id, owner, field, version)
}

fn secret_aad_in(
    domain: &str,
    row_id: &str,
    owner: &SecretOwner,
    field: &str,
    version: u32,
) -> Vec<u8> {
    crypto::aad(
        domain,
        &[
            row_id.as_bytes(),
            owner.kind().as_bytes(),
            owner.id().as_bytes(),
            field.as_bytes(),
        ],
        version,
    )
}

fn blob_aad(aad_id: &str, field: &str, version: u32) -> Vec<u8> {
    crypto::aad(AAD_BLOB, &[aad_id.as_bytes(), field.as_bytes()], version)
}

/// Seal `plaintext` for another table's column under the data key of `version`.
fn seal_blob_under(
    key: &Key256,
    version: u32,
    aad_id: &str,
    field: &str,
    plaintext: &[u8],
) -> Result<(u32, Vec<u8>), VaultError> {
    let blob = crypto::seal(
        key,
        MAGIC_SEALED,
        version,
        &blob_aad(aad_id, field, version),
        plaintext,
    )?;
    Ok((version, blob))
}

fn blob_what(aad_id: &str, field: &str) -> String {
    format!("sealed '{field}' of {aad_id}")
}

fn unwrap_key(kek: &Key256, version: u32, wrapped: &[u8]) -> Result<Key256, VaultError> {
    let fail = || {
        VaultError::Corrupt(format!(
            "key version {version} cannot be unwrapped with the master key although the master \
             key check passed: its key_versions row was altered"
        ))
    };
    if crypto::header_version(MAGIC_WRAPPED, wrapped) != Some(version) {
        return Err(fail());
    }
    let bytes =
        crypto::open(kek, MAGIC_WRAPPED, &wrap_aad(version), wrapped).map_err(|_| fail())?;
    Key256::from_slice(&bytes).ok_or_else(fail)
}

/// How strictly a row's version is compared with the active one.
#[derive(Clone, Copy)]
enum Expect {
    /// The row must be under exactly this version (the active version read
    /// in the same statement or transaction).
    Exactly(u32),
    /// The row must not be older than this (the active version as this
    /// process last saw it; a newer one means a rotation just committed).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "only the out-of-transaction blob reader, used by tests, expects it"
        )
    )]
    AtLeast(u32),
}

impl Vault {
    /// Open the vault in `store` with the master key from `source`.
    ///
    /// On first use this creates the KEK check value and key version 1 (and,
    /// for [`KeySource::File`], the key file) together. Afterwards it checks
    /// the master key against the check value before writing anything, and
    /// unwraps every key version into memory.
    pub fn open(store: Arc<Store>, source: &KeySource) -> Result<Self, VaultError> {
        Self::open_with(store, source, &key_source::process_env)
    }

    pub(crate) fn open_with(
        store: Arc<Store>,
        source: &KeySource,
        env: EnvLookup<'_>,
    ) -> Result<Self, VaultError> {
        // Two rounds at most: if another process creates the vault between
        // our read and our write, the second round opens theirs.
        for _ in 0..2 {
            let state = read_vault(&store, read_state)?;
            if state.meta.contains_key(META_CHECK) {
                return Self::open_existing(store, source, env, state);
            }
            if !state.versions.is_empty() {
                return Err(VaultError::Corrupt(
                    "key versions exist but the master key check value is missing".to_string(),
                ));
            }
            if let Some(vault) = Self::create(&store, source, env)? {
                return Ok(vault);
            }
        }
        Err(VaultError::Corrupt(
            "the vault was being created concurrently and could not be read".to_string(),
        ))
    }

    fn open_existing(
        store: Arc<Store>,
        source: &KeySource,
        env: EnvLookup<'_>,
        state: StoredState,
    ) -> Result<Self, VaultError> {
        let wrong = |hint: &str| VaultError::WrongMasterKey {
            key_source: source.describe(),
            db: store.describe(),
            hint: hint.to_string(),
        };
        match state.meta.get(META_KIND).map(Vec::as_slice) {
            Some(kind) if kind == source.kind() => {}
            Some(key_source::KIND_PASSPHRASE) => {
                return Err(wrong(&format!(
                    " (it was created with a passphrase: set {MASTER_PASSPHRASE_VAR}, and unset \
                     {MASTER_KEY_VAR})"
                )));
            }
            Some(key_source::KIND_KEY) => {
                return Err(wrong(&format!(
                    " (it was created with a 256-bit master key, not a passphrase: unset \
                     {MASTER_PASSPHRASE_VAR} and provide the key in {MASTER_KEY_VAR} or the key \
                     file)"
                )));
            }
            _ => {
                return Err(VaultError::Corrupt(
                    "the vault's master key kind is missing or unknown".to_string(),
                ));
            }
        }
        let kek = source.load_existing(&state.meta, &store.describe(), env)?;
        let check = &state.meta[META_CHECK];
        let plain =
            crypto::open(&kek, MAGIC_CHECK, CHECK_AAD.as_bytes(), check).map_err(|_| wrong(""))?;
        if !bool::from(plain[..].ct_eq(CHECK_PLAINTEXT)) {
            return Err(wrong(""));
        }

        let mut keys = BTreeMap::new();
        let mut active = None;
        for (version, wrapped, is_active) in &state.versions {
            keys.insert(*version, unwrap_key(&kek, *version, wrapped)?);
            if *is_active {
                active = Some(*version);
            }
        }
        let active =
            active.ok_or_else(|| VaultError::Corrupt("no active key version".to_string()))?;
        let source_description = describe_opened(source, store.sqlite_path(), false);
        let vault = Self {
            store,
            ledger: ledger::Keeper::new(derive_key(&kek, ledger::KEY_PURPOSE)),
            kek,
            ring: RwLock::new(KeyRing { keys, active }),
            source_description,
            sealed: RecordCache::default(),
        };
        vault.adopt_legacy_secrets()?;
        Ok(vault)
    }

    /// First run: returns `None` if another process created the vault first.
    fn create(
        store: &Arc<Store>,
        source: &KeySource,
        env: EnvLookup<'_>,
    ) -> Result<Option<Self>, VaultError> {
        let init = source.load_for_init(env)?;
        let check = crypto::seal(
            &init.kek,
            MAGIC_CHECK,
            1,
            CHECK_AAD.as_bytes(),
            CHECK_PLAINTEXT,
        )?;
        let data_key = Key256::random()?;
        let wrapped = crypto::seal(&init.kek, MAGIC_WRAPPED, 1, &wrap_aad(1), data_key.expose())?;
        let keeper = ledger::Keeper::new(derive_key(&init.kek, ledger::KEY_PURPOSE));
        let created = write_vault(store, |tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM vault_meta WHERE name = ?1)
                     OR EXISTS (SELECT 1 FROM key_versions)",
                params![META_CHECK],
                |r| r.get(0),
            )?;
            if exists {
                return Ok(false);
            }
            for (name, value) in &init.meta {
                ledger::put_meta(tx, name, value)?;
            }
            ledger::put_meta(tx, META_CHECK, &check)?;
            tx.execute(
                "INSERT INTO key_versions (version, wrapped_key, created_at, active)
                 VALUES (1, ?1, ?2, 1)",
                params![wrapped, now()],
            )?;
            // An empty ledger from the start: its absence later means it was
            // removed (see `adopt_legacy_secrets`).
            let empty = ledger::Ledger {
                generation: 1,
                ..Default::default()
            };
            keeper.store(tx, &empty)?;
            Ok(true)
        })?;
        if !created {
            return Ok(None);
        }
        tracing::info!(key_source = %source.describe(), "vault created with key version 1");
        Ok(Some(Self {
            store: Arc::clone(store),
            kek: init.kek,
            ring: RwLock::new(KeyRing {
                keys: BTreeMap::from([(1, data_key)]),
                active: 1,
            }),
            source_description: describe_opened(source, store.sqlite_path(), init.created_file),
            sealed: RecordCache::default(),
            ledger: keeper,
        }))
    }

    /// Where the master key came from, for the start-up line: like
    /// [`KeySource::describe`], plus a warning for a key file kept next to
    /// the database and whether it was created now. Never the key.
    pub fn describe_source(&self) -> &str {
        &self.source_description
    }

    // ----- secrets ---------------------------------------------------------

    /// Seal `plaintext` as `owner`'s `field`, replacing any previous value,
    /// in the caller's transaction (so it commits, durably, with the rest of
    /// the caller's change). The row gets a fresh id each time, and the
    /// vault's ledger records that id as the current one in the same
    /// transaction.
    pub fn seal_secret(
        &self,
        tx: &Tx<'_>,
        owner: &SecretOwner,
        field: &str,
        plaintext: &SecretString,
    ) -> Result<(), VaultError> {
        let (version, key) = self.active_key(tx)?;
        let id = new_id();
        let ciphertext = crypto::seal(
            &key,
            MAGIC_SEALED,
            version,
            &secret_aad(&id, owner, field, version),
            plaintext.expose_secret().as_bytes(),
        )?;
        let column = owner.column();
        tx.execute(
            &format!("DELETE FROM secrets WHERE {column} = ?1 AND field = ?2"),
            params![owner.id(), field],
        )?;
        tx.execute(
            &format!(
                "INSERT INTO secrets (id, {column}, field, key_version, ciphertext, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![id, owner.id(), field, version, ciphertext, now()],
        )?;
        self.record(tx, Some((owner, field, &id)))
    }

    /// `owner`'s `field`, or `None` if it has none.
    ///
    /// A row that is not the one the vault last wrote for `owner`'s `field`
    /// (an older copy restored, a deleted one put back) is refused with
    /// [`VaultError::RestoredSecret`]; every row is, with
    /// [`VaultError::LedgerInvalid`] or [`VaultError::LedgerRolledBack`],
    /// while the vault's record of current rows cannot be trusted.
    pub fn open_secret(
        &self,
        owner: &SecretOwner,
        field: &str,
    ) -> Result<Option<SecretString>, VaultError> {
        // Credentials are opened for every outbound request: the sealed row
        // comes from the record cache while nothing changed, and is opened
        // (decrypted, checked) every time.
        let key = format!("{}\u{0}{}\u{0}{field}", owner.column(), owner.id());
        read_vault(&self.store, |conn| {
            // A cached row is checked against the tag as stored now, never a
            // cached one: the counter that keeps the record cache current is
            // not protected, the tag is. Both come from one statement.
            let (version, tag_now) = ledger::read_version_and_tag(conn)?;
            let mut fresh = false;
            let row = self
                .sealed
                .get_at(conn, ConfigVersion::known(version), &key, |c| {
                    fresh = true;
                    sealed_row(c, owner, field, false)
                })?;
            let Some(row) = row.as_ref() else {
                return Ok(None);
            };
            // A row read just now carries the tag from its own statement.
            let tag = if fresh { &row.ledger.tag } else { &tag_now };
            self.open_row(conn, owner, field, row, tag.as_deref())
        })
    }

    /// [`Vault::open_secret`] on a connection or transaction the caller
    /// already holds (`&Tx` derefs to `&dyn Db`).
    pub fn open_secret_in(
        &self,
        conn: &dyn Db,
        owner: &SecretOwner,
        field: &str,
    ) -> Result<Option<SecretString>, VaultError> {
        let Some(row) = sealed_row(conn, owner, field, false)? else {
            return Ok(None);
        };
        self.open_row(conn, owner, field, &row, row.ledger.tag.as_deref())
    }

    /// Open `row` and check it is the current one against `tag`, the
    /// ledger's tag as stored now.
    fn open_row(
        &self,
        conn: &dyn Db,
        owner: &SecretOwner,
        field: &str,
        row: &SealedRow,
        tag: Option<&[u8]>,
    ) -> Result<Option<SecretString>, VaultError> {
        // Decrypting first keeps the more precise error for a row that was
        // altered or moved rather than restored.
        let plain = self.open_sealed(conn, owner, field, row)?;
        let key = ledger::entry_key(owner.kind(), owner.id(), field);
        // The common case: the ledger is the one this process verified last
        // and names this row.
        if self.ledger.confirms(tag, &key, &row.id) {
            return secret_text(owner, field, &plain).map(Some);
        }
        // Otherwise the row and the whole ledger again, from one statement
        // (so a write committed in between cannot mismatch them), and the
        // ledger verified under the master key.
        let committed = !conn.in_transaction();
        let floor = self.ledger.high_water();
        let Some(row) = sealed_row(conn, owner, field, true)? else {
            return Ok(None);
        };
        let plain = self.open_sealed(conn, owner, field, &row)?;
        let current = self.ledger.verify_at_least(&row.ledger, committed, floor)?;
        check_current(&current, owner, field, &row.id)?;
        secret_text(owner, field, &plain).map(Some)
    }

    /// Decrypt `row` after the key-version checks.
    fn open_sealed(
        &self,
        conn: &dyn Db,
        owner: &SecretOwner,
        field: &str,
        row: &SealedRow,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let active = row
            .active
            .ok_or_else(|| VaultError::Corrupt("no active key version".to_string()))?;
        self.open_checked(
            conn,
            &|| owner.describe(field),
            &secret_aad(&row.id, owner, field, row.version),
            row.version,
            Expect::Exactly(active),
            &row.ciphertext,
        )
    }

    /// Delete `owner`'s `field`; whether there was one. The ledger forgets
    /// it, so a copy put back later is refused.
    pub fn delete_secret(
        &self,
        tx: &Tx<'_>,
        owner: &SecretOwner,
        field: &str,
    ) -> Result<bool, VaultError> {
        let n = tx.execute(
            &format!(
                "DELETE FROM secrets WHERE {} = ?1 AND field = ?2",
                owner.column()
            ),
            params![owner.id(), field],
        )?;
        if n > 0 {
            self.record(tx, None)?;
        }
        Ok(n > 0)
    }

    /// Delete every secret of `owner`; how many there were. On SQLite the
    /// store runs with `secure_delete`, so SQLite overwrites the freed
    /// ciphertext; on PostgreSQL the rows are deleted when the transaction
    /// commits, and reclaiming their space (VACUUM) is the database
    /// operator's. The ledger forgets them, so copies put back later are
    /// refused.
    pub fn delete_secrets(&self, tx: &Tx<'_>, owner: &SecretOwner) -> Result<usize, VaultError> {
        let n = tx.execute(
            &format!("DELETE FROM secrets WHERE {} = ?1", owner.column()),
            params![owner.id()],
        )?;
        if n > 0 {
            self.record(tx, None)?;
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    // ----- blobs for other tables -----------------------------------------

    /// Seal `plaintext` for a row of another table, bound to `aad_id` (for
    /// `oauth_states` the `state_hash`) and `field` (for `oauth_states`
    /// [`PKCE_VERIFIER_FIELD`]). Store the returned key version in the row's
    /// `key_version` column next to the blob.
    ///
    /// This uses the active version this process knows. Prefer
    /// [`Vault::seal_blob_in`] with the transaction that inserts the row: a
    /// rotation committed between sealing and inserting would otherwise
    /// leave the row under the previous version, which [`Vault::open_blob`]
    /// then refuses as stale.
    #[cfg(test)]
    pub fn seal_blob(
        &self,
        aad_id: &str,
        field: &str,
        plaintext: &[u8],
    ) -> Result<(u32, Vec<u8>), VaultError> {
        let (version, key) = {
            let ring = self.ring();
            let key = ring.keys.get(&ring.active).cloned().ok_or_else(|| {
                VaultError::Corrupt("the active key version is not loaded".to_string())
            })?;
            (ring.active, key)
        };
        seal_blob_under(&key, version, aad_id, field, plaintext)
    }

    /// Seal `plaintext` for a row of another table, bound to `aad_id` (for
    /// `oauth_states` the `state_hash`) and `field` (for `oauth_states`
    /// [`PKCE_VERIFIER_FIELD`]), under the active version as recorded in the
    /// database `conn` sees: use the transaction that inserts the row. Store
    /// the returned key version in the row's `key_version` column next to
    /// the blob.
    pub fn seal_blob_in(
        &self,
        conn: &dyn Db,
        aad_id: &str,
        field: &str,
        plaintext: &[u8],
    ) -> Result<(u32, Vec<u8>), VaultError> {
        let (version, key) = self.active_key(conn)?;
        seal_blob_under(&key, version, aad_id, field, plaintext)
    }

    /// Open a blob from [`Vault::seal_blob`]; `key_version` is the row's
    /// `key_version` column. A blob under a version older than the active
    /// one (as this process knows it) is refused as stale; so is a row read
    /// just before a rotation committed and opened just after it. Use
    /// [`Vault::open_blob_in`] with the reading transaction to avoid that.
    #[cfg(test)]
    pub fn open_blob(
        &self,
        aad_id: &str,
        field: &str,
        key_version: u32,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let active = self.ring().active;
        let what = || blob_what(aad_id, field);
        let version = self.check_version(&what, key_version, Expect::AtLeast(active), blob)?;
        let key = self.ring().keys.get(&version).cloned().ok_or_else(|| {
            VaultError::UnknownKeyVersion {
                what: what(),
                version,
            }
        })?;
        crypto::open(&key, MAGIC_SEALED, &blob_aad(aad_id, field, version), blob)
            .map_err(|_| VaultError::Decrypt { what: what() })
    }

    /// Open a blob from [`Vault::seal_blob_in`]; `key_version` is the row's
    /// `key_version` column. It is checked against the active version as
    /// recorded in the database `conn` sees (call it with the transaction
    /// that read the row), so a blob under an older version is refused as
    /// stale. It also finds a key version another process created.
    pub fn open_blob_in(
        &self,
        conn: &dyn Db,
        aad_id: &str,
        field: &str,
        key_version: u32,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let active = active_version(conn)?;
        self.open_checked(
            conn,
            &|| blob_what(aad_id, field),
            &blob_aad(aad_id, field, key_version),
            key_version,
            Expect::Exactly(active),
            blob,
        )
    }

    // ----- key versions ---------------------------------------------------

    /// A 256-bit key for `purpose`, derived from the master key
    /// (HMAC-SHA256 of the purpose under the KEK): stable across restarts
    /// for the same master key, useless to anyone who does not hold it.
    pub(crate) fn derive_key(&self, purpose: &str) -> [u8; 32] {
        derive_key(&self.kek, purpose)
    }

    /// Create a new active key version and re-encrypt every secret and
    /// every `oauth_states` verifier under it, all in one transaction. The
    /// previous version stays (unused) until [`Vault::retire`]d.
    ///
    /// A secret that does not verify (altered, restored from before an
    /// earlier rotation, or not the current row by the ledger) stops the
    /// rotation with its error: re-encrypting it would launder it. A
    /// pending OAuth authorisation that does not verify is deleted instead
    /// (it is single-use and short-lived; the user starts it again).
    pub fn rotate(&self) -> Result<u32, VaultError> {
        let new_key = Key256::random()?;
        let mut inserted = None;
        let result = write_vault(&self.store, |tx| {
            let old_active = active_version(tx)?;
            let version: u32 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM key_versions",
                params![],
                |r| r.get(0),
            )?;
            let wrapped = crypto::seal(
                &self.kek,
                MAGIC_WRAPPED,
                version,
                &wrap_aad(version),
                new_key.expose(),
            )?;
            tx.execute(
                "UPDATE key_versions SET active = 0 WHERE active = 1",
                params![],
            )?;
            tx.execute(
                "INSERT INTO key_versions (version, wrapped_key, created_at, active)
                 VALUES (?1, ?2, ?3, 1)",
                params![version, wrapped, now()],
            )?;
            self.reseal_secrets(tx, old_active, version, &new_key)?;
            let dropped = self.reseal_oauth_states(tx, old_active, version, &new_key)?;
            // The new key is in memory before the commit, so a reader that
            // sees the committed rows finds it.
            self.ring_mut().keys.insert(version, new_key.clone());
            inserted = Some(version);
            Ok((version, dropped))
        });
        match result {
            Ok((version, dropped)) => {
                let mut ring = self.ring_mut();
                ring.active = ring.active.max(version);
                drop(ring);
                tracing::info!(version, dropped_oauth_states = dropped, "vault key rotated");
                Ok(version)
            }
            Err(e) => {
                if let Some(version) = inserted {
                    self.ring_mut().keys.remove(&version);
                }
                Err(e)
            }
        }
    }

    /// Re-encrypt every secret from `old_active` to `version` under `key`,
    /// each one checked first. Row ids stay, so the ledger stays as it is.
    fn reseal_secrets(
        &self,
        tx: &Tx<'_>,
        old_active: u32,
        version: u32,
        key: &Key256,
    ) -> Result<(), VaultError> {
        let current = self.ledger.verify(&ledger::read_stored(tx)?, false)?;
        for row in secret_rows(tx)? {
            let plain = self.open_secret_row(tx, &row, AAD_SECRET, old_active)?;
            check_current(&current, &row.owner, &row.field, &row.id)?;
            let sealed = crypto::seal(
                key,
                MAGIC_SEALED,
                version,
                &secret_aad(&row.id, &row.owner, &row.field, version),
                &plain,
            )?;
            tx.execute(
                "UPDATE secrets SET key_version = ?1, ciphertext = ?2 WHERE id = ?3",
                params![version, sealed, row.id],
            )?;
        }
        Ok(())
    }

    /// Open a row of [`secret_rows`] sealed under associated-data `domain`,
    /// which must be under the `active` version.
    fn open_secret_row(
        &self,
        conn: &dyn Db,
        row: &SecretRow,
        domain: &str,
        active: u32,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.open_checked(
            conn,
            &|| row.owner.describe(&row.field),
            &secret_aad_in(domain, &row.id, &row.owner, &row.field, row.version),
            row.version,
            Expect::Exactly(active),
            &row.ciphertext,
        )
    }

    /// Re-encrypt every pending OAuth authorisation from `old_active` to
    /// `version` under `key`; those that do not verify are deleted. How many
    /// were.
    fn reseal_oauth_states(
        &self,
        tx: &Tx<'_>,
        old_active: u32,
        version: u32,
        key: &Key256,
    ) -> Result<usize, VaultError> {
        let states = tx.query_map(
            "SELECT state_hash, key_version, verifier FROM oauth_states",
            params![],
            |r| Ok((r.get::<String>(0)?, r.get::<u32>(1)?, r.get::<Vec<u8>>(2)?)),
        )?;
        let mut dropped = 0usize;
        for (state_hash, row_version, blob) in states {
            let opened = self.open_checked(
                tx,
                &|| blob_what(&state_hash, PKCE_VERIFIER_FIELD),
                &blob_aad(&state_hash, PKCE_VERIFIER_FIELD, row_version),
                row_version,
                Expect::Exactly(old_active),
                &blob,
            );
            match opened {
                Ok(plain) => {
                    let (_, sealed) =
                        seal_blob_under(key, version, &state_hash, PKCE_VERIFIER_FIELD, &plain)?;
                    tx.execute(
                        "UPDATE oauth_states SET key_version = ?1, verifier = ?2
                         WHERE state_hash = ?3",
                        params![version, sealed, state_hash],
                    )?;
                }
                Err(VaultError::Store(e)) => return Err(VaultError::Store(e)),
                Err(e) => {
                    tracing::warn!(error = %e, "rotation drops a pending OAuth authorisation");
                    tx.execute(
                        "DELETE FROM oauth_states WHERE state_hash = ?1",
                        params![state_hash],
                    )?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// Record in `tx`, as the ledger's next generation, that `current`'s
    /// row id is its owner's field's current row (`None`: a deletion).
    /// Entries whose secret no longer exists are dropped, whether the vault
    /// deleted it or a cascade from its owner did: a copy put back later
    /// then has no entry and is refused.
    fn record(
        &self,
        tx: &Tx<'_>,
        current: Option<(&SecretOwner, &str, &str)>,
    ) -> Result<(), VaultError> {
        let mut ledger = self.ledger.base_for_write(tx)?;
        let live = ledger::live_keys(tx)?;
        ledger.rows.retain(|key, _| live.contains(key));
        if let Some((owner, field, row_id)) = current {
            ledger.rows.insert(
                ledger::entry_key(owner.kind(), owner.id(), field),
                row_id.to_string(),
            );
        }
        ledger.generation += 1;
        self.ledger.store(tx, &ledger)?;
        Ok(())
    }

    /// A vault from before the ledger has none: seal every secret under the
    /// ledger's associated-data domain and record it, in one transaction.
    /// A row that does not verify is recorded as it is (it keeps failing
    /// with its own error until re-entered).
    ///
    /// A missing ledger next to a secret that opens under the ledger's
    /// domain means the ledger was removed, not that it never existed:
    /// nothing is adopted then, and every secret is refused
    /// ([`VaultError::LedgerInvalid`]) until re-entered.
    fn adopt_legacy_secrets(&self) -> Result<(), VaultError> {
        // Read first: a start-up need not wait for the write lock (held by a
        // busy server, say) just to find the ledger there.
        if !read_vault(&self.store, |c| Ok(ledger::read_stored(c)?.is_absent()))? {
            return Ok(());
        }
        let adopted = write_vault(&self.store, |tx| {
            if !ledger::Keeper::absent(tx)? {
                return Ok(false);
            }
            let active = active_version(tx)?;
            let mut ledger = ledger::Ledger {
                generation: 1,
                ..Default::default()
            };
            for row in secret_rows(tx)? {
                match self.open_secret_row(tx, &row, AAD_SECRET_LEGACY, active) {
                    Ok(plain) => {
                        let key = self.key(tx, row.version, &|| row.owner.describe(&row.field))?;
                        let aad = secret_aad(&row.id, &row.owner, &row.field, row.version);
                        let sealed = crypto::seal(&key, MAGIC_SEALED, row.version, &aad, &plain)?;
                        tx.execute(
                            "UPDATE secrets SET ciphertext = ?1 WHERE id = ?2",
                            params![sealed, row.id],
                        )?;
                    }
                    Err(VaultError::Store(e)) => return Err(VaultError::Store(e)),
                    // Rolls back what was resealed so far.
                    Err(_) if self.open_secret_row(tx, &row, AAD_SECRET, active).is_ok() => {
                        return Err(VaultError::LedgerInvalid {
                            problem: "is missing although secrets were written with it",
                        });
                    }
                    Err(_) => {}
                }
                ledger.rows.insert(
                    ledger::entry_key(row.owner.kind(), row.owner.id(), &row.field),
                    row.id,
                );
            }
            self.ledger.store(tx, &ledger)?;
            Ok(true)
        });
        match adopted {
            Ok(true) => tracing::info!("vault secrets adopted into a new secret ledger"),
            Ok(false) => {}
            // Not fatal to start-up: every read reports it, and secrets
            // re-entered are trusted again.
            Err(e @ VaultError::LedgerInvalid { .. }) => tracing::error!(error = %e, "vault"),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Delete key version `version`. Refused for the active version and for
    /// a version any row still uses. Afterwards, on SQLite, the write-ahead
    /// log is checkpointed and truncated (best effort), so the deleted
    /// wrapped key does not linger in the `-wal` file (see
    /// [`Vault::checkpoint_wal`] for PostgreSQL).
    pub fn retire(&self, version: u32) -> Result<(), VaultError> {
        write_vault(&self.store, |tx| {
            let active: Option<bool> = tx.query_opt(
                "SELECT active FROM key_versions WHERE version = ?1",
                params![version],
                |r| r.get(0),
            )?;
            match active {
                None => return Err(VaultError::NoSuchVersion { version }),
                Some(true) => return Err(VaultError::RetireActive { version }),
                Some(false) => {}
            }
            let (secrets, oauth_states): (usize, usize) = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM secrets WHERE key_version = ?1),
                        (SELECT COUNT(*) FROM oauth_states WHERE key_version = ?1)",
                params![version],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if secrets + oauth_states > 0 {
                return Err(VaultError::VersionInUse {
                    version,
                    secrets,
                    oauth_states,
                });
            }
            tx.execute(
                "DELETE FROM key_versions WHERE version = ?1",
                params![version],
            )?;
            Ok(())
        })?;
        self.ring_mut().keys.remove(&version);
        self.checkpoint_wal();
        tracing::info!(version, "vault key version retired");
        Ok(())
    }

    /// SQLite: checkpoint and truncate the write-ahead log (best effort), so
    /// rows just deleted (a retired wrapped key) leave the `-wal` file; the
    /// store's `secure_delete` has already zeroed them in the database file.
    ///
    /// PostgreSQL has no file of airlock's to checkpoint: the committed
    /// transaction deleted the row, and what the server keeps of deleted
    /// rows until it reuses the space (VACUUM) and recycles its own
    /// write-ahead log is the database operator's to manage.
    fn checkpoint_wal(&self) {
        if self.store.backend() != Backend::Sqlite {
            return;
        }
        let checkpoint = self.store.read(|conn| {
            conn.query("PRAGMA wal_checkpoint(TRUNCATE)", params![])?;
            Ok::<_, StoreError>(())
        });
        if let Err(e) = checkpoint {
            tracing::warn!(error = %e, "checkpoint after retiring a key version failed");
        }
    }

    /// Every key version, oldest first, with how many rows use it.
    pub fn versions(&self) -> Result<Vec<KeyVersionInfo>, VaultError> {
        read_vault(&self.store, |conn| {
            Ok(conn.query_map(
                "SELECT k.version, k.created_at, k.active,
                        (SELECT COUNT(*) FROM secrets s WHERE s.key_version = k.version),
                        (SELECT COUNT(*) FROM oauth_states o WHERE o.key_version = k.version)
                 FROM key_versions k ORDER BY k.version",
                params![],
                key_version_info,
            )?)
        })
    }

    // ----- internals ------------------------------------------------------

    fn ring(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn ring_mut(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.ring.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The key of `version`, loading (unwrapping) it from `conn` if this
    /// process does not have it yet: another process may have rotated.
    fn key(
        &self,
        conn: &dyn Db,
        version: u32,
        what: &dyn Fn() -> String,
    ) -> Result<Key256, VaultError> {
        if let Some(key) = self.ring().keys.get(&version) {
            return Ok(key.clone());
        }
        let wrapped: Option<Vec<u8>> = conn.query_opt(
            "SELECT wrapped_key FROM key_versions WHERE version = ?1",
            params![version],
            |r| r.get(0),
        )?;
        let wrapped = wrapped.ok_or_else(|| VaultError::UnknownKeyVersion {
            what: what(),
            version,
        })?;
        let key = unwrap_key(&self.kek, version, &wrapped)?;
        self.ring_mut()
            .keys
            .entry(version)
            .or_insert_with(|| key.clone());
        Ok(key)
    }

    /// The active version as `conn` sees it, and its key.
    fn active_key(&self, conn: &dyn Db) -> Result<(u32, Key256), VaultError> {
        let version = active_version(conn)?;
        let key = self.key(conn, version, &|| {
            format!("the active key version {version}")
        })?;
        let mut ring = self.ring_mut();
        ring.active = ring.active.max(version);
        Ok((version, key))
    }

    /// The version a row's ciphertext is under, after the restore checks:
    /// the header must name the row's `key_version`, and that must be the
    /// active version.
    fn check_version(
        &self,
        what: &dyn Fn() -> String,
        column_version: u32,
        expect: Expect,
        blob: &[u8],
    ) -> Result<u32, VaultError> {
        let embedded = crypto::header_version(MAGIC_SEALED, blob)
            .ok_or_else(|| VaultError::Decrypt { what: what() })?;
        let active = match expect {
            Expect::Exactly(active) | Expect::AtLeast(active) => active,
        };
        let stale = |found| VaultError::StaleCiphertext {
            what: what(),
            found,
            active,
        };
        if embedded != column_version {
            return Err(stale(embedded));
        }
        let current = match expect {
            Expect::Exactly(active) => column_version == active,
            Expect::AtLeast(active) => column_version >= active,
        };
        if !current {
            return Err(stale(column_version));
        }
        Ok(column_version)
    }

    fn open_checked(
        &self,
        conn: &dyn Db,
        what: &dyn Fn() -> String,
        aad: &[u8],
        column_version: u32,
        expect: Expect,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let version = self.check_version(what, column_version, expect, blob)?;
        let key = self.key(conn, version, what)?;
        crypto::open(&key, MAGIC_SEALED, aad, blob)
            .map_err(|_| VaultError::Decrypt { what: what() })
    }
}

/// The start-up description of an opened source. `db` is the SQLite
/// database file; on PostgreSQL (`None`) the data is not in a file a key
/// file could sit next to.
fn describe_opened(source: &KeySource, db: Option<&Path>, created_file: bool) -> String {
    let base = source.describe();
    let KeySource::File(path) = source else {
        return base;
    };
    let beside_data = match (path.parent(), db.and_then(Path::parent)) {
        (Some(a), Some(b)) => same_dir(a, b),
        _ => false,
    };
    let warning = "it sits next to the data it protects; move the key elsewhere or use \
                   AIRLOCK_MASTER_KEY for real protection";
    match (created_file, beside_data) {
        (true, true) => format!("{base} (created now: {warning})"),
        (true, false) => format!("{base} (created now)"),
        (false, true) => format!("{base} ({warning})"),
        (false, false) => base,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A secret's row as stored: still sealed.
#[derive(Debug)]
struct SealedRow {
    id: String,
    version: u32,
    ciphertext: Vec<u8>,
    /// The active key version when the row was read.
    active: Option<u32>,
    /// The ledger's tag when the row was read, and the ledger itself when
    /// asked for.
    ledger: ledger::Stored,
}

/// `owner`'s `field` as stored, with the active key version and the
/// ledger's tag (and, `with_ledger`, the ledger) from the same statement.
fn sealed_row(
    conn: &dyn Db,
    owner: &SecretOwner,
    field: &str,
    with_ledger: bool,
) -> Result<Option<SealedRow>, VaultError> {
    // Only the parameters the statement names are passed: PostgreSQL cannot
    // type a parameter the SQL does not use.
    let ledger = if with_ledger {
        "(SELECT value FROM vault_meta WHERE name = ?4)"
    } else {
        "NULL"
    };
    let sql = format!(
        "SELECT id, key_version, ciphertext,
                (SELECT version FROM key_versions WHERE active = 1),
                (SELECT value FROM vault_meta WHERE name = ?3),
                {ledger}
         FROM secrets WHERE {} = ?1 AND field = ?2",
        owner.column()
    );
    let (id, tag) = (owner.id(), ledger::META_LEDGER_TAG);
    let row = if with_ledger {
        conn.query_opt(
            &sql,
            params![id, field, tag, ledger::META_LEDGER],
            sealed_from_row,
        )?
    } else {
        conn.query_opt(&sql, params![id, field, tag], sealed_from_row)?
    };
    Ok(row)
}

/// A [`sealed_row`] result.
fn sealed_from_row(r: &Row) -> Result<SealedRow, StoreError> {
    Ok(SealedRow {
        id: r.get(0)?,
        version: r.get(1)?,
        ciphertext: r.get(2)?,
        active: r.get(3)?,
        ledger: ledger::Stored {
            tag: r.get(4)?,
            ledger: r.get(5)?,
        },
    })
}

/// A decrypted secret as text.
fn secret_text(owner: &SecretOwner, field: &str, plain: &[u8]) -> Result<SecretString, VaultError> {
    let text = std::str::from_utf8(plain)
        .map_err(|_| VaultError::Corrupt(format!("{} is not UTF-8 text", owner.describe(field))))?;
    Ok(SecretString::from(text))
}

/// Whether `ledger` names `row_id` as `owner`'s current `field`.
fn check_current(
    ledger: &ledger::Ledger,
    owner: &SecretOwner,
    field: &str,
    row_id: &str,
) -> Result<(), VaultError> {
    match ledger
        .rows
        .get(&ledger::entry_key(owner.kind(), owner.id(), field))
    {
        Some(current) if current == row_id => Ok(()),
        recorded => Err(VaultError::RestoredSecret {
            what: owner.describe(field),
            deleted: recorded.is_none(),
        }),
    }
}

/// A row of `secrets`, for the passes over all of them (rotation,
/// adoption).
struct SecretRow {
    id: String,
    owner: SecretOwner,
    field: String,
    version: u32,
    ciphertext: Vec<u8>,
}

fn secret_rows(conn: &dyn Db) -> Result<Vec<SecretRow>, VaultError> {
    let rows = conn.query_map(
        "SELECT id, connection_id, oauth_app_id, field, key_version, ciphertext
         FROM secrets ORDER BY id",
        params![],
        secret_from_row,
    )?;
    rows.into_iter().collect()
}

/// A [`secret_rows`] row; `Ok(Err)` for a row without a single owner.
fn secret_from_row(r: &Row) -> Result<Result<SecretRow, VaultError>, StoreError> {
    let id: String = r.get(0)?;
    let owner = match (r.get::<Option<String>>(1)?, r.get::<Option<String>>(2)?) {
        (Some(c), None) => SecretOwner::Connection(c),
        (None, Some(a)) => SecretOwner::OAuthApp(a),
        _ => {
            return Ok(Err(VaultError::Corrupt(format!(
                "secret row {id} has no single owner"
            ))));
        }
    };
    Ok(Ok(SecretRow {
        id,
        owner,
        field: r.get(3)?,
        version: r.get(4)?,
        ciphertext: r.get(5)?,
    }))
}

/// A 256-bit key for `purpose`, derived from the master key (HMAC-SHA256
/// of the purpose under the KEK).
fn derive_key(kek: &Key256, purpose: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(kek.expose()).expect("HMAC takes a key of any length");
    mac.update(b"airlock derived key v1\0");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// [`Store::read`] with a closure that fails with a [`VaultError`].
fn read_vault<R>(
    store: &Store,
    f: impl FnOnce(&dyn Db) -> Result<R, VaultError>,
) -> Result<R, VaultError> {
    store.read_with(f)
}

/// [`Store::transact`] with a closure that fails with a [`VaultError`]: the
/// transaction rolls back and the closure's error is returned.
fn write_vault<R>(
    store: &Store,
    f: impl FnOnce(&Tx<'_>) -> Result<R, VaultError>,
) -> Result<R, VaultError> {
    store.transact(f)
}
