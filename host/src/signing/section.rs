//! The top-level section layout of a `.wasm` file, as far as signing needs
//! it: an 8-byte header (`\0asm`, version, layer), then sections of an id
//! byte, a LEB128 `u32` size and a body. A custom section (id 0) starts its
//! body with a LEB128-length-prefixed name.
//!
//! Only the top level is read: sections inside a component's core modules
//! are part of the signed bytes like everything else.

use std::ops::Range;

use super::SignatureError;

const MAGIC: &[u8; 4] = b"\0asm";
const HEADER_BYTES: usize = 8;

/// A top-level custom section of a given name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// Where the section starts (its id byte): the signed message ends here.
    pub start: usize,
    /// Where the section ends (the next section's id byte, or the end).
    pub end: usize,
    /// The section's content after its name.
    pub content: Range<usize>,
}

/// Every top-level custom section called `name`, in file order.
pub(super) fn find_custom(wasm: &[u8], name: &str) -> Result<Vec<Found>, SignatureError> {
    if wasm.len() < HEADER_BYTES || &wasm[..4] != MAGIC {
        return Err(SignatureError::NotWasm);
    }
    let mut found = Vec::new();
    let mut at = HEADER_BYTES;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        at += 1;
        let size = read_u32(wasm, &mut at, "a section size")? as usize;
        let end = at
            .checked_add(size)
            .filter(|end| *end <= wasm.len())
            .ok_or(SignatureError::Malformed {
                offset: start,
                what: "a section runs past the end of the file",
            })?;
        if id == 0 {
            let body = &wasm[..end];
            let mut p = at;
            let len = read_u32(body, &mut p, "a custom section's name")? as usize;
            let name_end =
                p.checked_add(len)
                    .filter(|e| *e <= end)
                    .ok_or(SignatureError::Malformed {
                        offset: p,
                        what: "a custom section's name runs past its section",
                    })?;
            if &wasm[p..name_end] == name.as_bytes() {
                found.push(Found {
                    start,
                    end,
                    content: name_end..end,
                });
            }
        }
        at = end;
    }
    Ok(found)
}

/// A LEB128 `u32` at `*at`, advancing past it.
fn read_u32(bytes: &[u8], at: &mut usize, what: &'static str) -> Result<u32, SignatureError> {
    let start = *at;
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at).ok_or(SignatureError::Malformed {
            offset: start,
            what,
        })?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| SignatureError::Malformed {
                offset: start,
                what,
            });
        }
    }
    Err(SignatureError::Malformed {
        offset: start,
        what,
    })
}

/// `n` as LEB128.
fn write_u32(mut n: usize, out: &mut Vec<u8>) {
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

/// `wasm` with a custom section `name` holding `content` appended as its
/// last section.
pub(super) fn append_custom(wasm: &[u8], name: &str, content: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(name.len() + content.len() + 5);
    write_u32(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(content);
    let mut out = Vec::with_capacity(wasm.len() + body.len() + 6);
    out.extend_from_slice(wasm);
    out.push(0);
    write_u32(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn appended_sections_are_found_last_with_their_content() {
        let one = append_custom(HEADER, "other", b"x");
        let two = append_custom(&one, "sig", &[7u8; 300]);
        let found = find_custom(&two, "sig").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start, one.len());
        assert_eq!(found[0].end, two.len());
        assert_eq!(&two[found[0].content.clone()], &[7u8; 300]);
        assert!(find_custom(&two, "none").unwrap().is_empty());
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        assert!(matches!(
            find_custom(b"PK\x03\x04zip file", "sig"),
            Err(SignatureError::NotWasm)
        ));
        let whole = append_custom(HEADER, "sig", b"content");
        let cut = &whole[..whole.len() - 2];
        let err = find_custom(cut, "sig").unwrap_err();
        assert!(
            err.to_string().contains("runs past the end of the file"),
            "{err}"
        );
        // A size of more than five LEB128 bytes.
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(
            find_custom(&bad, "sig"),
            Err(SignatureError::Malformed { .. })
        ));
    }
}
