//! `airlock token`: management-API tokens (create, list, revoke).

use clap::Subcommand;
use secrecy::ExposeSecret as _;

use super::output;
use airlock::Airlock;
use airlock::service::Role;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Everything, including plugins.
    Admin,
    /// Manage connections, OAuth, sync; read the audit log.
    Operator,
    /// Invoke operations and chat only.
    User,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::User => Role::User,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (only this once; only its hash is kept).
    ///
    /// Example: airlock token create ci --role operator --project web
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Restrict the token to one project.
        #[arg(long)]
        project: Option<String>,
        /// Print {"token": ..., "record": ...} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name or id; it is refused from the next request on.
    Revoke { name: String },
}

pub fn run(airlock: &Airlock, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            project,
            json,
        } => {
            let created = airlock.create_token(&name, role.into(), project.as_deref())?;
            let doc = serde_json::json!({
                "token": created.token.expose_secret(),
                "record": created.record,
            });
            output::emit(json, &doc, |_| {
                eprintln!(
                    "token `{}` ({}{}) created; it is shown only now:",
                    created.record.name,
                    created.record.role,
                    created
                        .record
                        .project
                        .as_ref()
                        .map(|p| format!(", project {p}"))
                        .unwrap_or_default()
                );
                println!("{}", created.token.expose_secret());
            })
        }
        TokenCommand::List { json } => {
            let tokens = airlock.list_tokens()?;
            output::emit(json, &tokens, |tokens| {
                let header = ["NAME", "ROLE", "PROJECT", "CREATED", "REVOKED"];
                output::table(&header, tokens, |t| {
                    vec![
                        t.name.clone(),
                        t.role.to_string(),
                        t.project.clone().unwrap_or_else(|| "(all)".into()),
                        t.created_at.clone(),
                        t.revoked_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                });
            })
        }
        TokenCommand::Revoke { name } => {
            let t = airlock.revoke_token(&name)?;
            println!("token `{}` revoked", t.name);
            Ok(())
        }
    }
}
