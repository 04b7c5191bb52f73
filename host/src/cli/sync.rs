//! `airlock sync`: pull a connection's records into the store.

use std::io::IsTerminal;

use super::{block_on, output};
use airlock::Airlock;
use airlock::service::DEFAULT_PAGE_SIZE;

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Connection name or id.
    pub connection: String,
    /// Start from the beginning instead of the stored cursor.
    #[arg(long)]
    pub full: bool,
    /// Records per page.
    #[arg(long, default_value_t = DEFAULT_PAGE_SIZE)]
    pub page_size: u32,
    /// List the connection's sync runs instead of syncing.
    #[arg(long, conflicts_with_all = ["full", "records"])]
    pub runs: bool,
    /// List synced records instead of syncing.
    #[arg(long)]
    pub records: bool,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(airlock: &Airlock, args: SyncArgs) -> anyhow::Result<()> {
    if args.runs {
        let runs = airlock.sync_runs(&args.connection, args.limit)?;
        return output::emit(args.json, &runs, |runs| {
            let header = ["STARTED", "STATUS", "KIND", "PAGES", "RECORDS", "ERROR"];
            output::table(&header, runs, |r| {
                vec![
                    r.started_at.clone(),
                    r.status.clone(),
                    if r.full {
                        "full".into()
                    } else {
                        "delta".into()
                    },
                    r.pages.to_string(),
                    r.records.to_string(),
                    r.error.clone().unwrap_or_default(),
                ]
            });
        });
    }
    if args.records {
        let records = airlock.synced_records(&args.connection, args.limit, 0)?;
        return output::emit(args.json, &records, |records| {
            output::table(&["KIND", "ID", "UPDATED"], records, |r| {
                vec![
                    r.kind.clone(),
                    r.record_id.clone(),
                    r.updated_at.clone().unwrap_or_default(),
                ]
            });
        });
    }
    let tty = std::io::stderr().is_terminal();
    let run = block_on(
        airlock.sync(&args.connection, args.full, args.page_size, |run| {
            if tty {
                eprint!(
                    "\rsyncing {}: {} pages, {} records",
                    args.connection, run.pages, run.records
                );
            }
        }),
    );
    if tty {
        eprintln!();
    }
    let run = run?;
    output::emit(args.json, &run, |run| {
        println!(
            "sync of {} {}: {} pages, {} records ({})",
            args.connection,
            run.status,
            run.pages,
            run.records,
            if run.full { "full" } else { "delta" }
        );
    })
}
