//! The credential the host injected never reaches the guest: an upstream
//! that echoes request headers (debug endpoints, error pages) would hand it
//! back in its answer. Every occurrence of the injected header value or of
//! its secret part, in response headers and in the streamed body, is masked
//! with `*` of the same length (so `content-length` stays true), and the
//! audit record says how many were removed.
//!
//! The body is scanned as it streams: only the bytes at a chunk's end that
//! begin a needle (a match the next chunk may complete) are held back, at
//! most the longest needle less one, so a chunk that does not end in the
//! start of the secret is released whole and at once (a streamed event is
//! not delayed until the next one arrives). The cost is one search per
//! needle per chunk and the memory a few hundred bytes per response.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::credential::Credential;

/// Shorter secret parts are masked only as part of the whole header value:
/// masking every occurrence of a three-byte password would shred answers.
const MIN_PART: usize = 8;

/// What to look for in one response. The needles are the secret itself:
/// wiped when dropped, never printed.
#[derive(Clone)]
pub(crate) struct Scrubber {
    needles: Vec<Zeroizing<Vec<u8>>>,
    longest: usize,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} needles, [redacted])", self.needles.len())
    }
}

impl Scrubber {
    /// The byte strings of `credential` that must not reach the guest: the
    /// header value as sent, and its secret part when long enough.
    pub(crate) fn for_credential(credential: &Credential) -> Option<Self> {
        let value = credential.header_value().ok()?;
        let mut needles = vec![Zeroizing::new(value.as_bytes().to_vec())];
        let part = Zeroizing::new(match credential {
            Credential::Bearer { token } => token.expose_secret().as_bytes().to_vec(),
            Credential::ApiKey { key, .. } => key.expose_secret().as_bytes().to_vec(),
            // What travels is the base64 of `user:password`.
            Credential::Basic { .. } => value
                .as_bytes()
                .strip_prefix(b"Basic ")
                .unwrap_or_default()
                .to_vec(),
        });
        if part.len() >= MIN_PART && !needles.contains(&part) {
            needles.push(part);
        }
        if let Credential::Basic { password, .. } = credential {
            let raw = password.expose_secret().as_bytes();
            if raw.len() >= MIN_PART {
                needles.push(Zeroizing::new(raw.to_vec()));
            }
        }
        needles.retain(|n| !n.is_empty());
        let longest = needles.iter().map(|n| n.len()).max()?;
        Some(Self { needles, longest })
    }

    /// Mask every occurrence in `buf`; returns how many.
    fn mask(&self, buf: &mut [u8]) -> u32 {
        let mut found = 0;
        let mut from = 0;
        while let Some((at, len)) = self.first_match(&buf[from..]) {
            buf[from + at..from + at + len].fill(b'*');
            from += at + len;
            found += 1;
        }
        found
    }

    /// The earliest occurrence of any needle: (offset, length).
    fn first_match(&self, hay: &[u8]) -> Option<(usize, usize)> {
        self.needles
            .iter()
            .filter_map(|n| memchr::memmem::find(hay, n.as_slice()).map(|at| (at, n.len())))
            .min_by_key(|&(at, len)| (at, std::cmp::Reverse(len)))
    }

    /// How many bytes at the end of `buf` are the beginning of a needle
    /// (a match that the next chunk may complete). Only those are held
    /// back: a streamed event must not wait for the next one because its
    /// last bytes merely could have been a secret's first.
    fn open_tail(&self, buf: &[u8]) -> usize {
        let window = buf.len().saturating_sub(self.longest - 1);
        let tail = &buf[window..];
        self.needles
            .iter()
            .filter_map(|n| {
                memchr::memchr_iter(n[0], tail)
                    .map(|at| &tail[at..])
                    .find(|rest| rest.len() < n.len() && n.starts_with(rest))
                    .map(<[u8]>::len)
            })
            .max()
            .unwrap_or(0)
    }

    /// Mask occurrences in header values; a value that is no longer valid
    /// afterwards cannot happen (`*` is a valid header byte).
    pub(super) fn headers(&self, headers: &mut HeaderMap) -> u32 {
        let mut found = 0;
        for value in headers.values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            let n = self.mask(&mut bytes);
            if n > 0 {
                found += n;
                if let Ok(masked) = http::HeaderValue::from_bytes(&bytes) {
                    *value = masked;
                }
            }
        }
        found
    }
}

/// The streaming state of one body. The held-back tail may be the start of
/// the secret, so it is not printed.
pub(crate) struct BodyScrub {
    scrubber: Scrubber,
    carry: BytesMut,
    /// Occurrences masked so far.
    pub(crate) found: u32,
}

impl std::fmt::Debug for BodyScrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodyScrub(found {}, [redacted])", self.found)
    }
}

impl BodyScrub {
    pub(crate) fn new(scrubber: Scrubber) -> Self {
        Self {
            scrubber,
            carry: BytesMut::new(),
            found: 0,
        }
    }

    /// Mask what `chunk` completes and return what can be released: all but
    /// the tail that could still begin an occurrence.
    pub(crate) fn chunk(&mut self, chunk: &[u8]) -> Bytes {
        self.carry.extend_from_slice(chunk);
        self.found += self.scrubber.mask(&mut self.carry);
        let keep = self.scrubber.open_tail(&self.carry);
        let release = self.carry.len() - keep;
        self.carry.split_to(release).freeze()
    }

    /// The held-back tail at the end of the body (it holds no whole needle).
    pub(super) fn finish(&mut self) -> Bytes {
        self.carry.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn bearer(token: &str) -> Scrubber {
        Scrubber::for_credential(&Credential::Bearer {
            token: SecretString::from(token),
        })
        .unwrap()
    }

    #[test]
    fn occurrences_split_across_chunks_are_masked_and_lengths_kept() {
        let secret = "CANARY-secret-token-1234";
        let text = format!(
            "{{\"headers\": {{\"Authorization\": \"Bearer {secret}\"}}, \"again\": \"{secret}\"}}"
        );
        for split in 1..text.len() {
            let mut body = BodyScrub::new(bearer(secret));
            let mut out = Vec::new();
            for piece in [&text.as_bytes()[..split], &text.as_bytes()[split..]] {
                out.extend_from_slice(&body.chunk(piece));
            }
            out.extend_from_slice(&body.finish());
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out.len(), text.len(), "split at {split}");
            assert!(!out.contains("CANARY"), "split at {split}: {out}");
            assert_eq!(body.found, 2, "split at {split}");
        }
    }

    #[test]
    fn only_a_tail_that_begins_the_secret_is_held_back() {
        let secret = "tok-ABCDEFGH";
        let mut body = BodyScrub::new(bearer(secret));
        // A whole event: released at once, nothing held back.
        let event = b"data: {\"content\": \"Hello\"}\n\n";
        assert_eq!(&body.chunk(event)[..], &event[..]);
        // A chunk ending in the start of the secret: exactly that is held.
        assert_eq!(&body.chunk(b"data: tok-AB")[..], b"data: ");
        assert_eq!(&body.chunk(b"X\n\n")[..], b"tok-ABX\n\n");
        // And the start of the header value (`Bearer ...`) too.
        assert_eq!(&body.chunk(b"see Bear")[..], b"see ");
        assert_eq!(
            &body.chunk(b"er tok-ABCDEFGH!")[..],
            b"*******************!"
        );
        assert_eq!(body.found, 1);
        assert!(body.finish().is_empty());
    }

    #[test]
    fn one_byte_at_a_time_and_clean_bodies_pass_unchanged() {
        let secret = "tok-ABCDEFGH";
        let text = format!("a{secret}b Bearer {secret} c");
        let mut body = BodyScrub::new(bearer(secret));
        let mut out = Vec::new();
        for b in text.as_bytes() {
            out.extend_from_slice(&body.chunk(&[*b]));
        }
        out.extend_from_slice(&body.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a************b ******************* c"
        );

        let mut clean = BodyScrub::new(bearer(secret));
        let mut out = clean.chunk(b"nothing to see").to_vec();
        out.extend_from_slice(&clean.finish());
        assert_eq!(out, b"nothing to see");
        assert_eq!(clean.found, 0);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = bearer("CANARY-debug-token");
        let mut body = BodyScrub::new(s.clone());
        body.chunk(b"xx CANARY-debug");
        assert!(!format!("{s:?} {body:?}").contains("CANARY"));
    }

    #[test]
    fn headers_and_every_credential_kind() {
        let basic = Credential::Basic {
            username: "me".into(),
            password: SecretString::from("correct-horse"),
        };
        let s = Scrubber::for_credential(&basic).unwrap();
        let mut headers = HeaderMap::new();
        let sent = basic.header_value().unwrap();
        headers.insert("x-echo-authorization", sent.clone());
        headers.insert("x-note", "password was correct-horse".parse().unwrap());
        assert_eq!(s.headers(&mut headers), 2);
        for value in headers.values() {
            let v = value.to_str().unwrap();
            assert!(!v.contains("correct-horse") && !v.contains("bWU6"), "{v}");
        }
        let key = Credential::ApiKey {
            header: http::HeaderName::from_static("x-api-key"),
            prefix: String::new(),
            key: SecretString::from("k3y-k3y-k3y-k3y"),
        };
        let mut buf = b"{\"key\":\"k3y-k3y-k3y-k3y\"}".to_vec();
        assert_eq!(Scrubber::for_credential(&key).unwrap().mask(&mut buf), 1);
        assert!(!String::from_utf8(buf).unwrap().contains("k3y"));
        // A short password is masked only inside the whole header value.
        let short = Credential::Basic {
            username: String::new(),
            password: SecretString::from("pw"),
        };
        let s = Scrubber::for_credential(&short).unwrap();
        let mut text = b"pw is fine here".to_vec();
        assert_eq!(s.mask(&mut text), 0);
    }
}
