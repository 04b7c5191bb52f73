//! The tickets operations in airlock against a loopback stand-in.

use smoke::{Airlock, Upstream, connect};

const TICKET: &str = r#"{"id": "42", "number": "T-42", "title": "Printer on fire", "state": "new", "priority": "p2"}"#;

fn answer(method: &str, path: &str, _body: &str) -> (u16, String) {
    match (method, path) {
        ("POST", "/api/tickets") => (201, TICKET.into()),
        ("GET", "/api/tickets/42") => (200, TICKET.into()),
        _ => (404, r#"{"error": "not found"}"#.into()),
    }
}

#[test]
fn create_and_get_go_out_with_the_injected_token() {
    let upstream = Upstream::start(answer);
    let airlock = Airlock::new("{{id}}-smoke-tickets");
    let token = connect(&airlock, &upstream);
    let created = airlock.run(
        &[
            "call", "smoke", "tickets.create", "--input",
            r#"{"title": "Printer on fire", "description": null, "kind": null, "priority": "p2", "fields": null}"#,
        ],
        &[],
    );
    assert!(created.contains("\"T-42\"") && created.contains("Printer on fire"), "{created}");
    let got = airlock.run(&["call", "smoke", "tickets.get", "--input", r#"{"id": "42"}"#], &[]);
    assert!(got.contains("\"42\""), "{got}");
    let seen = upstream.seen();
    assert_eq!(seen[0].method, "POST");
    assert!(
        seen[0].body.contains("Printer on fire") && seen[0].body.contains("\"p2\""),
        "{}",
        seen[0].body
    );
    for request in &seen {
        assert_eq!(request.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
    }
}
