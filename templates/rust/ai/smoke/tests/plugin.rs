//! The plugin in airlock against a loopback stand-in of an OpenAI-style
//! API: the connection test and a chat turn go out with the injected key.

use smoke::{Airlock, Upstream, connect};

fn answer(method: &str, path: &str, _body: &str) -> (u16, String) {
    match (method, path) {
        ("GET", "/v1/models") => (200, r#"{"data": [{"id": "small-1", "owned_by": "acme"}]}"#.into()),
        ("POST", "/v1/chat/completions") => (
            200,
            r#"{"model": "small-1", "choices": [{"message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}]}"#.into(),
        ),
        _ => (404, r#"{"error": "not found"}"#.into()),
    }
}

#[test]
fn test_connection_and_chat_go_out_with_the_injected_key() {
    let upstream = Upstream::start(answer);
    let airlock = Airlock::new("{{id}}-smoke-chat");
    let token = connect(&airlock, &upstream);
    let report = airlock.run(&["call", "smoke", "connector.test-connection"], &[]);
    assert!(report.contains("1 models"), "{report}");
    let answer = airlock.run(
        &[
            "call", "smoke", "chat.complete", "--input",
            r#"{"model": null, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50}"#,
        ],
        &[],
    );
    assert!(answer.contains("Hello there."), "{answer}");
    for request in upstream.seen() {
        assert_eq!(request.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
    }
}
