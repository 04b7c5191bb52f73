//! A plugin that uses `std::net`, so the component imports `wasi:sockets`
//! (which the host does not offer).

use airlock_sdk::Connector;
use airlock_sdk::types::{ConnectionReport, PluginError};
use serde_json::json;

struct Sockets;

impl Connector for Sockets {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let report = match std::net::TcpStream::connect("127.0.0.1:1") {
            Ok(_) => json!({"connected": true}),
            Err(e) => json!({"connected": false, "error": e.to_string()}),
        };
        Ok(ConnectionReport {
            account: None,
            message: report.to_string(),
            details: vec![],
        })
    }
}

airlock_sdk::export!(Sockets, world = connector, manifest = "airlock.toml");
