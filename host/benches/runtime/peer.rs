//! (placeholder: filled in by the peer section)

use super::Options;

pub async fn run(_opts: &Options, _base: &str) {}
