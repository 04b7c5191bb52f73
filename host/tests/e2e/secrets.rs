//! The credential reaches the upstream, and nothing of it reaches the guest.

use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

#[tokio::test]
async fn minimal_plugin_authenticates_with_the_injected_token() {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .and(header("authorization", format!("Bearer {CANARY}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "alice"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let report = host
        .runtime
        .test_connection(&host.minimal(), &bearer_connection(&server.uri()))
        .await
        .unwrap();
    assert_eq!(report.account.as_deref(), Some("alice"));
    assert_eq!(report.message, "connected as alice");
}

#[tokio::test]
async fn an_upstream_401_is_a_typed_unauthorized_error() {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"message": "token expired"})),
        )
        .mount(&server)
        .await;
    let host = host();
    let err = host
        .runtime
        .test_connection(&host.minimal(), &bearer_connection(&server.uri()))
        .await
        .unwrap_err();
    match plugin_error(&err) {
        airlock::types::PluginError::Unauthorized(m) => assert!(m.contains("token expired"), "{m}"),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert!(!err.to_string().contains(CANARY));
}

#[tokio::test]
async fn the_guest_sees_no_trace_of_the_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/echo"))
        .and(header("authorization", format!("Bearer {CANARY}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-upstream", "seen")
                .set_body_string("upstream body"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let out = host
        .probe_call(
            &host.probe(),
            &server.uri(),
            &[
                ("action", "echo"),
                ("url", &format!("{}/echo", server.uri())),
            ],
        )
        .await
        .unwrap();
    // The guest observed its request, settings, context and the response...
    let text = out.to_string();
    assert!(
        text.contains("upstream body") && text.contains("conn-1"),
        "{text}"
    );
    // ...and none of it carries the credential, in any encoding.
    for needle in [CANARY, "Bearer", "CANARY"] {
        assert!(!text.contains(needle), "guest saw {needle:?}: {text}");
    }
    // The upstream did get it (wiremock's `expect(1)` with the header
    // matcher is verified when the server drops).
    let received = server.received_requests().await.unwrap();
    assert_eq!(
        received[0].headers.get("authorization").unwrap(),
        &format!("Bearer {CANARY}")
    );
    // Audit records never carry it either.
    assert!(!format!("{:?}", host.audit.records()).contains(CANARY));
}

#[tokio::test]
async fn credentials_go_only_to_the_bound_origin() {
    let upstream = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&other)
        .await;
    let host = host();
    // `other` is granted through explicit origins, but the credential stays
    // bound to the base-url origin.
    let conn = airlock::Connection::new("conn-3", "bound")
        .with_setting("base-url", upstream.uri())
        .with_setting("action", "fetch")
        .with_setting("url", format!("{}/x", other.uri()))
        .with_credential(
            http::header::AUTHORIZATION,
            airlock::credential::StaticCredential::new(airlock::credential::Credential::Bearer {
                token: CANARY.to_string().into(),
            }),
        )
        .unwrap();
    // Not granted at all: refused.
    let err = host
        .runtime
        .test_connection(&host.probe(), &conn)
        .await
        .unwrap_err();
    assert_egress_denied(&err, &other.uri().replace("http://", ""));
    assert_eq!(other.received_requests().await.unwrap().len(), 0);
}

/// An upstream that echoes the request's headers, in its own headers and
/// in its body (debug and error endpoints do), never hands the injected
/// credential to the guest: every occurrence is masked, and the audit
/// record says so.
#[tokio::test]
async fn an_upstream_that_echoes_the_credential_never_hands_it_to_the_guest() {
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
    struct Echo;
    impl Respond for Echo {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let auth = request
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = serde_json::json!({ "headers": { "Authorization": auth } }).to_string();
            ResponseTemplate::new(200)
                .insert_header("x-echo-authorization", auth.as_str())
                .set_body_string(body)
        }
    }
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Echo)
        .mount(&upstream)
        .await;
    let host = host();
    let probe = host.probe();
    let conn = bearer_connection(&upstream.uri())
        .with_setting("action", "fetch")
        .with_setting("url", format!("{}/anything", upstream.uri()));
    let report = host.runtime.test_connection(&probe, &conn).await.unwrap();
    assert!(!report.message.contains(CANARY), "{}", report.message);
    assert!(
        report.message.contains("\"status\":200"),
        "{}",
        report.message
    );
    // The upstream did get it, and the guest saw the masked echo in both places.
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    assert!(
        report.message.contains(&"*".repeat(CANARY.len())),
        "{}",
        report.message
    );
    let records = host.audit.records();
    let outcome = records.last().unwrap().1.clone().unwrap();
    let note = outcome.error.unwrap_or_default();
    assert!(
        note.contains("echoed the injected credential 2 time(s)"),
        "{note}"
    );
}
