//! `minimal` with a manifest the host must refuse: `colour` is not a
//! manifest field.

#[path = "../../minimal/src/lib.rs"]
mod minimal;
