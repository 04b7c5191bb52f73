//! The documents operations in airlock against a loopback stand-in.

use smoke::{Airlock, Upstream, connect};

fn answer(method: &str, path: &str, _body: &str) -> (u16, String) {
    match (method, path.split('?').next().unwrap()) {
        ("GET", "/api/me") => (200, r#"{"name": "Smoke Test"}"#.into()),
        ("GET", "/api/spaces") => (200, r#"[{"key": "OPS", "name": "Operations"}]"#.into()),
        _ => (404, r#"{"error": "not found"}"#.into()),
    }
}

#[test]
fn list_spaces_goes_out_with_the_injected_token() {
    let upstream = Upstream::start(answer);
    let airlock = Airlock::new("{{id}}-smoke-documents");
    let token = connect(&airlock, &upstream);
    let spaces = airlock.run(&["call", "smoke", "documents.list-spaces", "--input", r#"{"limit": 5}"#], &[]);
    assert!(spaces.contains("Operations"), "{spaces}");
    for request in upstream.seen() {
        assert_eq!(request.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
    }
}
