//! `airlock oauth`: authorise connections and register OAuth apps.

use anyhow::Context as _;
use clap::Subcommand;

use super::block_on;
use super::secrets::SecretArgs;
use airlock::Airlock;
use airlock::oauth::CallbackListener;

#[derive(Debug, Subcommand)]
pub enum OAuthCommand {
    /// Authorise a connection: prints the authorisation URL (and opens a
    /// browser when one is available), then waits for the provider to come
    /// back to http://127.0.0.1:<port>/callback.
    ///
    /// Example: airlock oauth connect confluence-work
    Connect {
        connection: String,
        /// Callback port on 127.0.0.1 (default: $AIRLOCK_OAUTH_PORT or 8765).
        #[arg(long)]
        port: Option<u16>,
        /// Do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Organisation-level OAuth apps (client credentials per plugin).
    #[command(subcommand)]
    App(AppCommand),
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register the OAuth app of a plugin. The client secret comes from
    /// --secret-env VAR or --secret-stdin; without either the app is a
    /// public client (PKCE only).
    ///
    /// Example: airlock oauth app set confluence --client-id abc --secret-env CONFLUENCE_SECRET
    Set {
        plugin: String,
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        secret: SecretArgs,
    },
}

pub fn run(airlock: &Airlock, cmd: OAuthCommand) -> anyhow::Result<()> {
    match cmd {
        OAuthCommand::Connect {
            connection,
            port,
            no_browser,
        } => block_on(async {
            let port = port.unwrap_or(airlock.oauth_callback_port());
            let listener = CallbackListener::bind(port).await?;
            let start = airlock.oauth_start_on(&connection, listener.port())?;
            println!(
                "Open this URL in a browser to authorise connection `{}`:\n\n  {}\n\n\
                 Waiting for the callback on {} (until {})...",
                start.connection, start.authorization_url, start.redirect_uri, start.expires_at
            );
            if !no_browser {
                // Best effort: a headless machine has no browser.
                let _ = std::process::Command::new("xdg-open")
                    .arg(&start.authorization_url)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
            let outcome = airlock
                .oauth_serve(listener, &start)
                .await
                .with_context(|| format!("authorising connection `{connection}`"))?;
            println!(
                "connection {} is authorised ({})",
                outcome.connection.name, outcome.connection.status
            );
            Ok(())
        }),
        OAuthCommand::App(AppCommand::Set {
            plugin,
            client_id,
            secret,
        }) => {
            let client_secret = if secret.secret_stdin || secret.secret_env.is_some() {
                Some(secret.read("client secret")?)
            } else {
                None
            };
            let app = airlock.set_oauth_app(&plugin, &client_id, client_secret.as_ref())?;
            println!(
                "OAuth app of plugin {} set (client id {}{})",
                app.plugin_id,
                app.client_id,
                if client_secret.is_some() {
                    ", client secret sealed"
                } else {
                    ", no client secret"
                }
            );
            Ok(())
        }
    }
}
