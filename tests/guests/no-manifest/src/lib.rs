//! A component without an `airlock-manifest` section, which the host must
//! refuse to load. Exported with the SDK's hidden no-manifest macro.

use airlock_sdk::Connector;
use airlock_sdk::types::{ConnectionReport, PluginError};

struct NoManifest;

impl Connector for NoManifest {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        Ok(ConnectionReport {
            account: None,
            message: r#"{"ok":true}"#.to_string(),
            details: vec![],
        })
    }
}

airlock_sdk::__private::export_without_manifest!(NoManifest, world = connector);
