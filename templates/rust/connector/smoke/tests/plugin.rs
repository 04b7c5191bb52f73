//! The plugin in airlock against a loopback stand-in: its connection test
//! goes out with the token the host injected.

use smoke::{Airlock, Upstream, connect};

fn answer(method: &str, path: &str, _body: &str) -> (u16, String) {
    match (method, path) {
        ("GET", "/api/me") => (200, r#"{"name": "Smoke Test"}"#.into()),
        _ => (404, r#"{"error": "not found"}"#.into()),
    }
}

#[test]
fn test_connection_goes_out_with_the_injected_token() {
    let upstream = Upstream::start(answer);
    let airlock = Airlock::new("{{id}}-smoke-connect");
    let token = connect(&airlock, &upstream);
    let out = airlock.run(&["call", "smoke", "connector.test-connection"], &[]);
    assert!(out.contains("Smoke Test"), "{out}");
    let seen = upstream.seen();
    assert_eq!(seen[0].path, "/api/me");
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
}
