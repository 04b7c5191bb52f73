//! `airlock serve`: the management HTTP API on the data directory.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use super::block_on;
use airlock::Airlock;
use airlock::server::{self, DEFAULT_ADDR, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. On a loopback address (the default) only
    /// requests addressed to localhost, 127.0.0.1 or [::1] are answered.
    #[arg(long, env = "AIRLOCK_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// The URL browsers reach this server at, for the OAuth redirect URI
    /// (default: http://<addr>).
    #[arg(long, env = "AIRLOCK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted request body, except plugin uploads.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest accepted plugin upload.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_upload_bytes: usize,
    /// Open client connections at most; more are closed on accept.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 60)]
    pub shutdown_grace_secs: u64,
}

pub fn run(airlock: Airlock, args: ServeArgs) -> anyhow::Result<()> {
    let airlock = Arc::new(airlock);
    let first = airlock.first_admin_token("admin")?;
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        max_upload_bytes: args.max_upload_bytes,
        public_url: args.public_url,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_secs),
        max_connections: args.max_connections,
        ..ServerConfig::default()
    };
    block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr()?;
        // Before anything is printed: a supervisor may signal as soon as it
        // sees the address.
        let shutdown = server::shutdown_signal().context("installing signal handlers")?;
        println!(
            "airlock {} listening on http://{addr}",
            env!("CARGO_PKG_VERSION")
        );
        for line in airlock.startup_summary() {
            println!("{line}");
        }
        println!("Console: http://{addr}/ (sign in with an API token)");
        println!("API: http://{addr}/api/v1 (OpenAPI: /api/v1/openapi.json, metrics: /metrics)");
        if let Some(token) = first {
            println!(
                "\nFirst start: created admin token `{}`. It is shown only now; keep it:\n\n  {}\n\n\
                 Sign in to the console at http://{addr}/ with it, or send it to the API as \
                 `Authorization: Bearer <token>`; create more with `airlock token create`.",
                token.record.name,
                token.token.expose_secret()
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, "serving");
        server::serve(listener, airlock, config, shutdown)
            .await
            .context("serving the API")?;
        println!("airlock stopped");
        Ok(())
    })
}
