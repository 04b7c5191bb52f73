//! The operator's trust policy for signed plugins: trusted publisher keys
//! (`trusted_keys`: a name, the OpenSSH public key, its fingerprint, and a
//! scope of every plugin or one plugin id) and the `require-signature`
//! switch (`trust_policy`). Keys arrive here parsed and fingerprinted
//! ([`crate::signing::PublisherKey`]); this module only stores them.

use serde::Serialize;

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, now};
use crate::signing::PublisherKey;

/// A publisher key the operator trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TrustedKey {
    /// The operator's name for it, unique (what `trust rm` takes).
    pub name: String,
    /// The key as one OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// Its SHA-256 fingerprint (`SHA256:...`, as `ssh-keygen -l` prints
    /// it): signatures by this key are matched by it.
    pub fingerprint: String,
    /// The one plugin id it is trusted for; `null` for every plugin.
    pub plugin: Option<String>,
    /// When it was added (RFC 3339 UTC).
    pub added_at: String,
}

impl TrustedKey {
    /// Whether this key vouches for plugin `id`.
    pub fn covers(&self, id: &str) -> bool {
        self.plugin.as_deref().is_none_or(|p| p == id)
    }
}

const COLUMNS: &str = "name, public_key, fingerprint, plugin_id, added_at";

fn from_row(r: &Row) -> Result<TrustedKey, StoreError> {
    Ok(TrustedKey {
        name: r.get(0)?,
        public_key: r.get(1)?,
        fingerprint: r.get(2)?,
        plugin: r.get(3)?,
        added_at: r.get(4)?,
    })
}

/// Trust `key` under `name`, for plugin `plugin` or (`None`) every plugin.
pub fn add_key(
    tx: &Tx<'_>,
    name: &str,
    key: &PublisherKey,
    plugin: Option<&str>,
) -> Result<TrustedKey, StoreError> {
    if tx.exists("SELECT 1 FROM trusted_keys WHERE name = ?1", params![name])? {
        return Err(StoreError::Conflict(format!(
            "a trusted key is already named `{name}`; remove it first or pick another name"
        )));
    }
    let same: Option<String> = tx.query_opt(
        "SELECT name FROM trusted_keys
         WHERE fingerprint = ?1 AND COALESCE(plugin_id, '') = COALESCE(CAST(?2 AS TEXT), '')",
        params![key.fingerprint, plugin],
        |r| r.get(0),
    )?;
    if let Some(same) = same {
        return Err(StoreError::Conflict(format!(
            "key {} is already trusted {} as `{same}`",
            key.fingerprint,
            plugin.map_or("for every plugin".to_string(), |p| format!("for `{p}`"))
        )));
    }
    let record = TrustedKey {
        name: name.to_string(),
        public_key: key.public_key.clone(),
        fingerprint: key.fingerprint.clone(),
        plugin: plugin.map(String::from),
        added_at: now(),
    };
    tx.execute(
        "INSERT INTO trusted_keys (name, public_key, fingerprint, plugin_id, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record.name,
            record.public_key,
            record.fingerprint,
            record.plugin,
            record.added_at
        ],
    )?;
    Ok(record)
}

/// Every trusted key, by name.
pub fn list_keys(conn: &dyn Db) -> Result<Vec<TrustedKey>, StoreError> {
    conn.query_map(
        &format!("SELECT {COLUMNS} FROM trusted_keys ORDER BY name"),
        params![],
        from_row,
    )
}

/// Stop trusting the key named `name`; returns what it was.
pub fn remove_key(tx: &Tx<'_>, name: &str) -> Result<TrustedKey, StoreError> {
    let key = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM trusted_keys WHERE name = ?1"),
            params![name],
            from_row,
        )?
        .ok_or_else(|| StoreError::NotFound(format!("trusted key `{name}`")))?;
    tx.execute("DELETE FROM trusted_keys WHERE name = ?1", params![name])?;
    Ok(key)
}

/// Whether installs and uploads must carry a trusted signature.
pub fn require_signature(conn: &dyn Db) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT require_signature FROM trust_policy WHERE id = 1",
        params![],
        |r| r.get(0),
    )
}

/// Turn `require-signature` on or off.
pub fn set_require_signature(tx: &Tx<'_>, on: bool) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE trust_policy SET require_signature = ?1, updated_at = ?2 WHERE id = 1",
        params![on, now()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        keys_are_added_listed_and_removed_by_name,
        a_name_or_a_key_and_scope_is_taken_once,
        require_signature_is_off_until_turned_on
    );

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJFsYpsKXQQS4ugSE4iqX1febl568q9hIOBXKZE4tVuF alice@example";

    fn key() -> PublisherKey {
        PublisherKey::parse(KEY).unwrap()
    }

    fn keys_are_added_listed_and_removed_by_name(store: &TestStore) {
        let global = store
            .write(|tx| add_key(tx, "alice", &key(), None))
            .unwrap();
        assert_eq!(global.public_key, KEY);
        assert!(global.covers("anything"));
        let scoped = store
            .write(|tx| add_key(tx, "alice-jira", &key(), Some("jira")))
            .unwrap();
        assert!(scoped.covers("jira") && !scoped.covers("confluence"));
        assert_eq!(store.read(list_keys).unwrap(), [global.clone(), scoped]);
        assert_eq!(store.write(|tx| remove_key(tx, "alice")).unwrap(), global);
        let err = store.write(|tx| remove_key(tx, "alice")).unwrap_err();
        assert_eq!(err.to_string(), "trusted key `alice` not found");
        assert_eq!(store.read(list_keys).unwrap().len(), 1);
    }

    fn a_name_or_a_key_and_scope_is_taken_once(store: &TestStore) {
        store
            .write(|tx| add_key(tx, "alice", &key(), None))
            .unwrap();
        let err = store
            .write(|tx| add_key(tx, "alice", &key(), Some("jira")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let err = store
            .write(|tx| add_key(tx, "again", &key(), None))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("already trusted for every plugin as `alice`"),
            "{err}"
        );
    }

    fn require_signature_is_off_until_turned_on(store: &TestStore) {
        assert!(!store.read(require_signature).unwrap());
        store.write(|tx| set_require_signature(tx, true)).unwrap();
        assert!(store.read(require_signature).unwrap());
        store.write(|tx| set_require_signature(tx, false)).unwrap();
        assert!(!store.read(require_signature).unwrap());
    }
}
