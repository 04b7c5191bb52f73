//! `airlock plugin`: inspect, install, list, remove, new, pack.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{UsageError, output};
use airlock::Airlock;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show what a plugin is and what it asks for, without running it.
    ///
    /// Example: airlock plugin inspect target/wasm/wasm32-wasip2/release/minimal.wasm --json
    Inspect {
        /// The plugin's `.wasm` file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Install a plugin: pins its SHA-256 and records the capabilities you approve.
    ///
    /// Shows the egress the plugin asks for (and, for an installed id, what
    /// changed) and asks for approval; --approve approves non-interactively.
    Install {
        file: PathBuf,
        /// Approve the capabilities shown without asking.
        #[arg(long)]
        approve: bool,
        /// Print the plan and the result as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed plugin (refused while connections use it).
    Rm { id: String },
    /// Start a plugin project from a template: Rust (airlock-sdk), JavaScript
    /// (componentize-js) or Python (componentize-py).
    ///
    /// Example: airlock plugin new acme-desk --kind tickets --lang rust
    New(super::new::NewArgs),
    /// Make an installable plugin from a component built by any toolchain
    /// and its manifest: checks the manifest against the component's
    /// exports and writes it into the `airlock-manifest` section.
    ///
    /// Example: airlock plugin pack component.wasm --manifest airlock.toml -o plugin.wasm
    Pack(super::pack::PackArgs),
    /// Sign a plugin with an OpenSSH key (--key), or attach a signature made
    /// with `ssh-keygen -Y sign -n airlock-plugin` (--signature).
    ///
    /// Example: airlock plugin sign acme.wasm --key ~/.ssh/id_ed25519
    Sign(super::sign::SignArgs),
    /// Show who signed a plugin, whether the signature verifies (exit 1 if
    /// not, or unsigned) and whether this host trusts that key for it.
    ///
    /// Example: airlock plugin verify acme.wasm --json
    Verify(super::sign::VerifyArgs),
}

pub fn run(airlock: &Airlock, cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Inspect { .. }
        | PluginCommand::New(_)
        | PluginCommand::Sign(_)
        | PluginCommand::Pack(_) => {
            unreachable!("handled without a data directory")
        }
        PluginCommand::Install {
            file,
            approve,
            json,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let plan = output::with_progress(
                &format!("checking and compiling {}", file.display()),
                || airlock.plan_install(wasm),
            )
            .with_context(|| format!("checking {}", file.display()))?;
            let summary = |installed: bool| {
                serde_json::json!({
                    "id": plan.manifest.id,
                    "name": plan.manifest.name,
                    "version": plan.manifest.version,
                    "sha256": plan.sha256,
                    "exports": plan.interfaces,
                    "egress": plan.grant.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "changes": plan.changes,
                    "signer": plan.signer,
                    "unchanged": plan.unchanged(),
                    "installed": installed,
                })
            };
            if plan.unchanged() {
                return output::emit(json, &summary(true), |_| {
                    println!(
                        "plugin {} {} is already installed from this file",
                        plan.manifest.id, plan.manifest.version
                    );
                });
            }
            // Under --json the plan is printed once, with the result.
            if !json {
                print_plan(&plan);
            }
            let approved = approve || ask("Approve these capabilities?")?;
            if !approved {
                bail!(UsageError(format!(
                    "not installed: approve the capabilities (re-run with --approve) to install {}",
                    plan.manifest.id
                )));
            }
            let record = airlock.install(&plan, true)?;
            output::emit(json, &summary(true), |_| {
                println!(
                    "installed {} {} ({})",
                    record.id, record.version, record.sha256
                );
            })
        }
        PluginCommand::List { json } => {
            let plugins = airlock.list_plugins()?;
            output::emit(json, &plugins, |plugins| {
                let header = ["ID", "VERSION", "CATEGORY", "SHA256", "UPDATED"];
                output::table(&header, plugins, |p| {
                    vec![
                        p.id.clone(),
                        p.version.clone(),
                        p.manifest.category.to_string(),
                        p.sha256[..12].to_string(),
                        p.updated_at.clone(),
                    ]
                });
            })
        }
        PluginCommand::Verify(args) => super::sign::verify(airlock, args),
        PluginCommand::Rm { id } => {
            airlock.remove_plugin(&id)?;
            println!("removed plugin {id}");
            Ok(())
        }
    }
}

fn ask(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// The capabilities a plan asks for, for the operator to approve.
fn print_plan(plan: &airlock::service::InstallPlan) {
    println!(
        "plugin {} ({}) {}",
        plan.manifest.name, plan.manifest.id, plan.manifest.version
    );
    println!("  sha256:  {}", plan.sha256);
    println!(
        "  signer:  {}",
        super::sign::signer_line(plan.signer.as_ref())
    );
    println!("  exports: {}", plan.interfaces.join(", "));
    println!(
        "  egress:  each connection's base-url origin{}",
        if plan.grant.is_empty() {
            " only"
        } else {
            ", plus:"
        }
    );
    for e in &plan.grant {
        println!("    - {e}");
    }
    println!("  changes:");
    for c in &plan.changes {
        println!("    {c}");
    }
}
