//! The ServiceNow plugin (plugins/servicenow) end to end: the real
//! component in the real host, against a wiremock server on loopback that
//! answers like the Table API. Each test checks what went over the wire
//! (method, path, decoded query parameters, content type, the Basic
//! credential the host injected, the JSON body) and how the answer maps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use airlock::AddressPolicy;
use airlock::credential::{Credential, StaticCredential};
use airlock::runtime::types::{
    NewTicket, PluginError, Priority, RateLimit, SyncRequest, TicketQuery, TicketUpdate,
    UpstreamFailure,
};
use airlock::{Connection, Limits, Plugin};
use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::*;

const USER: &str = "airlock.integration";
const TABLE: &str = "/api/now/table/incident";
const SYS_ID: &str = "9d385017c611228701d22104cc95c371";
const SYS_ID_2: &str = "e8caedcbc0a80164017df472f39eaed1";
const SYS_ID_3: &str = "46f09e75a9fe198100f4ffd8d366d17b";

fn servicenow(host: &Host) -> Arc<Plugin> {
    host.plugin("servicenow")
}

/// A connection with a Basic credential whose password is the canary.
fn connection(base_url: &str) -> Connection {
    Connection::new("sn-1", "servicenow-test")
        .with_setting("base-url", base_url)
        .with_credential(
            http::header::AUTHORIZATION,
            StaticCredential::new(Credential::Basic {
                username: USER.to_string(),
                password: CANARY.to_string().into(),
            }),
        )
        .unwrap()
}

/// What the host must put in `Authorization`.
fn basic() -> String {
    let raw = format!("{USER}:{CANARY}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A mock for `method path` that also requires the injected credential and
/// a JSON `Accept`.
fn table_api(verb: &str, at: &str) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(at))
        .and(header("authorization", basic().as_str()))
        .and(header("accept", "application/json"))
}

/// An incident as the Table API returns it (raw values, reference links
/// excluded).
fn incident(sys_id: &str, number: &str, title: &str, updated: &str) -> Value {
    json!({
        "sys_id": sys_id,
        "number": number,
        "short_description": title,
        "description": "Users on floor 3 cannot send mail since 09:00.",
        "urgency": "1",
        "impact": "2",
        "priority": "2",
        "state": "2",
        "active": "true",
        "category": "network",
        "caller_id": "681ccaf9c0a8016400b98a06818d57c7",
        "assignment_group": "287ebd7da9fe198100f92cc8d1d2154e",
        "opened_at": "2026-11-20 09:00:00",
        "close_code": "",
        "close_notes": "",
        "sys_class_name": "incident",
        "sys_created_by": USER,
        "sys_created_on": "2026-11-20 09:00:00",
        "sys_updated_by": USER,
        "sys_updated_on": updated,
        "sys_mod_count": "3"
    })
}

fn failure(message: &str, detail: &str) -> Value {
    json!({"error": {"message": message, "detail": detail}, "status": "failure"})
}

fn result(value: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "result": value }))
}

/// The decoded query parameters of a request, in order.
fn query(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A predicate on the error an answer must produce.
type Check = fn(&PluginError) -> bool;

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn no_query() -> TicketQuery {
    TicketQuery {
        text: None,
        native_query: None,
        limit: 0,
    }
}

fn new_ticket(title: &str) -> NewTicket {
    NewTicket {
        title: title.to_string(),
        description: None,
        kind: None,
        priority: None,
        fields: None,
    }
}

fn update(id: &str) -> TicketUpdate {
    TicketUpdate {
        id: id.to_string(),
        title: None,
        description: None,
        state: None,
        priority: None,
        fields: None,
    }
}

// ---- test-connection ------------------------------------------------------

#[tokio::test]
async fn test_connection_names_the_account_and_instance() {
    let server = MockServer::start().await;
    table_api("GET", "/api/now/table/sys_user")
        .and(query_param(
            "sysparm_query",
            "sys_id=javascript:gs.getUserID()",
        ))
        .respond_with(result(json!([{
            "sys_id": "6816f79cc0a8016401c5a33be04be441",
            "user_name": USER,
            "name": "Airlock Integration",
            "email": "airlock@acme.example"
        }])))
        .expect(1)
        .mount(&server)
        .await;
    table_api("GET", TABLE)
        .and(query_param("sysparm_limit", "1"))
        .respond_with(result(json!([{"sys_id": SYS_ID}])))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let report = host
        .runtime
        .test_connection(&servicenow(&host), &connection(&server.uri()))
        .await
        .unwrap();
    assert_eq!(report.account.as_deref(), Some(USER));
    assert!(
        report.message.contains(&server.uri())
            && report.message.contains("Airlock Integration")
            && report.message.contains("`incident`"),
        "{}",
        report.message
    );
    let details: BTreeMap<_, _> = report.details.into_iter().collect();
    assert_eq!(details["instance"], server.uri());
    assert_eq!(details["table"], "incident");
    assert_eq!(details["sys_id"], "6816f79cc0a8016401c5a33be04be441");

    let sent = requests(&server).await;
    assert_eq!(
        query(&sent[0]),
        pairs(&[
            ("sysparm_query", "sys_id=javascript:gs.getUserID()"),
            ("sysparm_fields", "sys_id,user_name,name,email"),
            ("sysparm_limit", "1"),
        ])
    );
    assert_eq!(
        query(&sent[1]),
        pairs(&[("sysparm_fields", "sys_id"), ("sysparm_limit", "1")])
    );
    // Every send was audited with the credential used; no secret in the URL.
    let audit = host.audit.records();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|(record, _)| record.credential_used));
    assert!(audit.iter().all(|(record, _)| !record.url.contains(CANARY)));
}

#[tokio::test]
async fn test_connection_with_a_wrong_password_is_unauthorized() {
    let server = MockServer::start().await;
    table_api("GET", "/api/now/table/sys_user")
        .respond_with(ResponseTemplate::new(401).set_body_json(failure(
            "User Not Authenticated",
            "Required to provide Auth information",
        )))
        .mount(&server)
        .await;
    let host = host();
    let err = host
        .runtime
        .test_connection(&servicenow(&host), &connection(&server.uri()))
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::Unauthorized(message) => assert_eq!(
            message,
            "HTTP 401: User Not Authenticated (Required to provide Auth information)"
        ),
        other => panic!("{other:?}"),
    }
    // Nothing more is tried with a rejected credential.
    assert_eq!(requests(&server).await.len(), 1);
    assert!(!err.to_string().contains(CANARY));
}

#[tokio::test]
async fn test_connection_without_read_access_to_the_table_is_forbidden() {
    let server = MockServer::start().await;
    table_api("GET", "/api/now/table/sys_user")
        .respond_with(result(
            json!([{"sys_id": "6816f79cc0a8016401c5a33be04be441", "user_name": USER}]),
        ))
        .mount(&server)
        .await;
    table_api("GET", TABLE)
        .respond_with(ResponseTemplate::new(403).set_body_json(failure(
            "User Not Authorized",
            "ACL restricts the record retrieval",
        )))
        .mount(&server)
        .await;
    let host = host();
    let err = host
        .runtime
        .test_connection(&servicenow(&host), &connection(&server.uri()))
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::Forbidden(message) => {
            assert!(
                message.contains("cannot read table `incident`"),
                "{message}"
            );
            assert!(message.contains("User Not Authorized"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

// ---- search ----------------------------------------------------------------

#[tokio::test]
async fn search_by_text_keeps_the_query_meaning_on_the_wire() {
    let server = MockServer::start().await;
    table_api("GET", TABLE)
        .respond_with(result(json!([
            incident(
                SYS_ID,
                "INC0010001",
                "VPN ^ORactive=true & 50% + café #1 日本",
                "2026-11-20 10:15:00"
            ),
            incident(SYS_ID_2, "INC0010002", "VPN drops", "2026-11-20 09:30:00"),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let text = "VPN ^ORactive=true & 50% + café #1 日本";
    let tickets = host
        .runtime
        .search_tickets(
            &servicenow(&host),
            &connection(&server.uri()),
            TicketQuery {
                text: Some(text.to_string()),
                ..no_query()
            },
        )
        .await
        .unwrap();

    let sent = requests(&server).await;
    let raw = sent[0].url.query().unwrap().to_string();
    assert!(raw.is_ascii(), "{raw}");
    for c in [' ', '+', '#', '^'] {
        assert!(!raw.contains(c), "raw query has {c:?}: {raw}");
    }
    assert_eq!(raw.matches('&').count(), 2, "{raw}");
    assert_eq!(
        query(&sent[0]),
        pairs(&[
            (
                "sysparm_query",
                "short_descriptionLIKEVPN ^^ORactive=true & 50% + café #1 日本^ORDERBYDESCsys_updated_on",
            ),
            ("sysparm_limit", "10"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );

    assert_eq!(tickets.len(), 2);
    let t = &tickets[0];
    assert_eq!(t.id, SYS_ID);
    assert_eq!(t.number.as_deref(), Some("INC0010001"));
    assert_eq!(t.title, text);
    assert_eq!(
        t.description.as_deref(),
        Some("Users on floor 3 cannot send mail since 09:00.")
    );
    assert_eq!(t.kind.as_deref(), Some("incident"));
    assert_eq!(t.state.as_deref(), Some("2"));
    assert_eq!(t.priority, Some(Priority::P2));
    assert_eq!(
        t.url.as_deref(),
        Some(format!("{}/incident.do?sys_id={SYS_ID}", server.uri()).as_str())
    );
    assert_eq!(t.created_at.as_deref(), Some("2026-11-20T09:00:00Z"));
    assert_eq!(t.updated_at.as_deref(), Some("2026-11-20T10:15:00Z"));
    let fields: Value = serde_json::from_str(&t.fields).unwrap();
    assert_eq!(fields["category"], "network");
    assert_eq!(fields["urgency"], "1");
    assert_eq!(tickets[1].number.as_deref(), Some("INC0010002"));
}

#[tokio::test]
async fn search_with_a_native_query_sends_it_as_written() {
    let server = MockServer::start().await;
    table_api("GET", TABLE)
        .respond_with(result(json!([])))
        .mount(&server)
        .await;
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    let native = "active=true^priority<=2^short_descriptionSTARTSWITHDisk #3^ORDERBYnumber";
    let tickets = host
        .runtime
        .search_tickets(
            &plugin,
            &conn,
            TicketQuery {
                native_query: Some(native.to_string()),
                limit: 5,
                ..no_query()
            },
        )
        .await
        .unwrap();
    assert!(tickets.is_empty());
    // A huge limit is capped.
    host.runtime
        .search_tickets(
            &plugin,
            &conn,
            TicketQuery {
                limit: 100_000,
                ..no_query()
            },
        )
        .await
        .unwrap();
    let sent = requests(&server).await;
    assert_eq!(
        query(&sent[0]),
        pairs(&[
            ("sysparm_query", native),
            ("sysparm_limit", "5"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );
    assert_eq!(
        query(&sent[1]),
        pairs(&[
            ("sysparm_query", "ORDERBYDESCsys_updated_on"),
            ("sysparm_limit", "100"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );
}

/// Each upstream failure becomes the matching typed error with the
/// service's own words.
#[tokio::test]
async fn search_maps_upstream_failures() {
    let host = host();
    let plugin = servicenow(&host);
    let cases: Vec<(ResponseTemplate, Check)> = vec![
        (
            ResponseTemplate::new(400).set_body_json(failure(
                "Invalid query",
                "Field 'bogus' in encoded query is not valid",
            )),
            |e| {
                matches!(e, PluginError::InvalidInput(m)
                    if m == "HTTP 400: Invalid query (Field 'bogus' in encoded query is not valid)")
            },
        ),
        (
            ResponseTemplate::new(500).set_body_json(failure(
                "Internal server error",
                "Transaction cancelled: maximum execution time exceeded",
            )),
            |e| {
                matches!(e, PluginError::Upstream(UpstreamFailure { status: 500, message })
                    if message.contains("maximum execution time exceeded"))
            },
        ),
        (
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"result": [{"sys_id": "#, "application/json"),
            |e| {
                matches!(e, PluginError::Upstream(UpstreamFailure { status: 200, message })
                    if message.starts_with("malformed JSON"))
            },
        ),
        (
            ResponseTemplate::new(200).set_body_raw(
                "<html><body>Your instance is hibernating</body></html>",
                "text/html",
            ),
            |e| {
                matches!(e, PluginError::Upstream(UpstreamFailure { status: 200, message })
                    if message.contains("HTML") && message.contains("hibernating"))
            },
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"records": []})),
            |e| {
                matches!(e, PluginError::Upstream(UpstreamFailure { status: 200, message })
                    if message.contains("no `result`"))
            },
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        table_api("GET", TABLE)
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .search_tickets(
                &plugin,
                &connection(&server.uri()),
                TicketQuery {
                    text: Some("mail".into()),
                    ..no_query()
                },
            )
            .await
            .unwrap_err();
        let error = plugin_error(&err);
        assert!(expected(error), "unexpected {error:?}");
    }
}

// ---- create ----------------------------------------------------------------

#[tokio::test]
async fn create_sends_what_the_table_api_requires() {
    let server = MockServer::start().await;
    let body = json!({
        "category": "network",
        "short_description": "Email is down for floor 3",
        "description": "Since 09:00 nobody on floor 3 can send mail.\nOutlook shows 0x800CCC0E.",
        "urgency": "1",
        "impact": "1",
    });
    let mut created = incident(
        SYS_ID,
        "INC0010001",
        "Email is down for floor 3",
        "2026-11-20 10:15:00",
    );
    created["urgency"] = "1".into();
    created["impact"] = "1".into();
    created["priority"] = "1".into();
    created["state"] = "1".into();
    table_api("POST", TABLE)
        .and(header("content-type", "application/json"))
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .and(body_json(&body))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "result": created })))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let ticket = host
        .runtime
        .create_ticket(
            &servicenow(&host),
            &connection(&server.uri()),
            NewTicket {
                title: "  Email is down for floor 3 ".into(),
                description: Some(
                    "Since 09:00 nobody on floor 3 can send mail.\nOutlook shows 0x800CCC0E."
                        .into(),
                ),
                kind: Some("incident".into()),
                priority: Some(Priority::P1),
                fields: Some(r#"{"category": "network"}"#.into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(ticket.id, SYS_ID);
    assert_eq!(ticket.number.as_deref(), Some("INC0010001"));
    assert_eq!(ticket.priority, Some(Priority::P1));
    assert_eq!(ticket.state.as_deref(), Some("1"));
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    let sent_body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(sent_body, body);
    assert!(!String::from_utf8_lossy(&sent[0].body).contains(CANARY));
}

#[tokio::test]
async fn create_maps_p2_to_p4_onto_urgency_and_impact() {
    let server = MockServer::start().await;
    table_api("POST", TABLE)
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "result": incident(SYS_ID, "INC0010001", "x", "2026-11-20 10:15:00")
        })))
        .mount(&server)
        .await;
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    for priority in [Priority::P2, Priority::P3, Priority::P4] {
        host.runtime
            .create_ticket(
                &plugin,
                &conn,
                NewTicket {
                    priority: Some(priority),
                    ..new_ticket("Printer jam")
                },
            )
            .await
            .unwrap();
    }
    let sent: Vec<Value> = requests(&server)
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let pick = |v: &Value| (v["urgency"].clone(), v["impact"].clone());
    assert_eq!(pick(&sent[0]), (json!("1"), json!("2")));
    assert_eq!(pick(&sent[1]), (json!("2"), json!("2")));
    assert_eq!(pick(&sent[2]), (json!("3"), json!("2")));
    assert_eq!(
        sent[0],
        json!({"short_description": "Printer jam", "urgency": "1", "impact": "2"})
    );
}

/// Bad input is refused with a clear message before anything is sent.
#[tokio::test]
async fn create_refuses_bad_input_before_sending() {
    let server = MockServer::start().await;
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    let cases = [
        (new_ticket(""), "empty"),
        (new_ticket("   \t "), "empty"),
        (new_ticket(&"a".repeat(161)), "at most 160"),
        (new_ticket(&"x".repeat(100 * 1024)), "at most 160"),
        (
            NewTicket {
                fields: Some("[1, 2]".into()),
                ..new_ticket("ok")
            },
            "JSON object",
        ),
        (
            NewTicket {
                fields: Some(r#"{"urgency": "3"}"#.into()),
                priority: Some(Priority::P1),
                ..new_ticket("ok")
            },
            "`urgency`",
        ),
        (
            NewTicket {
                kind: Some("Bug".into()),
                ..new_ticket("ok")
            },
            "table `incident`",
        ),
    ];
    for (ticket, needle) in cases {
        let err = host
            .runtime
            .create_ticket(&plugin, &conn, ticket)
            .await
            .unwrap_err();
        match plugin_error(&err) {
            PluginError::InvalidInput(message) => {
                assert!(message.contains(needle), "{needle}: {message}")
            }
            other => panic!("{needle}: {other:?}"),
        }
    }
    assert!(requests(&server).await.is_empty());
    assert!(host.audit.records().is_empty());
}

#[tokio::test]
async fn create_maps_rate_limits_conflicts_and_acls() {
    let host = host();
    let plugin = servicenow(&host);
    let cases: Vec<(ResponseTemplate, PluginError)> = vec![
        (
            ResponseTemplate::new(429)
                .insert_header("retry-after", "120")
                .set_body_json(failure(
                    "Too many requests",
                    "Rate limit of 100 requests per hour exceeded",
                )),
            PluginError::RateLimited(RateLimit {
                retry_after_secs: Some(120),
                message:
                    "HTTP 429: Too many requests (Rate limit of 100 requests per hour exceeded)"
                        .into(),
            }),
        ),
        (
            ResponseTemplate::new(409).set_body_json(failure(
                "Conflict",
                "A record with this correlation_id already exists",
            )),
            PluginError::Conflict(
                "HTTP 409: Conflict (A record with this correlation_id already exists)".into(),
            ),
        ),
        (
            ResponseTemplate::new(403).set_body_json(failure(
                "Operation Failed",
                "ACL restricts the record creation",
            )),
            PluginError::Forbidden(
                "HTTP 403: Operation Failed (ACL restricts the record creation)".into(),
            ),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        table_api("POST", TABLE)
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .create_ticket(&plugin, &connection(&server.uri()), new_ticket("Disk full"))
            .await
            .unwrap_err();
        assert_eq!(plugin_error(&err), &expected);
    }
}

// ---- get -------------------------------------------------------------------

#[tokio::test]
async fn get_by_sys_id_and_by_number() {
    let server = MockServer::start().await;
    table_api("GET", format!("{TABLE}/{SYS_ID}").as_str())
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .respond_with(result(incident(
            SYS_ID,
            "INC0010001",
            "Email is down",
            "2026-11-20 10:15:00",
        )))
        .expect(1)
        .mount(&server)
        .await;
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", "number=INC0010002"))
        .respond_with(result(json!([incident(
            SYS_ID_2,
            "INC0010002",
            "VPN drops",
            "2026-11-20 09:30:00"
        )])))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    let by_id = host
        .runtime
        .get_ticket(&plugin, &conn, SYS_ID.to_uppercase())
        .await
        .unwrap();
    assert_eq!(by_id.id, SYS_ID);
    assert_eq!(by_id.title, "Email is down");
    let by_number = host
        .runtime
        .get_ticket(&plugin, &conn, "INC0010002".into())
        .await
        .unwrap();
    assert_eq!(by_number.id, SYS_ID_2);
    assert_eq!(by_number.number.as_deref(), Some("INC0010002"));
    let sent = requests(&server).await;
    assert_eq!(
        query(&sent[0]),
        pairs(&[("sysparm_exclude_reference_link", "true")])
    );
    assert_eq!(
        query(&sent[1]),
        pairs(&[
            ("sysparm_query", "number=INC0010002"),
            ("sysparm_limit", "1"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );
}

#[tokio::test]
async fn get_of_a_missing_record_is_not_found_naming_it() {
    let server = MockServer::start().await;
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", "number=INC0099999"))
        .respond_with(result(json!([])))
        .mount(&server)
        .await;
    table_api("GET", format!("{TABLE}/{SYS_ID_3}").as_str())
        .respond_with(ResponseTemplate::new(404).set_body_json(failure(
            "No Record found",
            "Record doesn't exist or ACL restricts the record retrieval",
        )))
        .mount(&server)
        .await;
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    let err = host
        .runtime
        .get_ticket(&plugin, &conn, "INC0099999".into())
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::NotFound(message) => {
            assert!(message.contains("incident INC0099999"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let err = host
        .runtime
        .get_ticket(&plugin, &conn, SYS_ID_3.into())
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::NotFound(message) => {
            assert!(message.contains(SYS_ID_3), "{message}");
            assert!(message.contains("No Record found"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn get_refuses_ids_that_would_change_the_query() {
    let server = MockServer::start().await;
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    for id in [
        "INC001^ORactive=true",
        "INC 001",
        "",
        "number=INC1",
        "INC0010001&x=1",
    ] {
        let err = host
            .runtime
            .get_ticket(&plugin, &conn, id.into())
            .await
            .unwrap_err();
        assert!(
            matches!(plugin_error(&err), PluginError::InvalidInput(_)),
            "{id}: {err}"
        );
    }
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn get_from_a_slow_instance_times_out() {
    let server = MockServer::start().await;
    table_api("GET", TABLE)
        .respond_with(result(json!([])).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let host = host_with(
        AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        Limits {
            first_byte_timeout: Duration::from_millis(800),
            ..test_limits()
        },
    );
    let started = std::time::Instant::now();
    let err = host
        .runtime
        .get_ticket(
            &servicenow(&host),
            &connection(&server.uri()),
            "INC0010001".into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::Timeout(_)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- update ----------------------------------------------------------------

#[tokio::test]
async fn update_by_number_looks_it_up_then_patches() {
    let server = MockServer::start().await;
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", "number=INC0010001"))
        .respond_with(result(json!([{ "sys_id": SYS_ID }])))
        .expect(1)
        .mount(&server)
        .await;
    let body = json!({
        "work_notes": "Mail relay restarted",
        "short_description": "Email is down — relay restarted",
        "description": "Relay mx2 restarted at 10:14.",
        "state": "6",
        "close_code": "Solved (Permanently)",
        "urgency": "3",
        "impact": "2",
    });
    let mut updated = incident(
        SYS_ID,
        "INC0010001",
        "Email is down — relay restarted",
        "2026-11-20 10:16:00",
    );
    updated["state"] = "6".into();
    updated["urgency"] = "3".into();
    updated["priority"] = "4".into();
    table_api("PATCH", format!("{TABLE}/{SYS_ID}").as_str())
        .and(header("content-type", "application/json"))
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .and(body_json(&body))
        .respond_with(result(updated))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let ticket = host
        .runtime
        .update_ticket(
            &servicenow(&host),
            &connection(&server.uri()),
            TicketUpdate {
                id: "INC0010001".into(),
                title: Some("Email is down — relay restarted".into()),
                description: Some("Relay mx2 restarted at 10:14.".into()),
                state: Some("Resolved".into()),
                priority: Some(Priority::P4),
                fields: Some(
                    r#"{"work_notes": "Mail relay restarted", "close_code": "Solved (Permanently)"}"#
                        .into(),
                ),
            },
        )
        .await
        .unwrap();
    assert_eq!(ticket.id, SYS_ID);
    assert_eq!(ticket.state.as_deref(), Some("6"));
    assert_eq!(ticket.priority, Some(Priority::P4));
    assert_eq!(ticket.updated_at.as_deref(), Some("2026-11-20T10:16:00Z"));
    let sent = requests(&server).await;
    assert_eq!(
        query(&sent[0]),
        pairs(&[
            ("sysparm_query", "number=INC0010001"),
            ("sysparm_fields", "sys_id"),
            ("sysparm_limit", "1"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );
    assert_eq!(sent[1].method.as_str(), "PATCH");
}

#[tokio::test]
async fn update_failures_are_typed() {
    let host = host();
    let plugin = servicenow(&host);

    // Nothing to change, an empty title, an unknown state: nothing is sent.
    let server = MockServer::start().await;
    let conn = connection(&server.uri());
    for (change, needle) in [
        (update("INC0010001"), "changes nothing"),
        (
            TicketUpdate {
                title: Some(" ".into()),
                ..update(SYS_ID)
            },
            "empty",
        ),
        (
            TicketUpdate {
                state: Some("Done-ish".into()),
                ..update(SYS_ID)
            },
            "unknown incident state",
        ),
    ] {
        let err = host
            .runtime
            .update_ticket(&plugin, &conn, change)
            .await
            .unwrap_err();
        match plugin_error(&err) {
            PluginError::InvalidInput(message) => assert!(message.contains(needle), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(requests(&server).await.is_empty());

    // The instance's answers.
    let cases: Vec<(ResponseTemplate, Check)> = vec![
        (
            ResponseTemplate::new(404).set_body_json(failure(
                "No Record found",
                "Record doesn't exist or ACL restricts the record retrieval",
            )),
            |e| matches!(e, PluginError::NotFound(m) if m.contains(SYS_ID) && m.contains("No Record found")),
        ),
        (
            ResponseTemplate::new(409).set_body_json(failure(
                "Conflict",
                "The record was changed by another user",
            )),
            |e| matches!(e, PluginError::Conflict(m) if m.contains("changed by another user")),
        ),
        (
            ResponseTemplate::new(400).set_body_json(failure(
                "Operation Failed",
                "Data Policy Exception: Resolution code is mandatory",
            )),
            |e| matches!(e, PluginError::InvalidInput(m) if m.contains("Resolution code is mandatory")),
        ),
        (
            ResponseTemplate::new(401).set_body_json(failure(
                "User Not Authenticated",
                "Required to provide Auth information",
            )),
            |e| matches!(e, PluginError::Unauthorized(_)),
        ),
        (
            ResponseTemplate::new(503).set_body_string("Service Unavailable"),
            |e| {
                matches!(e, PluginError::Upstream(UpstreamFailure { status: 503, message })
                    if message.contains("Service Unavailable"))
            },
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        table_api("PATCH", format!("{TABLE}/{SYS_ID}").as_str())
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .update_ticket(
                &plugin,
                &connection(&server.uri()),
                TicketUpdate {
                    state: Some("6".into()),
                    ..update(SYS_ID)
                },
            )
            .await
            .unwrap_err();
        let error = plugin_error(&err);
        assert!(expected(error), "unexpected {error:?}");
    }
}

// ---- sync ------------------------------------------------------------------

const ORDER: &str = "ORDERBYsys_updated_on^ORDERBYsys_id";

/// `sysparm_query` of the page after the record `(updated, sys_id)`.
fn after(updated: &str, sys_id: &str) -> String {
    format!("sys_updated_on>={updated}^sys_updated_on>{updated}^ORsys_id>{sys_id}^{ORDER}")
}

fn sync_request(cursor: Option<String>) -> SyncRequest {
    SyncRequest {
        cursor,
        page_size: 2,
    }
}

#[tokio::test]
async fn sync_reads_everything_over_two_pages_then_only_changes() {
    let server = MockServer::start().await;
    let a = incident(SYS_ID, "INC0010001", "Email is down", "2026-11-20 10:00:00");
    // b sorts before c by sys_id, as the instance orders records of a second.
    let b = incident(SYS_ID_3, "INC0010002", "VPN drops", "2026-11-20 10:15:00");
    let c = incident(SYS_ID_2, "INC0010003", "Printer jam", "2026-11-20 10:15:00");
    let mut a2 = a.clone();
    a2["sys_updated_on"] = "2026-11-20 11:00:00".into();
    a2["state"] = "6".into();

    // Page 1 of the full sync: from the start.
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", ORDER))
        .and(query_param("sysparm_offset", "0"))
        .and(query_param("sysparm_limit", "2"))
        .respond_with(result(json!([a, b])))
        .expect(1)
        .mount(&server)
        .await;
    // Page 2: after b (10:15:00, SYS_ID_3).
    let after_b = after("2026-11-20 10:15:00", SYS_ID_3);
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", after_b.as_str()))
        .and(query_param("sysparm_offset", "0"))
        .and(query_param("sysparm_limit", "2"))
        .respond_with(result(json!([c])))
        .expect(1)
        .mount(&server)
        .await;
    // The delta reads the newest second again (a record may have been
    // saved late with its timestamp), then continues after c.
    let from_t = format!("sys_updated_on>=2026-11-20 10:15:00^{ORDER}");
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", from_t.as_str()))
        .and(query_param("sysparm_offset", "0"))
        .and(query_param("sysparm_limit", "2"))
        .respond_with(result(json!([b, c])))
        .expect(1)
        .mount(&server)
        .await;
    let after_c = after("2026-11-20 10:15:00", SYS_ID_2);
    table_api("GET", TABLE)
        .and(query_param("sysparm_query", after_c.as_str()))
        .and(query_param("sysparm_offset", "0"))
        .and(query_param("sysparm_limit", "2"))
        .respond_with(result(json!([a2])))
        .expect(1)
        .mount(&server)
        .await;

    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());

    let page1 = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(None))
        .await
        .unwrap();
    let ids = |page: &airlock::runtime::types::SyncPage| {
        page.records
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&page1), [SYS_ID, SYS_ID_3]);
    assert!(page1.has_more);
    let record = &page1.records[0];
    assert_eq!(record.kind, "incident");
    assert_eq!(record.updated_at.as_deref(), Some("2026-11-20T10:00:00Z"));
    let data: Value = serde_json::from_str(&record.data).unwrap();
    assert_eq!(data["number"], "INC0010001");
    assert_eq!(data["short_description"], "Email is down");
    let cursor1 = page1.next_cursor.clone().unwrap();
    assert!(
        cursor1
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "opaque, URL-safe: {cursor1}"
    );

    let page2 = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(Some(cursor1)))
        .await
        .unwrap();
    assert_eq!(ids(&page2), [SYS_ID_2]);
    assert!(!page2.has_more, "the full sync is complete");
    let cursor2 = page2.next_cursor.clone().unwrap();

    // Later: a delta from the last cursor brings the newest second again,
    // then what changed.
    let again = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(Some(cursor2)))
        .await
        .unwrap();
    assert_eq!(ids(&again), [SYS_ID_3, SYS_ID_2]);
    assert!(again.has_more);
    let delta = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(again.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&delta), [SYS_ID]);
    assert!(!delta.has_more);
    assert_eq!(
        delta.records[0].updated_at.as_deref(),
        Some("2026-11-20T11:00:00Z")
    );
    let data: Value = serde_json::from_str(&delta.records[0].data).unwrap();
    assert_eq!(data["state"], "6");
    assert!(delta.next_cursor.is_some());

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 4);
    assert_eq!(
        query(&sent[0]),
        pairs(&[
            ("sysparm_query", ORDER),
            ("sysparm_offset", "0"),
            ("sysparm_limit", "2"),
            ("sysparm_no_count", "true"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );
    assert_eq!(
        query(&sent[3]),
        pairs(&[
            ("sysparm_query", after_c.as_str()),
            ("sysparm_offset", "0"),
            ("sysparm_limit", "2"),
            ("sysparm_no_count", "true"),
            ("sysparm_exclude_reference_link", "true"),
        ])
    );
}

#[tokio::test]
async fn sync_failures_are_typed() {
    let host = host();
    let plugin = servicenow(&host);

    // A cursor the plugin never issued.
    let server = MockServer::start().await;
    let err = host
        .runtime
        .fetch_page(
            &plugin,
            &connection(&server.uri()),
            sync_request(Some("sys_updated_on>=2026-01-01^ORactive=true".into())),
        )
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::InvalidInput(message) => assert!(message.contains("full sync"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(requests(&server).await.is_empty());

    // The instance failing mid-sync.
    table_api("GET", TABLE)
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(failure("Internal server error", "Database connection lost")),
        )
        .mount(&server)
        .await;
    let err = host
        .runtime
        .fetch_page(&plugin, &connection(&server.uri()), sync_request(None))
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::Upstream(UpstreamFailure {
            status: 500,
            message: "HTTP 500: Internal server error (Database connection lost)".into(),
        })
    );
}

// ---- settings ----------------------------------------------------------------

#[tokio::test]
async fn a_custom_table_is_used_and_a_bad_one_refused() {
    let server = MockServer::start().await;
    table_api("GET", "/api/now/table/u_ops_ticket")
        .respond_with(result(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let plugin = servicenow(&host);
    let tickets = host
        .runtime
        .search_tickets(
            &plugin,
            &connection(&server.uri()).with_setting("table", "u_ops_ticket"),
            no_query(),
        )
        .await
        .unwrap();
    assert!(tickets.is_empty());
    let err = host
        .runtime
        .search_tickets(
            &plugin,
            &connection(&server.uri()).with_setting("table", "sys_user/../incident"),
            no_query(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::InvalidInput(m) if m.contains("`table`")),
        "{err}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

/// Records of one second change while a sync pages through them: each
/// page continues after the last `(sys_updated_on, sys_id)` delivered, so a
/// record that moves to a later second comes again and none is skipped, as
/// plain offset paging would.
#[tokio::test]
async fn sync_never_skips_records_when_a_second_shifts_under_it() {
    let server = MockServer::start().await;
    let at = |id: &str, number: &str, updated: &str| incident(id, number, "x", updated);
    let (t0, t1, t2) = (
        "2026-11-20 10:00:00",
        "2026-11-20 10:15:00",
        "2026-11-20 11:00:00",
    );
    let a = at("0a", "INC0010001", t0);
    let b = at("0b", "INC0010002", t1);
    let c = at("0c", "INC0010003", t1);
    let d = at("0d", "INC0010004", t1);
    let e = at("0e", "INC0010005", t1);
    let c2 = at("0c", "INC0010003", t2);
    let pages = [
        // Full sync, page 1.
        (ORDER.to_string(), json!([a, b])),
        (after(t1, "0b"), json!([c, d])),
        // Now c is updated (moves to 11:00): after d come e and c again.
        (after(t1, "0d"), json!([e, c2])),
        (after(t2, "0c"), json!([])),
    ];
    for (query, answer) in pages {
        table_api("GET", TABLE)
            .and(query_param("sysparm_query", query.as_str()))
            .and(query_param("sysparm_offset", "0"))
            .and(query_param("sysparm_limit", "2"))
            .respond_with(result(answer))
            .expect(1)
            .mount(&server)
            .await;
    }
    let host = host();
    let plugin = servicenow(&host);
    let conn = connection(&server.uri());
    let mut cursor = None;
    let mut delivered = Vec::new();
    for _ in 0..4 {
        let page = host
            .runtime
            .fetch_page(&plugin, &conn, sync_request(cursor.take()))
            .await
            .unwrap();
        delivered.extend(page.records.iter().map(|r| r.id.clone()));
        cursor = page.next_cursor;
    }
    assert_eq!(delivered, ["0a", "0b", "0c", "0d", "0e", "0c"]);
    assert_eq!(requests(&server).await.len(), 4);
}
