//! airlock: a host that runs third-party connectors as sandboxed WebAssembly
//! components.
//!
//! A plugin is one `.wasm` component carrying its [`Manifest`]. The host
//! loads it ([`Runtime::load`]), and runs each call in a fresh instance under
//! [`Limits`]. The plugin gets exactly the outbound HTTP its connection and
//! manifest grant (checked at every request) and never sees a secret:
//! credentials are added by the host, after the egress check, and every send
//! is recorded ([`audit`]).
//!
//! # Embedding
//!
//! [`Airlock`] is the whole host on a data directory, in-process: the same
//! calls the `airlock` CLI and the management API ([`server`]) make. Open it,
//! install a plugin, add a connection, call a typed operation (or any
//! operation by name with JSON). `host/examples/embed.rs` is this, runnable.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use airlock::runtime::types::NewTicket;
//! use airlock::service::{AuthInput, NewConnection};
//! use airlock::service::Scope;
//! use airlock::{Airlock, AirlockConfig};
//!
//! let airlock = Airlock::open(AirlockConfig::new("/var/lib/myapp/airlock")?)?;
//! let plan = airlock.plan_install(std::fs::read("servicenow.wasm")?)?;
//! // Show plan.grant and plan.changes to the operator, then approve:
//! airlock.install(&plan, true)?;
//! let record = airlock.add_connection(NewConnection {
//!     name: "sn".into(),
//!     plugin_id: "servicenow".into(),
//!     settings: [("base-url".to_string(), "https://acme.service-now.com".to_string())].into(),
//!     auth: AuthInput::Basic {
//!         username: "integration".into(),
//!         password: std::env::var("SN_PASSWORD")?.into(),
//!     },
//!     scope: Scope::Global,
//! })?;
//! // A typed operation: WIT records in and out.
//! let (plugin, connection) = airlock.prepare_call(&record, None)?;
//! let ticket = airlock
//!     .runtime()
//!     .create_ticket(&plugin, &connection, NewTicket {
//!         title: "Printer on fire".into(),
//!         description: None,
//!         kind: None,
//!         priority: None,
//!         fields: None,
//!     })
//!     .await?;
//! // Any operation by name, JSON in and out (what `airlock call` does).
//! let same = airlock
//!     .call("sn", "tickets.get", serde_json::json!({ "id": ticket.id }), None)
//!     .await?;
//! # let _ = same; Ok(()) }
//! ```
//!
//! [`Runtime`] alone runs plugins with connections built by the caller:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use airlock::{Connection, Runtime, RuntimeConfig};
//! use airlock::credential::{Credential, StaticCredential};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let plugin = runtime.load_file("target/wasm/wasm32-wasip2/release/minimal.wasm")?;
//! let token = Credential::Bearer { token: "s3cret".to_string().into() };
//! let connection = Connection::new("c1", "example")
//!     .with_setting("base-url", "https://api.example.com")
//!     .with_credential(http::header::AUTHORIZATION, StaticCredential::new(token))?;
//! let report = runtime.test_connection(&plugin, &connection).await?;
//! println!("{}", report.message);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

// The floors, bottom up: each module imports only from the ones above it in
// this list (the call path, reversed). Modules that are not `pub` are the
// host's internals; what an embedder needs of them is re-exported below.
pub mod audit;
pub mod connection;
pub mod credential;
mod dirs;
mod egress;
mod limits;
pub mod manifest;
pub mod metrics;
mod net;
mod plugin_state;
mod redact;
pub mod runtime;
pub mod server;
pub mod service;
pub mod signing;
mod store;
mod vault;

pub use connection::Connection;
pub use limits::Limits;
pub use manifest::Manifest;
pub use net::{ALLOW_PRIVATE_ENV, AddressPolicy, AllowListError, EgressRule, Origin, RuleError};
pub use plugin_state::{MemoryPluginState, PluginState, StateError, StateScope};
pub use runtime::{CallError, Interface, LoadError, Plugin, Runtime, RuntimeConfig, types};
pub use service::{Airlock, AirlockConfig, ConfigError, ServiceError, oauth};
pub use store::{Backend, DB_FILE, DatabaseUrl, PgTarget, StoreError};
pub use vault::{KeySource, KeyVersionInfo, VaultError};

#[doc(hidden)]
pub mod __test_support {
    //! Not part of the API: lets this crate's own integration tests look at
    //! what the host sealed, which no embedder should be able to do.

    use secrecy::SecretString;

    /// Open a connection's sealed secret `field`.
    pub fn open_connection_secret(
        airlock: &crate::Airlock,
        connection_id: &str,
        field: &str,
    ) -> Option<SecretString> {
        airlock
            .vault()
            .open_secret(
                &crate::vault::SecretOwner::Connection(connection_id.to_string()),
                field,
            )
            .unwrap()
    }

    /// The host's response scrubber for a bearer `token`, so the benchmark
    /// times the real one alone (through a call its cost is below the
    /// noise).
    pub struct BearerScrub(crate::egress::scrub::BodyScrub);

    impl std::fmt::Debug for BearerScrub {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl BearerScrub {
        /// The scrubber a connection with bearer credential `token` gets.
        pub fn new(token: &str) -> Self {
            let credential = crate::credential::Credential::Bearer {
                token: SecretString::from(token),
            };
            let scrubber = crate::egress::scrub::Scrubber::for_credential(&credential)
                .expect("a bearer credential has needles");
            Self(crate::egress::scrub::BodyScrub::new(scrubber))
        }

        /// Scrub one piece of a body; what may be released.
        pub fn chunk(&mut self, piece: &[u8]) -> bytes::Bytes {
            self.0.chunk(piece)
        }

        /// Occurrences masked so far.
        pub fn found(&self) -> u32 {
            self.0.found
        }
    }
}
