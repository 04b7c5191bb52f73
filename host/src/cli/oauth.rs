//! `airlock oauth`: authorise connections, register OAuth apps, and point
//! a plugin's or a connection's OAuth endpoints at another identity
//! provider.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::block_on;
use super::output;
use super::secrets::SecretArgs;
use airlock::Airlock;
use airlock::oauth::{CallbackListener, EffectiveEndpoints, EndpointOverrides};

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
    /// Show a connection's OAuth endpoints and where each comes from, or
    /// point them at another identity provider (Azure DevOps Server,
    /// Confluence Data Center, a test provider). Each option replaces the
    /// plugin's value (its app's, else its manifest's); the connection's
    /// overrides are replaced as a whole, --clear removes them. Tokens
    /// issued by another token endpoint are not refreshed at the new one:
    /// run `airlock oauth connect` again after a change.
    ///
    /// Example: airlock oauth endpoints wiki --authorize-url https://wiki.acme.com/rest/oauth2/latest/authorize --token-url https://wiki.acme.com/rest/oauth2/latest/token
    Endpoints {
        connection: String,
        #[command(flatten)]
        endpoints: EndpointArgs,
        /// Remove the connection's overrides (back to the app's or the
        /// manifest's endpoints).
        #[arg(long, conflicts_with_all = ["authorize_url", "token_url", "issuer"])]
        clear: bool,
        #[arg(long)]
        json: bool,
    },
}

/// OAuth endpoint overrides: https, or http to loopback or an origin in
/// AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS; no user info, query or fragment;
/// `{setting}` placeholders as in the plugin's manifest.
#[derive(Debug, Args, Default, Clone)]
pub struct EndpointArgs {
    /// Authorisation endpoint, e.g. {base-url}/rest/oauth2/latest/authorize.
    #[arg(long)]
    pub authorize_url: Option<String>,
    /// Token endpoint (receives the client secret, code and refresh token).
    #[arg(long)]
    pub token_url: Option<String>,
    /// Issuer identifier a callback's `iss` must name (RFC 9207).
    #[arg(long)]
    pub issuer: Option<String>,
}

impl EndpointArgs {
    /// Whether any override was given.
    pub fn is_empty(&self) -> bool {
        self.authorize_url.is_none() && self.token_url.is_none() && self.issuer.is_none()
    }

    /// Checked into overrides under `airlock`'s clear-text rule.
    pub fn parse(&self, airlock: &Airlock) -> anyhow::Result<EndpointOverrides> {
        Ok(airlock.parse_oauth_endpoints(
            self.authorize_url.as_deref(),
            self.token_url.as_deref(),
            self.issuer.as_deref(),
        )?)
    }
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register the OAuth app of a plugin. The client secret comes from
    /// --secret-env VAR or --secret-stdin; without either the app is a
    /// public client (PKCE only).
    ///
    /// The app is replaced as a whole: endpoint options left out go back to
    /// the manifest's. With endpoint options, every connection of the
    /// plugin without overrides of its own uses them.
    ///
    /// Example: airlock oauth app set confluence --client-id abc --secret-env CONFLUENCE_SECRET --authorize-url '{base-url}/rest/oauth2/latest/authorize' --token-url '{base-url}/rest/oauth2/latest/token'
    Set {
        plugin: String,
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        endpoints: EndpointArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show the OAuth app of a plugin (never its secret) and the endpoints
    /// its connections start from.
    Show {
        plugin: String,
        #[arg(long)]
        json: bool,
    },
}

/// `connection add --auth oauth2` options naming the connection's own OAuth
/// endpoints (as `airlock oauth endpoints` sets them).
#[derive(Debug, Args, Default, Clone)]
pub struct ConnectionEndpointArgs {
    /// oauth2: this connection's authorisation endpoint, replacing the
    /// plugin's (see `airlock oauth endpoints --help`).
    #[arg(long = "oauth-authorize-url")]
    pub authorize_url: Option<String>,
    /// oauth2: this connection's token endpoint.
    #[arg(long = "oauth-token-url")]
    pub token_url: Option<String>,
    /// oauth2: this connection's issuer identifier (RFC 9207 `iss`).
    #[arg(long = "oauth-issuer")]
    pub issuer: Option<String>,
}

impl ConnectionEndpointArgs {
    /// The checked overrides, `None` when none were given; refused for a
    /// connection that is not oauth2.
    pub fn parse(
        &self,
        airlock: &Airlock,
        oauth2: bool,
    ) -> anyhow::Result<Option<EndpointOverrides>> {
        let args = EndpointArgs {
            authorize_url: self.authorize_url.clone(),
            token_url: self.token_url.clone(),
            issuer: self.issuer.clone(),
        };
        if args.is_empty() {
            return Ok(None);
        }
        if !oauth2 {
            anyhow::bail!(super::UsageError(
                "--oauth-authorize-url, --oauth-token-url and --oauth-issuer need --auth oauth2"
                    .into()
            ));
        }
        Ok(Some(args.parse(airlock)?))
    }
}

/// Give the just added connection `name` its endpoint overrides; when they
/// do not resolve for its settings, the connection is removed again so
/// nothing half-configured stays.
pub fn set_on_add(
    airlock: &Airlock,
    name: &str,
    overrides: &EndpointOverrides,
    json: bool,
) -> anyhow::Result<()> {
    let actor = super::actor();
    match block_on(airlock.set_oauth_endpoints(name, overrides, &actor)) {
        Ok(effective) => {
            if !json {
                println!("OAuth endpoints of connection {name}:\n{effective}");
            }
            Ok(())
        }
        Err(e) => {
            airlock.remove_connection(name)?;
            Err(anyhow::Error::new(e).context(format!(
                "connection `{name}` not saved: its OAuth endpoints are refused"
            )))
        }
    }
}

/// What `oauth app set` and `oauth app show` print.
#[derive(Serialize)]
struct AppView {
    plugin_id: String,
    app: Option<airlock::service::OAuthAppRecord>,
    /// The manifest's templates under the app's overrides.
    endpoints: EffectiveEndpoints,
}

fn app_view(airlock: &Airlock, plugin: &str) -> anyhow::Result<AppView> {
    Ok(AppView {
        plugin_id: plugin.to_string(),
        app: airlock.oauth_app(plugin)?,
        endpoints: airlock.plugin_oauth_endpoints(plugin)?,
    })
}

fn print_app(view: &AppView) {
    match &view.app {
        Some(app) => println!(
            "OAuth app of plugin {}: client id {}",
            view.plugin_id, app.client_id
        ),
        None => println!(
            "plugin {} has no OAuth app (connections use their own or the environment's)",
            view.plugin_id
        ),
    }
    println!("endpoints of its connections without overrides of their own:");
    println!("{}", view.endpoints);
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
                "Identity provider of connection `{}`:\n{}\n",
                start.connection, start.endpoints
            );
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
            endpoints,
            json,
        }) => {
            let overrides = endpoints.parse(airlock)?;
            let client_secret = if secret.secret_stdin || secret.secret_env.is_some() {
                Some(secret.read("client secret")?)
            } else {
                None
            };
            airlock.set_oauth_app(&plugin, &client_id, client_secret.as_ref(), &overrides)?;
            let view = app_view(airlock, &plugin)?;
            output::emit(json, &view, |view| {
                println!(
                    "OAuth app of plugin {plugin} set ({})",
                    if client_secret.is_some() {
                        "client secret sealed"
                    } else {
                        "no client secret"
                    }
                );
                print_app(view);
            })
        }
        OAuthCommand::App(AppCommand::Show { plugin, json }) => {
            output::emit(json, &app_view(airlock, &plugin)?, print_app)
        }
        OAuthCommand::Endpoints {
            connection,
            endpoints,
            clear,
            json,
        } => {
            let effective = if clear || !endpoints.is_empty() {
                let overrides = endpoints.parse(airlock)?;
                block_on(airlock.set_oauth_endpoints(&connection, &overrides, &super::actor()))?
            } else {
                airlock.oauth_endpoints(&connection)?
            };
            output::emit(json, &effective, |e| {
                println!("OAuth endpoints of connection {connection}:\n{e}");
                if clear || !endpoints.is_empty() {
                    println!("authorise it against them with `airlock oauth connect {connection}`");
                }
            })
        }
    }
}
