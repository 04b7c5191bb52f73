//! `airlock call`: run any operation of a connection's plugin.

use super::block_on;
use airlock::Airlock;

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Connection name or id.
    pub connection: String,
    /// `interface.operation`, e.g. `tickets.create` or `connector.test-connection`.
    #[arg(long_help = operation_long_help())]
    pub operation: String,
    /// The operation's input as JSON, e.g. '{"id": "INC0010001"}': field
    /// names in snake_case, enum values as the WIT spells them (`p1`,
    /// `user`, `markdown`), a ticket's `fields` as an object.
    #[arg(long, default_value = "null")]
    pub input: String,
    /// Resolve and audit the call for this project.
    #[arg(long)]
    pub project: Option<String>,
}

/// `--help` for the operation argument: the operations and their example
/// inputs come from the runtime (its table and the examples its tests
/// decode), so they cannot go stale.
fn operation_long_help() -> String {
    let mut help = String::from(
        "`interface.operation`, e.g. `tickets.create` or `connector.test-connection`.\n\n\
         Operations (a plugin answers those of the interfaces it exports), each with an \
         example --input:",
    );
    for (op, example) in airlock::runtime::json::EXAMPLES {
        help.push_str(&format!("\n  {op}\n      {example}"));
    }
    help
}

pub fn run(airlock: &Airlock, args: CallArgs) -> anyhow::Result<()> {
    let input: serde_json::Value = serde_json::from_str(&args.input).map_err(|e| {
        super::UsageError(format!("--input is not valid JSON ({e}): {}", args.input))
    })?;
    let out = block_on(airlock.call(
        &args.connection,
        &args.operation,
        input,
        args.project.as_deref(),
    ))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
