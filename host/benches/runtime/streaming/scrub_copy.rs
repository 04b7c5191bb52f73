//! The response scrubber timed alone, on a copy of its algorithm.
//!
//! `egress/scrub.rs` is private to the host and has no switch, and through
//! the public API its cost per streamed event is below the noise of a
//! whole call (see `costs` and `chat`). So this file holds a line-for-line
//! copy of `Scrubber::mask`, `first_match`, `open_tail` and
//! `BodyScrub::chunk` as of commit 0d7cba5 (two needles for a bearer
//! credential: the header value and the token), and times it on the same
//! bytes as two baselines: copying each piece (what the scrubber's carry
//! buffer does anyway) and one `memmem` search of the token. Inputs: the
//! 1 MiB document in 16 KiB pieces, and one server-sent event of the chat
//! stream per piece. Best of five repetitions, so other work on the machine
//! only ever makes a figure worse. A change to the host's scrubber must be
//! copied here by hand.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// `Scrubber`: what to look for.
struct Needles {
    needles: Vec<Vec<u8>>,
    longest: usize,
}

impl Needles {
    fn bearer(token: &str) -> Self {
        let needles = vec![
            format!("Bearer {token}").into_bytes(),
            token.as_bytes().to_vec(),
        ];
        let longest = needles.iter().map(Vec::len).max().unwrap_or(1);
        Self { needles, longest }
    }

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

    fn first_match(&self, hay: &[u8]) -> Option<(usize, usize)> {
        self.needles
            .iter()
            .filter_map(|n| memchr::memmem::find(hay, n.as_slice()).map(|at| (at, n.len())))
            .min_by_key(|&(at, len)| (at, std::cmp::Reverse(len)))
    }

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
}

/// `BodyScrub`: one body's state.
struct Body {
    needles: Needles,
    carry: BytesMut,
    found: u32,
}

impl Body {
    fn chunk(&mut self, chunk: &[u8]) -> Bytes {
        self.carry.extend_from_slice(chunk);
        self.found += self.needles.mask(&mut self.carry);
        let keep = self.needles.open_tail(&self.carry);
        let release = self.carry.len() - keep;
        self.carry.split_to(release).freeze()
    }
}

/// Per piece, the best of five passes over `pieces` (each repeated until
/// at least `bytes` went through): scrubbed, copied, searched once.
pub struct Timing {
    pub scrub: Duration,
    pub copy: Duration,
    pub search: Duration,
}

fn best_per_piece(pieces: &[Bytes], bytes: usize, mut f: impl FnMut(&Bytes)) -> Duration {
    let size: usize = pieces.iter().map(Bytes::len).sum();
    let passes = bytes.div_ceil(size.max(1));
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..passes {
                pieces.iter().for_each(&mut f);
            }
            t.elapsed() / (passes * pieces.len()) as u32
        })
        .min()
        .unwrap_or_default()
}

pub fn time(token: &str, pieces: &[Bytes], bytes: usize) -> Timing {
    let mut body = Body {
        needles: Needles::bearer(token),
        carry: BytesMut::new(),
        found: 0,
    };
    let scrub = best_per_piece(pieces, bytes, |p| {
        black_box(body.chunk(p));
    });
    assert_eq!(body.found, 0, "the bench's answers do not echo the token");
    let copy = best_per_piece(pieces, bytes, |p| {
        black_box(Bytes::copy_from_slice(p));
    });
    let finder = memchr::memmem::Finder::new(token.as_bytes());
    let search = best_per_piece(pieces, bytes, |p| {
        black_box(finder.find(p));
    });
    Timing {
        scrub,
        copy,
        search,
    }
}
