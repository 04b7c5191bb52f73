//! The one `bindgen!` site: host-side types and traits for `airlock:plugin`.
//!
//! Bound to the `plugin-host` world, which exports every interface a plugin
//! may export; the runtime loads only those a component actually has. WASI
//! interfaces are wasmtime-wasi's own types.

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
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use self::airlock::plugin::types;
pub use self::exports::airlock::plugin::{chat, connector, documents, sync, tickets};
