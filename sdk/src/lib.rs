//! Write [airlock] connector plugins in Rust.
//!
//! A plugin is a WebAssembly component (`wasm32-wasip2`) that the airlock host
//! runs in a sandbox. It exports the operations of one plugin world and can
//! only reach the outside through the host: [`http`] for outbound requests
//! (the host checks every request against the plugin's egress grants and adds
//! the connection's credential itself: a plugin never sees a secret) and
//! [`host`] for settings, logging and a little state.
//!
//! The crate's `README.md` walks an author from nothing to an installed
//! plugin: `airlock plugin new`, the build, the smoke test, install.
//!
//! # A minimal plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! airlock-sdk = { path = "../../sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs` (this is `tests/guests/minimal`):
//!
//! ```rust,ignore
//! use airlock_sdk::http::{Request, join_url};
//! use airlock_sdk::types::{ConnectionReport, PluginError};
//! use airlock_sdk::{Connector, setting_required};
//! use serde::Deserialize;
//!
//! struct Minimal;
//!
//! #[derive(Deserialize)]
//! struct Me {
//!     name: String,
//! }
//!
//! impl Connector for Minimal {
//!     fn test_connection() -> Result<ConnectionReport, PluginError> {
//!         let base = setting_required("base-url")?;
//!         // Non-2xx answers become the matching `PluginError` (401 -> Unauthorized...).
//!         let me: Me = Request::get(join_url(&base, "/api/me")).send_json()?;
//!         Ok(ConnectionReport {
//!             account: Some(me.name.clone()),
//!             message: format!("connected as {}", me.name),
//!             details: vec![],
//!         })
//!     }
//! }
//!
//! airlock_sdk::export!(Minimal, world = connector, manifest = "airlock.toml");
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the
//! component is `target/wasm32-wasip2/release/<crate>.wasm`.
//!
//! Streaming answers: [`http::Request::send_streaming`] returns once the
//! response headers arrive and reads the body piece by piece; [`sse`] parses
//! server-sent events from those pieces however they are split.
//!
//! # Worlds and traits
//!
//! [`export!`] takes the plugin type, the world it targets and its manifest:
//!
//! | `world =`     | the plugin type implements                  |
//! |---------------|---------------------------------------------|
//! | `connector`   | [`Connector`]                               |
//! | `documents`   | [`Connector`], [`Documents`], [`SyncSource`] |
//! | `tickets`     | [`Connector`], [`Tickets`], [`SyncSource`]   |
//! | `ai_provider` | [`Connector`], [`Chat`]                     |
//!
//! Every method except [`Connector::test_connection`] has a default that
//! answers [`PluginError::Unsupported`], so
//! `impl SyncSource for MyPlugin {}` is enough for a plugin that cannot sync.
//!
//! # The manifest
//!
//! [`export!`] embeds the manifest file (a path relative to the plugin
//! crate's `Cargo.toml`) in the component as a custom section named
//! `airlock-manifest`. The host reads it before instantiating anything and
//! refuses unknown fields. Keys are kebab-case:
//!
//! ```toml
//! id = "hello"                      # [a-z0-9-], unique
//! name = "Hello"
//! version = "0.1.0"                 # semver
//! api-version = "0.1"               # airlock:plugin API the plugin targets
//! category = "tickets"              # connector | documents | tickets | ai-provider
//! description = "One line."
//!
//! [auth]
//! kinds = ["none", "basic", "api-key", "bearer", "oauth2"]   # any subset
//!
//! # optional:
//! [auth.oauth2]
//! authorize-url = "https://auth.example.com/authorize"
//! token-url = "https://auth.example.com/oauth/token"
//! scopes = ["read"]
//! extra-params = { audience = "api.example.com", prompt = "consent" }
//! client-id-env = "EXAMPLE_CLIENT_ID"
//! client-secret-env = "EXAMPLE_CLIENT_SECRET"
//!
//! # optional: the host sends an API key in the header these settings name
//! # (e.g. Authorization + "Bearer ", or api-key + "")
//! [auth.api-key]
//! header-setting = "auth-header"
//! prefix-setting = "auth-prefix"
//!
//! [[egress]]                        # beyond the connection's own base-url origin
//! url = "https://api.example.com"   # origin, optionally with a path prefix
//! methods = ["GET"]                 # optional
//! reason = "why the plugin needs it"
//!
//! [[settings]]
//! name = "base-url"
//! type = "url"                      # string | url | integer | boolean | enum | json-pointers
//! required = true
//! description = "Site URL"
//! # optional: default = "...", values = ["a", "b"] (enum values; json-pointers entries),
//! # required-keys = ["a"] (json-pointers: entries that must be present)
//! ```
//!
//! This crate also compiles for the host target so that its pure-Rust parts
//! can be unit tested; calling into the host there panics.
//!
//! [airlock]: https://example.invalid/airlock

// The generated bindings need `unsafe` (canonical ABI glue) and the export
// macros emit `#[unsafe(link_section)]`/`#[unsafe(export_name)]` items.
#![allow(unsafe_code)]

pub mod host;
pub mod http;
pub mod sse;
pub mod time;

/// The version of the `airlock:plugin` WIT package this SDK builds plugins
/// against. `wit_bindgen::generate!` takes only string literals, so the
/// bindings below spell it again; a unit test fails if they or `wit/` drift
/// from this constant.
pub const API_VERSION: &str = "0.1.0";

/// Generated bindings. Not part of the public API: use [`types`], [`host`],
/// [`http`] and the traits instead.
///
/// `base` holds the one set of Rust types every plugin shares (the
/// `plugin-imports` world: `airlock:plugin/types`, `airlock:plugin/host`, the
/// wasi:http client and what it uses). Each exported interface gets its own
/// small world in its own module, remapped onto `base` with `with`, and its
/// own public export macro; [`export!`] combines the ones a plugin world
/// needs. (One module per *plugin* world does not work: the generated
/// per-interface export macros are `#[macro_export]`ed under a name derived
/// from the interface alone, so two worlds that both export `connector`
/// collide at the crate root.)
#[doc(hidden)]
#[allow(unused_qualifications, missing_debug_implementations)]
pub mod __bindings {
    pub mod base {
        wit_bindgen::generate!({
            world: "plugin-imports",
            path: "wit",
            generate_all,
            generate_unused_types: true,
            additional_derives: [PartialEq],
            additional_derives_ignore: ["stream-error"],
        });
    }

    pub mod connector {
        wit_bindgen::generate!({
            inline: "
                package airlock:sdk-connector;
                world connector-export { export airlock:plugin/connector@0.1.0; }
            ",
            path: "wit",
            with: {
                "airlock:plugin/types@0.1.0": crate::__bindings::base::airlock::plugin::types,
            },
            pub_export_macro: true,
            default_bindings_module: "airlock_sdk::__bindings::connector",
            export_macro_name: "export_connector",
        });
    }

    pub mod documents {
        wit_bindgen::generate!({
            inline: "
                package airlock:sdk-documents;
                world documents-export { export airlock:plugin/documents@0.1.0; }
            ",
            path: "wit",
            with: {
                "airlock:plugin/types@0.1.0": crate::__bindings::base::airlock::plugin::types,
            },
            pub_export_macro: true,
            default_bindings_module: "airlock_sdk::__bindings::documents",
            export_macro_name: "export_documents",
        });
    }

    pub mod tickets {
        wit_bindgen::generate!({
            inline: "
                package airlock:sdk-tickets;
                world tickets-export { export airlock:plugin/tickets@0.1.0; }
            ",
            path: "wit",
            with: {
                "airlock:plugin/types@0.1.0": crate::__bindings::base::airlock::plugin::types,
            },
            pub_export_macro: true,
            default_bindings_module: "airlock_sdk::__bindings::tickets",
            export_macro_name: "export_tickets",
        });
    }

    pub mod sync {
        wit_bindgen::generate!({
            inline: "
                package airlock:sdk-sync;
                world sync-export { export airlock:plugin/sync@0.1.0; }
            ",
            path: "wit",
            with: {
                "airlock:plugin/types@0.1.0": crate::__bindings::base::airlock::plugin::types,
            },
            pub_export_macro: true,
            default_bindings_module: "airlock_sdk::__bindings::sync",
            export_macro_name: "export_sync",
        });
    }

    pub mod chat {
        wit_bindgen::generate!({
            inline: "
                package airlock:sdk-chat;
                world chat-export { export airlock:plugin/chat@0.1.0; }
            ",
            path: "wit",
            with: {
                "airlock:plugin/types@0.1.0": crate::__bindings::base::airlock::plugin::types,
            },
            pub_export_macro: true,
            default_bindings_module: "airlock_sdk::__bindings::chat",
            export_macro_name: "export_chat",
        });
    }
}

/// The records and variants of `airlock:plugin/types` (and the two types of
/// `airlock:plugin/host`), shared by every plugin world.
pub mod types {
    pub use crate::__bindings::base::airlock::plugin::host::{CallContext, LogLevel};
    pub use crate::__bindings::base::airlock::plugin::types::*;
}

use types::{
    ChatDelta, ChatRequest, ChatResponse, ConnectionReport, ModelInfo, NewPage, NewTicket, Page,
    PageQuery, PageSummary, PageUpdate, PluginError, Space, SyncPage, SyncRequest, Ticket,
    TicketQuery, TicketUpdate,
};

fn unsupported(op: &str) -> PluginError {
    PluginError::Unsupported(format!("{op} is not implemented by this plugin"))
}

/// `airlock:plugin/connector`: exported by every plugin.
pub trait Connector {
    /// Check that the connection's settings and credential work, with the
    /// cheapest authenticated call the service has (current user, project).
    fn test_connection() -> Result<ConnectionReport, PluginError>;
}

/// `airlock:plugin/documents`: document stores (Confluence and the like).
pub trait Documents {
    /// Spaces the credential can see, up to `limit`.
    fn list_spaces(limit: u32) -> Result<Vec<Space>, PluginError> {
        let _ = limit;
        Err(unsupported("documents.list-spaces"))
    }

    /// Pages matching a CQL expression or free text, optionally in one space.
    fn search_pages(query: PageQuery) -> Result<Vec<PageSummary>, PluginError> {
        let _ = query;
        Err(unsupported("documents.search-pages"))
    }

    /// One page with its body in storage format.
    fn get_page(id: String) -> Result<Page, PluginError> {
        let _ = id;
        Err(unsupported("documents.get-page"))
    }

    /// Create a page, optionally under a parent page.
    fn publish_page(page: NewPage) -> Result<Page, PluginError> {
        let _ = page;
        Err(unsupported("documents.publish-page"))
    }

    /// Replace a page's body (and optionally title), bumping its version.
    fn update_page(update: PageUpdate) -> Result<Page, PluginError> {
        let _ = update;
        Err(unsupported("documents.update-page"))
    }
}

/// `airlock:plugin/tickets`: ticket systems (ServiceNow, Azure DevOps).
pub trait Tickets {
    /// Tickets matching free text or a query in the service's own language.
    fn search(query: TicketQuery) -> Result<Vec<Ticket>, PluginError> {
        let _ = query;
        Err(unsupported("tickets.search"))
    }

    /// Create a ticket.
    fn create(ticket: NewTicket) -> Result<Ticket, PluginError> {
        let _ = ticket;
        Err(unsupported("tickets.create"))
    }

    /// One ticket by stable id or by human number (`INC0010001`, `1234`).
    fn get(id: String) -> Result<Ticket, PluginError> {
        let _ = id;
        Err(unsupported("tickets.get"))
    }

    /// Change a ticket.
    fn update(update: TicketUpdate) -> Result<Ticket, PluginError> {
        let _ = update;
        Err(unsupported("tickets.update"))
    }
}

/// `airlock:plugin/sync`: pull records for the host to persist.
pub trait SyncSource {
    /// One page of records after `request.cursor`; see the WIT for the
    /// cursor contract.
    fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
        let _ = request;
        Err(unsupported("sync.fetch-page"))
    }
}

/// `airlock:plugin/chat`: OpenAI-compatible and custom AI gateways.
pub trait Chat {
    /// The exported `completion-stream` resource. Plugins that do not stream
    /// use [`NoStream`].
    type Stream: CompletionStream;

    /// One whole answer.
    fn complete(request: ChatRequest) -> Result<ChatResponse, PluginError> {
        let _ = request;
        Err(unsupported("chat.complete"))
    }

    /// Start a streamed answer; the host pulls deltas with
    /// [`CompletionStream::next`].
    fn complete_stream(request: ChatRequest) -> Result<Self::Stream, PluginError> {
        let _ = request;
        Err(unsupported("chat.complete-stream"))
    }

    /// Models the connection offers.
    fn list_models() -> Result<Vec<ModelInfo>, PluginError> {
        Err(unsupported("chat.list-models"))
    }
}

/// An answer being streamed from the upstream (the `completion-stream`
/// resource of `airlock:plugin/chat`).
pub trait CompletionStream: 'static {
    /// The next delta; `None` once the answer is complete.
    fn next(&self) -> Result<Option<ChatDelta>, PluginError>;
}

/// A [`CompletionStream`] that cannot exist, for [`Chat`] plugins that do not
/// implement [`Chat::complete_stream`].
#[derive(Debug)]
pub enum NoStream {}

impl CompletionStream for NoStream {
    fn next(&self) -> Result<Option<ChatDelta>, PluginError> {
        match *self {}
    }
}

/// The connection setting `name`, or an `InvalidInput` error naming it when
/// it is absent or empty.
pub fn setting_required(name: &str) -> Result<String, PluginError> {
    match host::setting(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(missing_setting(name)),
    }
}

fn missing_setting(name: &str) -> PluginError {
    PluginError::InvalidInput(format!(
        "setting `{name}` is required but the connection does not set it"
    ))
}

/// Export a plugin type as a component of one airlock plugin world and embed
/// its manifest.
///
/// ```rust,ignore
/// airlock_sdk::export!(MyPlugin, world = connector, manifest = "airlock.toml");
/// ```
///
/// `world` is one of `connector`, `documents`, `tickets`, `ai_provider` (see
/// the [crate docs](crate#worlds-and-traits) for the traits each needs).
/// `manifest` is a path relative to the plugin crate's `Cargo.toml`; its
/// bytes go into the `airlock-manifest` custom section. Use it once per
/// plugin crate.
#[macro_export]
macro_rules! export {
    ($plugin:ty, world = $world:ident, manifest = $manifest:literal $(,)?) => {
        $crate::__embed_manifest!($manifest);
        $crate::__export_world!($world, $plugin);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __embed_manifest {
    ($manifest:literal) => {
        const _: () = {
            const MANIFEST: &[u8] =
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $manifest));
            assert!(
                ::core::str::from_utf8(MANIFEST).is_ok(),
                concat!("the airlock manifest ", $manifest, " is not UTF-8")
            );
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "airlock-manifest")]
            #[used]
            static AIRLOCK_MANIFEST: [u8; MANIFEST.len()] =
                *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $manifest));
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_world {
    (connector, $plugin:ty) => {
        const _: () = {
            type AirlockExports = $crate::__private::Adapter<$plugin>;
            $crate::__bindings::connector::export_connector!(
                AirlockExports with_types_in $crate::__bindings::connector
            );
        };
    };
    (documents, $plugin:ty) => {
        const _: () = {
            type AirlockExports = $crate::__private::Adapter<$plugin>;
            $crate::__bindings::connector::export_connector!(
                AirlockExports with_types_in $crate::__bindings::connector
            );
            $crate::__bindings::documents::export_documents!(
                AirlockExports with_types_in $crate::__bindings::documents
            );
            $crate::__bindings::sync::export_sync!(
                AirlockExports with_types_in $crate::__bindings::sync
            );
        };
    };
    (tickets, $plugin:ty) => {
        const _: () = {
            type AirlockExports = $crate::__private::Adapter<$plugin>;
            $crate::__bindings::connector::export_connector!(
                AirlockExports with_types_in $crate::__bindings::connector
            );
            $crate::__bindings::tickets::export_tickets!(
                AirlockExports with_types_in $crate::__bindings::tickets
            );
            $crate::__bindings::sync::export_sync!(
                AirlockExports with_types_in $crate::__bindings::sync
            );
        };
    };
    (ai_provider, $plugin:ty) => {
        const _: () = {
            type AirlockExports = $crate::__private::Adapter<$plugin>;
            $crate::__bindings::connector::export_connector!(
                AirlockExports with_types_in $crate::__bindings::connector
            );
            $crate::__bindings::chat::export_chat!(
                AirlockExports with_types_in $crate::__bindings::chat
            );
        };
    };
    ($other:ident, $plugin:ty) => {
        ::core::compile_error!(concat!(
            "unknown airlock plugin world `",
            stringify!($other),
            "`: expected connector, documents, tickets or ai_provider"
        ));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_without_manifest {
    ($plugin:ty, world = $world:ident $(,)?) => {
        $crate::__export_world!($world, $plugin);
    };
}

/// Support for the export macros. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    use crate::__bindings::{chat, connector, documents, sync, tickets};
    use crate::types::*;
    use core::marker::PhantomData;

    /// Export a plugin WITHOUT embedding a manifest. Only for the host's
    /// tests of components that lack one; real plugins use
    /// [`export!`](crate::export).
    pub use crate::__export_without_manifest as export_without_manifest;

    /// Implements the generated `Guest` traits by delegating to the SDK
    /// traits implemented by `T`.
    pub struct Adapter<T>(PhantomData<T>);

    impl<T> core::fmt::Debug for Adapter<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("Adapter")
        }
    }

    impl<T: crate::Connector> connector::exports::airlock::plugin::connector::Guest for Adapter<T> {
        fn test_connection() -> Result<ConnectionReport, PluginError> {
            T::test_connection()
        }
    }

    impl<T: crate::Documents> documents::exports::airlock::plugin::documents::Guest for Adapter<T> {
        fn list_spaces(limit: u32) -> Result<Vec<Space>, PluginError> {
            T::list_spaces(limit)
        }
        fn search_pages(query: PageQuery) -> Result<Vec<PageSummary>, PluginError> {
            T::search_pages(query)
        }
        fn get_page(id: String) -> Result<Page, PluginError> {
            T::get_page(id)
        }
        fn publish_page(page: NewPage) -> Result<Page, PluginError> {
            T::publish_page(page)
        }
        fn update_page(update: PageUpdate) -> Result<Page, PluginError> {
            T::update_page(update)
        }
    }

    impl<T: crate::Tickets> tickets::exports::airlock::plugin::tickets::Guest for Adapter<T> {
        fn search(query: TicketQuery) -> Result<Vec<Ticket>, PluginError> {
            T::search(query)
        }
        fn create(ticket: NewTicket) -> Result<Ticket, PluginError> {
            T::create(ticket)
        }
        fn get(id: String) -> Result<Ticket, PluginError> {
            T::get(id)
        }
        fn update(update: TicketUpdate) -> Result<Ticket, PluginError> {
            T::update(update)
        }
    }

    impl<T: crate::SyncSource> sync::exports::airlock::plugin::sync::Guest for Adapter<T> {
        fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
            T::fetch_page(request)
        }
    }

    use chat::exports::airlock::plugin::chat as chat_exports;

    impl<T: crate::Chat> chat_exports::Guest for Adapter<T> {
        type CompletionStream = StreamAdapter<T::Stream>;

        fn complete(request: ChatRequest) -> Result<ChatResponse, PluginError> {
            T::complete(request)
        }
        fn complete_stream(
            request: ChatRequest,
        ) -> Result<chat_exports::CompletionStream, PluginError> {
            T::complete_stream(request)
                .map(|stream| chat_exports::CompletionStream::new(StreamAdapter(stream)))
        }
        fn list_models() -> Result<Vec<ModelInfo>, PluginError> {
            T::list_models()
        }
    }

    /// The exported `completion-stream` resource wrapping a plugin's
    /// [`CompletionStream`](crate::CompletionStream).
    pub struct StreamAdapter<S>(S);

    impl<S> core::fmt::Debug for StreamAdapter<S> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("StreamAdapter")
        }
    }

    impl<S: crate::CompletionStream> chat_exports::GuestCompletionStream for StreamAdapter<S> {
        fn next(&self) -> Result<Option<ChatDelta>, PluginError> {
            self.0.next()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_setting_names_the_setting() {
        assert_eq!(
            missing_setting("base-url"),
            PluginError::InvalidInput(
                "setting `base-url` is required but the connection does not set it".into()
            )
        );
    }

    struct Nothing;
    impl Documents for Nothing {}
    impl Tickets for Nothing {}
    impl SyncSource for Nothing {}
    impl Chat for Nothing {
        type Stream = NoStream;
    }

    /// Every `airlock:plugin/<interface>@<version>` this file spells (the
    /// literals in the `generate!` calls), as (interface, version).
    fn spelled_versions() -> Vec<(&'static str, &'static str)> {
        const PREFIX: &str = "airlock:plugin/";
        let source = include_str!("lib.rs");
        let mut found = Vec::new();
        for (at, _) in source.match_indices(PREFIX) {
            let rest = &source[at + PREFIX.len()..];
            let name_end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .unwrap_or(rest.len());
            let Some(tail) = rest[name_end..].strip_prefix('@') else {
                continue;
            };
            let version_end = tail
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(tail.len());
            found.push((&rest[..name_end], &tail[..version_end]));
        }
        found
    }

    #[test]
    fn bindings_use_api_version() {
        let spelled = spelled_versions();
        // Five exported interfaces, each remapping `types`.
        assert!(spelled.len() >= 10, "{spelled:?}");
        for (interface, version) in spelled {
            assert_eq!(version, API_VERSION, "airlock:plugin/{interface}");
        }
        let worlds = include_str!("../wit/worlds.wit");
        assert!(
            worlds.starts_with(&format!("package airlock:plugin@{API_VERSION};")),
            "wit/worlds.wit does not declare airlock:plugin@{API_VERSION}"
        );
    }

    #[test]
    fn defaults_are_unsupported() {
        let expect =
            |op: &str| PluginError::Unsupported(format!("{op} is not implemented by this plugin"));
        assert_eq!(
            Nothing::get_page("1".into()).unwrap_err(),
            expect("documents.get-page")
        );
        assert_eq!(
            Nothing::list_spaces(10).unwrap_err(),
            expect("documents.list-spaces")
        );
        assert_eq!(Nothing::get("1".into()).unwrap_err(), expect("tickets.get"));
        assert_eq!(
            Nothing::fetch_page(SyncRequest {
                cursor: None,
                page_size: 10
            })
            .unwrap_err(),
            expect("sync.fetch-page")
        );
        assert_eq!(
            Nothing::list_models().unwrap_err(),
            expect("chat.list-models")
        );
        assert!(matches!(
            Nothing::complete_stream(ChatRequest {
                model: None,
                messages: vec![],
                temperature: None,
                max_tokens: None,
                conversation_id: None,
            }),
            Err(PluginError::Unsupported(_))
        ));
    }
}
