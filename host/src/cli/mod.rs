//! `airlock` commands: a thin layer over the library. Exit codes: 0 success,
//! 1 failure, 2 usage error or an approval that was not given (clap's own
//! usage errors exit with 2 too).

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::IsTerminal;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand};

mod audit;
mod call;
mod chat;
mod connection;
mod inspect;
mod keys;
mod new;
mod oauth;
mod output;
mod pack;
mod plugin;
mod secrets;
mod serve;
mod sign;
mod sync;
mod token;
mod trust;

use airlock::DatabaseUrl;
use airlock::{Airlock, AirlockConfig};

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "Run third-party connectors as sandboxed WebAssembly plugins",
    after_help = "Examples:\n  airlock serve\n  airlock token create ci --role operator --project web\n  \
                  airlock plugin install servicenow.wasm --approve\n  \
                  AIRLOCK_SECRET=... airlock connection add sn --plugin servicenow \\\n    \
                  --setting base-url=https://x.service-now.com --auth basic --username admin \\\n    \
                  --secret-env AIRLOCK_SECRET --global\n  airlock connection test sn\n  \
                  airlock audit verify"
)]
struct Cli {
    /// Data directory (database, vault key file, plugins, cache).
    #[arg(long, global = true, env = "AIRLOCK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database: `postgres://user:password@host:port/name` for a database
    /// several servers share (it then holds the audit log too); default:
    /// `airlock.db` in the data directory. Prefer the environment variable
    /// over the flag: a password on a command line is visible to other users.
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    // A String, parsed in `run`: clap would echo a bad value, password and
    // all, in its error.
    database: Option<String>,
    /// Do not print the start-up lines (data directory, key source, egress
    /// warnings) before a command's output.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the management HTTP API (JSON under /api/v1, /metrics).
    ///
    /// Prints where it listens, the data directory and the key source, and on
    /// the first start an admin token. Stops cleanly on Ctrl-C or SIGTERM.
    ///
    /// Example: airlock serve --addr 127.0.0.1:7300
    Serve(serve::ServeArgs),
    /// Inspect, install and manage plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Create and manage connections.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Manage the vault's key versions.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run any operation of a connection's plugin and print its JSON result.
    ///
    /// Example: airlock call sn tickets.get --input '{"id": "INC0010001"}'
    Call(call::CallArgs),
    /// Sync a connection's records into the store (delta from the stored
    /// cursor, or --full), or list its runs and records.
    ///
    /// Example: airlock sync sn; airlock sync sn --runs --json
    Sync(sync::SyncArgs),
    /// Authorise OAuth2 connections and register OAuth apps.
    #[command(subcommand)]
    Oauth(oauth::OAuthCommand),
    /// Send a message through an AI provider connection and print the
    /// answer; the conversation is kept (its id is printed on stderr).
    ///
    /// Example: airlock chat gpt "Summarise INC0010001" --stream;
    ///   airlock chat gpt "And the cause?" --conversation ID
    Chat(chat::ChatArgs),
    /// List, show and delete chat conversations.
    #[command(subcommand)]
    Conversation(chat::ConversationCommand),
    /// Manage the management API's bearer tokens (roles admin, operator,
    /// user; optionally restricted to one project).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Trust publisher keys for signed plugins and require signatures.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Print a shell completion script, generated from these commands.
    ///
    /// Example: airlock completions bash > /etc/bash_completion.d/airlock
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    ///
    /// Example: airlock man --dir /usr/local/share/man/man1
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// An error that should exit with status 2 (usage, missing approval).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs each request; one-shot commands only warnings.
    let default_log = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_ansi(colour(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir.unwrap_or_else(AirlockConfig::default_data_dir);
    let quiet = cli.quiet;
    let database = cli
        .database
        .as_deref()
        .map(DatabaseUrl::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let open = |dir| open(dir, database.clone(), quiet);
    let open_quiet = |dir| open_quiet(dir, database.clone());
    match cli.command {
        Command::Plugin(plugin::PluginCommand::Inspect { file, json }) => std::fs::read(&file)
            .with_context(|| format!("reading {}", file.display()))
            .and_then(|wasm| {
                inspect::run(&wasm, json).with_context(|| format!("inspecting {}", file.display()))
            }),
        Command::Plugin(plugin::PluginCommand::New(args)) => new::run(args),
        Command::Plugin(plugin::PluginCommand::Pack(args)) => pack::run(args),
        Command::Plugin(plugin::PluginCommand::Sign(args)) => sign::sign(args),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "airlock", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir),
        Command::Plugin(cmd) => open(data_dir).and_then(|a| plugin::run(&a, cmd)),
        Command::Connection(cmd) => open(data_dir).and_then(|a| connection::run(&a, cmd)),
        Command::Keys(cmd) => open(data_dir).and_then(|a| keys::run(&a, cmd)),
        Command::Audit(cmd) => open(data_dir).and_then(|a| audit::run(&a, cmd)),
        Command::Call(args) => open(data_dir).and_then(|a| call::run(&a, args)),
        Command::Sync(args) => open(data_dir).and_then(|a| sync::run(&a, args)),
        Command::Oauth(cmd) => open(data_dir).and_then(|a| oauth::run(&a, cmd)),
        Command::Chat(args) => open(data_dir).and_then(|a| chat::run(&a, args)),
        Command::Conversation(cmd) => open(data_dir).and_then(|a| chat::run_conversation(&a, cmd)),
        Command::Token(cmd) => open(data_dir).and_then(|a| token::run(&a, cmd)),
        Command::Trust(cmd) => open(data_dir).and_then(|a| trust::run(&a, cmd)),
        Command::Serve(args) => open_quiet(data_dir).and_then(|a| serve::run(a, args)),
    }
}

/// Whether to colour what goes to `stream`: only a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour(stream: &impl IsTerminal) -> bool {
    colour_for(
        stream.is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// 2 for a usage error: the command line (clap exits 2 itself), an
/// approval not given, or a call whose operation or input is wrong; 1 for
/// anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    use airlock::runtime::CallError;
    if e.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    let call = e
        .downcast_ref::<airlock::ServiceError>()
        .and_then(|e| match e {
            airlock::ServiceError::Call(call) => Some(call),
            _ => None,
        });
    match call.or_else(|| e.downcast_ref::<CallError>()) {
        Some(
            CallError::BadInput { .. }
            | CallError::UnknownOperation { .. }
            | CallError::NotExported { .. },
        ) => 2,
        _ => 1,
    }
}

/// The command that fixes `e`, for errors whose fix is a command; the
/// library's messages say what to do in words every surface shares.
fn hint(e: &anyhow::Error) -> Option<String> {
    use airlock::ServiceError;
    let service = e.downcast_ref::<ServiceError>()?;
    let service = match service {
        ServiceError::NotSaved { source, .. } => source.as_ref(),
        other => other,
    };
    match service {
        ServiceError::Paused { name } => Some(format!("airlock connection resume {name}")),
        ServiceError::NeedsReauth { name } => Some(format!("airlock oauth connect {name}")),
        ServiceError::NeedsApproval { .. } => {
            Some("airlock plugin install FILE (it shows the capabilities to approve)".into())
        }
        ServiceError::Trust(airlock::service::TrustError::Untrusted { id, public_key, .. }) => {
            Some(format!(
                "airlock trust add NAME --key '{public_key}' --plugin {id}"
            ))
        }
        ServiceError::Tampered { id, .. } => Some(format!(
            "airlock plugin install FILE --approve (with the file of plugin {id} you trust)"
        )),
        ServiceError::Call(airlock::runtime::CallError::Plugin {
            error, connection, ..
        }) if matches!(
            **error,
            airlock::runtime::types::PluginError::Unauthorized(_)
        ) =>
        {
            Some(format!(
                "airlock connection set-secret {connection} replaces its credential in place"
            ))
        }
        _ => None,
    }
}

/// The man page of `airlock` on stdout, or one page per command in `dir`.
fn man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("writing the man page"),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("man pages written to {}", dir.display());
            Ok(())
        }
    }
}

/// The configuration for `data_dir`, with `--database` when given.
fn config(
    data_dir: &std::path::Path,
    database: Option<DatabaseUrl>,
) -> anyhow::Result<AirlockConfig> {
    let mut config = AirlockConfig::new(data_dir)?;
    if let Some(database) = database {
        config.database = database;
    }
    Ok(config)
}

fn open(data_dir: PathBuf, database: Option<DatabaseUrl>, quiet: bool) -> anyhow::Result<Airlock> {
    let airlock = Airlock::open(config(&data_dir, database)?)
        .with_context(|| format!("opening data directory {}", data_dir.display()))?;
    if !quiet {
        for line in airlock.startup_summary() {
            eprintln!("{line}");
        }
    }
    Ok(airlock)
}

/// Open without printing the summary (the server prints it with its
/// address).
fn open_quiet(data_dir: PathBuf, database: Option<DatabaseUrl>) -> anyhow::Result<Airlock> {
    Airlock::open(config(&data_dir, database)?)
        .with_context(|| format!("opening data directory {}", data_dir.display()))
}

/// Run an async library call from a command.
/// Who the audit log says made a change from this command line.
pub(super) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Colour only on a terminal, and not when `NO_COLOR` is set to
    /// anything (an empty value does not count, as no-color.org says).
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = std::ffi::OsStr::new("1");
        let empty = std::ffi::OsStr::new("");
        assert!(colour_for(true, None));
        assert!(colour_for(true, Some(empty)));
        assert!(!colour_for(true, Some(set)));
        assert!(!colour_for(false, None));
    }

    /// The command definitions are consistent (clap's own checks).
    #[test]
    fn the_command_tree_is_valid() {
        Cli::command().debug_assert();
    }
}
