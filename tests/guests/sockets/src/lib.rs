//! A plugin that reaches for the network and the filesystem with `std::net`
//! and `std::fs`, so the component imports `wasi:sockets` and
//! `wasi:filesystem`. The host links both to implementations that refuse
//! every operation; `test-connection` tries each and reports what the
//! guest got back.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use airlock_sdk::types::{ConnectionReport, PluginError};
use airlock_sdk::{Connector, host};
use serde_json::{Value, json};

struct Sockets;

/// `{"ok": true}`, or the error's kind (`PermissionDenied`) and message.
fn outcome<T>(result: std::io::Result<T>) -> Value {
    match result {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "kind": format!("{:?}", e.kind()), "error": e.to_string()}),
    }
}

impl Connector for Sockets {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let target = host::setting("target").unwrap_or_else(|| "127.0.0.1:1".to_string());
        let lookup = ("example.com", 443).to_socket_addrs();
        let report = json!({
            "connect": outcome(TcpStream::connect(target.as_str())),
            "connect_v6": outcome(TcpStream::connect("[::1]:1")),
            "listen": outcome(TcpListener::bind("0.0.0.0:8080")),
            "udp": outcome(UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", "127.0.0.1:53"))),
            "lookup": outcome(lookup),
            "read_passwd": outcome(std::fs::read("/etc/passwd")),
            "read_dot": outcome(std::fs::read(".")),
            "read_dir": outcome(std::fs::read_dir("/")),
            "write": outcome(std::fs::write("/tmp/airlock-was-here", b"x")),
            "metadata": outcome(std::fs::metadata("/etc/hostname")),
        });
        // Every attempt must have been refused as a permission matter.
        let refused = report
            .as_object()
            .is_some_and(|o| o.values().all(|v| v["kind"] == "PermissionDenied"));
        Ok(ConnectionReport {
            account: None,
            message: report.to_string(),
            details: vec![("all-refused".to_string(), refused.to_string())],
        })
    }
}

airlock_sdk::export!(Sockets, world = connector, manifest = "airlock.toml");
