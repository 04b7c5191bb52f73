//! `airlock` commands: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod inspect;

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "Run third-party connectors as sandboxed WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
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
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin(PluginCommand::Inspect { file, json }) => std::fs::read(&file)
            .with_context(|| format!("reading {}", file.display()))
            .and_then(|wasm| {
                inspect::run(&wasm, json).with_context(|| format!("inspecting {}", file.display()))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
