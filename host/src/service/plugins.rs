//! Installing plugins: the file is validated and compiled, its SHA-256
//! pinned, and the capabilities it asks for shown for approval; a changed
//! file under an installed id is refused until approved again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::trust::Signer;
use super::{Airlock, ServiceError};
use crate::manifest::{ApiKeySpec, EgressSpec, Manifest, OAuth2Spec, SettingSpec};
use crate::runtime::{LoadError, Plugin};
use crate::signing::Signature;
use crate::store::plugins::{self as repo, PluginRecord};
use crate::store::sql::Db;
use crate::store::{ConfigVersion, StoreError};

/// Plugin ids no plugin may have: the management API uses them as paths
/// beside `/api/v1/plugins/{id}` (`GET /api/v1/plugins/pending`), where
/// such a plugin could not be inspected or removed.
pub const RESERVED_IDS: &[&str] = &["pending"];

/// What installing a file would do, for the operator to approve.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// The manifest the file carries (id, version, auth, settings, egress).
    pub manifest: Manifest,
    /// The file's SHA-256, lowercase hex: pinned at install and checked on
    /// every load.
    pub sha256: String,
    /// The interfaces the component exports (`connector`, `tickets`,
    /// `documents`, `sync`, `chat`).
    pub interfaces: Vec<String>,
    /// The egress to approve (beyond each connection's own origin).
    pub grant: Vec<EgressSpec>,
    /// The installed plugin with the same id, if any.
    pub previous: Option<PluginRecord>,
    /// What changes relative to `previous`, one line each: [`InstallPlan::diff`]
    /// in words.
    pub changes: Vec<String>,
    /// What changes relative to `previous` (a new plugin and its egress
    /// when there is none).
    pub diff: Vec<CapabilityChange>,
    /// Who signed the file (verified over its bytes) and whether the trust
    /// policy trusts that key for this plugin id; `None` when unsigned.
    pub signer: Option<Signer>,
    signature: Option<Signature>,
    wasm: Arc<Vec<u8>>,
}

impl InstallPlan {
    /// True when the file is already installed exactly as is.
    pub fn unchanged(&self) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| p.sha256 == self.sha256)
    }
}

/// Whether a capability appears, disappears or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// New in this file.
    Added,
    /// Gone from this file.
    Removed,
    /// Still there, different.
    Changed,
}

/// What part of a plugin a [`CapabilityChange`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeSubject {
    /// The plugin as a whole (not installed before).
    Plugin,
    /// Its version.
    Version,
    /// The file, under the same version.
    File,
    /// A destination it may reach (and whether it receives the credential).
    Egress,
    /// A credential kind, or how the host obtains or sends one (OAuth
    /// endpoints, API-key header).
    Auth,
    /// A connection setting of its schema.
    Settings,
    /// The key that signed the file (a different key, or none any more).
    Signer,
}

/// One difference between an installed plugin and a file of the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CapabilityChange {
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// What it is about.
    pub what: ChangeSubject,
    /// The change in words, without a `+`/`-` sign
    /// (`egress https://login.example.com/ [POST]`).
    pub text: String,
}

impl CapabilityChange {
    fn new(change: ChangeKind, what: ChangeSubject, text: impl Into<String>) -> Self {
        Self {
            change,
            what,
            text: text.into(),
        }
    }
}

/// The one-line form of [`InstallPlan::changes`]: the text, signed `+ ` or
/// `- ` when a capability is added or removed (a new plugin is one unsigned
/// line, `new plugin <id> <version>`).
impl std::fmt::Display for CapabilityChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match (self.change, self.what) {
            (_, ChangeSubject::Plugin) | (ChangeKind::Changed, _) => "",
            (ChangeKind::Added, _) => "+ ",
            (ChangeKind::Removed, _) => "- ",
        };
        write!(f, "{sign}{}", self.text)
    }
}

/// `[a, b]`, or `[]`.
fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// `old -> new` of an optional value, `(none)` for an absent one.
fn optional(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(none)")
}

/// The differences between two OAuth endpoint declarations, one per field.
fn oauth2_diff(
    old: &Option<OAuth2Spec>,
    new: &Option<OAuth2Spec>,
    out: &mut Vec<CapabilityChange>,
) {
    use {ChangeKind::*, ChangeSubject::Auth};
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => out.push(CapabilityChange::new(
            Added,
            Auth,
            format!(
                "oauth2 endpoints: authorize {}, token {}, scopes {}",
                n.authorize_url,
                n.token_url,
                list(&n.scopes)
            ),
        )),
        (Some(_), None) => out.push(CapabilityChange::new(Removed, Auth, "oauth2 endpoints")),
        (Some(o), Some(n)) => {
            let extra = |s: &OAuth2Spec| {
                s.extra_params
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            };
            let fields = [
                (
                    "authorize-url",
                    o.authorize_url.clone(),
                    n.authorize_url.clone(),
                ),
                ("token-url", o.token_url.clone(), n.token_url.clone()),
                ("scopes", list(&o.scopes), list(&n.scopes)),
                (
                    "issuer",
                    optional(&o.issuer).into(),
                    optional(&n.issuer).into(),
                ),
                ("extra-params", list(&extra(o)), list(&extra(n))),
                (
                    "client-id-env",
                    optional(&o.client_id_env).into(),
                    optional(&n.client_id_env).into(),
                ),
                (
                    "client-secret-env",
                    optional(&o.client_secret_env).into(),
                    optional(&n.client_secret_env).into(),
                ),
            ];
            for (field, before, after) in fields {
                if before != after {
                    out.push(CapabilityChange::new(
                        Changed,
                        Auth,
                        format!("oauth2 {field} {before} -> {after}"),
                    ));
                }
            }
        }
    }
}

/// A setting's spec in words: `base-url (url, required)`.
fn setting_text(s: &SettingSpec) -> String {
    let kind = serde_json::to_value(s.kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let required = if s.required { ", required" } else { "" };
    format!("setting {} ({kind}{required})", s.name)
}

/// The differences between two settings schemas, by setting name.
fn settings_diff(old: &[SettingSpec], new: &[SettingSpec], out: &mut Vec<CapabilityChange>) {
    use {ChangeKind::*, ChangeSubject::Settings};
    let find = |list: &'_ [SettingSpec], name: &str| list.iter().find(|s| s.name == name).cloned();
    for n in new {
        let Some(o) = find(old, &n.name) else {
            out.push(CapabilityChange::new(Added, Settings, setting_text(n)));
            continue;
        };
        let mut what = Vec::new();
        if o.kind != n.kind || o.required != n.required {
            what.push(format!("{} -> {}", setting_text(&o), setting_text(n)));
        }
        if o.default != n.default {
            what.push(format!(
                "default {} -> {}",
                optional(&o.default),
                optional(&n.default)
            ));
        }
        if o.values != n.values {
            what.push(format!("values {} -> {}", list(&o.values), list(&n.values)));
        }
        if o.required_keys != n.required_keys {
            what.push(format!(
                "required keys {} -> {}",
                list(&o.required_keys),
                list(&n.required_keys)
            ));
        }
        if !what.is_empty() {
            out.push(CapabilityChange::new(
                Changed,
                Settings,
                format!("setting {}: {}", n.name, what.join("; ")),
            ));
        }
    }
    for o in old.iter().filter(|o| find(new, &o.name).is_none()) {
        out.push(CapabilityChange::new(Removed, Settings, setting_text(o)));
    }
}

/// The change of signing key from the installed file (its signer's
/// fingerprint, if it was signed) to the new one, if any.
fn signer_diff(old: Option<&str>, new: Option<&Signer>, out: &mut Vec<CapabilityChange>) {
    let new = new.map(|s| s.fingerprint.as_str());
    if old != new {
        let name = |s: Option<&str>| s.unwrap_or("(unsigned)").to_string();
        out.push(CapabilityChange::new(
            ChangeKind::Changed,
            ChangeSubject::Signer,
            format!("signer {} -> {}", name(old), name(new)),
        ));
    }
}

/// The capability changes from `old` (installed, with its approved grant
/// and signer) to `new` signed by `signer`: everything
/// [`InstallPlan::diff`] and, in words, [`InstallPlan::changes`] show.
fn capability_diff(
    old: Option<&PluginRecord>,
    new: &Manifest,
    signer: Option<&Signer>,
) -> Vec<CapabilityChange> {
    use ChangeKind::*;
    use ChangeSubject as S;
    let mut changes = Vec::new();
    let egress = |e: &dyn std::fmt::Display| format!("egress {e}");
    let Some(old) = old else {
        changes.push(CapabilityChange::new(
            Added,
            S::Plugin,
            format!("new plugin {} {}", new.id, new.version),
        ));
        for e in &new.egress {
            changes.push(CapabilityChange::new(Added, S::Egress, egress(e)));
        }
        return changes;
    };
    if old.version != new.version {
        changes.push(CapabilityChange::new(
            Changed,
            S::Version,
            format!("version {} -> {}", old.version, new.version),
        ));
    } else {
        changes.push(CapabilityChange::new(
            Changed,
            S::File,
            format!("file changed (version still {})", new.version),
        ));
    }
    signer_diff(old.signer.as_deref(), signer, &mut changes);
    let before: Vec<String> = old
        .approved_grant
        .iter()
        .map(EgressSpec::to_string)
        .collect();
    let after: Vec<String> = new.egress.iter().map(EgressSpec::to_string).collect();
    for e in after.iter().filter(|e| !before.contains(e)) {
        changes.push(CapabilityChange::new(Added, S::Egress, egress(e)));
    }
    for e in before.iter().filter(|e| !after.contains(e)) {
        changes.push(CapabilityChange::new(Removed, S::Egress, egress(e)));
    }
    let (old_auth, new_auth) = (&old.manifest.auth, &new.auth);
    for k in new_auth
        .kinds
        .iter()
        .filter(|k| !old_auth.kinds.contains(k))
    {
        changes.push(CapabilityChange::new(
            Added,
            S::Auth,
            format!("auth kind {k}"),
        ));
    }
    for k in old_auth
        .kinds
        .iter()
        .filter(|k| !new_auth.kinds.contains(k))
    {
        changes.push(CapabilityChange::new(
            Removed,
            S::Auth,
            format!("auth kind {k}"),
        ));
    }
    oauth2_diff(&old_auth.oauth2, &new_auth.oauth2, &mut changes);
    if old_auth.api_key != new_auth.api_key {
        let spec = |s: &Option<ApiKeySpec>| match s {
            None => "(none)".to_string(),
            Some(s) => format!(
                "header from setting `{}`, prefix from {}",
                s.header_setting,
                s.prefix_setting
                    .as_deref()
                    .map_or("no setting".to_string(), |p| format!("setting `{p}`"))
            ),
        };
        changes.push(CapabilityChange::new(
            Changed,
            S::Auth,
            format!(
                "api-key {} -> {}",
                spec(&old_auth.api_key),
                spec(&new_auth.api_key)
            ),
        ));
    }
    settings_diff(&old.manifest.settings, &new.settings, &mut changes);
    changes
}

impl Airlock {
    fn plugin_path(&self, sha256: &str) -> PathBuf {
        self.data_dir.join("plugins").join(format!("{sha256}.wasm"))
    }

    /// The installed file of plugin `id`; when this data directory does not
    /// hold it (another server on the same database installed it), its
    /// bytes from the database, written to `path` once they match the
    /// pinned hash. The caller checks the hash of what is returned.
    fn read_plugin_file(
        &self,
        id: &str,
        sha256: &str,
        path: &Path,
    ) -> Result<Vec<u8>, ServiceError> {
        let io = |what: String| move |source| ServiceError::Io { what, source };
        match std::fs::read(path) {
            Ok(wasm) => return Ok(wasm),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("reading plugin `{id}` from {}", path.display()))(e));
            }
            Err(_) => {}
        }
        let Some(wasm) = self
            .store
            .read(|c| crate::store::plugin_files::get(c, sha256))?
        else {
            return Err(
                io(format!("reading plugin `{id}` from {}", path.display()))(
                    std::io::ErrorKind::NotFound.into(),
                ),
            );
        };
        if hex::encode(Sha256::digest(&wasm)) == sha256 {
            write_plugin_file(path, &wasm)?;
        }
        Ok(wasm)
    }

    /// Validate and compile `wasm` and describe what installing it means.
    ///
    /// A signature that does not verify refuses the file whatever the trust
    /// policy says; under `require-signature` an unsigned file, or one
    /// signed by a key not trusted for its id, is refused too.
    pub fn plan_install(&self, wasm: Vec<u8>) -> Result<InstallPlan, ServiceError> {
        // A file that is no component at all is the loader's to name.
        let plugin = self.runtime.load(&wasm)?;
        plugin.check_category().map_err(LoadError::from)?;
        let manifest = plugin.manifest().clone();
        let signature = crate::signing::verify(&wasm).map_err(|error| ServiceError::Signature {
            id: manifest.id.clone(),
            error,
        })?;
        if RESERVED_IDS.contains(&manifest.id.as_str()) {
            return Err(ServiceError::Invalid(format!(
                "plugin id `{}` is reserved (the management API lists uploads waiting for \
                 approval at /api/v1/plugins/{}); build the plugin with another id",
                manifest.id, manifest.id
            )));
        }
        let previous = match self.store.read(|c| repo::get_plugin(c, &manifest.id)) {
            Ok(p) => Some(p),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let signer = self
            .trust_policy()?
            .judge(&manifest.id, signature.as_ref())?;
        let diff = capability_diff(previous.as_ref(), &manifest, signer.as_ref());
        Ok(InstallPlan {
            sha256: plugin.sha256().to_string(),
            interfaces: plugin
                .interfaces()
                .iter()
                .map(|i| i.name().to_string())
                .collect(),
            grant: manifest.egress.clone(),
            changes: diff.iter().map(CapabilityChange::to_string).collect(),
            diff,
            signer,
            signature,
            previous,
            manifest,
            wasm: Arc::new(wasm),
        })
    }

    /// Install a planned plugin. `approved` is the operator's approval of the
    /// plan's capabilities; without it only an unchanged file is accepted.
    pub fn install(
        &self,
        plan: &InstallPlan,
        approved: bool,
    ) -> Result<PluginRecord, ServiceError> {
        if plan.unchanged() {
            return Ok(plan.previous.clone().expect("unchanged implies previous"));
        }
        if !approved {
            return Err(ServiceError::NeedsApproval {
                id: plan.manifest.id.clone(),
                changes: plan.changes.clone(),
            });
        }
        // The policy may have changed since the plan (an upload waiting
        // for approval): judged again now.
        let signer = self
            .trust_policy()?
            .judge(&plan.manifest.id, plan.signature.as_ref())?;
        write_plugin_file(&self.plugin_path(&plan.sha256), plan.wasm.as_slice())?;
        let now = crate::store::now();
        let record = PluginRecord {
            id: plan.manifest.id.clone(),
            version: plan.manifest.version.clone(),
            sha256: plan.sha256.clone(),
            manifest: plan.manifest.clone(),
            approved_grant: plan.grant.clone(),
            signer: signer.map(|s| s.fingerprint),
            installed_at: plan
                .previous
                .as_ref()
                .map_or(now.clone(), |p| p.installed_at.clone()),
            updated_at: now,
        };
        // The bytes go to the database with the record: a server that lacks
        // the file (another server installed it) restores it from there.
        self.store.write(|tx| {
            crate::store::plugin_files::put(tx, &record.sha256, plan.wasm.as_slice())?;
            repo::upsert_plugin(tx, &record)?;
            if let Some(previous) = &plan.previous {
                crate::store::plugin_files::remove_unused(tx, &previous.sha256)?;
            }
            Ok(())
        })?;
        tracing::info!(plugin = %record.id, version = %record.version, sha256 = %record.sha256, "plugin installed");
        Ok(record)
    }

    /// Every installed plugin, ordered by id.
    pub fn list_plugins(&self) -> Result<Vec<PluginRecord>, ServiceError> {
        Ok(self.store.read(repo::list_plugins)?)
    }

    /// Remove an installed plugin (refused while connections use it).
    pub fn remove_plugin(&self, id: &str) -> Result<(), ServiceError> {
        let record = self.store.read(|c| repo::get_plugin(c, id))?;
        self.store.write(|tx| {
            repo::delete_plugin(tx, id)?;
            crate::store::plugin_files::remove_unused(tx, &record.sha256)
        })?;
        let _ = std::fs::remove_file(self.plugin_path(&record.sha256));
        Ok(())
    }

    /// The loaded plugin for an installed id: the pinned file, re-hashed, with
    /// the approved grant.
    pub fn loaded_plugin(&self, id: &str) -> Result<Arc<Plugin>, ServiceError> {
        Ok(self.installed_plugin(id)?.1)
    }

    /// [`Airlock::loaded_plugin`] with its install record (approved grant,
    /// manifest), from one read of the store.
    pub(crate) fn installed_plugin(
        &self,
        id: &str,
    ) -> Result<(Arc<PluginRecord>, Arc<Plugin>), ServiceError> {
        let record = self.installed_record(id)?;
        let plugin = self.load_installed(id, &record)?;
        Ok((record, plugin))
    }

    /// The install record of plugin `id` (from the record cache while
    /// nothing changed).
    pub(super) fn installed_record(&self, id: &str) -> Result<Arc<PluginRecord>, StoreError> {
        self.store
            .read(|c| self.plugin_record(c, ConfigVersion::read(c)?, id))
    }

    /// The install record of plugin `id`, from the record cache at
    /// `version` when nothing changed.
    pub(super) fn plugin_record(
        &self,
        conn: &dyn Db,
        version: ConfigVersion,
        id: &str,
    ) -> Result<Arc<PluginRecord>, StoreError> {
        self.records
            .plugins
            .get_at(conn, version, id, |c| repo::get_plugin(c, id))
    }

    /// The compiled plugin `record` pins: from memory, or its file checked
    /// against the pinned hash and compiled with the approved grant.
    pub(super) fn load_installed(
        &self,
        id: &str,
        record: &PluginRecord,
    ) -> Result<Arc<Plugin>, ServiceError> {
        if let Some(p) = self.loaded.lock().unwrap().get(&record.sha256) {
            return Ok(p.clone());
        }
        let path = self.plugin_path(&record.sha256);
        let wasm = self.read_plugin_file(id, &record.sha256, &path)?;
        if hex::encode(Sha256::digest(&wasm)) != record.sha256 {
            return Err(ServiceError::Tampered {
                id: id.to_string(),
                path,
            });
        }
        let plugin = self
            .runtime
            .load_granted(&wasm, Some(&record.approved_grant))?;
        self.loaded
            .lock()
            .unwrap()
            .insert(record.sha256.clone(), plugin.clone());
        Ok(plugin)
    }
}

/// Put `wasm` at `path` whole: written under a name of its own, then
/// renamed into place, so neither a reader nor a second writer (an install
/// and a restore, or two restores, at once) ever sees part of a file.
fn write_plugin_file(path: &Path, wasm: &[u8]) -> Result<(), ServiceError> {
    let io = |what: String| move |source| ServiceError::Io { what, source };
    let dir = path.parent().expect("plugin path has a parent");
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = path.with_extension(format!("wasm.{}.tmp", crate::store::new_id()));
    std::fs::write(&tmp, wasm).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
}
