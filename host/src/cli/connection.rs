//! `airlock connection`: add, list, show, test, pause, resume, rm.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};

use super::secrets::SecretArgs;
use super::{UsageError, block_on, output};
use airlock::Airlock;
use airlock::manifest::AuthKind;
use airlock::runtime::types::ConnectionReport;
use airlock::service::{AuthInput, NewConnection};
use airlock::service::{ConnectionFilter, ConnectionRecord, Scope};
use serde::Serialize;

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
        #[command(flatten)]
        credential: CredentialArgs,
        #[command(flatten)]
        oauth_endpoints: super::oauth::ConnectionEndpointArgs,
        /// Available to every project.
        #[arg(long, conflicts_with = "project")]
        global: bool,
        /// Scope to a project (repeatable).
        #[arg(long)]
        project: Vec<String>,
        /// Run the plugin's connection test with the credential first and
        /// save the connection only if it passes (not for oauth2).
        #[arg(long)]
        test: bool,
        #[arg(long)]
        json: bool,
    },
    /// Replace a connection's credential in place: same id, so its sync
    /// cursors, conversations and state stay. The new secret comes from
    /// --secret-stdin, --secret-env VAR or a prompt; the old one is
    /// destroyed and the change is an audit event.
    ///
    /// Example: airlock connection set-secret sn --username ops@example.com --secret-env SN_PASSWORD
    SetSecret {
        name: String,
        #[command(flatten)]
        credential: CredentialArgs,
        /// oauth2: the app is a public client; no client secret is read and
        /// any stored one is deleted.
        #[arg(long)]
        public_client: bool,
        #[arg(long)]
        json: bool,
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
    Test {
        name: String,
        #[arg(long)]
        json: bool,
    },
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

impl AuthArg {
    fn of(kind: AuthKind) -> Self {
        match kind {
            AuthKind::None => AuthArg::None,
            AuthKind::Basic => AuthArg::Basic,
            AuthKind::ApiKey => AuthArg::ApiKey,
            AuthKind::Bearer => AuthArg::Bearer,
            AuthKind::Oauth2 => AuthArg::Oauth2,
        }
    }
}

/// The credential flags `add` and `set-secret` share, and the secret they
/// read.
#[derive(Debug, clap::Args)]
pub struct CredentialArgs {
    /// User or email (basic auth; required for it, may be empty).
    #[arg(long)]
    username: Option<String>,
    /// Header carrying the key (api-key auth), e.g. x-api-key. Plugins
    /// whose settings name the header (auth-header) take it from there.
    #[arg(long)]
    header: Option<String>,
    /// Prefix before the key (api-key auth), e.g. "Bearer "; `--prefix ''`
    /// sends the bare key. Absent: the plugin's default prefix.
    #[arg(long)]
    prefix: Option<String>,
    /// OAuth client id of this connection's own app (oauth2); the secret
    /// read is its client secret.
    #[arg(long)]
    client_id: Option<String>,
    #[command(flatten)]
    secret: SecretArgs,
}

impl CredentialArgs {
    /// The credential of auth kind `kind`, its secret read now.
    /// `public_client` is oauth2's: `None` when adding, whether the app is
    /// public when replacing.
    fn into_input(self, kind: AuthArg, public_client: Option<bool>) -> anyhow::Result<AuthInput> {
        Ok(match kind {
            AuthArg::None => AuthInput::None,
            AuthArg::Basic => AuthInput::Basic {
                username: self.username.ok_or_else(|| {
                    UsageError("basic auth needs --username (may be empty)".into())
                })?,
                password: self.secret.read("password or API token")?,
            },
            AuthArg::ApiKey => AuthInput::ApiKey {
                // Plugins that name their header settings (openai,
                // custom-rest) take it from there when absent.
                header: self.header.unwrap_or_default(),
                prefix: self.prefix,
                key: self.secret.read("API key")?,
            },
            AuthArg::Bearer => AuthInput::Bearer {
                token: self.secret.read("token")?,
            },
            AuthArg::Oauth2 => AuthInput::OAuth2 {
                // `add` reads a client secret only when one is offered;
                // `set-secret` always replaces it, so it reads one (or
                // prompts) unless told the app is a public client.
                client_secret: match public_client {
                    Some(true) => None,
                    Some(false) => Some(self.secret.read("client secret")?),
                    None if self.secret.secret_stdin || self.secret.secret_env.is_some() => {
                        Some(self.secret.read("client secret")?)
                    }
                    None => None,
                },
                client_id: self.client_id,
            },
        })
    }
}

/// What `add` prints: the connection, and its test's report under `--test`.
#[derive(Serialize)]
struct Added<'a> {
    #[serde(flatten)]
    record: &'a ConnectionRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<Report>,
}

impl<'a> Added<'a> {
    fn new(record: &'a ConnectionRecord, report: Option<ConnectionReport>) -> Self {
        Self {
            record,
            test: report.map(Report::from),
        }
    }
}

fn print_added(added: &Added<'_>) {
    let r = added.record;
    if let Some(report) = &added.test {
        print_report(report);
    }
    println!(
        "created connection {} ({}), status {}",
        r.name,
        r.id,
        r.status.as_str()
    );
}

/// A connection test's report as the CLI prints it.
#[derive(Serialize)]
struct Report {
    ok: bool,
    message: String,
    account: Option<String>,
    details: BTreeMap<String, String>,
}

impl From<ConnectionReport> for Report {
    fn from(r: ConnectionReport) -> Self {
        Self {
            ok: true,
            message: r.message,
            account: r.account,
            details: r.details.into_iter().collect(),
        }
    }
}

fn print_report(report: &Report) {
    println!("ok: {}", report.message);
    if let Some(a) = &report.account {
        println!("  account: {a}");
    }
    for (k, v) in &report.details {
        println!("  {k}: {v}");
    }
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
    println!("  auth:    {}", r.auth_kind.as_str());
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
            credential,
            oauth_endpoints,
            global,
            project,
            test,
            json,
        } => {
            let endpoints = oauth_endpoints.parse(airlock, matches!(auth, AuthArg::Oauth2))?;
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
            let new = NewConnection {
                name,
                plugin_id: plugin,
                settings: map,
                auth: credential.into_input(auth, None)?,
                scope,
            };
            if test {
                let (record, report) = block_on(airlock.add_connection_tested(new))?;
                return output::emit(json, &Added::new(&record, Some(report)), print_added);
            }
            let record = airlock.add_connection(new)?;
            if let Some(endpoints) = &endpoints {
                super::oauth::set_on_add(airlock, &record.name, endpoints, json)?;
            }
            output::emit(json, &Added::new(&record, None), print_added)
        }
        ConnectionCommand::SetSecret {
            name,
            credential,
            public_client,
            json,
        } => {
            let kind = AuthArg::of(airlock.connection(&name)?.auth_kind);
            let record = block_on(airlock.replace_credential(
                &name,
                credential.into_input(kind, Some(public_client))?,
                &super::actor(),
            ))?;
            output::emit(json, &record, |r| {
                println!(
                    "replaced the credential of connection {} ({}); the old one is destroyed",
                    r.name, r.id
                );
            })
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
        ConnectionCommand::Test { name, json } => {
            let report = Report::from(block_on(airlock.test_connection(&name))?);
            output::emit(json, &report, print_report)
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
