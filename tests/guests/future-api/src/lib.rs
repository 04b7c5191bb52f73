//! `minimal` with a manifest targeting an airlock:plugin API version the host
//! does not offer (`api-version = "9.0"`).

#[path = "../../minimal/src/lib.rs"]
mod minimal;
