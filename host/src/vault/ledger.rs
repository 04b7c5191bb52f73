//! The secret ledger: which `secrets` row is current for each owner and
//! field, kept in `vault_meta` under a MAC only the master key can make.
//!
//! The AEAD binds a ciphertext to its row id, so a row moved or edited does
//! not open; but an older row of the same secret, put back with its old id,
//! opens fine. The ledger is what says it is no longer the current one. See
//! the module documentation of the vault for the design and its limits.
//!
//! Two `vault_meta` rows, always written together in the transaction that
//! changes a secret:
//!
//! ```text
//! secret-ledger      "ALL1" | generation (u64 BE) | { key (u32 BE len | bytes) | row id (u32 BE len | bytes) }*
//! secret-ledger-tag  HMAC-SHA256 of secret-ledger under a key derived from the master key
//! ```
//!
//! Readers compare the small tag with the one of the ledger they last
//! verified, so a read costs one point query, not a MAC over the ledger.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::VaultError;
use crate::store::StoreError;
use crate::store::sql::{Db, DbExt, Tx, params};

/// `vault_meta` name of the encoded ledger.
pub(super) const META_LEDGER: &str = "secret-ledger";
/// `vault_meta` name of its tag.
pub(super) const META_LEDGER_TAG: &str = "secret-ledger-tag";
/// The purpose the tag key is derived for.
pub(super) const KEY_PURPOSE: &str = "secret-ledger";
const MAGIC: &[u8; 4] = b"ALL1";

/// The ledger's content: the current row id of every secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Ledger {
    /// One more on every change, so an older ledger is told from a newer one.
    pub(super) generation: u64,
    /// [`entry_key`] -> current `secrets.id`.
    pub(super) rows: BTreeMap<String, String>,
}

/// The ledger key of `owner_kind`'s `owner_id`'s `field`. The id's length
/// makes it unambiguous whatever the id and field contain.
pub(super) fn entry_key(owner_kind: &str, owner_id: &str, field: &str) -> String {
    format!("{owner_kind}/{}/{owner_id}{field}", owner_id.len())
}

impl Ledger {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.rows.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.generation.to_be_bytes());
        for (key, id) in &self.rows {
            for part in [key, id] {
                let len = u32::try_from(part.len()).expect("ledger entry under 4 GiB");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (generation, mut rest) = rest.split_at_checked(8)?;
        let generation = u64::from_be_bytes(generation.try_into().ok()?);
        let mut rows = BTreeMap::new();
        while !rest.is_empty() {
            let (key, tail) = take_part(rest)?;
            let (id, tail) = take_part(tail)?;
            rows.insert(key, id);
            rest = tail;
        }
        Some(Self { generation, rows })
    }
}

/// One length-prefixed UTF-8 part off the front of `bytes`, and the rest.
fn take_part(bytes: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = bytes.split_at_checked(4)?;
    let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
    let (text, rest) = rest.split_at_checked(len)?;
    Some((String::from_utf8(text.to_vec()).ok()?, rest))
}

/// The stored ledger and its tag, read in one statement so they belong
/// together even while another process writes.
pub(super) fn read_stored(conn: &dyn Db) -> Result<Stored, StoreError> {
    conn.query_row(
        "SELECT (SELECT value FROM vault_meta WHERE name = ?1),
                (SELECT value FROM vault_meta WHERE name = ?2)",
        params![META_LEDGER, META_LEDGER_TAG],
        |r| {
            Ok(Stored {
                ledger: r.get(0)?,
                tag: r.get(1)?,
            })
        },
    )
}

/// The store's `config_version` counter and the stored tag, from one
/// statement: what every credential read outside a transaction needs (the
/// counter to keep the sealed-row cache current, the tag to check the row
/// against).
pub(super) fn read_version_and_tag(conn: &dyn Db) -> Result<(i64, Option<Vec<u8>>), StoreError> {
    conn.query_row(
        "SELECT n, (SELECT value FROM vault_meta WHERE name = ?1) \
         FROM config_version WHERE id = 1",
        params![META_LEDGER_TAG],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The `vault_meta` rows as stored (either may be missing).
#[derive(Debug, Default)]
pub(super) struct Stored {
    pub(super) ledger: Option<Vec<u8>>,
    pub(super) tag: Option<Vec<u8>>,
}

impl Stored {
    /// Whether neither row is there (a vault from before the ledger, or
    /// one whose ledger was removed).
    pub(super) fn is_absent(&self) -> bool {
        self.ledger.is_none() && self.tag.is_none()
    }
}

/// The `(owner, field)` ledger keys of every row in `secrets`.
pub(super) fn live_keys(conn: &dyn Db) -> Result<HashSet<String>, StoreError> {
    let rows = conn.query_map(
        "SELECT connection_id, oauth_app_id, field FROM secrets",
        params![],
        |r| {
            let (connection, app, field): (Option<String>, Option<String>, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(match (connection, app) {
                (Some(id), _) => entry_key("connection", &id, &field),
                (None, Some(id)) => entry_key("oauth-app", &id, &field),
                // The CHECK constraint rules this out; no key matches it.
                (None, None) => String::new(),
            })
        },
    )?;
    Ok(rows.into_iter().collect())
}

/// What this process last verified.
#[derive(Default)]
struct Seen {
    /// The tag and content of the newest ledger verified outside a
    /// transaction.
    verified: Option<(Vec<u8>, Arc<Ledger>)>,
    /// The highest generation verified outside a transaction: a ledger below
    /// it was rolled back under this process.
    high_water: u64,
}

/// The tag key and this process's verified copy of the ledger.
pub(super) struct Keeper {
    key: Zeroizing<[u8; 32]>,
    seen: RwLock<Seen>,
}

impl Keeper {
    /// A keeper whose tags are made with `key` (derived from the master key
    /// for [`KEY_PURPOSE`]).
    pub(super) fn new(key: [u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(key),
            seen: RwLock::default(),
        }
    }

    fn tag(&self, encoded: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.key[..]).expect("HMAC takes any key");
        mac.update(encoded);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of the ledger this process verified last and
    /// that ledger records `row_id` as current for `key`: the cheap check
    /// every read makes before the full one.
    pub(super) fn confirms(&self, tag: Option<&[u8]>, key: &str, row_id: &str) -> bool {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        match (&seen.verified, tag) {
            (Some((verified, ledger)), Some(tag)) => {
                verified[..] == *tag && ledger.rows.get(key).is_some_and(|id| id == row_id)
            }
            _ => false,
        }
    }

    /// The content of `stored` once its tag checks out and it is not older
    /// than a ledger this process already verified. `committed` says the
    /// read was outside a transaction (so it cannot be rolled back); only
    /// then is it remembered.
    pub(super) fn verify(
        &self,
        stored: &Stored,
        committed: bool,
    ) -> Result<Arc<Ledger>, VaultError> {
        let floor = self.high_water();
        self.verify_at_least(stored, committed, floor)
    }

    /// The highest generation this process verified outside a transaction.
    /// Read it before a statement, and pass it to
    /// [`Keeper::verify_at_least`] with what the statement returned.
    pub(super) fn high_water(&self) -> u64 {
        self.seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .high_water
    }

    /// [`Keeper::verify`] against `floor`, the high-water mark as it was
    /// before the statement that read `stored` began: only a ledger older
    /// than what was committed then is rolled back. (Comparing with the mark
    /// as it is now would be wrong with parallel connections, PostgreSQL's:
    /// another thread may have read, and recorded, a ledger committed after
    /// this statement's snapshot.)
    pub(super) fn verify_at_least(
        &self,
        stored: &Stored,
        committed: bool,
        floor: u64,
    ) -> Result<Arc<Ledger>, VaultError> {
        let (Some(encoded), Some(tag)) = (&stored.ledger, &stored.tag) else {
            return Err(VaultError::LedgerInvalid {
                problem: if stored.is_absent() {
                    "is missing"
                } else {
                    "is half missing"
                },
            });
        };
        {
            let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
            if let Some((verified, ledger)) = &seen.verified
                && verified == tag
            {
                // The same tag is the same content: no MAC to recompute.
                return Ok(Arc::clone(ledger));
            }
        }
        if !bool::from(self.tag(encoded)[..].ct_eq(tag)) {
            return Err(VaultError::LedgerInvalid {
                problem: "does not verify under the master key",
            });
        }
        let ledger = Ledger::decode(encoded).ok_or(VaultError::LedgerInvalid {
            problem: "is not well-formed although its tag verifies",
        })?;
        if ledger.generation < floor {
            return Err(VaultError::LedgerRolledBack {
                seen: floor,
                found: ledger.generation,
            });
        }
        let ledger = Arc::new(ledger);
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if committed && ledger.generation >= seen.high_water {
            seen.high_water = ledger.generation;
            seen.verified = Some((tag.clone(), Arc::clone(&ledger)));
        }
        Ok(ledger)
    }

    /// The ledger a write in `tx` starts from: the stored one when it
    /// verifies. Otherwise an empty one (logged): starting from what a
    /// tampered or rolled-back ledger records would bless the rows it
    /// names, while an empty one only ever holds what is written from now
    /// on, so each secret re-entered is trusted again and no other.
    pub(super) fn base_for_write(&self, tx: &Tx<'_>) -> Result<Ledger, VaultError> {
        let stored = read_stored(tx)?;
        match self.verify(&stored, false) {
            Ok(ledger) => Ok((*ledger).clone()),
            Err(e @ (VaultError::LedgerInvalid { .. } | VaultError::LedgerRolledBack { .. })) => {
                tracing::error!(
                    error = %e,
                    "starting a new secret ledger: only secrets written from now on are trusted; \
                     re-enter the others"
                );
                let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
                Ok(Ledger {
                    generation: seen.high_water,
                    rows: BTreeMap::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Write `ledger` and its tag in `tx`.
    pub(super) fn store(&self, tx: &Tx<'_>, ledger: &Ledger) -> Result<(), StoreError> {
        let encoded = ledger.encode();
        let tag = self.tag(&encoded);
        put_meta(tx, META_LEDGER, &encoded)?;
        put_meta(tx, META_LEDGER_TAG, &tag)?;
        Ok(())
    }

    /// Whether `tx` holds no ledger at all (a vault from before the ledger).
    pub(super) fn absent(tx: &Tx<'_>) -> Result<bool, StoreError> {
        Ok(read_stored(&**tx)?.is_absent())
    }
}

/// Insert or replace the `vault_meta` row `name` in `tx`.
pub(super) fn put_meta(tx: &Tx<'_>, name: &str, value: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO vault_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_roundtrips_and_rejects_garbage() {
        let ledger = Ledger {
            generation: 7,
            rows: BTreeMap::from([
                (entry_key("connection", "c1", "token"), "id-1".to_string()),
                (
                    entry_key("oauth-app", "a", "client-secret"),
                    "id-2".to_string(),
                ),
            ]),
        };
        let encoded = ledger.encode();
        assert_eq!(Ledger::decode(&encoded), Some(ledger.clone()));
        assert_eq!(
            Ledger::decode(&Ledger::default().encode()),
            Some(Ledger::default())
        );
        for bad in [
            &encoded[..encoded.len() - 1],
            &encoded[..3],
            &[&encoded[..], b"x"].concat()[..],
        ] {
            assert_eq!(Ledger::decode(bad), None);
        }
        // Keys cannot collide through the id/field boundary.
        assert_ne!(
            entry_key("connection", "ab", "c"),
            entry_key("connection", "a", "bc")
        );
    }
}
