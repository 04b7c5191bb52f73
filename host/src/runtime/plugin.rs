//! Loading a `.wasm` into a ready-to-instantiate plugin: the checks that
//! refuse a bad file with a message naming the problem, in the order that
//! gives the most useful message (cheap checks before compiling).

use std::collections::BTreeSet;
use std::fmt;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre};

use super::bindings::{API_VERSION, api_series, chat, connector, documents, sync, tickets};
use super::cache::CacheOutcome;
use super::call_data::CallState;
use crate::manifest::{Manifest, ManifestError};
use crate::net::EgressRule;

/// The interfaces a plugin can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    /// `connector`: exported by every plugin.
    Connector,
    /// `documents`: document stores.
    Documents,
    /// `tickets`: ticket systems.
    Tickets,
    /// `sync`: records for the host to persist.
    Sync,
    /// `chat`: AI providers.
    Chat,
}

impl Interface {
    /// Every interface, in WIT order.
    pub const ALL: [Interface; 5] = [
        Interface::Connector,
        Interface::Documents,
        Interface::Tickets,
        Interface::Sync,
        Interface::Chat,
    ];

    /// The WIT interface name (`tickets`).
    pub fn name(self) -> &'static str {
        match self {
            Interface::Connector => "connector",
            Interface::Documents => "documents",
            Interface::Tickets => "tickets",
            Interface::Sync => "sync",
            Interface::Chat => "chat",
        }
    }

    /// The component-model export name: `airlock:plugin/<name>@` and
    /// [`API_VERSION`].
    pub fn export_name(self) -> String {
        format!("airlock:plugin/{}@{API_VERSION}", self.name())
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a `.wasm` was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` header)")]
    NotWasm,
    /// A core module where a component is needed.
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin for the \
         wasm32-wasip2 target with airlock-sdk"
    )]
    CoreModule,
    /// The embedded manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component cannot be parsed.
    #[error("the component is malformed (truncated or corrupt): {0}")]
    Invalid(String),
    /// Compiling (or reading the compiled cache entry) failed.
    #[error("plugin {plugin} cannot be compiled: {message}")]
    Compile {
        /// `<id>@<version>`.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The component imports something outside the allow-list.
    #[error(
        "the plugin imports `{import}`, which airlock does not provide: plugins may import only \
         airlock:plugin/host, wasi:http/outgoing-handler and the basic WASI interfaces Rust's \
         standard library links (no sockets, no filesystem access)"
    )]
    ForbiddenImport {
        /// The import's full name.
        import: String,
    },
    /// The component lacks the `connector` export every plugin needs.
    #[error(
        "the plugin exports no `airlock:plugin/connector@{API_VERSION}` interface; every plugin \
         must (build it with airlock_sdk::export!)"
    )]
    NoConnector,
    /// An export has the right name but the wrong shape.
    #[error("export `{export}` does not match the airlock:plugin@{API_VERSION} contract: {reason}")]
    BadExport {
        /// The export's full name.
        export: String,
        /// What does not match.
        reason: String,
    },
    /// The component's imports cannot be satisfied by this host.
    #[error("the plugin cannot be linked against this host: {0}")]
    Link(String),
}

/// The host's own interfaces a plugin may import, at any patch of the
/// [`API_VERSION`] series.
const OWN_IMPORTS: &[&str] = &["airlock:plugin/host", "airlock:plugin/types"];

/// Other interface names (before `@version`) a plugin may import, and the
/// package versions they may carry.
const ALLOWED_IMPORTS: &[(&str, &str)] = &[
    ("wasi:http/outgoing-handler", "0.2."),
    ("wasi:http/types", "0.2."),
    ("wasi:io/error", "0.2."),
    ("wasi:io/poll", "0.2."),
    ("wasi:io/streams", "0.2."),
    ("wasi:clocks/monotonic-clock", "0.2."),
    ("wasi:clocks/wall-clock", "0.2."),
    ("wasi:random/random", "0.2."),
    ("wasi:random/insecure", "0.2."),
    ("wasi:random/insecure-seed", "0.2."),
    ("wasi:cli/environment", "0.2."),
    ("wasi:cli/exit", "0.2."),
    ("wasi:cli/stdin", "0.2."),
    ("wasi:cli/stdout", "0.2."),
    ("wasi:cli/stderr", "0.2."),
    ("wasi:cli/terminal-input", "0.2."),
    ("wasi:cli/terminal-output", "0.2."),
    ("wasi:cli/terminal-stdin", "0.2."),
    ("wasi:cli/terminal-stdout", "0.2."),
    ("wasi:cli/terminal-stderr", "0.2."),
    // Rust's std links these; the host offers no preopened directory, so
    // every open fails.
    ("wasi:filesystem/types", "0.2."),
    ("wasi:filesystem/preopens", "0.2."),
];

fn import_allowed(name: &str) -> bool {
    let (iface, version) = name.split_once('@').unwrap_or((name, ""));
    if OWN_IMPORTS.contains(&iface) {
        return version.starts_with(&format!("{}.", api_series()));
    }
    ALLOWED_IMPORTS
        .iter()
        .any(|(allowed, ver)| *allowed == iface && version.starts_with(ver))
}

/// Per-interface export handles, resolved once at load.
#[derive(Default)]
pub(super) struct Exports {
    pub connector: Option<connector::GuestIndices>,
    pub documents: Option<documents::GuestIndices>,
    pub tickets: Option<tickets::GuestIndices>,
    pub sync: Option<sync::GuestIndices>,
    pub chat: Option<chat::GuestIndices>,
}

/// A loaded plugin: validated, compiled, linked, ready to instantiate.
pub struct Plugin {
    manifest: Manifest,
    sha256: String,
    interfaces: BTreeSet<Interface>,
    cache: CacheOutcome,
    granted: Vec<EgressRule>,
    pub(super) pre: InstancePre<CallState>,
    pub(super) exports: Exports,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .field("sha256", &self.sha256)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The manifest embedded in the component.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's plugin id.
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// The hex SHA-256 of the `.wasm` file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The interfaces the component exports.
    pub fn interfaces(&self) -> &BTreeSet<Interface> {
        &self.interfaces
    }

    /// Whether the component exports `interface`.
    pub fn exports(&self, interface: Interface) -> bool {
        self.interfaces.contains(&interface)
    }

    /// Whether this load compiled the component or read it from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// The egress granted beyond each connection's own `base-url` origin.
    pub fn granted(&self) -> &[EgressRule] {
        &self.granted
    }
}

/// Checks that need no compilation: header, layer, manifest.
pub fn precheck(wasm: &[u8]) -> Result<(Manifest, String), LoadError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    if wasmparser::Parser::is_core_wasm(wasm) {
        return Err(LoadError::CoreModule);
    }
    if !wasmparser::Parser::is_component(wasm) {
        return Err(LoadError::Invalid(
            "unknown WebAssembly version or layer".into(),
        ));
    }
    let manifest = Manifest::from_wasm(wasm)?;
    let sha256 = hex::encode(Sha256::digest(wasm));
    Ok((manifest, sha256))
}

/// Imports and exports of a compiled component, checked against the contract.
pub(super) fn check_component(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<BTreeSet<Interface>, LoadError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !import_allowed(name) {
            return Err(LoadError::ForbiddenImport {
                import: name.to_string(),
            });
        }
    }
    let exported: BTreeSet<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let interfaces: BTreeSet<Interface> = Interface::ALL
        .into_iter()
        .filter(|i| exported.contains(i.export_name().as_str()))
        .collect();
    if !interfaces.contains(&Interface::Connector) {
        return Err(LoadError::NoConnector);
    }
    Ok(interfaces)
}

pub(super) fn link(
    manifest: Manifest,
    sha256: String,
    interfaces: BTreeSet<Interface>,
    cache: CacheOutcome,
    granted: Vec<EgressRule>,
    pre: InstancePre<CallState>,
) -> Result<Plugin, LoadError> {
    fn resolve<T>(
        present: bool,
        iface: Interface,
        f: impl FnOnce() -> wasmtime::Result<T>,
    ) -> Result<Option<T>, LoadError> {
        if !present {
            return Ok(None);
        }
        f().map(Some).map_err(|e| LoadError::BadExport {
            export: iface.export_name(),
            reason: format!("{e:#}"),
        })
    }
    let has = |i| interfaces.contains(&i);
    let exports = Exports {
        connector: resolve(has(Interface::Connector), Interface::Connector, || {
            connector::GuestIndices::new(&pre)
        })?,
        documents: resolve(has(Interface::Documents), Interface::Documents, || {
            documents::GuestIndices::new(&pre)
        })?,
        tickets: resolve(has(Interface::Tickets), Interface::Tickets, || {
            tickets::GuestIndices::new(&pre)
        })?,
        sync: resolve(has(Interface::Sync), Interface::Sync, || {
            sync::GuestIndices::new(&pre)
        })?,
        chat: resolve(has(Interface::Chat), Interface::Chat, || {
            chat::GuestIndices::new(&pre)
        })?,
    };
    Ok(Plugin {
        manifest,
        sha256,
        interfaces,
        cache,
        granted,
        pre,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_allow_list_is_exact() {
        assert!(import_allowed("wasi:http/outgoing-handler@0.2.12"));
        assert!(import_allowed("wasi:cli/environment@0.2.4"));
        assert!(import_allowed(&format!(
            "airlock:plugin/host@{API_VERSION}"
        )));
        assert!(import_allowed(&format!(
            "airlock:plugin/types@{API_VERSION}"
        )));
        assert!(!import_allowed("airlock:plugin/host"));
        // Another minor version whose name merely starts with ours (0.1 / 0.10).
        assert!(!import_allowed(&format!(
            "airlock:plugin/host@{}0.0",
            api_series()
        )));
        assert!(!import_allowed("wasi:sockets/tcp@0.2.12"));
        assert!(!import_allowed("wasi:http/incoming-handler@0.2.12"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.3.0"));
        assert!(!import_allowed("airlock:plugin/host@1.0.0"));
        assert!(!import_allowed("wasi:cli/environment-extra@0.2.4"));
    }

    #[test]
    fn prechecks_name_the_problem() {
        assert!(matches!(precheck(b"hello world!"), Err(LoadError::NotWasm)));
        assert!(matches!(
            precheck(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        // A component header with nothing after it carries no manifest.
        assert!(matches!(
            precheck(b"\0asm\x0d\0\x01\0"),
            Err(LoadError::Manifest(ManifestError::Missing))
        ));
    }
}
