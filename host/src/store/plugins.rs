//! Installed plugins: the `plugins` table.
//!
//! A row records which `.wasm` (by SHA-256) is installed under an id, its
//! parsed manifest, and the egress rules the operator approved at install.

use serde::Serialize;

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, now};
use crate::manifest::{EgressSpec, Manifest};

/// An installed plugin.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PluginRecord {
    /// The manifest's id.
    pub id: String,
    /// The manifest's version.
    pub version: String,
    /// Hex SHA-256 of the `.wasm`, which lives in `<data-dir>/plugins/<sha256>.wasm`.
    pub sha256: String,
    /// The manifest as parsed at install.
    pub manifest: Manifest,
    /// The egress rules the operator approved (a subset of the manifest's).
    pub approved_grant: Vec<EgressSpec>,
    /// The SHA-256 fingerprint (`SHA256:...`) of the key whose signature
    /// the installed file carried; `null` when it was unsigned.
    pub signer: Option<String>,
    /// RFC 3339 UTC of the first install.
    pub installed_at: String,
    /// RFC 3339 UTC of the last install (an upgrade or reinstall).
    pub updated_at: String,
}

const COLUMNS: &str =
    "id, version, sha256, manifest, approved_grant, installed_at, updated_at, signer";

/// Insert a plugin, or replace the installed one with the same id.
///
/// The store sets the timestamps: `installed_at` is now for a new plugin and
/// kept on update, `updated_at` is now. The record's own timestamps are
/// ignored; the returned record carries the stored ones.
pub fn upsert_plugin(tx: &Tx<'_>, plugin: &PluginRecord) -> Result<PluginRecord, StoreError> {
    if plugin.manifest.id != plugin.id || plugin.manifest.version != plugin.version {
        return Err(StoreError::Conflict(format!(
            "plugin record `{}` {} carries the manifest of `{}` {}",
            plugin.id, plugin.version, plugin.manifest.id, plugin.manifest.version
        )));
    }
    let manifest = to_json(&plugin.manifest)?;
    let grant = to_json(&plugin.approved_grant)?;
    let now = now();
    let (installed_at, updated_at) = tx.query_row(
        "INSERT INTO plugins (id, version, sha256, manifest, approved_grant, installed_at, updated_at, signer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
             version = excluded.version,
             sha256 = excluded.sha256,
             manifest = excluded.manifest,
             approved_grant = excluded.approved_grant,
             updated_at = excluded.updated_at,
             signer = excluded.signer
         RETURNING installed_at, updated_at",
        params![plugin.id, plugin.version, plugin.sha256, manifest, grant, now, plugin.signer],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    Ok(PluginRecord {
        installed_at,
        updated_at,
        ..plugin.clone()
    })
}

/// The installed plugin `id`.
pub fn get_plugin(conn: &dyn Db, id: &str) -> Result<PluginRecord, StoreError> {
    // Both engines cache the prepared statement: this runs on every call.
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM plugins WHERE id = ?1"),
        params![id],
        RawPlugin::from_row,
    )?
    .ok_or_else(|| StoreError::NotFound(format!("plugin `{id}`")))?
    .decode()
}

/// Every installed plugin, ordered by id.
pub fn list_plugins(conn: &dyn Db) -> Result<Vec<PluginRecord>, StoreError> {
    let raw = conn.query_map(
        &format!("SELECT {COLUMNS} FROM plugins ORDER BY id"),
        params![],
        RawPlugin::from_row,
    )?;
    raw.into_iter().map(RawPlugin::decode).collect()
}

/// Uninstall plugin `id`. Refused while connections still use it.
pub fn delete_plugin(tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
    if !tx.exists("SELECT 1 FROM plugins WHERE id = ?1", params![id])? {
        return Err(StoreError::NotFound(format!("plugin `{id}`")));
    }
    let users = tx.query_map(
        "SELECT name FROM connections WHERE plugin_id = ?1 ORDER BY name",
        params![id],
        |r| r.get::<String>(0),
    )?;
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "plugin `{id}` still has connections: {}; remove them first",
            users.join(", ")
        )));
    }
    tx.execute("DELETE FROM plugins WHERE id = ?1", params![id])?;
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode plugin data as JSON: {e}")))
}

/// A row as stored, before its JSON columns are decoded.
struct RawPlugin {
    id: String,
    version: String,
    sha256: String,
    manifest: String,
    approved_grant: String,
    installed_at: String,
    updated_at: String,
    signer: Option<String>,
}

impl RawPlugin {
    fn from_row(r: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.get(0)?,
            version: r.get(1)?,
            sha256: r.get(2)?,
            manifest: r.get(3)?,
            approved_grant: r.get(4)?,
            installed_at: r.get(5)?,
            updated_at: r.get(6)?,
            signer: r.get(7)?,
        })
    }

    fn decode(self) -> Result<PluginRecord, StoreError> {
        let manifest = serde_json::from_str(&self.manifest)
            .map_err(|e| StoreError::Corrupt(format!("manifest of plugin `{}`: {e}", self.id)))?;
        let approved_grant = serde_json::from_str(&self.approved_grant).map_err(|e| {
            StoreError::Corrupt(format!("approved egress of plugin `{}`: {e}", self.id))
        })?;
        Ok(PluginRecord {
            id: self.id,
            version: self.version,
            sha256: self.sha256,
            manifest,
            approved_grant,
            installed_at: self.installed_at,
            updated_at: self.updated_at,
            signer: self.signer,
        })
    }
}

/// Helpers the store's tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::store::Store;

    /// A plugin record from a minimal manifest.
    pub(crate) fn plugin(id: &str) -> PluginRecord {
        let manifest = Manifest::parse(&format!(
            r#"
id = "{id}"
name = "Test {id}"
version = "1.0.0"
api-version = "0.1"
category = "tickets"
[auth]
kinds = ["bearer"]
[[egress]]
url = "https://api.example.com/v1"
methods = ["GET"]
reason = "lookups"
"#
        ))
        .unwrap();
        PluginRecord {
            id: id.to_string(),
            version: manifest.version.clone(),
            sha256: "ab".repeat(32),
            approved_grant: manifest.egress.clone(),
            manifest,
            installed_at: String::new(),
            updated_at: String::new(),
            signer: None,
        }
    }

    /// Install a minimal plugin `id`.
    pub(crate) fn install(store: &Store, id: &str) -> PluginRecord {
        store.write(|tx| upsert_plugin(tx, &plugin(id))).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        upsert_get_and_list,
        update_replaces_and_keeps_installed_at,
        a_record_with_another_plugins_manifest_is_refused,
        missing_plugins_are_not_found,
        delete_removes_an_unused_plugin,
        delete_is_refused_while_connections_use_the_plugin
    );

    fn upsert_get_and_list(store: &TestStore) {
        let stored = install(store, "jira");
        assert!(!stored.installed_at.is_empty());
        assert_eq!(stored.installed_at, stored.updated_at);
        install(store, "confluence");

        let got = store.read(|c| get_plugin(c, "jira")).unwrap();
        assert_eq!(got, stored);
        assert_eq!(got.approved_grant.len(), 1);
        assert_eq!(got.manifest.egress[0].url, "https://api.example.com/v1");

        let ids: Vec<_> = store
            .read(list_plugins)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["confluence", "jira"]);
    }

    fn update_replaces_and_keeps_installed_at(store: &TestStore) {
        let first = install(store, "jira");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut next = plugin("jira");
        next.sha256 = "cd".repeat(32);
        next.approved_grant.clear();
        let second = store.write(|tx| upsert_plugin(tx, &next)).unwrap();
        assert_eq!(second.installed_at, first.installed_at);
        assert_ne!(second.updated_at, first.updated_at);

        let got = store.read(|c| get_plugin(c, "jira")).unwrap();
        assert_eq!(got.sha256, "cd".repeat(32));
        assert!(got.approved_grant.is_empty());
        assert_eq!(got.installed_at, first.installed_at);
        assert_eq!(store.read(list_plugins).unwrap().len(), 1);
    }

    fn a_record_with_another_plugins_manifest_is_refused(store: &TestStore) {
        let mut p = plugin("jira");
        p.id = "confluence".into();
        let err = store.write(|tx| upsert_plugin(tx, &p)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("`jira`"), "{err}");
    }

    fn missing_plugins_are_not_found(store: &TestStore) {
        let err = store.read(|c| get_plugin(c, "nope")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(err.to_string(), "plugin `nope` not found");
        let err = store.write(|tx| delete_plugin(tx, "nope")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    fn delete_removes_an_unused_plugin(store: &TestStore) {
        install(store, "jira");
        store.write(|tx| delete_plugin(tx, "jira")).unwrap();
        assert!(store.read(list_plugins).unwrap().is_empty());
    }

    fn delete_is_refused_while_connections_use_the_plugin(store: &TestStore) {
        use crate::manifest::AuthKind;
        use crate::store::connections::{ConnectionRecord, delete_connection, insert_connection};

        install(store, "jira");
        let b = ConnectionRecord::new("b-conn", "jira", AuthKind::Bearer);
        let a = ConnectionRecord::new("a-conn", "jira", AuthKind::Bearer);
        store
            .write(|tx| {
                insert_connection(tx, &b)?;
                insert_connection(tx, &a)
            })
            .unwrap();

        let err = store.write(|tx| delete_plugin(tx, "jira")).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "plugin `jira` still has connections: a-conn, b-conn; remove them first"
        );
        assert!(store.read(|c| get_plugin(c, "jira")).is_ok());

        store
            .write(|tx| {
                delete_connection(tx, &a.id)?;
                delete_connection(tx, &b.id)
            })
            .unwrap();
        store.write(|tx| delete_plugin(tx, "jira")).unwrap();
    }
}
