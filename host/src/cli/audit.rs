//! `airlock audit`: list and verify the hash-chained audit log.

use anyhow::bail;
use clap::Subcommand;

use super::output;
use airlock::Airlock;
use airlock::audit::{AuditFilter, DecisionKind};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Decision {
    Allowed,
    Denied,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; reports the first altered, removed or reordered row.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// List recorded requests, newest first.
    List {
        #[arg(long)]
        connection: Option<String>,
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long, value_enum)]
        decision: Option<Decision>,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// List operator changes on record (credentials replaced), newest first.
    Events {
        /// Only this connection's (name or id).
        #[arg(long)]
        connection: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(airlock: &Airlock, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { json } => {
            let report = airlock.verify_audit()?;
            output::emit(json, &report, |report| println!("{report}"))?;
            if !report.is_ok() {
                bail!("the audit log has been tampered with");
            }
            Ok(())
        }
        AuditCommand::Events {
            connection,
            limit,
            json,
        } => {
            let events = airlock.list_audit_events(connection.as_deref(), limit)?;
            let names = output::connection_names(airlock)?;
            output::emit(json, &events, |events| {
                output::table(
                    &["SEQ", "TIME", "ACTOR", "PLUGIN", "CONNECTION", "DETAIL"],
                    events,
                    |e| {
                        vec![
                            e.seq.to_string(),
                            e.time.clone(),
                            e.actor.clone(),
                            e.plugin_id.clone(),
                            output::named(&names, &e.connection_id).to_string(),
                            e.detail.to_string(),
                        ]
                    },
                );
            })
        }
        AuditCommand::List {
            connection,
            plugin,
            project,
            decision,
            since,
            until,
            limit,
            json,
        } => {
            let connection_id = match connection {
                Some(c) => Some(airlock.connection(&c)?.id),
                None => None,
            };
            let entries = airlock.list_audit(&AuditFilter {
                connection_id,
                plugin_id: plugin,
                project,
                decision: decision.map(|d| match d {
                    Decision::Allowed => DecisionKind::Allowed,
                    Decision::Denied => DecisionKind::Denied,
                }),
                since,
                until,
                before: None,
                limit,
            })?;
            let names = output::connection_names(airlock)?;
            output::emit(json, &entries, |entries| {
                output::table(
                    &[
                        "SEQ",
                        "TIME",
                        "PLUGIN",
                        "CONNECTION",
                        "METHOD",
                        "URL",
                        "DECISION",
                        "STATUS",
                    ],
                    entries,
                    |e| {
                        vec![
                            e.seq.to_string(),
                            e.time.clone(),
                            e.plugin_id.clone(),
                            output::named(&names, &e.connection_id).to_string(),
                            e.method.clone(),
                            e.url.clone(),
                            e.decision.as_str().to_string(),
                            e.outcome
                                .as_ref()
                                .and_then(|o| o.status)
                                .map_or("-".into(), |s| s.to_string()),
                        ]
                    },
                );
            })
        }
    }
}
