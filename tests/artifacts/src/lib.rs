//! Paths of the WebAssembly components the host's tests load.
//!
//! The build script compiles two separate cargo workspaces for
//! `wasm32-wasip2` (installing the target with rustup if it is missing):
//!
//! - `tests/guests/`: small test plugins (`minimal`, `probe`, `no-manifest`,
//!   `sockets`, `bad-manifest`, `future-api`), and
//! - `plugins/`: the real connector plugins (skipped while it has no
//!   members),
//!
//! both into `<repo>/target/wasm`, so a plain `cargo test` on a fresh clone
//! builds everything it needs. It reruns when anything under `sdk/`, `wit/`,
//! `plugins/` or `tests/guests/` changes.
//!
//! Each guest has a constant named after its package in upper snake case
//! ([`MINIMAL`], [`PROBE`], [`NO_MANIFEST`], [`SOCKETS`], [`BAD_MANIFEST`],
//! [`FUTURE_API`]) holding the absolute path of its `.wasm`; [`GUESTS`] and
//! [`PLUGINS`] list `(package name, path)` pairs, and [`PLUGINS_DIR`] is the
//! directory the components land in. That directory holds the guests too:
//! use [`PLUGINS`] rather than scanning it to find the real plugins.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

pub mod postgres;
pub mod serve;
