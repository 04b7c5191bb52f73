//! `airlock trust`: the operator's trust policy for signed plugins: trusted
//! publisher keys (every plugin, or one plugin id) and the
//! `require-signature` switch.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Subcommand, ValueEnum};

use super::output;
use airlock::Airlock;
use airlock::service::TrustedKey;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Switch {
    /// Refuse unsigned plugins and plugins signed by untrusted keys.
    On,
    /// Accept unsigned plugins (a signature present must still verify).
    Off,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a publisher's OpenSSH public key, for every plugin or (--plugin)
    /// for one plugin id.
    ///
    /// Example: airlock trust add acme --key-file acme.pub --plugin acme-desk
    #[command(group(ArgGroup::new("public").required(true).args(["key", "key_file"])))]
    Add {
        /// Your name for the key (what `trust rm` takes).
        name: String,
        /// The public key: one line of the publisher's `.pub` file
        /// ('ssh-ed25519 AAAA... comment').
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// A file holding the public key (the publisher's `.pub`).
        #[arg(long, value_name = "PATH.pub")]
        key_file: Option<PathBuf>,
        /// Trust the key only for this plugin id.
        #[arg(long, value_name = "ID")]
        plugin: Option<String>,
        /// Print the trusted key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the trusted keys and whether signatures are required.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key (plugins it signed stay installed).
    Rm { name: String },
    /// Require a trusted signature on every plugin installed or uploaded
    /// (on), or accept unsigned plugins (off, the default).
    ///
    /// Example: airlock trust require-signature on
    RequireSignature {
        #[arg(value_enum)]
        switch: Switch,
    },
}

pub fn run(airlock: &Airlock, cmd: TrustCommand) -> anyhow::Result<()> {
    match cmd {
        TrustCommand::Add {
            name,
            key,
            key_file,
            plugin,
            json,
        } => {
            let key = match (key, key_file) {
                (Some(key), _) => key,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                (None, None) => unreachable!("clap requires --key or --key-file"),
            };
            let trusted = airlock.trust_key(&name, &key, plugin.as_deref())?;
            output::emit(json, &trusted, |k| {
                println!("trusted `{}` ({}) for {}", k.name, k.fingerprint, scope(k));
            })
        }
        TrustCommand::List { json } => {
            let policy = airlock.trust_policy()?;
            output::emit(json, &policy, |p| {
                let state = if p.require_signature { "on" } else { "off" };
                println!("require-signature: {state}");
                output::table(&["NAME", "FINGERPRINT", "FOR", "KEY"], &p.keys, |k| {
                    vec![
                        k.name.clone(),
                        k.fingerprint.clone(),
                        scope(k),
                        k.public_key.clone(),
                    ]
                });
            })
        }
        TrustCommand::Rm { name } => {
            let k = airlock.distrust_key(&name)?;
            println!("no longer trusted: `{}` ({})", k.name, k.fingerprint);
            Ok(())
        }
        TrustCommand::RequireSignature { switch } => {
            let policy = airlock.set_require_signature(matches!(switch, Switch::On))?;
            if policy.require_signature {
                println!(
                    "require-signature: on (installs and uploads need a signature by a key \
                     trusted for their plugin id)"
                );
            } else {
                println!("require-signature: off (unsigned plugins are accepted)");
            }
            Ok(())
        }
    }
}

/// `every plugin`, or `plugin ID`.
fn scope(k: &TrustedKey) -> String {
    k.plugin
        .as_ref()
        .map_or("every plugin".to_string(), |p| format!("plugin {p}"))
}
