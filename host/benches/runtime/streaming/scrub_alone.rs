//! The response scrubber timed alone: the host's own
//! (`airlock::__test_support::BearerScrub`, the `BodyScrub` every scrubbed
//! response goes through), since through a whole call its cost per streamed
//! event is below the noise (see `costs` and `chat`). It is timed on the
//! same bytes as two baselines: copying each piece (what the scrubber's
//! carry buffer does anyway) and one `memmem` search of the token. Inputs:
//! the 1 MiB document in 16 KiB pieces, and one server-sent event of the
//! chat stream per piece. Best of five repetitions, so other work on the
//! machine only ever makes a figure worse.

use std::hint::black_box;
use std::time::{Duration, Instant};

use airlock::__test_support::BearerScrub;
use bytes::Bytes;

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
    let mut body = BearerScrub::new(token);
    let scrub = best_per_piece(pieces, bytes, |p| {
        black_box(body.chunk(p));
    });
    assert_eq!(body.found(), 0, "the bench's answers do not echo the token");
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
