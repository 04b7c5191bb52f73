//! Writing a manifest into a component's bytes: the `airlock-manifest`
//! custom section, appended at the component's top level, and removing the
//! sections an earlier build or pack left (at any depth: the Rust SDK's
//! `export!` leaves its section in the component's core module).
//!
//! Only the binary's section framing is read (id, LEB128 size, body), so
//! this works for a component from any toolchain; whether the result is a
//! valid plugin is the loader's to say (`Runtime::pack`).

use super::MANIFEST_SECTION;

/// Deepest nesting of components this will walk into.
const MAX_DEPTH: usize = 32;

/// A component's bytes could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the component's sections are malformed at byte {offset} (truncated or corrupt)")]
pub struct SectionError {
    /// Where, from the start of the file.
    pub offset: usize,
}

/// `wasm` with `manifest` appended as a top-level `airlock-manifest`
/// custom section. The caller removes any earlier ones first
/// ([`strip_manifests`]); the loader refuses a file with two.
pub fn append_manifest(wasm: &[u8], manifest: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(MANIFEST_SECTION.len() + manifest.len() + 5);
    leb128(MANIFEST_SECTION.len(), &mut body);
    body.extend_from_slice(MANIFEST_SECTION.as_bytes());
    body.extend_from_slice(manifest.as_bytes());
    let mut out = Vec::with_capacity(wasm.len() + body.len() + 6);
    out.extend_from_slice(wasm);
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// `wasm` (a component or core module) without any `airlock-manifest`
/// custom section, in it or in the modules and components nested in it.
/// Everything else is kept byte for byte, in order.
pub fn strip_manifests(wasm: &[u8]) -> Result<Vec<u8>, SectionError> {
    strip(wasm, 0, 0)
}

/// The component-model layer's header bytes after `\0asm`.
const COMPONENT_HEADER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
/// Section ids of a component whose body is a nested binary: a core module,
/// a component.
const NESTED: [u8; 2] = [1, 4];

fn strip(wasm: &[u8], base: usize, depth: usize) -> Result<Vec<u8>, SectionError> {
    let bad = |at: usize| SectionError { offset: base + at };
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" || depth > MAX_DEPTH {
        return Err(bad(0));
    }
    let is_component = wasm[4..8] == COMPONENT_HEADER;
    let mut out = wasm[..8].to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        at += 1;
        let size = read_leb128(wasm, &mut at).ok_or_else(|| bad(start))?;
        let end = at.checked_add(size).filter(|&e| e <= wasm.len());
        let body = &wasm[at..end.ok_or_else(|| bad(start))?];
        let body_at = at;
        at += size;
        if id == 0 && custom_section_name(body) == Some(MANIFEST_SECTION.as_bytes()) {
            continue;
        }
        if is_component && NESTED.contains(&id) {
            let nested = strip(body, base + body_at, depth + 1)?;
            out.push(id);
            leb128(nested.len(), &mut out);
            out.extend_from_slice(&nested);
        } else {
            out.extend_from_slice(&wasm[start..at]);
        }
    }
    Ok(out)
}

/// The name of a custom section, from its body.
fn custom_section_name(body: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let len = read_leb128(body, &mut at)?;
    body.get(at..at.checked_add(len)?)
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// An unsigned LEB128 of at most 5 bytes (a u32, as wasm sizes are).
fn read_leb128(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::custom_sections;

    /// A component holding a core module with a manifest section, and a
    /// top-level one beside it.
    fn nested() -> Vec<u8> {
        let module = append_manifest(b"\0asm\x01\0\0\0", "inner");
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.push(1);
        leb128(module.len(), &mut component);
        component.extend_from_slice(&module);
        append_manifest(&component, "outer")
    }

    #[test]
    fn appended_manifests_are_read_back_and_stripped_at_any_depth() {
        let wasm = nested();
        assert_eq!(
            custom_sections(&wasm, MANIFEST_SECTION),
            [b"inner".to_vec(), b"outer".to_vec()]
        );
        let stripped = strip_manifests(&wasm).unwrap();
        assert!(custom_sections(&stripped, MANIFEST_SECTION).is_empty());
        // The core module is still there, only its section gone.
        assert_eq!(&stripped[8..10], &[1, 8]);
        let again = append_manifest(&stripped, "new");
        assert_eq!(custom_sections(&again, MANIFEST_SECTION), [b"new".to_vec()]);
    }

    #[test]
    fn a_file_without_manifests_is_kept_byte_for_byte() {
        let wasm = strip_manifests(&nested()).unwrap();
        assert_eq!(strip_manifests(&wasm).unwrap(), wasm);
    }

    #[test]
    fn malformed_framing_is_an_error_not_a_panic() {
        let wasm = nested();
        for cut in [3, 9, 10, 12, wasm.len() - 1] {
            assert!(strip_manifests(&wasm[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = b"\0asm\x0d\0\x01\0".to_vec();
        huge.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(strip_manifests(&huge), Err(SectionError { offset: 8 }));
    }
}
