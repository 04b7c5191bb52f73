use airlock_sdk::http::{Request, join_url};
use airlock_sdk::types::{ConnectionReport, PluginError};
use airlock_sdk::{Connector, setting_required};
use serde::Deserialize;

struct Minimal;

#[derive(Deserialize)]
struct Me {
    name: String,
}

impl Connector for Minimal {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let base = setting_required("base-url")?;
        // Non-2xx answers become the matching `PluginError` (401 -> Unauthorized...).
        let me: Me = Request::get(join_url(&base, "/api/me")).send_json()?;
        Ok(ConnectionReport {
            account: Some(me.name.clone()),
            message: format!("connected as {}", me.name),
            details: vec![],
        })
    }
}

airlock_sdk::export!(Minimal, world = connector, manifest = "airlock.toml");
