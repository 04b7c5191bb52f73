//! `streaming`: streamed chat answers, a 10,000-record sync, and what the
//! security work on the response path costs. Every figure has a native Rust
//! baseline measured in the same run, against the same loopback server.
//!
//! - [`chat`]: an OpenAI-shaped server streams `chat.completion.chunk`
//!   events; the openai plugin reads them through [`airlock::Airlock`]'s
//!   `chat_stream` (the full host path), a hyper client with a small SSE
//!   parser reads the same stream and parses each event's JSON. Time to the
//!   first delta, the cost per event of a 1,000-event stream (wall and
//!   CPU), and the latency of each delta of a paced stream; and, on a bare
//!   runtime, what scrubbing adds to that stream.
//! - [`sync`]: a ServiceNow-shaped Table API serves 10,000 incidents by the
//!   keyset paging the servicenow plugin asks for; `Airlock::sync` against
//!   a hyper client that fetches the same pages and writes the same rows to
//!   SQLite (same schema, pragmas and one transaction per page).
//! - [`costs`]: response scrubbing (the injected credential masked in every
//!   answer the guest reads) measured as the difference between the same
//!   runtime call with and without a credential, and the host's scrubber
//!   alone ([`scrub_alone`]); yielding (a running guest gives up its
//!   worker at every 1 ms epoch tick) measured on a replica of the host's
//!   policy on wasmtime. Neither can be switched off in the host without a
//!   change to it.
//!
//! Each part runs its loops in a task on a runtime worker (`on_worker`), as
//! the other sections do, and interleaves the sides round by round so both
//! see the same machine conditions. Where wall time is mostly noise on a
//! shared machine (fsyncs, neighbours), CPU time of the process is printed
//! beside it ([`threads_cpu`]).

mod chat;
mod costs;
mod scrub_alone;
mod sync;

use std::time::Duration;

use super::Options;

/// The component of the plugin in plugins/ named `name`.
fn plugin_wasm(name: &str) -> Vec<u8> {
    let (_, path) = airlock_test_artifacts::PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("plugins/{name} is built"));
    std::fs::read(path).unwrap()
}

/// CPU time of every thread of this process so far, to the nanosecond
/// (`/proc/self/task/*/schedstat`; a thread that ended no longer counts):
/// other work on the machine moves it far less than wall time. Zero where
/// there is no such file.
fn threads_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// The differences `a[i] - b[i]` of rounds measured together, in seconds:
/// their median and quartiles, so a small difference can be told from the
/// noise around it.
struct Paired {
    median: f64,
    q1: f64,
    q3: f64,
}

fn paired(a: impl IntoIterator<Item = Duration>, b: impl IntoIterator<Item = Duration>) -> Paired {
    let mut d: Vec<f64> = a
        .into_iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() - b.as_secs_f64())
        .collect();
    d.sort_by(f64::total_cmp);
    let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
    Paired {
        median: at(0.5),
        q1: at(0.25),
        q3: at(0.75),
    }
}

impl Paired {
    /// `+12.3 (quartiles +8.0 to +15.1)`, in units of `unit` seconds.
    fn text(&self, unit: f64, decimals: usize) -> String {
        let f = |v: f64| format!("{:+.*}", decimals, v / unit);
        format!(
            "{} (quartiles {} to {})",
            f(self.median),
            f(self.q1),
            f(self.q3)
        )
    }
}

pub async fn run(opts: &Options, base: &str) {
    chat::run(opts).await;
    sync::run(opts).await;
    costs::run(opts, base).await;
}
