//! {{name}}: an airlock connector plugin. The host runs it in a sandbox,
//! adds the connection's credential to its requests and records each one;
//! the plugin only ever sees its settings and the answers.

use airlock_sdk::http::{Request, join_url};
use airlock_sdk::types::{ConnectionReport, PluginError};
use airlock_sdk::{Connector, setting_required};
use serde::Deserialize;

struct Plugin;

#[derive(Deserialize)]
struct Me {
    name: String,
}

impl Connector for Plugin {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let base = setting_required("base-url")?;
        // Non-2xx answers become the matching `PluginError` (401 -> unauthorized, ...).
        let me: Me = Request::get(join_url(&base, "/api/me")).send_json()?;
        Ok(ConnectionReport {
            account: Some(me.name.clone()),
            message: format!("connected to {base} as {}", me.name),
            details: vec![],
        })
    }
}

airlock_sdk::export!(Plugin, world = connector, manifest = "airlock.toml");
