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
use crate::manifest::{Category, Manifest, ManifestError};
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
         wasm32-wasip2 target with airlock-sdk, or with a component toolchain \
         (componentize-js, componentize-py) against the airlock:plugin WIT"
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
        "the plugin imports `{import}`, which airlock does not provide: plugins may import \
         airlock:plugin/host, wasi:http/outgoing-handler and the WASI 0.2 interfaces of an \
         empty process (io, clocks, random, cli; sockets and filesystem are linked, but every \
         operation on them is refused)"
    )]
    ForbiddenImport {
        /// The import's full name.
        import: String,
    },
    /// The component lacks the `connector` export every plugin needs.
    #[error(
        "the plugin exports no `airlock:plugin/connector@{API_VERSION}` interface; every plugin \
         must (airlock_sdk::export! does; other toolchains: target one of the airlock:plugin \
         worlds)"
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
    /// The manifest's `category` promises an interface the component does
    /// not export (refused at install and pack; [`Runtime::load`] itself
    /// accepts it, as the category only labels the plugin).
    ///
    /// [`Runtime::load`]: super::Runtime::load
    #[error(transparent)]
    Category(#[from] CategoryMismatch),
}

/// A manifest `category` whose interface the component does not export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the manifest says category `{category}`, which needs the `{}` export, but the component \
     exports only {}: export it, or declare the category that fits",
    .missing.export_name(),
    .exports.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
)]
pub struct CategoryMismatch {
    /// The manifest's category.
    pub category: Category,
    /// The interface that category needs and the component lacks.
    pub missing: Interface,
    /// What the component does export.
    pub exports: Vec<Interface>,
}

impl Interface {
    /// The interface a plugin of `category` exists to serve (beside
    /// `connector`, which every plugin exports; `sync` is optional).
    pub fn for_category(category: Category) -> Option<Interface> {
        match category {
            Category::Connector => None,
            Category::Tickets => Some(Interface::Tickets),
            Category::Documents => Some(Interface::Documents),
            Category::AiProvider => Some(Interface::Chat),
        }
    }
}

/// Whether `exports` serve the manifest's `category`.
pub fn check_category(
    category: Category,
    exports: &BTreeSet<Interface>,
) -> Result<(), CategoryMismatch> {
    match Interface::for_category(category) {
        Some(needed) if !exports.contains(&needed) => Err(CategoryMismatch {
            category,
            missing: needed,
            exports: exports.iter().copied().collect(),
        }),
        _ => Ok(()),
    }
}

/// Who serves an import the host links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    /// airlock's own `airlock:plugin/host` and its types.
    Airlock,
    /// wasi-http, every request through the egress hook.
    Egress,
    /// wasmtime-wasi, serving an empty world: no environment or arguments,
    /// stdin empty, stdout and stderr to the host log, the host's clocks and
    /// randomness.
    EmptyWasi,
    /// airlock's denying implementation (`runtime/wasi_deny`): every
    /// operation refused with access-denied and counted, no resource behind
    /// it.
    Denied,
}

/// Which versions of a package an import may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    /// `major.minor` of [`API_VERSION`], any patch.
    Api,
    /// WASI 0.2.x: wasmtime 48 implements 0.2.12 and resolves any older 0.2
    /// import to it; a newer one links only if it asks for nothing more.
    Wasi02,
}

impl Series {
    fn admits(self, version: (u64, u64, u64)) -> bool {
        let (major, minor, _patch) = version;
        match self {
            Series::Api => format!("{major}.{minor}") == api_series(),
            Series::Wasi02 => (major, minor) == (0, 2),
        }
    }
}

/// Interfaces of one package the host links, and who serves them.
struct Allowed {
    package: &'static str,
    interfaces: &'static [&'static str],
    series: Series,
    provider: Provider,
}

/// Every import a plugin may have; anything else is refused at load
/// ([`LoadError::ForbiddenImport`]). The linker (`Runtime::new`) links
/// exactly these, and a unit test links a component importing each.
const ALLOWED_IMPORTS: &[Allowed] = &[
    // The contract itself.
    Allowed {
        package: "airlock:plugin",
        interfaces: &["host", "outbound", "types"],
        series: Series::Api,
        provider: Provider::Airlock,
    },
    // Outbound HTTP, the one way out: every request passes the egress
    // checks, gets its credential from the host and is audited.
    Allowed {
        package: "wasi:http",
        interfaces: &["outgoing-handler", "types"],
        series: Series::Wasi02,
        provider: Provider::Egress,
    },
    // Streams and pollables carry wasi-http's bodies; errors are rendered
    // bounded (`guest_errors`).
    Allowed {
        package: "wasi:io",
        interfaces: &["error", "poll", "streams"],
        series: Series::Wasi02,
        provider: Provider::EmptyWasi,
    },
    // Time and randomness reveal nothing a plugin could not learn over its
    // granted HTTP; every language runtime links them.
    Allowed {
        package: "wasi:clocks",
        interfaces: &["monotonic-clock", "wall-clock"],
        series: Series::Wasi02,
        provider: Provider::EmptyWasi,
    },
    Allowed {
        package: "wasi:random",
        interfaces: &["random", "insecure", "insecure-seed"],
        series: Series::Wasi02,
        provider: Provider::EmptyWasi,
    },
    // A process's surroundings, all empty: no variables, arguments or
    // working directory; stdin at end of file; stdout and stderr go to the
    // host log tagged with plugin and connection; no terminal.
    Allowed {
        package: "wasi:cli",
        interfaces: &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
        series: Series::Wasi02,
        provider: Provider::EmptyWasi,
    },
    // Imported by toolchains whether a plugin uses them or not
    // (componentize-py always imports both, componentize-js the
    // filesystem, Rust's std what std::net and std::fs use), so they must
    // load; all of
    // wasmtime-wasi 48's WASI 0.2 sockets and filesystem interfaces,
    // served by implementations that refuse every operation.
    Allowed {
        package: "wasi:sockets",
        interfaces: &[
            "network",
            "instance-network",
            "ip-name-lookup",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
        ],
        series: Series::Wasi02,
        provider: Provider::Denied,
    },
    Allowed {
        package: "wasi:filesystem",
        interfaces: &["types", "preopens"],
        series: Series::Wasi02,
        provider: Provider::Denied,
    },
];

/// An import's name, parsed: `wasi:sockets/tcp@0.2.0` is package
/// `wasi:sockets`, interface `tcp`, version 0.2.0.
#[derive(Debug, PartialEq, Eq)]
struct ImportName<'a> {
    package: &'a str,
    interface: &'a str,
    version: (u64, u64, u64),
}

impl<'a> ImportName<'a> {
    /// `None` for anything but `ns:pkg/interface@major.minor.patch` (a
    /// bare function, an unversioned or pre-release interface).
    fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = name.split_once('@')?;
        let (package, interface) = path.split_once('/')?;
        let mut parts = version.split('.').map(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        });
        let version = (parts.next()??, parts.next()??, parts.next()??);
        if parts.next().is_some() || !package.contains(':') {
            return None;
        }
        Some(Self {
            package,
            interface,
            version,
        })
    }
}

/// Who serves the import called `name`, if the host links it.
pub(crate) fn provider_of(name: &str) -> Option<Provider> {
    let import = ImportName::parse(name)?;
    ALLOWED_IMPORTS
        .iter()
        .find(|a| {
            a.package == import.package
                && a.interfaces.contains(&import.interface)
                && a.series.admits(import.version)
        })
        .map(|a| a.provider)
}

fn import_allowed(name: &str) -> bool {
    provider_of(name).is_some()
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

    /// Whether the exports serve the manifest's `category` (install and
    /// pack refuse a plugin whose do not).
    pub fn check_category(&self) -> Result<(), CategoryMismatch> {
        check_category(self.manifest.category, &self.interfaces)
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
    precheck_component(wasm)?;
    let manifest = Manifest::from_wasm(wasm)?;
    let sha256 = hex::encode(Sha256::digest(wasm));
    Ok((manifest, sha256))
}

/// The header says WebAssembly, and the component layer.
pub(super) fn precheck_component(wasm: &[u8]) -> Result<(), LoadError> {
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
    Ok(())
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
        assert!(!import_allowed("wasi:http/incoming-handler@0.2.12"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.3.0"));
        assert!(!import_allowed(
            "wasi:http/outgoing-handler@0.2.0-rc-2023-11-10"
        ));
        assert!(!import_allowed("airlock:plugin/host@1.0.0"));
        assert!(!import_allowed("wasi:cli/environment-extra@0.2.4"));
        assert!(!import_allowed("wasi:keyvalue/store@0.2.0"));
        assert!(!import_allowed("acme:evil/backdoor@0.2.0"));
        assert!(!import_allowed("wasi:sockets@0.2.0"));
        assert!(!import_allowed("tcp@0.2.0"));
    }

    #[test]
    fn sockets_and_filesystem_are_served_by_the_denying_implementations() {
        for name in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/tcp-create-socket@0.2.3",
            "wasi:sockets/udp@0.2.12",
            "wasi:sockets/ip-name-lookup@0.2.0",
            "wasi:sockets/instance-network@0.2.0",
            "wasi:sockets/network@0.2.0",
            "wasi:filesystem/types@0.2.0",
            "wasi:filesystem/preopens@0.2.12",
        ] {
            assert_eq!(provider_of(name), Some(Provider::Denied), "{name}");
        }
        assert_eq!(provider_of("wasi:http/types@0.2.0"), Some(Provider::Egress));
        assert_eq!(
            provider_of("wasi:cli/stdout@0.2.0"),
            Some(Provider::EmptyWasi)
        );
    }

    #[test]
    fn import_names_parse_into_package_interface_and_version() {
        assert_eq!(
            ImportName::parse("wasi:sockets/tcp@0.2.10"),
            Some(ImportName {
                package: "wasi:sockets",
                interface: "tcp",
                version: (0, 2, 10)
            })
        );
        for bad in [
            "wasi:sockets/tcp",
            "wasi:sockets/tcp@0.2",
            "wasi:sockets/tcp@0.2.x",
            "wasi:sockets/tcp@0.2.0.1",
            "wasi:sockets/tcp@0.2.+1",
            "sockets/tcp@0.2.0",
            "f",
        ] {
            assert_eq!(ImportName::parse(bad), None, "{bad}");
        }
    }

    /// Every WASI 0.2.12 interface of `package` in `wit/deps` that the list
    /// names, and those it leaves out.
    fn wasi_interfaces(resolve: &wit_parser::Resolve, package: &str) -> Vec<String> {
        let (_, pkg) = resolve
            .packages
            .iter()
            .find(|(_, p)| format!("{}:{}", p.name.namespace, p.name.name) == package)
            .unwrap_or_else(|| panic!("{package} is not in wit/deps"));
        pkg.interfaces.keys().cloned().collect()
    }

    /// The list covers every sockets and filesystem interface WASI 0.2
    /// defines, and a component importing every interface on it links
    /// against the host's linker (so the list and the linker agree).
    #[test]
    fn every_allowed_import_links_and_the_denied_packages_are_complete() {
        let mut resolve = wit_parser::Resolve::default();
        resolve
            .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
            .unwrap();
        for package in ["wasi:sockets", "wasi:filesystem"] {
            let allowed = ALLOWED_IMPORTS
                .iter()
                .find(|a| a.package == package)
                .unwrap();
            for iface in wasi_interfaces(&resolve, package) {
                assert!(
                    allowed.interfaces.contains(&iface.as_str()),
                    "{package}/{iface} is in WASI 0.2 but not on the list"
                );
            }
        }
        let mut imports = String::new();
        for a in ALLOWED_IMPORTS {
            let version = match a.series {
                Series::Api => API_VERSION,
                Series::Wasi02 => "0.2.12",
            };
            for i in a.interfaces {
                imports.push_str(&format!("  import {}/{i}@{version};\n", a.package));
            }
        }
        let world = format!("package test:all;\nworld all {{\n{imports}}}\n");
        let pkg = resolve.push_str("all.wit", &world).unwrap();
        let world = resolve.select_world(&[pkg], Some("all")).unwrap();
        let mut module =
            wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        let wasm = wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap();
        let engine = wasmtime::Engine::default();
        let component = Component::new(&engine, &wasm).unwrap();
        let ty = component.component_type();
        let names: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
        assert!(names.len() > 30, "{names:?}");
        for name in &names {
            assert!(import_allowed(name), "{name}");
        }
        super::super::build_linker(&engine)
            .unwrap()
            .instantiate_pre(&component)
            .expect("the linker serves every allowed import");
    }

    #[test]
    fn a_category_needs_its_interface() {
        let set = |i: &[Interface]| i.iter().copied().collect::<BTreeSet<_>>();
        let connector = set(&[Interface::Connector]);
        assert!(check_category(Category::Connector, &connector).is_ok());
        let err = check_category(Category::Tickets, &connector).unwrap_err();
        assert_eq!(err.missing, Interface::Tickets);
        assert_eq!(
            err.to_string(),
            "the manifest says category `tickets`, which needs the \
             `airlock:plugin/tickets@0.1.0` export, but the component exports only connector: \
             export it, or declare the category that fits"
        );
        let chat = set(&[Interface::Connector, Interface::Chat]);
        assert!(check_category(Category::AiProvider, &chat).is_ok());
        assert!(check_category(Category::Documents, &chat).is_err());
        // More than the category needs is fine (sync, or a second role).
        let docs = set(&[Interface::Connector, Interface::Documents, Interface::Sync]);
        assert!(check_category(Category::Documents, &docs).is_ok());
        assert!(check_category(Category::Connector, &docs).is_ok());
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
