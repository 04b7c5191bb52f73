//! What a guest learns from a host-side I/O error: its kind and a bounded
//! message, never a host backtrace or a host source path.
//!
//! wasi-io's `error.to-debug-string` renders the host error with `{:?}`,
//! which for an error that captured a backtrace (`RUST_BACKTRACE=1` in the
//! host's environment) is tens of kilobytes of host frames and source
//! paths, copied into the guest's memory. airlock serves that function
//! itself: the first line of the error's message (a wasi-http code reads as
//! its description), at most [`MAX_GUEST_ERROR`] bytes.

use wasmtime::component::{Linker, Resource};

use super::call_data::CallState;

/// Longest error text a guest is given.
pub const MAX_GUEST_ERROR: usize = 512;

/// The wasi-io interface whose error rendering airlock replaces (the
/// version wasmtime 48's WASI implements; guests' older 0.2 imports resolve
/// to it).
const IO_ERROR: &str = "wasi:io/error@0.2.12";

/// Replace `error.to-debug-string` in a linker that already has wasi-io.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = linker.instance(IO_ERROR).and_then(|mut io| {
        io.func_wrap(
            "[method]error.to-debug-string",
            |store: wasmtime::StoreContextMut<'_, CallState>,
             (err,): (Resource<wasmtime::Error>,)| {
                let err = store.data().table.get(&err)?;
                Ok((bounded(err),))
            },
        )
    });
    linker.allow_shadowing(false);
    result
}

/// The text a guest gets for `err`.
pub(crate) fn bounded(err: &wasmtime::Error) -> String {
    // Display, not Debug: the message without the chain or backtrace.
    let text = err.to_string();
    truncate(text.lines().next().unwrap_or_default())
}

fn truncate(text: &str) -> String {
    let mut end = text.len().min(MAX_GUEST_ERROR);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_reach_guests_bounded_without_backtraces() {
        let code = wasmtime::Error::from(wasmtime_wasi_http::Error::HttpResponseIncomplete);
        assert!(!bounded(&code).is_empty() && bounded(&code).len() <= MAX_GUEST_ERROR);
        let long = wasmtime::Error::msg(format!(
            "first line {}\n   at host/src/egress/send.rs:120:5\nstack backtrace: ...",
            "é".repeat(600)
        ));
        let text = bounded(&long);
        assert!(text.len() <= MAX_GUEST_ERROR, "{}", text.len());
        assert!(text.starts_with("first line"));
        assert!(
            !text.contains(".rs:") && !text.contains("backtrace"),
            "{text}"
        );
        let chained = wasmtime::Error::msg("inner /home/me/src/lib.rs:3").context("outer");
        assert_eq!(bounded(&chained), "outer");
    }
}
