//! `airlock call`: run any operation of a connection's plugin.

use anyhow::Context;

use super::block_on;
use airlock::Airlock;

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Connection name or id.
    pub connection: String,
    /// `interface.operation`, e.g. `tickets.create` or `connector.test-connection`.
    pub operation: String,
    /// The operation's input as JSON, e.g. '{"id": "INC0010001"}'.
    #[arg(long, default_value = "null")]
    pub input: String,
    /// Resolve and audit the call for this project.
    #[arg(long)]
    pub project: Option<String>,
}

pub fn run(airlock: &Airlock, args: CallArgs) -> anyhow::Result<()> {
    let input: serde_json::Value = serde_json::from_str(&args.input)
        .with_context(|| format!("--input is not valid JSON: {}", args.input))?;
    let out = block_on(airlock.call(
        &args.connection,
        &args.operation,
        input,
        args.project.as_deref(),
    ))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
