//! `wasi:sockets` and `wasi:filesystem`, served by airlock itself: every
//! operation that would reach the network or a file is answered with the
//! interface's access-denied code and counted, and nothing behind them
//! touches a real socket, file descriptor or directory.
//!
//! Why not wasmtime-wasi's implementations with everything switched off:
//! they are safe as configured (`allow_tcp(false)` refuses a socket before
//! the OS creates one, no preopens leave no directory to open), but one
//! setting changed would hand a plugin real sockets or directories, and
//! they cannot count what they refuse. These hold no OS resource at all:
//!
//! * sockets are host-side records (an address family, nothing else):
//!   bind, connect, listen, a UDP stream and every option are refused;
//!   name lookups are refused before any resolver is asked;
//! * the filesystem has one preopened directory, `/`, that is not backed by
//!   anything: every descriptor operation (open, stat, read a directory,
//!   ...) is refused, so `std::fs::read("/etc/passwd")` gets
//!   `PermissionDenied` rather than a missing file.
//!
//! Toolchains link these whether a plugin uses them or not (componentize-py
//! always imports both, componentize-js `wasi:filesystem`; Rust's std
//! whichever of `std::net` and `std::fs` a plugin calls), so they must load; a plugin that uses them learns at once that it may not.
//! The count of refusals ([`WasiDenials`]) is kept per call and ends up in
//! the `airlock_wasi_denials_total` metric.

mod filesystem;
mod sockets;

use wasmtime::component::{HasData, Linker, ResourceTable};

/// Examples of denied operations a call keeps for its log line.
const EXAMPLES: usize = 4;

/// Longest path or host name quoted in an example.
const QUOTED: usize = 96;

/// The WASI operations refused during one call.
#[derive(Debug, Default)]
pub struct WasiDenials {
    count: u64,
    examples: Vec<String>,
}

impl WasiDenials {
    /// How many operations were refused.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The first few refused operations, described (`tcp connect to
    /// 127.0.0.1:1`, `open "etc/passwd"`).
    pub fn examples(&self) -> &[String] {
        &self.examples
    }

    /// Count one refusal of `what` (built only while examples are kept).
    fn record(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what());
        }
    }
}

/// A guest-chosen name or path as an example quotes it: escaped, bounded.
fn quoted(text: &str) -> String {
    let mut end = text.len().min(QUOTED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < text.len() { "..." } else { "" };
    format!("{:?}{more}", &text[..end])
}

/// What the denying implementations borrow from a call's state (the view
/// the embedder's store data hands them, so this module does not know it).
pub(super) struct Denier<'a> {
    table: &'a mut ResourceTable,
    denials: &'a mut WasiDenials,
}

impl<'a> Denier<'a> {
    pub(super) fn new(table: &'a mut ResourceTable, denials: &'a mut WasiDenials) -> Self {
        Self { table, denials }
    }
}

/// How a store's data gives the denying implementations their view.
pub(super) type GetDenier<T> = fn(&mut T) -> Denier<'_>;

/// `HasData` marker for the denying implementations.
struct Deny;

impl HasData for Deny {
    type Data<'a> = Denier<'a>;
}

/// Link every `wasi:sockets` and `wasi:filesystem` interface wasmtime-wasi
/// 48 implements for WASI 0.2 to the denying implementations.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: GetDenier<T>,
) -> wasmtime::Result<()> {
    sockets::add_to_linker(linker, get)?;
    filesystem::add_to_linker(linker, get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_counts_every_denial_and_keeps_a_few_examples() {
        let mut d = WasiDenials::default();
        for i in 0..10 {
            d.record(|| format!("op {i}"));
        }
        assert_eq!(d.count(), 10);
        assert_eq!(d.examples(), ["op 0", "op 1", "op 2", "op 3"]);
    }

    #[test]
    fn quoted_names_are_escaped_and_bounded() {
        assert_eq!(quoted("etc/passwd"), "\"etc/passwd\"");
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let long = "é".repeat(100);
        let q = quoted(&long);
        assert!(q.ends_with("\"..."), "{q}");
        assert!(q.len() < QUOTED + 8, "{q}");
    }
}
