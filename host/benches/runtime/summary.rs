//! The summary table printed at the end of a run: every goal of the
//! performance issue, its figure, the baseline measured in the same run, the
//! ratio between them and whether the goal is met.
//!
//! Sections add rows as they measure ([`add`]); a section that did not run
//! adds none, so `--only` prints the rows of that section alone.

use std::sync::Mutex;

/// What a goal asks of a ratio.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// The ratio must be at most this.
    AtMost(f64),
    /// The ratio must be at least this.
    AtLeast(f64),
    /// A figure reported beside the others, with no goal.
    Report,
}

impl Goal {
    fn met(self, ratio: f64) -> &'static str {
        match self {
            Goal::AtMost(g) if ratio <= g => "met",
            Goal::AtLeast(g) if ratio >= g => "met",
            Goal::Report => "",
            _ => "NOT met",
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtMost(g) => format!("≤ {g:.2}x"),
            Goal::AtLeast(g) => format!("≥ {g:.2}x"),
            Goal::Report => "(reported)".into(),
        }
    }
}

struct Row {
    measure: String,
    figure: String,
    baseline: String,
    ratio: Option<f64>,
    goal: Goal,
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// One row: `figure` against `baseline` (both as printed, with units),
/// their `ratio` (figure / baseline, or `None` where there is no ratio),
/// and the goal for the ratio.
pub fn add(
    measure: impl Into<String>,
    figure: impl Into<String>,
    baseline: impl Into<String>,
    ratio: Option<f64>,
    goal: Goal,
) {
    ROWS.lock().unwrap().push(Row {
        measure: measure.into(),
        figure: figure.into(),
        baseline: baseline.into(),
        ratio,
        goal,
    });
}

/// Print the table of every row added so far.
pub fn print() {
    let rows = ROWS.lock().unwrap();
    if rows.is_empty() {
        return;
    }
    println!("#### summary: every goal, measured in this run\n");
    println!("| measure | figure | baseline (same run) | ratio | goal | |");
    println!("|---|---:|---:|---:|---:|---|");
    for row in rows.iter() {
        let ratio = row.ratio.map_or(String::new(), |r| format!("{r:.2}x"));
        let met = row.ratio.map_or("", |r| row.goal.met(r));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.measure,
            row.figure,
            row.baseline,
            ratio,
            row.goal.text(),
            met
        );
    }
    println!();
}
