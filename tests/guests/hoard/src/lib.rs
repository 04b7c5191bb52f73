//! A test plugin that hoards resource handles: each `test-connection`
//! creates `count` (a setting) empty `wasi:http/types.fields` resources and
//! holds every one until it returns, then reports `held <count>`. Each is an
//! entry in the host's resource table and a handle in the plugin's, so the
//! host's handle limit must stop it.

use airlock_sdk::__bindings::base::wasi::http::types::Fields;
use airlock_sdk::types::{ConnectionReport, PluginError};
use airlock_sdk::{Connector, setting_required};

struct Hoard;

impl Connector for Hoard {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let count: usize = setting_required("count")?
            .trim()
            .parse()
            .map_err(|_| PluginError::InvalidInput("setting `count` must be a number".into()))?;
        let held: Vec<Fields> = (0..count).map(|_| Fields::new()).collect();
        Ok(ConnectionReport {
            account: None,
            message: format!("held {}", held.len()),
            details: vec![],
        })
    }
}

airlock_sdk::export!(Hoard, world = connector, manifest = "airlock.toml");
