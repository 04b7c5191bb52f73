//! Embedding airlock in an application: open a host on a data directory,
//! install a plugin, add a connection, and call a typed operation and the
//! same operation by name with JSON.
//!
//! ```text
//! SN_USER=admin SN_PASSWORD=... cargo run --example embed -- \
//!     target/wasm/wasm32-wasip2/release/servicenow.wasm https://acme.service-now.com
//! ```
//!
//! The data directory is `$AIRLOCK_DATA_DIR`, or a fresh temporary one. A
//! loopback or private `base-url` also needs `AIRLOCK_EGRESS_ALLOW_PRIVATE`
//! (e.g. `127.0.0.0/8`): by default plugins reach public addresses only.

use std::collections::BTreeMap;

use anyhow::Context as _;
use secrecy::SecretString;

use airlock::runtime::types::NewTicket;
use airlock::service::Scope;
use airlock::service::{AuthInput, NewConnection};
use airlock::{Airlock, AirlockConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(wasm), Some(base_url)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: embed <plugin.wasm> <base-url>  (SN_USER and SN_PASSWORD set)");
    };
    let user = std::env::var("SN_USER").context("SN_USER is not set")?;
    // The secret goes straight into the vault; the plugin never sees it.
    let password =
        SecretString::from(std::env::var("SN_PASSWORD").context("SN_PASSWORD is not set")?);

    // 1. Open a host on a data directory: SQLite store, vault (key from
    //    AIRLOCK_MASTER_KEY or a key file), audit log, component cache.
    let temp = tempfile::tempdir()?;
    let data_dir = std::env::var_os("AIRLOCK_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let airlock = Airlock::open(AirlockConfig::new(&data_dir)?)?;

    // 2. Install the plugin: validated, compiled, SHA-256 pinned. An
    //    application shows `plan.grant` to its operator before approving.
    let plan =
        airlock.plan_install(std::fs::read(&wasm).with_context(|| format!("reading {wasm}"))?)?;
    println!(
        "installing {} {} (egress beyond the connection's origin: {})",
        plan.manifest.id,
        plan.manifest.version,
        plan.grant.len()
    );
    let plugin = airlock.install(&plan, true)?;

    // 3. A connection: settings plus a credential sealed in the vault.
    let record = airlock.add_connection(NewConnection {
        name: "embedded".into(),
        plugin_id: plugin.id.clone(),
        settings: BTreeMap::from([("base-url".to_string(), base_url)]),
        auth: AuthInput::Basic {
            username: user,
            password,
        },
        scope: Scope::Global,
    })?;

    // 4. A typed operation: the runtime's `create_ticket` takes the WIT
    //    record and returns the plugin's typed ticket (or a typed error).
    let (loaded, connection) = airlock.prepare_call(&record, None)?;
    let ticket = airlock
        .runtime()
        .create_ticket(
            &loaded,
            &connection,
            NewTicket {
                title: "Created by the embedding example".into(),
                description: Some("airlock embedded in-process".into()),
                kind: None,
                priority: None,
                fields: None,
            },
        )
        .await?;
    println!(
        "created ticket {} ({})",
        ticket.id,
        ticket.number.as_deref().unwrap_or("-")
    );

    // 5. The same kind of call by name with JSON, as the CLI and the API do.
    let found = airlock
        .call(
            "embedded",
            "tickets.get",
            serde_json::json!({ "id": ticket.id }),
            None,
        )
        .await?;
    println!("fetched by name: {}", found["title"]);

    // Every outbound request was recorded, chained and verifiable.
    println!("audit: {}", airlock.verify_audit()?);
    Ok(())
}
