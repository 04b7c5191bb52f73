//! What commands print: JSON under `--json`, tables and lines for people
//! otherwise, and a progress line on a terminal.

use serde::Serialize;

/// Print `value` as pretty JSON when `json` is set, else run `human` on it.
///
/// Every command with a `--json` flag answers through here, so scripts get
/// the same JSON shape from each and the human form stays the caller's.
pub fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T),
) -> anyhow::Result<()> {
    if json {
        return self::json(value);
    }
    human(value);
    Ok(())
}

/// Print `items` as an aligned table with a header, one row each as `row`
/// spells it, or `(none)` under the header when there are none.
pub fn table<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// Print `value` as pretty JSON and a newline on stdout.
fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Run `f` showing `label` with a spinner and the elapsed time on stderr
/// while it runs, when stderr is a terminal (a first compile of a plugin
/// takes seconds). Scripts and pipes see nothing.
pub fn with_progress<T>(label: &str, f: impl FnOnce() -> T) -> T {
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let done = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                eprint!(
                    "\r{label} {} {:.1}s",
                    FRAMES[i % FRAMES.len()],
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "\r{label} done in {:.1}s  ",
                started.elapsed().as_secs_f64()
            );
        });
        let out = f();
        done.store(true, Ordering::Relaxed);
        out
    })
}

/// Connection names by id, for tables whose rows carry ids (a connection
/// deleted since shows as its id).
pub fn connection_names(
    airlock: &airlock::Airlock,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    Ok(airlock
        .connections(&Default::default())?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect())
}

/// The name of connection `id` from `names`, or the id itself.
pub fn named<'a>(names: &'a std::collections::HashMap<String, String>, id: &'a str) -> &'a str {
    names.get(id).map_or(id, String::as_str)
}
