//! The Azure DevOps plugin (plugins/azure-devops) end to end: the real
//! component in the real host, against a wiremock server on loopback shaped
//! like the Azure DevOps REST API 7.1. Each test checks what went over the
//! wire (method, encoded path, `api-version`, content type, the credential
//! the host injected, the WIQL or JSON Patch body) and how the answer maps.

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

const ORG: &str = "/fabrikam";
const PROJECT: &str = "Fabrikam Fiber";
const PROJECT_PATH: &str = "/fabrikam/Fabrikam%20Fiber";
const PROJECT_ID: &str = "eb6e4656-77fc-42a1-9181-4c6d8e9da5d1";
const CHANGED: &str = "2026-11-20T10:15:00.123Z";

fn azure_devops(host: &Host) -> Arc<Plugin> {
    host.plugin("azure-devops")
}

fn base(server: &MockServer) -> String {
    format!("{}{ORG}", server.uri())
}

/// A PAT connection: Basic with an EMPTY user name, the PAT (the canary)
/// as the password.
fn connection_for(server: &MockServer, project: &str) -> Connection {
    Connection::new("ado-1", "azure-devops-test")
        .with_setting("base-url", base(server))
        .with_setting("project", project)
        .with_credential(
            http::header::AUTHORIZATION,
            StaticCredential::new(Credential::Basic {
                username: String::new(),
                password: CANARY.to_string().into(),
            }),
        )
        .unwrap()
}

fn connection(server: &MockServer) -> Connection {
    connection_for(server, PROJECT)
}

/// `Basic base64(":" + PAT)`.
fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{CANARY}"))
    )
}

/// A mock for `verb path` requiring `api-version=7.1` and the injected PAT.
fn api(verb: &str, at: &str) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(at))
        .and(query_param("api-version", "7.1"))
        .and(header("authorization", basic().as_str()))
}

fn work_item(id: u64, title: &str, kind: &str, changed: &str) -> Value {
    json!({
        "id": id,
        "rev": 3,
        "fields": {
            "System.AreaPath": PROJECT,
            "System.TeamProject": PROJECT,
            "System.IterationPath": PROJECT,
            "System.WorkItemType": kind,
            "System.State": "New",
            "System.Reason": "New",
            "System.CreatedDate": "2026-11-20T09:00:00.5Z",
            "System.CreatedBy": {
                "displayName": "Ada Lovelace",
                "uniqueName": "ada@fabrikam.example"
            },
            "System.ChangedDate": changed,
            "System.Title": title,
            "System.Description": "<div>Users on floor 3 cannot send mail.</div>",
            "Microsoft.VSTS.Common.Priority": 2,
            "System.Tags": "outage; mail"
        },
        "_links": {
            "html": {
                "href": format!("https://dev.azure.com/fabrikam/{PROJECT_ID}/_workitems/edit/{id}")
            }
        },
        "url": format!("https://dev.azure.com/fabrikam/{PROJECT_ID}/_apis/wit/workItems/{id}")
    })
}

fn wiql_answer(ids: &[u64]) -> Value {
    json!({
        "queryType": "flat",
        "queryResultType": "workItem",
        "asOf": "2026-11-20T10:20:00.45Z",
        "columns": [{
            "referenceName": "System.Id",
            "name": "ID",
            "url": "https://dev.azure.com/fabrikam/_apis/wit/fields/System.Id"
        }],
        "workItems": ids.iter().map(|id| json!({
            "id": id,
            "url": format!("https://dev.azure.com/fabrikam/_apis/wit/workItems/{id}")
        })).collect::<Vec<_>>()
    })
}

fn batch(items: Vec<Value>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"count": items.len(), "value": items}))
}

fn ado_error(status: u16, message: &str, type_name: &str, type_key: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "$id": "1",
        "innerException": null,
        "message": message,
        "typeName": type_name,
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3200
    }))
}

fn malformed() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/html")
        .set_body_string("<html><body>Sign in to your account</body></html>")
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

fn content_type(request: &Request) -> &str {
    request
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn text_query(text: &str) -> TicketQuery {
    TicketQuery {
        text: Some(text.to_string()),
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

fn invalid_input(err: &airlock::CallError) -> String {
    match plugin_error(err) {
        PluginError::InvalidInput(message) => message.clone(),
        other => panic!("expected invalid-input, got {other:?}"),
    }
}

/// Every request of the test carried `api-version=7.1`.
async fn assert_api_version_everywhere(server: &MockServer) {
    for request in requests(server).await {
        let versions: Vec<_> = request
            .url
            .query_pairs()
            .filter(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(versions, ["7.1"], "{}", request.url);
    }
}

// ---- test-connection --------------------------------------------------------

fn project_answer(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": PROJECT_ID,
        "name": name,
        "description": "Fiber network tickets",
        "url": format!("https://dev.azure.com/fabrikam/_apis/projects/{PROJECT_ID}"),
        "state": "wellFormed",
        "revision": 411,
        "visibility": "private",
        "lastUpdateTime": "2026-10-01T08:00:00.000Z"
    }))
}

#[tokio::test]
async fn test_connection_reports_the_project() {
    let server = MockServer::start().await;
    api("GET", "/fabrikam/_apis/projects/Fabrikam%20Fiber")
        .respond_with(project_answer(PROJECT))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let report = host
        .runtime
        .test_connection(&azure_devops(&host), &connection(&server))
        .await
        .unwrap();
    assert!(
        report.message.contains(PROJECT)
            && report.message.contains(PROJECT_ID)
            && report.message.contains("wellFormed"),
        "{}",
        report.message
    );
    let details: BTreeMap<_, _> = report.details.into_iter().collect();
    assert_eq!(details["organization"], base(&server));
    assert_eq!(details["project"], PROJECT);
    assert_eq!(details["project-id"], PROJECT_ID);
    assert_eq!(details["state"], "wellFormed");
    assert_api_version_everywhere(&server).await;
}

#[tokio::test]
async fn test_connection_encodes_a_unicode_project_name() {
    let project = "Équipe Mobile ✓";
    let server = MockServer::start().await;
    api(
        "GET",
        "/fabrikam/_apis/projects/%C3%89quipe%20Mobile%20%E2%9C%93",
    )
    .respond_with(project_answer(project))
    .expect(1)
    .mount(&server)
    .await;
    let host = host();
    let report = host
        .runtime
        .test_connection(&azure_devops(&host), &connection_for(&server, project))
        .await
        .unwrap();
    assert!(report.message.contains(project), "{}", report.message);
}

#[tokio::test]
async fn test_connection_with_an_oauth_bearer_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fabrikam/_apis/projects/Fabrikam%20Fiber"))
        .and(query_param("api-version", "7.1"))
        .and(header("authorization", format!("Bearer {CANARY}").as_str()))
        .respond_with(project_answer(PROJECT))
        .expect(1)
        .mount(&server)
        .await;
    let conn = Connection::new("ado-oauth", "azure-devops-oauth")
        .with_setting("base-url", base(&server))
        .with_setting("project", PROJECT)
        .with_credential(
            http::header::AUTHORIZATION,
            StaticCredential::new(Credential::Bearer {
                token: CANARY.to_string().into(),
            }),
        )
        .unwrap();
    let host = host();
    host.runtime
        .test_connection(&azure_devops(&host), &conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn test_connection_with_a_revoked_pat_is_unauthorized() {
    let server = MockServer::start().await;
    api("GET", "/fabrikam/_apis/projects/Fabrikam%20Fiber")
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let err = host
        .runtime
        .test_connection(&azure_devops(&host), &connection(&server))
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::Unauthorized(_)),
        "{err}"
    );
}

#[tokio::test]
async fn test_connection_to_a_missing_project_is_not_found() {
    let server = MockServer::start().await;
    api("GET", "/fabrikam/_apis/projects/Fabrikam%20Fiber")
        .respond_with(ado_error(
            404,
            "TF200016: The following project does not exist: Fabrikam Fiber. Verify that the \
             name of the project is correct and that the project exists on the specified Azure \
             DevOps Server.",
            "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, \
             Microsoft.TeamFoundation.Core.WebApi",
            "ProjectDoesNotExistWithNameException",
        ))
        .mount(&server)
        .await;
    let host = host();
    let err = host
        .runtime
        .test_connection(&azure_devops(&host), &connection(&server))
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::NotFound(message) => {
            assert!(message.contains("TF200016"), "{message}");
            assert!(message.contains("`Fabrikam Fiber`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

// ---- search -------------------------------------------------------------------

#[tokio::test]
async fn search_escapes_quotes_in_the_wiql_and_fetches_the_batch() {
    let server = MockServer::start().await;
    let wiql = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project AND \
                [System.Title] CONTAINS 'can''t send mail'' OR ''1''=''1' ORDER BY \
                [System.ChangedDate] DESC";
    api("POST", &format!("{PROJECT_PATH}/_apis/wit/wiql"))
        .and(query_param("$top", "10"))
        .and(body_json(json!({ "query": wiql })))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[7, 3])))
        .expect(1)
        .mount(&server)
        .await;
    // The batch answers in another order; the search keeps the WIQL order.
    api("GET", "/fabrikam/_apis/wit/workitems")
        .and(query_param("ids", "7,3"))
        .respond_with(batch(vec![
            work_item(
                3,
                "Can't send mail from Outlook",
                "Bug",
                "2026-11-20T08:00:00Z",
            ),
            work_item(7, "Users can't send mail", "Task", CHANGED),
        ]))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let tickets = host
        .runtime
        .search_tickets(
            &azure_devops(&host),
            &connection(&server),
            text_query("can't send mail' OR '1'='1"),
        )
        .await
        .unwrap();
    assert_eq!(tickets.len(), 2);
    let first = &tickets[0];
    assert_eq!(first.id, "7");
    assert_eq!(first.number.as_deref(), Some("7"));
    assert_eq!(first.title, "Users can't send mail");
    assert_eq!(first.kind.as_deref(), Some("Task"));
    assert_eq!(first.state.as_deref(), Some("New"));
    assert_eq!(first.priority, Some(Priority::P2));
    assert_eq!(first.updated_at.as_deref(), Some(CHANGED));
    assert_eq!(first.created_at.as_deref(), Some("2026-11-20T09:00:00.5Z"));
    assert_eq!(
        first.url.as_deref(),
        Some(format!("https://dev.azure.com/fabrikam/{PROJECT_ID}/_workitems/edit/7").as_str())
    );
    let fields: Value = serde_json::from_str(&first.fields).unwrap();
    assert_eq!(fields["System.Tags"], "outage; mail");
    assert_eq!(fields["rev"], 3);
    assert!(fields.get("System.Title").is_none());
    assert_eq!(tickets[1].id, "3");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(content_type(&sent[0]), "application/json");
    assert_eq!(body(&sent[0])["query"], wiql);
    assert_api_version_everywhere(&server).await;
}

#[tokio::test]
async fn search_with_native_wiql_honours_the_limit() {
    let server = MockServer::start().await;
    let native = "SELECT [System.Id] FROM WorkItems WHERE [System.State] = 'Active' \
                  AND [System.AssignedTo] = @me";
    api("POST", &format!("{PROJECT_PATH}/_apis/wit/wiql"))
        .and(query_param("$top", "2"))
        .and(body_json(json!({ "query": native })))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[11, 12, 13])))
        .expect(1)
        .mount(&server)
        .await;
    api("GET", "/fabrikam/_apis/wit/workitems")
        .and(query_param("ids", "11,12"))
        .respond_with(batch(vec![
            work_item(11, "First", "Bug", CHANGED),
            work_item(12, "Second", "Issue", CHANGED),
        ]))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let tickets = host
        .runtime
        .search_tickets(
            &azure_devops(&host),
            &connection(&server),
            TicketQuery {
                text: None,
                native_query: Some(native.to_string()),
                limit: 2,
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = tickets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["11", "12"]);
}

#[tokio::test]
async fn search_without_hits_sends_no_batch_call() {
    let server = MockServer::start().await;
    api("POST", &format!("{PROJECT_PATH}/_apis/wit/wiql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[])))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let tickets = host
        .runtime
        .search_tickets(
            &azure_devops(&host),
            &connection(&server),
            text_query("nothing"),
        )
        .await
        .unwrap();
    assert!(tickets.is_empty());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn search_maps_upstream_failures() {
    let host = host();
    let plugin = azure_devops(&host);
    let cases: Vec<(ResponseTemplate, PluginError)> = vec![
        (
            ado_error(
                400,
                "TF51005: The query references a field that does not exist. The error is \
                 caused by «[System.Nope]».",
                "Microsoft.TeamFoundation.WorkItemTracking.Server.Queries.SyntaxException",
                "SyntaxException",
            ),
            PluginError::InvalidInput(
                "HTTP 400: TF51005: The query references a field that does not exist. The error \
                 is caused by «[System.Nope]»."
                    .into(),
            ),
        ),
        (
            ado_error(
                403,
                "TF401027: You need the Git 'GenericRead' permission to perform this action.",
                "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException",
                "UnauthorizedRequestException",
            ),
            PluginError::Forbidden(
                "HTTP 403: TF401027: You need the Git 'GenericRead' permission to perform this \
                 action."
                    .into(),
            ),
        ),
        (
            ado_error(
                500,
                "VS402490: The service is temporarily unavailable.",
                "Microsoft.VisualStudio.Services.WebApi.VssServiceException",
                "VssServiceException",
            ),
            PluginError::Upstream(UpstreamFailure {
                status: 500,
                message: "HTTP 500: VS402490: The service is temporarily unavailable.".into(),
            }),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        api("POST", &format!("{PROJECT_PATH}/_apis/wit/wiql"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .search_tickets(&plugin, &connection(&server), text_query("mail"))
            .await
            .unwrap_err();
        assert_eq!(plugin_error(&err), &expected);
    }

    // A sign-in page instead of the batch JSON.
    let server = MockServer::start().await;
    api("POST", &format!("{PROJECT_PATH}/_apis/wit/wiql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[1])))
        .mount(&server)
        .await;
    api("GET", "/fabrikam/_apis/wit/workitems")
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .search_tickets(&plugin, &connection(&server), text_query("mail"))
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::Upstream(UpstreamFailure { status, message }) => {
            assert_eq!(*status, 200);
            assert!(message.contains("malformed JSON"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // Text and WIQL together are ambiguous: refused, nothing sent.
    let server = MockServer::start().await;
    let err = host
        .runtime
        .search_tickets(
            &plugin,
            &connection(&server),
            TicketQuery {
                text: Some("mail".into()),
                native_query: Some("SELECT [System.Id] FROM WorkItems".into()),
                limit: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(invalid_input(&err).contains("not both"));
    assert!(requests(&server).await.is_empty());
}

// ---- create -------------------------------------------------------------------

#[tokio::test]
async fn create_a_bug_sends_a_json_patch_with_priority_and_severity() {
    let server = MockServer::start().await;
    api("POST", &format!("{PROJECT_PATH}/_apis/wit/workitems/$Bug"))
        .and(header("content-type", "application/json-patch+json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(work_item(
            42,
            "Mail is down",
            "Bug",
            CHANGED,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let ticket = host
        .runtime
        .create_ticket(
            &azure_devops(&host),
            &connection(&server),
            NewTicket {
                title: "  Mail is down ".into(),
                description: Some("<p>Since 09:00</p>".into()),
                kind: Some("bug".into()),
                priority: Some(Priority::P1),
                fields: Some(r#"{"System.Tags": "outage", "Custom.Impact": 3}"#.into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(ticket.id, "42");
    assert_eq!(ticket.kind.as_deref(), Some("Bug"));
    assert_eq!(ticket.state.as_deref(), Some("New"));

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(content_type(&sent[0]), "application/json-patch+json");
    assert_eq!(
        body(&sent[0]),
        json!([
            {"op": "add", "path": "/fields/System.Title", "value": "Mail is down"},
            {"op": "add", "path": "/fields/System.Description", "value": "<p>Since 09:00</p>"},
            {"op": "add", "path": "/fields/Microsoft.VSTS.Common.Priority", "value": 1},
            {"op": "add", "path": "/fields/Microsoft.VSTS.Common.Severity", "value": "1 - Critical"},
            {"op": "add", "path": "/fields/Custom.Impact", "value": 3},
            {"op": "add", "path": "/fields/System.Tags", "value": "outage"}
        ])
    );
    assert_api_version_everywhere(&server).await;
}

#[tokio::test]
async fn create_encodes_the_type_and_uses_the_default() {
    let host = host();
    let plugin = azure_devops(&host);
    for (kind, segment, priority) in [
        (Some("User Story"), "$User%20Story", Some(Priority::P4)),
        (None, "$Task", Some(Priority::P3)),
        (Some("Incident"), "$Incident", None),
        (Some("issue"), "$Issue", None),
    ] {
        let server = MockServer::start().await;
        api(
            "POST",
            &format!("{PROJECT_PATH}/_apis/wit/workitems/{segment}"),
        )
        .and(header("content-type", "application/json-patch+json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(work_item(
            43,
            "Ship it",
            kind.unwrap_or("Task"),
            CHANGED,
        )))
        .expect(1)
        .mount(&server)
        .await;
        let ticket = host
            .runtime
            .create_ticket(
                &plugin,
                &connection(&server),
                NewTicket {
                    kind: kind.map(str::to_string),
                    priority,
                    ..new_ticket("Ship it")
                },
            )
            .await
            .unwrap();
        assert_eq!(ticket.id, "43");
        let sent = requests(&server).await;
        let mut expected =
            vec![json!({"op": "add", "path": "/fields/System.Title", "value": "Ship it"})];
        if let Some(priority) = priority {
            let value = match priority {
                Priority::P1 => 1,
                Priority::P2 => 2,
                Priority::P3 => 3,
                Priority::P4 => 4,
            };
            // No severity: only Bugs have one.
            expected.push(json!({"op": "add", "path": "/fields/Microsoft.VSTS.Common.Priority", "value": value}));
        }
        assert_eq!(body(&sent[0]), Value::Array(expected), "{segment}");
    }
}

#[tokio::test]
async fn create_refuses_bad_input_before_sending() {
    let server = MockServer::start().await;
    let host = host();
    let plugin = azure_devops(&host);
    let conn = connection(&server);
    let create = |ticket: NewTicket| host.runtime.create_ticket(&plugin, &conn, ticket);

    let message = invalid_input(&create(new_ticket("   ")).await.unwrap_err());
    assert!(message.contains("title is empty"), "{message}");

    let huge = "x".repeat(100 * 1024);
    let message = invalid_input(&create(new_ticket(&huge)).await.unwrap_err());
    assert!(message.contains("255"), "{message}");
    assert!(message.contains("System.Title"), "{message}");

    let message = invalid_input(
        &create(NewTicket {
            kind: Some("Epic".into()),
            ..new_ticket("A goal")
        })
        .await
        .unwrap_err(),
    );
    for kind in ["Bug", "Task", "User Story", "Issue", "Incident"] {
        assert!(message.contains(kind), "{message}");
    }
    assert!(message.contains("Epic"), "{message}");

    let message = invalid_input(
        &create(NewTicket {
            fields: Some("[1, 2]".into()),
            ..new_ticket("A goal")
        })
        .await
        .unwrap_err(),
    );
    assert!(message.contains("JSON object"), "{message}");

    let message = invalid_input(
        &create(NewTicket {
            fields: Some(r#"{"System.Title": "other"}"#.into()),
            ..new_ticket("A goal")
        })
        .await
        .unwrap_err(),
    );
    assert!(message.contains("System.Title"), "{message}");

    assert!(requests(&server).await.is_empty());
    assert!(host.audit.records().is_empty());
}

#[tokio::test]
async fn create_maps_upstream_failures() {
    let host = host();
    let plugin = azure_devops(&host);
    let cases: Vec<(ResponseTemplate, PluginError)> = vec![
        (
            ado_error(
                400,
                "TF401320: Rule Error for field Area Path. Error code: Required, InvalidEmpty.",
                "Microsoft.TeamFoundation.WorkItemTracking.Server.RuleValidationException",
                "RuleValidationException",
            ),
            PluginError::InvalidInput(
                "HTTP 400: TF401320: Rule Error for field Area Path. Error code: Required, \
                 InvalidEmpty."
                    .into(),
            ),
        ),
        (
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({
                    "$id": "1",
                    "innerException": null,
                    "message": "TF400733: The request has been throttled.",
                    "typeName": "Microsoft.TeamFoundation.Framework.Server.RequestBlockedException",
                    "typeKey": "RequestBlockedException",
                    "errorCode": 0,
                    "eventId": 3000
                })),
            PluginError::RateLimited(RateLimit {
                retry_after_secs: Some(30),
                message: "HTTP 429: TF400733: The request has been throttled.".into(),
            }),
        ),
        (
            ado_error(
                409,
                "TF237082: The work item is being updated by another request.",
                "Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemConflictException",
                "WorkItemConflictException",
            ),
            PluginError::Conflict(
                "HTTP 409: TF237082: The work item is being updated by another request.".into(),
            ),
        ),
        (
            ResponseTemplate::new(401),
            PluginError::Unauthorized("HTTP 401".into()),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        api("POST", &format!("{PROJECT_PATH}/_apis/wit/workitems/$Task"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .create_ticket(&plugin, &connection(&server), new_ticket("Disk full"))
            .await
            .unwrap_err();
        assert_eq!(plugin_error(&err), &expected);
    }
}

// ---- get ------------------------------------------------------------------------

#[tokio::test]
async fn get_reads_one_work_item() {
    let server = MockServer::start().await;
    api("GET", "/fabrikam/_apis/wit/workitems/42")
        .respond_with(ResponseTemplate::new(200).set_body_json(work_item(
            42,
            "Mail is down",
            "User Story",
            CHANGED,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let ticket = host
        .runtime
        .get_ticket(&azure_devops(&host), &connection(&server), " 42 ".into())
        .await
        .unwrap();
    assert_eq!(ticket.id, "42");
    assert_eq!(ticket.title, "Mail is down");
    assert_eq!(ticket.kind.as_deref(), Some("User Story"));
    assert_eq!(
        ticket.description.as_deref(),
        Some("<div>Users on floor 3 cannot send mail.</div>")
    );
    assert_api_version_everywhere(&server).await;
}

#[tokio::test]
async fn get_of_a_missing_work_item_is_not_found() {
    let server = MockServer::start().await;
    api("GET", "/fabrikam/_apis/wit/workitems/999")
        .respond_with(ado_error(
            404,
            "TF401232: Work item 999 does not exist, or you do not have permissions to read it.",
            "Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemUnauthorizedAccessException",
            "WorkItemUnauthorizedAccessException",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let err = host
        .runtime
        .get_ticket(&azure_devops(&host), &connection(&server), "999".into())
        .await
        .unwrap_err();
    match plugin_error(&err) {
        PluginError::NotFound(message) => {
            assert!(message.contains("work item 999"), "{message}");
            assert!(message.contains("TF401232"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn get_refuses_non_numeric_ids_and_maps_malformed_answers() {
    let server = MockServer::start().await;
    let host = host();
    let plugin = azure_devops(&host);
    for bad in ["abc", "42/../../_apis/projects", "1 OR 1=1", "", "-3"] {
        let err = host
            .runtime
            .get_ticket(&plugin, &connection(&server), bad.into())
            .await
            .unwrap_err();
        assert!(invalid_input(&err).contains("not a work item id"), "{bad}");
    }
    assert!(requests(&server).await.is_empty());

    api("GET", "/fabrikam/_apis/wit/workitems/5")
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .get_ticket(&plugin, &connection(&server), "5".into())
        .await
        .unwrap_err();
    assert!(
        matches!(
            plugin_error(&err),
            PluginError::Upstream(UpstreamFailure { status: 200, .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn get_from_a_slow_service_times_out() {
    let server = MockServer::start().await;
    api("GET", "/fabrikam/_apis/wit/workitems/42")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(work_item(42, "Slow", "Task", CHANGED))
                .set_delay(Duration::from_secs(10)),
        )
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
        .get_ticket(&azure_devops(&host), &connection(&server), "42".into())
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::Timeout(_)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- update ---------------------------------------------------------------------

#[tokio::test]
async fn update_sends_json_patch_operations() {
    let server = MockServer::start().await;
    let mut answer = work_item(42, "Mail is down for everyone", "Bug", CHANGED);
    answer["fields"]["System.State"] = json!("Active");
    answer["rev"] = json!(4);
    api("PATCH", "/fabrikam/_apis/wit/workitems/42")
        .and(header("content-type", "application/json-patch+json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let ticket = host
        .runtime
        .update_ticket(
            &azure_devops(&host),
            &connection(&server),
            TicketUpdate {
                title: Some("Mail is down for everyone".into()),
                description: Some("<p>All floors</p>".into()),
                state: Some("Active".into()),
                priority: Some(Priority::P1),
                fields: Some(r#"{"System.AssignedTo": "ada@fabrikam.example"}"#.into()),
                ..update("42")
            },
        )
        .await
        .unwrap();
    assert_eq!(ticket.state.as_deref(), Some("Active"));
    assert_eq!(ticket.title, "Mail is down for everyone");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(content_type(&sent[0]), "application/json-patch+json");
    assert_eq!(
        body(&sent[0]),
        json!([
            {"op": "replace", "path": "/fields/System.Title", "value": "Mail is down for everyone"},
            {"op": "add", "path": "/fields/System.Description", "value": "<p>All floors</p>"},
            {"op": "replace", "path": "/fields/System.State", "value": "Active"},
            {"op": "add", "path": "/fields/Microsoft.VSTS.Common.Priority", "value": 1},
            {"op": "add", "path": "/fields/System.AssignedTo", "value": "ada@fabrikam.example"}
        ])
    );
    assert_api_version_everywhere(&server).await;
}

#[tokio::test]
async fn update_failures_are_typed() {
    let host = host();
    let plugin = azure_devops(&host);

    // Nothing to change, bad ids and bad titles: refused, nothing sent.
    let server = MockServer::start().await;
    let conn = connection(&server);
    let message = invalid_input(
        &host
            .runtime
            .update_ticket(&plugin, &conn, update("42"))
            .await
            .unwrap_err(),
    );
    assert!(message.contains("changes nothing"), "{message}");
    let message = invalid_input(
        &host
            .runtime
            .update_ticket(
                &plugin,
                &conn,
                TicketUpdate {
                    state: Some("Closed".into()),
                    ..update("WI-42")
                },
            )
            .await
            .unwrap_err(),
    );
    assert!(message.contains("not a work item id"), "{message}");
    let message = invalid_input(
        &host
            .runtime
            .update_ticket(
                &plugin,
                &conn,
                TicketUpdate {
                    title: Some("y".repeat(256)),
                    ..update("42")
                },
            )
            .await
            .unwrap_err(),
    );
    assert!(message.contains("255"), "{message}");
    assert!(requests(&server).await.is_empty());

    let cases: Vec<(ResponseTemplate, PluginError)> = vec![
        (
            ado_error(
                409,
                "TF26071: This work item has been changed by someone else since you opened it.",
                "Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemRevisionMismatchException",
                "WorkItemRevisionMismatchException",
            ),
            PluginError::Conflict(
                "HTTP 409: TF26071: This work item has been changed by someone else since you \
                 opened it."
                    .into(),
            ),
        ),
        (
            ado_error(
                404,
                "TF401232: Work item 42 does not exist, or you do not have permissions to read it.",
                "Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemUnauthorizedAccessException",
                "WorkItemUnauthorizedAccessException",
            ),
            PluginError::NotFound(
                "work item 42 not found: HTTP 404: TF401232: Work item 42 does not exist, or you \
                 do not have permissions to read it."
                    .into(),
            ),
        ),
        (
            ado_error(
                400,
                "TF401320: Rule Error for field State. Error code: InvalidListValue.",
                "Microsoft.TeamFoundation.WorkItemTracking.Server.RuleValidationException",
                "RuleValidationException",
            ),
            PluginError::InvalidInput(
                "HTTP 400: TF401320: Rule Error for field State. Error code: InvalidListValue."
                    .into(),
            ),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        api("PATCH", "/fabrikam/_apis/wit/workitems/42")
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .update_ticket(
                &plugin,
                &connection(&server),
                TicketUpdate {
                    state: Some("Bogus".into()),
                    ..update("42")
                },
            )
            .await
            .unwrap_err();
        assert_eq!(plugin_error(&err), &expected);
    }
}

// ---- sync -------------------------------------------------------------------------

fn sync_request(cursor: Option<String>, page_size: u32) -> SyncRequest {
    SyncRequest { cursor, page_size }
}

/// The sync WIQL from `since`, after the work item `(since, last)` when
/// `after` gives the next millisecond and `last`.
fn sync_wiql(since: Option<&str>, after: Option<(&str, u64)>) -> Value {
    let mut condition = since
        .map(|s| format!(" AND [System.ChangedDate] >= '{s}'"))
        .unwrap_or_default();
    if let Some((next_ms, last)) = after {
        condition.push_str(&format!(
            " AND ([System.ChangedDate] >= '{next_ms}' OR [System.Id] > {last})"
        ));
    }
    json!({
        "query": format!(
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project{condition} \
             ORDER BY [System.ChangedDate] ASC, [System.Id] ASC"
        )
    })
}

#[tokio::test]
async fn sync_reads_everything_over_two_pages_then_only_changes() {
    let t1 = "2026-11-20T10:15:00.123Z";
    let t2 = "2026-11-20T10:16:00Z";
    let t3 = "2026-11-20T10:17:30.5Z";
    let t4 = "2026-11-21T08:00:00.001Z";
    let t5 = "2026-11-21T09:00:00.25Z";
    let server = MockServer::start().await;
    let wiql_path = format!("{PROJECT_PATH}/_apis/wit/wiql");
    let batch_path = "/fabrikam/_apis/wit/workitems";

    // Full sync, page 1.
    api("POST", &wiql_path)
        .and(query_param("timePrecision", "true"))
        .and(query_param("$top", "2"))
        .and(body_json(sync_wiql(None, None)))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[1, 2])))
        .expect(1)
        .mount(&server)
        .await;
    api("GET", batch_path)
        .and(query_param("ids", "1,2"))
        .and(query_param("asOf", "2026-11-20T10:20:00.45Z"))
        .respond_with(batch(vec![
            work_item(1, "One", "Task", t1),
            work_item(2, "Two", "Bug", t2),
        ]))
        .expect(1)
        .mount(&server)
        .await;
    // Page 2: after work item 2 (changed at t2).
    api("POST", &wiql_path)
        .and(query_param("timePrecision", "true"))
        .and(query_param("$top", "2"))
        .and(body_json(sync_wiql(
            Some("2026-11-20T10:16:00.000Z"),
            Some(("2026-11-20T10:16:00.001Z", 2)),
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[3])))
        .expect(1)
        .mount(&server)
        .await;
    api("GET", batch_path)
        .and(query_param("ids", "3"))
        .respond_with(batch(vec![work_item(3, "Three", "Issue", t3)]))
        .expect(1)
        .mount(&server)
        .await;
    // Delta: the newest millisecond again (3, unchanged), 4 is new, 2
    // changed again.
    api("POST", &wiql_path)
        .and(query_param("timePrecision", "true"))
        .and(query_param("$top", "10"))
        .and(body_json(sync_wiql(Some("2026-11-20T10:17:30.500Z"), None)))
        .respond_with(ResponseTemplate::new(200).set_body_json(wiql_answer(&[3, 4, 2])))
        .expect(1)
        .mount(&server)
        .await;
    api("GET", batch_path)
        .and(query_param("ids", "3,4,2"))
        .respond_with(batch(vec![
            work_item(3, "Three", "Issue", t3),
            work_item(4, "Four", "Incident", t4),
            work_item(2, "Two, reopened", "Bug", t5),
        ]))
        .expect(1)
        .mount(&server)
        .await;

    let host = host();
    let plugin = azure_devops(&host);
    let conn = connection(&server);
    let ids = |page: &airlock::runtime::types::SyncPage| {
        page.records
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    };

    let page1 = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(None, 2))
        .await
        .unwrap();
    assert_eq!(ids(&page1), ["1", "2"]);
    assert!(page1.has_more);
    assert_eq!(page1.records[0].kind, "work-item");
    assert_eq!(page1.records[0].updated_at.as_deref(), Some(t1));
    let data: Value = serde_json::from_str(&page1.records[1].data).unwrap();
    assert_eq!(data["fields"]["System.Title"], "Two");
    assert_eq!(data["id"], 2);

    let page2 = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(page1.next_cursor.clone(), 2))
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["3"]);
    assert!(!page2.has_more);

    let delta = host
        .runtime
        .fetch_page(&plugin, &conn, sync_request(page2.next_cursor.clone(), 10))
        .await
        .unwrap();
    assert_eq!(ids(&delta), ["3", "4", "2"]);
    assert!(!delta.has_more);
    assert_eq!(delta.records[2].updated_at.as_deref(), Some(t5));
    assert!(delta.next_cursor.is_some());
    assert_api_version_everywhere(&server).await;
}

#[tokio::test]
async fn sync_failures_are_typed() {
    let host = host();
    let plugin = azure_devops(&host);

    let server = MockServer::start().await;
    let err = host
        .runtime
        .fetch_page(
            &plugin,
            &connection(&server),
            sync_request(Some("not-a-cursor!".into()), 10),
        )
        .await
        .unwrap_err();
    assert!(invalid_input(&err).contains("cursor"));
    assert!(requests(&server).await.is_empty());

    api("POST", &format!("{PROJECT_PATH}/_apis/wit/wiql"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "60")
                .set_body_json(json!({
                    "$id": "1",
                    "innerException": null,
                    "message": "TF400733: The request has been throttled.",
                    "typeName": "Microsoft.TeamFoundation.Framework.Server.RequestBlockedException",
                    "typeKey": "RequestBlockedException",
                    "errorCode": 0,
                    "eventId": 3000
                })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .fetch_page(&plugin, &connection(&server), sync_request(None, 10))
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::RateLimited(RateLimit {
            retry_after_secs: Some(60),
            message: "HTTP 429: TF400733: The request has been throttled.".into(),
        })
    );
}
