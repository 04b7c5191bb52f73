//! What a plugin may send, and where: grants, address filtering, forbidden
//! headers, redirects, body caps, request budgets, audit records.
//!
//! Every test runs twice (`main.rs` includes this file a second time as
//! `egress_wasi_http`): through the SDK's one-call `send`
//! (`airlock:plugin/outbound`) and through wasi:http, so each promise holds
//! on both ways out.

use airlock::AddressPolicy;
use airlock::audit::Decision;
use airlock::runtime::types::PluginError;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

/// The probe's transport for this copy of the tests.
fn transport() -> &'static str {
    if module_path!().ends_with("egress_wasi_http") {
        "wasi-http"
    } else {
        ""
    }
}

fn host() -> Host {
    host_with(
        AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        test_limits(),
    )
}

fn host_with(address_policy: AddressPolicy, limits: airlock::Limits) -> Host {
    Host {
        transport: transport(),
        ..crate::common::host_with(address_policy, limits)
    }
}

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(200).set_body_string("hello"))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn granted_origin_is_reached_and_audited() {
    let server = ok_server().await;
    let host = host();
    let url = format!("{}/data?token=abc123&q=x", server.uri());
    let out = host
        .probe_call(
            &host.probe(),
            &server.uri(),
            &[("action", "fetch"), ("url", &url)],
        )
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello");
    let records = host.audit.records();
    assert_eq!(records.len(), 1);
    let (rec, outcome) = &records[0];
    assert_eq!(rec.decision, Decision::Allowed);
    assert_eq!(rec.plugin_id, "probe");
    assert_eq!(rec.connection_id, "conn-1");
    assert_eq!(rec.method, "GET");
    assert!(rec.credential_used);
    assert!(
        rec.url.ends_with("/data?token=&q="),
        "query values removed: {}",
        rec.url
    );
    assert!(!rec.url.contains("abc123"));
    // SHA-256 of the empty body.
    assert_eq!(
        rec.request_sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let outcome = outcome.as_ref().expect("record completed");
    assert_eq!(outcome.status, Some(200));
    assert_eq!(outcome.response_bytes, 5);
}

/// Each URL is refused before anything is sent, with an audit record and an
/// error naming the refused origin.
#[tokio::test]
async fn ungranted_destinations_are_refused() {
    let server = ok_server().await;
    let port = server.address().port();
    let host = host();
    let probe = host.probe();
    let cases = [
        (
            "http://not-granted.example/data".to_string(),
            "not-granted.example",
        ),
        (
            format!("https://127.0.0.1:{port}/data"),
            "https://127.0.0.1",
        ),
        (
            format!("http://127.0.0.1:{}/data", port + 1),
            &*format!(":{}", port + 1),
        ),
        ("http://2130706433/".to_string(), "http://127.0.0.1:80"),
        ("http://0x7f.1/".to_string(), "http://127.0.0.1:80"),
        ("http://[::1]/".to_string(), "http://[::1]:80"),
        (
            "http://[::ffff:169.254.169.254]/".to_string(),
            "[::ffff:169.254.169.254]",
        ),
    ];
    for (url, needle) in &cases {
        let before = host.audit.records().len();
        let result = host
            .probe_call(&probe, &server.uri(), &[("action", "fetch"), ("url", url)])
            .await;
        let err = match result {
            Err(e) => e,
            Ok(v) => panic!("{url} was sent: {v}"),
        };
        assert_egress_denied(&err, needle);
        let records = host.audit.records();
        if url.contains('@') {
            // The guest's HTTP stack or the host refuses userinfo; either way
            // nothing reaches the network.
            assert!(records.len() <= before + 1);
        } else {
            assert_eq!(records.len(), before + 1, "{url} audited");
            assert!(matches!(
                records.last().unwrap().0.decision,
                Decision::Denied(_)
            ));
        }
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    host.assert_still_serving().await;
}

#[tokio::test]
async fn loopback_is_refused_after_dns_unless_the_operator_allows_it() {
    let server = ok_server().await;
    let host = host_with(AddressPolicy::global_only(), test_limits());
    let probe = host.probe();
    let by_name = server.uri().replace("127.0.0.1", "localhost");
    for base in [server.uri(), by_name] {
        let url = format!("{base}/data");
        let err = host
            .probe_call(&probe, &base, &[("action", "fetch"), ("url", &url)])
            .await
            .unwrap_err();
        assert_egress_denied(&err, "loopback");
        assert!(
            err.to_string().contains("AIRLOCK_EGRESS_ALLOW_PRIVATE"),
            "{err}"
        );
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn guest_cannot_set_credential_or_routing_headers() {
    let server = ok_server().await;
    let host = host();
    let probe = host.probe();
    let url = format!("{}/data", server.uri());
    for header in [
        "authorization: Bearer forged",
        "Host: evil.example",
        "cookie: a=b",
        "proxy-authorization: x",
    ] {
        let err = host
            .probe_call(
                &probe,
                &server.uri(),
                &[("action", "fetch"), ("url", &url), ("header", header)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(plugin_error(&err), PluginError::EgressDenied(_)),
            "{header}: {err}"
        );
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn a_custom_auth_header_is_forbidden_to_the_guest_and_injected_by_the_host() {
    use airlock::credential::{Credential, StaticCredential};
    let server = MockServer::start().await;
    Mock::given(path("/data"))
        .and(wiremock::matchers::header("x-api-key", CANARY))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let host = host();
    let probe = host.probe();
    let key = http::HeaderName::from_static("x-api-key");
    let conn = airlock::Connection::new("conn-2", "api-key-connection")
        .with_setting("base-url", server.uri())
        .with_setting("action", "fetch")
        .with_setting("transport", transport())
        .with_setting("url", format!("{}/data", server.uri()))
        .with_credential(
            key.clone(),
            StaticCredential::new(Credential::ApiKey {
                header: key,
                prefix: String::new(),
                key: CANARY.to_string().into(),
            }),
        )
        .unwrap();
    let report = host.runtime.test_connection(&probe, &conn).await.unwrap();
    assert!(
        report.message.contains("\"status\":200"),
        "{}",
        report.message
    );

    let forged = conn.clone().with_setting("header", "x-api-key: forged");
    let err = host
        .runtime
        .test_connection(&probe, &forged)
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::EgressDenied(_)),
        "{err}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn redirects_reach_the_guest_and_are_not_followed() {
    let internal = MockServer::start().await;
    Mock::given(path("/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("internal data"))
        .mount(&internal)
        .await;
    let server = MockServer::start().await;
    Mock::given(path("/go"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/secret", internal.uri()).as_str()),
        )
        .mount(&server)
        .await;
    let host = host();
    let out = host
        .probe_call(
            &host.probe(),
            &server.uri(),
            &[
                ("action", "fetch-follow"),
                ("url", &format!("{}/go", server.uri())),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out["first"]["status"], 302, "{out}");
    let second = out["second"].to_string();
    assert!(
        second.contains("EgressDenied"),
        "guest's own follow is refused: {out}"
    );
    assert_eq!(internal.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn request_and_response_bodies_are_capped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 1 << 20]))
        .mount(&server)
        .await;
    let host = host();
    let probe = host.probe();
    let url = format!("{}/upload", server.uri());
    let big = (test_limits().request_body_bytes + 1).to_string();
    let err = host
        .probe_call(
            &probe,
            &server.uri(),
            &[
                ("action", "fetch"),
                ("method", "POST"),
                ("url", &url),
                ("body-size", &big),
            ],
        )
        .await
        .unwrap_err();
    assert_egress_denied(&err, "request body over the limit");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);

    // Just under the cap is fine.
    let ok = (test_limits().request_body_bytes).to_string();
    host.probe_call(
        &probe,
        &server.uri(),
        &[
            ("action", "fetch"),
            ("method", "POST"),
            ("url", &url),
            ("body-size", &ok),
        ],
    )
    .await
    .unwrap();

    let err = host
        .probe_call(
            &probe,
            &server.uri(),
            &[
                ("action", "fetch"),
                ("url", &format!("{}/big", server.uri())),
            ],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    host.assert_still_serving().await;
}

#[tokio::test]
async fn the_outbound_request_budget_is_enforced() {
    let server = ok_server().await;
    let host = host();
    let limit = test_limits().outbound_requests;
    let out = host
        .probe_call(
            &host.probe(),
            &server.uri(),
            &[
                ("action", "many"),
                ("url", &format!("{}/data", server.uri())),
                ("count", &(limit + 3).to_string()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out["ok"], limit, "{out}");
    assert!(
        out["first_error"].to_string().contains("EgressDenied"),
        "{out}"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        limit as usize
    );
}

#[tokio::test]
async fn nothing_is_sent_when_the_audit_log_cannot_be_written() {
    let server = ok_server().await;
    let host = host();
    host.audit.fail_writes(true);
    let err = host
        .probe_call(
            &host.probe(),
            &server.uri(),
            &[
                ("action", "fetch"),
                ("url", &format!("{}/data", server.uri())),
            ],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit log write failed"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn rate_limits_are_retried_for_idempotent_requests_within_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(path("/limited"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/limited"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok now"))
        .with_priority(2)
        .mount(&server)
        .await;
    let host = host();
    let probe = host.probe();
    let url = format!("{}/limited", server.uri());
    let out = host
        .probe_call(&probe, &server.uri(), &[("action", "fetch"), ("url", &url)])
        .await
        .unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    let records = host.audit.records();
    assert_eq!(records.len(), 2, "each send is its own audit record");
    assert_eq!(records[0].1.as_ref().unwrap().status, Some(429));

    // Not idempotent: the 429 reaches the plugin, which maps it.
    server.reset().await;
    Mock::given(path("/limited"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .mount(&server)
        .await;
    let out = host
        .probe_call(
            &probe,
            &server.uri(),
            &[
                ("action", "fetch"),
                ("method", "POST"),
                ("url", &url),
                ("body-size", "3"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out["status"], 429, "{out}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // A wait longer than the call's deadline is not attempted.
    server.reset().await;
    Mock::given(path("/limited"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let out = host
        .probe_call(&probe, &server.uri(), &[("action", "fetch"), ("url", &url)])
        .await
        .unwrap();
    assert_eq!(out["status"], 503, "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// A credential never travels over plain http to a host that is not
/// loopback: the request is refused before it leaves, with one denied row
/// that says how to allow the origin, and nothing reaches the network.
#[tokio::test]
async fn a_credential_is_never_sent_in_clear_text_to_a_remote_origin() {
    let host = host();
    let probe = host.probe();
    let conn = bearer_connection("http://api.example.com")
        .with_setting("action", "fetch")
        .with_setting("transport", transport())
        .with_setting("url", "http://api.example.com/data");
    let err = host
        .runtime
        .test_connection(&probe, &conn)
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::EgressDenied(_)),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("clear text") && text.contains("AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS"),
        "{text}"
    );
    let records = host.audit.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let (record, _) = &records[0];
    assert!(!record.credential_used);
    match &record.decision {
        Decision::Denied(reason) => assert!(reason.contains("clear text"), "{reason}"),
        other => panic!("expected a denied row, got {other:?}"),
    }
}

/// Every refusal is one denied row with its reason, wherever it happens:
/// an address refused after DNS (the SSRF attempts: loopback by name or by
/// number) is denied before anything is recorded as allowed, and a guest's
/// attempt to set a credential header is denied although it never reaches
/// a send.
#[tokio::test]
async fn every_refusal_is_one_denied_row_with_its_reason() {
    let server = ok_server().await;
    let host = host_with(AddressPolicy::global_only(), test_limits());
    let probe = host.probe();
    let by_name = server.uri().replace("127.0.0.1", "localhost");
    for base in [server.uri(), by_name] {
        let before = host.audit.records().len();
        let url = format!("{base}/data");
        host.probe_call(&probe, &base, &[("action", "fetch"), ("url", &url)])
            .await
            .unwrap_err();
        let records = host.audit.records();
        assert_eq!(records.len(), before + 1, "{base}: {records:?}");
        match &records.last().unwrap().0.decision {
            Decision::Denied(reason) => assert!(reason.contains("loopback"), "{reason}"),
            other => panic!("{base}: expected a denied row, got {other:?}"),
        }
    }

    let host = self::host();
    let url = format!("{}/data", server.uri());
    for header in [
        "authorization: Bearer forged",
        "cookie: a=b",
        "proxy-authorization: x",
        "Host: evil.example",
    ] {
        let before = host.audit.records().len();
        host.probe_call(
            &probe_of(&host),
            &server.uri(),
            &[("action", "fetch"), ("url", &url), ("header", header)],
        )
        .await
        .unwrap_err();
        let name = header.split(':').next().unwrap().to_ascii_lowercase();
        // The row is written in the background: wait for it.
        let mut denied = None;
        for _ in 0..200 {
            let records = host.audit.records();
            if records[before..].iter().any(|(r, _)| {
                matches!(&r.decision, Decision::Denied(reason)
                    if reason.contains(&format!("forbidden header `{name}`")))
            }) {
                denied = Some(());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(denied.is_some(), "{header}: {:?}", host.audit.records());
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

fn probe_of(host: &Host) -> std::sync::Arc<airlock::Plugin> {
    host.probe()
}

/// A body over 512 KiB leaves the SDK's one-call path for wasi:http (see
/// the SDK's `bodies_over_512_kib_go_over_wasi_http`): it arrives whole,
/// and the request-body cap holds there too.
#[tokio::test]
async fn a_body_over_512_kib_arrives_whole_and_the_cap_still_holds() {
    let server = MockServer::start().await;
    Mock::given(path("/upload"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let limits = airlock::Limits {
        request_body_bytes: 1 << 20,
        memory_bytes: 64 << 20,
        ..test_limits()
    };
    let host = host_with(
        AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        limits,
    );
    let probe = host.probe();
    let url = format!("{}/upload", server.uri());
    let over_one_call = (512 * 1024 + 100).to_string();
    host.probe_call(
        &probe,
        &server.uri(),
        &[
            ("action", "fetch"),
            ("method", "POST"),
            ("url", &url),
            ("body-size", &over_one_call),
        ],
    )
    .await
    .unwrap();
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body.len(), 512 * 1024 + 100);

    let over_cap = ((1 << 20) + 1).to_string();
    let err = host
        .probe_call(
            &probe,
            &server.uri(),
            &[
                ("action", "fetch"),
                ("method", "POST"),
                ("url", &url),
                ("body-size", &over_cap),
            ],
        )
        .await
        .unwrap_err();
    assert_egress_denied(&err, "request body over the limit");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
