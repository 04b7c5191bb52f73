//! Packing: a component from any toolchain (componentize-js,
//! componentize-py, cargo, ...) plus a manifest file becomes an installable
//! plugin. The manifest is validated, written into the component as its
//! `airlock-manifest` custom section, and the result is loaded exactly as
//! an install would load it, so what packs is what installs: imports on the
//! allow-list, the contract's exports, and the exports the `category`
//! needs.

use std::sync::Arc;

use super::Runtime;
use super::plugin::{CategoryMismatch, LoadError, Plugin, precheck_component};
use crate::manifest::embed::{SectionError, append_manifest, strip_manifests};
use crate::manifest::{MANIFEST_SECTION, Manifest, ManifestError, custom_sections};
use crate::signing::SIGNATURE_SECTION;

/// Why a component and manifest were not packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The manifest file is not a valid manifest.
    #[error("the manifest is invalid: {0}")]
    Manifest(#[source] ManifestError),
    /// The component already carries a manifest and replacing it was not
    /// asked for.
    #[error(
        "the component already carries a manifest ({count} `{MANIFEST_SECTION}` section(s), \
         from its build or an earlier pack); ask to replace it to write this one instead"
    )]
    AlreadyPacked {
        /// How many manifest sections it carries.
        count: usize,
    },
    /// The component is signed: packing changes its bytes, which would void
    /// the signature.
    #[error(
        "the component carries a signature (`{SIGNATURE_SECTION}`), which packing would void: \
         pack the unsigned component, then sign the packed plugin"
    )]
    Signed,
    /// The component's section framing cannot be walked.
    #[error(transparent)]
    Sections(#[from] SectionError),
    /// The packed file would be refused at install (not a component, an
    /// import the host does not provide, no `connector` export, ...).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The manifest's category needs an export the component lacks.
    #[error(transparent)]
    Category(#[from] CategoryMismatch),
}

/// A packed plugin: its bytes, and the plugin they load as.
#[derive(Debug)]
pub struct Packed {
    /// The component with the manifest section: the file to install.
    pub wasm: Vec<u8>,
    /// The packed file, loaded (manifest, exports, SHA-256).
    pub plugin: Arc<Plugin>,
    /// How many manifest sections were replaced (0 unless asked to).
    pub replaced: usize,
}

impl Runtime {
    /// Write `manifest` (the text of an `airlock.toml`) into `component`
    /// and check the result as an install would. A component that already
    /// carries a manifest is refused unless `replace` is set; then every
    /// earlier manifest section is removed first. A signed component is
    /// refused: sign after packing.
    pub fn pack(
        &self,
        component: &[u8],
        manifest: &str,
        replace: bool,
    ) -> Result<Packed, PackError> {
        precheck_component(component)?;
        if !custom_sections(component, SIGNATURE_SECTION).is_empty() {
            return Err(PackError::Signed);
        }
        Manifest::parse(manifest).map_err(PackError::Manifest)?;
        let count = custom_sections(component, MANIFEST_SECTION).len();
        if count > 0 && !replace {
            return Err(PackError::AlreadyPacked { count });
        }
        let bare = if count > 0 {
            strip_manifests(component)?
        } else {
            component.to_vec()
        };
        let wasm = append_manifest(&bare, manifest);
        let plugin = self.load(&wasm)?;
        plugin.check_category()?;
        Ok(Packed {
            wasm,
            plugin,
            replaced: count,
        })
    }
}
