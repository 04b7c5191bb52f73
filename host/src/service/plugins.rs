//! Installing plugins: the file is validated and compiled, its SHA-256
//! pinned, and the capabilities it asks for shown for approval; a changed
//! file under an installed id is refused until approved again.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Airlock, ServiceError};
use crate::manifest::{EgressSpec, Manifest};
use crate::runtime::Plugin;
use crate::store::plugins::{self as repo, PluginRecord};

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
    /// What changes relative to `previous` (everything is new when none).
    pub changes: Vec<String>,
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

/// Human-readable capability changes from `old` to `new`.
fn capability_diff(old: Option<&PluginRecord>, new: &Manifest) -> Vec<String> {
    let mut changes = Vec::new();
    let Some(old) = old else {
        changes.push(format!("new plugin {} {}", new.id, new.version));
        for e in &new.egress {
            changes.push(format!("+ egress {e}"));
        }
        return changes;
    };
    if old.version != new.version {
        changes.push(format!("version {} -> {}", old.version, new.version));
    } else {
        changes.push(format!("file changed (version still {})", new.version));
    }
    let before: Vec<String> = old
        .approved_grant
        .iter()
        .map(EgressSpec::to_string)
        .collect();
    let after: Vec<String> = new.egress.iter().map(EgressSpec::to_string).collect();
    for e in after.iter().filter(|e| !before.contains(e)) {
        changes.push(format!("+ egress {e}"));
    }
    for e in before.iter().filter(|e| !after.contains(e)) {
        changes.push(format!("- egress {e}"));
    }
    if old.manifest.auth != new.auth {
        changes.push(format!(
            "auth {:?} -> {:?}",
            old.manifest.auth.kinds, new.auth.kinds
        ));
    }
    let names = |m: &Manifest| {
        m.settings
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    if names(&old.manifest) != names(new) {
        changes.push(format!(
            "settings [{}] -> [{}]",
            names(&old.manifest).join(", "),
            names(new).join(", ")
        ));
    }
    changes
}

impl Airlock {
    fn plugin_path(&self, sha256: &str) -> PathBuf {
        self.data_dir.join("plugins").join(format!("{sha256}.wasm"))
    }

    /// Validate and compile `wasm` and describe what installing it means.
    pub fn plan_install(&self, wasm: Vec<u8>) -> Result<InstallPlan, ServiceError> {
        let plugin = self.runtime.load(&wasm)?;
        let manifest = plugin.manifest().clone();
        let previous = match self.store.read(|c| repo::get_plugin(c, &manifest.id)) {
            Ok(p) => Some(p),
            Err(crate::store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let changes = capability_diff(previous.as_ref(), &manifest);
        Ok(InstallPlan {
            sha256: plugin.sha256().to_string(),
            interfaces: plugin
                .interfaces()
                .iter()
                .map(|i| i.name().to_string())
                .collect(),
            grant: manifest.egress.clone(),
            changes,
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
        let path = self.plugin_path(&plan.sha256);
        let dir = path.parent().expect("plugin path has a parent");
        let io = |what: String| move |source| ServiceError::Io { what, source };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let tmp = path.with_extension("wasm.tmp");
        std::fs::write(&tmp, plan.wasm.as_slice())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))?;
        let now = crate::store::now();
        let record = PluginRecord {
            id: plan.manifest.id.clone(),
            version: plan.manifest.version.clone(),
            sha256: plan.sha256.clone(),
            manifest: plan.manifest.clone(),
            approved_grant: plan.grant.clone(),
            installed_at: plan
                .previous
                .as_ref()
                .map_or(now.clone(), |p| p.installed_at.clone()),
            updated_at: now,
        };
        self.store.write(|tx| repo::upsert_plugin(tx, &record))?;
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
        self.store.write(|tx| repo::delete_plugin(tx, id))?;
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
        let record = self.store.read(|c| {
            self.records
                .plugins
                .get_or_read(c, id, |c| repo::get_plugin(c, id))
        })?;
        if let Some(p) = self.loaded.lock().unwrap().get(&record.sha256) {
            return Ok((record, p.clone()));
        }
        let path = self.plugin_path(&record.sha256);
        let wasm = std::fs::read(&path).map_err(|source| ServiceError::Io {
            what: format!("reading plugin `{id}` from {}", path.display()),
            source,
        })?;
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
        Ok((record, plugin))
    }
}
