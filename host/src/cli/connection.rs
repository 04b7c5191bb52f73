//! `airlock connection`: add, list, show, test, pause, resume, rm.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};

use super::secrets::SecretArgs;
use super::{UsageError, block_on, output};
use airlock::Airlock;
use airlock::service::{AuthInput, NewConnection};
use airlock::service::{ConnectionFilter, ConnectionRecord, Scope};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthArg {
    None,
    Basic,
    ApiKey,
    Bearer,
    Oauth2,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Create a connection. Secrets come from --secret-stdin, --secret-env
    /// VAR or a prompt, never from the command line.
    ///
    /// Example: airlock connection add ado --plugin azure-devops --auth basic --username ''
    ///   --setting base-url=https://dev.azure.com/acme --secret-env ADO_PAT --project web
    Add {
        name: String,
        /// Installed plugin id.
        #[arg(long)]
        plugin: String,
        /// A non-secret setting, `name=value` (repeatable).
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        #[arg(long, value_enum, default_value = "none")]
        auth: AuthArg,
        /// User or email (basic auth).
        #[arg(long)]
        username: Option<String>,
        /// Header carrying the key (api-key auth), e.g. x-api-key. Plugins
        /// whose settings name the header (auth-header) default to those.
        #[arg(long)]
        header: Option<String>,
        /// Prefix before the key (api-key auth), e.g. "Bearer "; `--prefix ''`
        /// sends the bare key. Absent: the plugin's default prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// OAuth client id of this connection's own app (oauth2).
        #[arg(long)]
        client_id: Option<String>,
        /// Available to every project.
        #[arg(long, conflicts_with = "project")]
        global: bool,
        /// Scope to a project (repeatable).
        #[arg(long)]
        project: Vec<String>,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// List connections.
    List {
        /// Only connections usable by this project (global ones included).
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one connection (never its secrets).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Change settings: --setting NAME=VALUE sets, --unset NAME removes (the
    /// plugin's default applies). The base-url of a connection with a
    /// credential cannot move to another origin.
    ///
    /// Example: airlock connection set sn --setting table=u_ticket
    Set {
        name: String,
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        #[arg(long, value_name = "NAME")]
        unset: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check the connection's settings and credential against the service.
    Test { name: String },
    /// Stop calls through a connection.
    Pause { name: String },
    /// Allow calls through a paused connection again.
    Resume { name: String },
    /// Delete a connection and destroy its secrets.
    Rm { name: String },
    /// Show or set how chats through an AI provider connection are
    /// prepared: PII redaction (on by default) and the domain system prompt.
    ChatOptions(super::chat::ChatOptionsArgs),
}

fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".into(),
        Scope::Projects(p) => p.join(","),
    }
}

fn print_record(r: &ConnectionRecord) {
    println!("{} ({})", r.name, r.id);
    println!("  plugin:  {}", r.plugin_id);
    println!("  status:  {}", r.status.as_str());
    println!("  scope:   {}", scope_text(&r.scope));
    println!("  auth:    {:?}", r.auth_kind);
    if let Some(u) = &r.auth_config.username {
        println!("  user:    {u}");
    }
    if let Some(h) = &r.auth_config.header {
        println!("  header:  {h}");
    }
    for (k, v) in &r.settings {
        println!("  setting: {k} = {v}");
    }
    println!("  created: {}  updated: {}", r.created_at, r.updated_at);
}

pub fn run(airlock: &Airlock, cmd: ConnectionCommand) -> anyhow::Result<()> {
    match cmd {
        ConnectionCommand::Add {
            name,
            plugin,
            settings,
            auth,
            username,
            header,
            prefix,
            client_id,
            global,
            project,
            secret,
        } => {
            let mut map = BTreeMap::new();
            for s in settings {
                let Some((k, v)) = s.split_once('=') else {
                    bail!(UsageError(format!("--setting {s:?} must be NAME=VALUE")));
                };
                map.insert(k.to_string(), v.to_string());
            }
            let scope = if global {
                Scope::Global
            } else if project.is_empty() {
                bail!(UsageError(
                    "choose a scope: --global or --project NAME".into()
                ));
            } else {
                Scope::Projects(project)
            };
            let auth = match auth {
                AuthArg::None => AuthInput::None,
                AuthArg::Basic => AuthInput::Basic {
                    username: username.ok_or_else(|| {
                        UsageError("basic auth needs --username (may be empty)".into())
                    })?,
                    password: secret.read("password or API token")?,
                },
                AuthArg::ApiKey => AuthInput::ApiKey {
                    // Plugins that name their header settings (openai,
                    // custom-rest) take it from there when absent.
                    header: header.unwrap_or_default(),
                    prefix,
                    key: secret.read("API key")?,
                },
                AuthArg::Bearer => AuthInput::Bearer {
                    token: secret.read("token")?,
                },
                AuthArg::Oauth2 => AuthInput::OAuth2 {
                    client_secret: if secret.secret_stdin || secret.secret_env.is_some() {
                        Some(secret.read("client secret")?)
                    } else {
                        None
                    },
                    client_id,
                },
            };
            let record = airlock.add_connection(NewConnection {
                name,
                plugin_id: plugin,
                settings: map,
                auth,
                scope,
            })?;
            println!(
                "created connection {} ({}), status {}",
                record.name,
                record.id,
                record.status.as_str()
            );
            Ok(())
        }
        ConnectionCommand::List {
            project,
            plugin,
            json,
        } => {
            let list = airlock.connections(&ConnectionFilter {
                plugin_id: plugin,
                project,
            })?;
            output::emit(json, &list, |list| {
                output::table(&["NAME", "PLUGIN", "STATUS", "SCOPE", "ID"], list, |r| {
                    vec![
                        r.name.clone(),
                        r.plugin_id.clone(),
                        r.status.as_str().into(),
                        scope_text(&r.scope),
                        r.id.clone(),
                    ]
                });
            })
        }
        ConnectionCommand::Show { name, json } => {
            let r = airlock.connection(&name)?;
            output::emit(json, &r, print_record)
        }
        ConnectionCommand::Set {
            name,
            settings,
            unset,
            json,
        } => {
            if settings.is_empty() && unset.is_empty() {
                bail!(UsageError(
                    "nothing to change: give --setting NAME=VALUE or --unset NAME".into()
                ));
            }
            let mut changes = BTreeMap::new();
            for s in settings {
                let (k, v) = s
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("--setting {s:?} must be NAME=VALUE")))?;
                changes.insert(k.to_string(), Some(v.to_string()));
            }
            for k in unset {
                changes.insert(k, None);
            }
            let record = airlock.update_connection_settings(&name, &changes)?;
            output::emit(json, &record, print_record)
        }
        ConnectionCommand::Test { name } => {
            let report = block_on(airlock.test_connection(&name))?;
            println!("ok: {}", report.message);
            if let Some(a) = report.account {
                println!("  account: {a}");
            }
            for (k, v) in report.details {
                println!("  {k}: {v}");
            }
            Ok(())
        }
        ConnectionCommand::Pause { name } => {
            let r = airlock.pause_connection(&name)?;
            println!("connection {} is {}", r.name, r.status.as_str());
            Ok(())
        }
        ConnectionCommand::Resume { name } => {
            let r = airlock.resume_connection(&name)?;
            println!("connection {} is {}", r.name, r.status.as_str());
            Ok(())
        }
        ConnectionCommand::ChatOptions(args) => super::chat::run_options(airlock, args),
        ConnectionCommand::Rm { name } => {
            airlock.remove_connection(&name)?;
            println!("removed connection {name}; its secrets are destroyed");
            Ok(())
        }
    }
}
