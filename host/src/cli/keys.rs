//! `airlock keys`: vault key versions.

use clap::Subcommand;

use super::output;
use airlock::Airlock;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new key version and re-encrypt every secret under it (one transaction).
    Rotate {
        #[arg(long)]
        json: bool,
    },
    /// Delete an old key version once nothing uses it.
    Retire { version: u32 },
    /// List key versions.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(airlock: &Airlock, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate { json } => {
            let v = airlock.rotate_keys()?;
            output::emit(json, &serde_json::json!({ "active_version": v }), |_| {
                println!("key version {v} is now active; every secret was re-encrypted");
                println!("retire the old version with `airlock keys retire <version>`");
            })
        }
        KeysCommand::Retire { version } => {
            airlock.retire_key(version)?;
            println!("key version {version} retired");
            Ok(())
        }
        KeysCommand::List { json } => {
            let versions = airlock.key_versions()?;
            output::emit(json, &versions, |versions| {
                output::table(&["VERSION", "STATE", "SECRETS", "CREATED"], versions, |v| {
                    vec![
                        v.version.to_string(),
                        if v.active {
                            "active".into()
                        } else {
                            "old".into()
                        },
                        v.secrets.to_string(),
                        v.created_at.clone(),
                    ]
                });
            })
        }
    }
}
