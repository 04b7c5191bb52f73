//! airlock: a host that runs third-party connectors as sandboxed WebAssembly
//! components.
//!
//! A plugin is one `.wasm` component carrying its [`Manifest`]. The host
//! loads it ([`Runtime::load`]), and runs each call in a fresh instance under
//! [`Limits`]. The plugin gets exactly the outbound HTTP its connection and
//! manifest grant ([`egress`]) and never sees a secret: credentials are added
//! by the host, after the egress check, and every send is recorded
//! ([`audit`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use airlock::{Connection, Runtime, RuntimeConfig};
//! use airlock::connection::{Credential, StaticCredential};
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

pub mod audit;
pub mod connection;
pub mod egress;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod oauth;
pub mod runtime;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod vault;

pub use connection::Connection;
pub use limits::Limits;
pub use manifest::Manifest;
pub use runtime::{CallError, Interface, LoadError, Plugin, Runtime, RuntimeConfig, types};
pub use service::{Airlock, AirlockConfig, ServiceError};

/// Create `dir` (and parents) readable only by this user: it holds
/// compiled code the host trusts, or secrets' ciphertext.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}
