//! The one `bindgen!` site for `airlock:plugin`: host-side types and traits
//! (`wasi_deny` has its own for the WASI interfaces it serves).
//!
//! Bound to the `plugin-host` world, which exports every interface a plugin
//! may export; the runtime loads only those a component actually has. WASI
//! interfaces are wasmtime-wasi's own types. Also the one spelling of the
//! package version the host implements, [`API_VERSION`].

// The generated items carry the WIT's doc comments, and the WIT documents
// only what needs it; the lint would ask for docs the WIT decides on.
#![allow(missing_docs)]

/// The version of the `airlock:plugin` WIT package the host is built
/// against (`package airlock:plugin@…` in `wit/`). Export names, load errors
/// and the import allow-list derive from it; unit tests fail if `wit/` or
/// the manifest's `SUPPORTED_API_VERSIONS` disagree with it.
pub const API_VERSION: &str = "0.1.0";

/// The `major.minor` of [`API_VERSION`]: a plugin may import the host's
/// interfaces at any patch version of this series.
pub fn api_series() -> &'static str {
    match API_VERSION.rsplit_once('.') {
        Some((series, _patch)) => series,
        None => API_VERSION,
    }
}

wasmtime::component::bindgen!({
    path: "../wit",
    world: "airlock:plugin/plugin-host",
    imports: { default: async | trappable },
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    // No Deserialize: JSON comes in through the mirror types of
    // `runtime/json.rs`, which own the spelling. Serialize stays for the
    // library's own answers that embed a generated record (`ChatAnswer`'s
    // `TokenUsage`), whose fields have no enum to misspell.
    additional_derives: [serde::Serialize, PartialEq],
});

pub use self::airlock::plugin::types;
pub use self::exports::airlock::plugin::{chat, connector, documents, sync, tickets};

#[cfg(test)]
mod tests {
    use super::*;

    /// Manifests name the API series; the one this host implements must be
    /// among those it accepts.
    #[test]
    fn the_host_api_series_is_supported() {
        let version = API_VERSION;
        let (series, _patch) = version.rsplit_once('.').unwrap();
        assert!(
            crate::manifest::SUPPORTED_API_VERSIONS.contains(&series),
            "the host implements airlock:plugin@{version} but manifests may only name {}",
            crate::manifest::SUPPORTED_API_VERSIONS.join(", ")
        );
    }

    /// `bindgen!` reads the package version from `wit/`; the constant must
    /// say the same or every export name the host looks up would miss.
    #[test]
    fn wit_package_is_api_version() {
        let mut resolve = wit_parser::Resolve::default();
        let (pkg, _) = resolve
            .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
            .unwrap();
        let name = &resolve.packages[pkg].name;
        assert_eq!(
            name.to_string(),
            format!("airlock:plugin@{API_VERSION}"),
            "wit/ declares {name}; change API_VERSION with it"
        );
        let worlds = include_str!("../../../wit/worlds.wit");
        assert!(
            worlds.starts_with(&format!("package airlock:plugin@{API_VERSION};")),
            "wit/worlds.wit does not declare airlock:plugin@{API_VERSION}"
        );
    }

    #[test]
    fn api_series_is_major_minor() {
        let series = api_series();
        assert_eq!(series.split('.').count(), 2, "{series}");
        assert!(API_VERSION.starts_with(&format!("{series}.")));
    }
}
