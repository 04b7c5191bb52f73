//! The Confluence plugin (plugins/confluence) end to end: the real component
//! in the real host, against a wiremock server on loopback shaped like the
//! Confluence REST API (v1). Each test checks what went over the wire
//! (method, path for Cloud `/wiki/rest/api` or Data Center `/rest/api`, the
//! decoded and raw query, content type, the injected Basic credential, the
//! exact JSON body) and how the answer maps.

use std::sync::Arc;

use airlock::credential::{Credential, StaticCredential};
use airlock::runtime::types::{
    BodyFormat, NewPage, PageBody, PageQuery, PageUpdate, PluginError, RateLimit, SyncRequest,
    UpstreamFailure,
};
use airlock::{Connection, Plugin};
use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::*;

const EMAIL: &str = "ada@acme.example";
const CLOUD: &str = "/wiki/rest/api";
const DC: &str = "/rest/api";

fn confluence(host: &Host) -> Arc<Plugin> {
    host.plugin("confluence")
}

/// Email + API token (the canary) as HTTP Basic.
fn connection_with(server: &MockServer, deployment: &str, settings: &[(&str, &str)]) -> Connection {
    let mut conn = Connection::new("confluence-1", "confluence-test")
        .with_setting("base-url", server.uri())
        .with_setting("deployment", deployment);
    for (name, value) in settings {
        conn = conn.with_setting(*name, *value);
    }
    conn.with_credential(
        http::header::AUTHORIZATION,
        StaticCredential::new(Credential::Basic {
            username: EMAIL.to_string(),
            password: CANARY.to_string().into(),
        }),
    )
    .unwrap()
}

fn cloud(server: &MockServer) -> Connection {
    connection_with(server, "cloud", &[])
}

fn data_center(server: &MockServer) -> Connection {
    connection_with(server, "data-center", &[])
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{CANARY}"))
    )
}

/// A mock for `verb path` requiring the injected credential.
fn api(verb: &str, at: &str) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(at))
        .and(header("authorization", basic().as_str()))
}

fn confluence_error(status: u16, message: &str, reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "statusCode": status,
        "data": {
            "authorized": status != 401 && status != 403,
            "valid": true,
            "allowedInReadOnlyMode": true,
            "errors": [],
            "successful": false
        },
        "message": message,
        "reason": reason
    }))
}

fn malformed() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/html")
        .set_body_string("<html><body>Log in to continue to Confluence</body></html>")
}

fn content(id: &str, title: &str, space: &str, version: u32, when: &str) -> Value {
    json!({
        "id": id,
        "type": "page",
        "status": "current",
        "title": title,
        "space": {
            "id": 98306,
            "key": space,
            "name": "Engineering",
            "type": "global",
            "status": "current",
            "_links": {"webui": format!("/spaces/{space}"), "self": "https://acme.atlassian.net/wiki/rest/api/space/ENG"}
        },
        "version": {
            "by": {"type": "known", "accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ada Lovelace"},
            "when": when,
            "friendlyWhen": "just a moment ago",
            "number": version,
            "minorEdit": false
        },
        "ancestors": [
            {"id": "65537", "type": "page", "status": "current", "title": "Home"},
            {"id": "65540", "type": "page", "status": "current", "title": "Runbooks"}
        ],
        "body": {
            "storage": {
                "value": format!("<p>Body of {title}</p>"),
                "representation": "storage",
                "embeddedContent": []
            }
        },
        "_links": {
            "webui": format!("/spaces/{space}/pages/{id}/{}", title.replace(' ', "+")),
            "edit": format!("/pages/resumedraft.action?draftId={id}"),
            "tinyui": "/x/AQAB",
            "self": format!("https://acme.atlassian.net/wiki/rest/api/content/{id}")
        },
        "_expandable": {"children": "", "descendants": "", "history": ""}
    })
}

fn paged(results: Vec<Value>, start: u32, limit: u32, next: Option<&str>) -> ResponseTemplate {
    let mut links = json!({
        "base": "https://acme.atlassian.net/wiki",
        "context": "/wiki",
        "self": "https://acme.atlassian.net/wiki/rest/api/space"
    });
    if let Some(next) = next {
        links["next"] = json!(next);
    }
    ResponseTemplate::new(200).set_body_json(json!({
        "results": results,
        "start": start,
        "limit": limit,
        "size": results.len(),
        "_links": links
    }))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn content_type(request: &Request) -> &str {
    request
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn invalid_input(err: &airlock::CallError) -> String {
    match plugin_error(err) {
        PluginError::InvalidInput(message) => message.clone(),
        other => panic!("expected invalid-input, got {other:?}"),
    }
}

fn conflict(err: &airlock::CallError) -> String {
    match plugin_error(err) {
        PluginError::Conflict(message) => message.clone(),
        other => panic!("expected conflict, got {other:?}"),
    }
}

fn assert_malformed(err: &airlock::CallError) {
    match plugin_error(err) {
        PluginError::Upstream(UpstreamFailure { status, message }) => {
            assert_eq!(*status, 200);
            assert!(message.contains("malformed JSON"), "{message}");
        }
        other => panic!("expected upstream malformed JSON, got {other:?}"),
    }
}

// ---- test-connection -------------------------------------------------------------

fn current_user() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "type": "known",
        "accountId": "5b10ac8d82e05b22cc7d4ef5",
        "accountType": "atlassian",
        "email": EMAIL,
        "publicName": "Ada",
        "displayName": "Ada Lovelace",
        "isExternalCollaborator": false,
        "_links": {"base": "https://acme.atlassian.net/wiki", "context": "/wiki"}
    }))
}

#[tokio::test]
async fn test_connection_on_cloud_reads_the_current_user() {
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/user/current"))
        .and(header("accept", "application/json"))
        .respond_with(current_user())
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let report = host
        .runtime
        .test_connection(&confluence(&host), &cloud(&server))
        .await
        .unwrap();
    assert_eq!(report.account.as_deref(), Some("Ada Lovelace"));
    assert!(
        report.message.contains("Ada Lovelace"),
        "{}",
        report.message
    );
    assert!(report.details.contains(&(
        "account-id".to_string(),
        "5b10ac8d82e05b22cc7d4ef5".to_string()
    )));
    assert!(
        report
            .details
            .contains(&("api".to_string(), format!("{}{CLOUD}", server.uri())))
    );
}

#[tokio::test]
async fn test_connection_on_data_center_uses_the_rest_api_root() {
    let server = MockServer::start().await;
    api("GET", &format!("{DC}/user/current"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "known",
            "username": "ada",
            "userKey": "8a7f808a7c2b1d2f017c2b1e5bd00000",
            "displayName": "Ada Lovelace (DC)",
            "_links": {"base": "https://confluence.acme.example", "context": ""}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let report = host
        .runtime
        .test_connection(&confluence(&host), &data_center(&server))
        .await
        .unwrap();
    assert_eq!(report.account.as_deref(), Some("Ada Lovelace (DC)"));
    assert!(
        report
            .details
            .contains(&("deployment".to_string(), "data-center".to_string()))
    );
}

#[tokio::test]
async fn test_connection_failures_are_typed() {
    let host = host();
    let plugin = confluence(&host);

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/user/current"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "statusCode": 401,
            "message": "Client must be authenticated to access this resource."
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .test_connection(&plugin, &cloud(&server))
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::Unauthorized(
            "HTTP 401: Client must be authenticated to access this resource.".into()
        )
    );

    // Anonymous access is on and the credential was ignored.
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/user/current"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "anonymous",
            "displayName": "Anonymous"
        })))
        .mount(&server)
        .await;
    let err = host
        .runtime
        .test_connection(&plugin, &cloud(&server))
        .await
        .unwrap_err();
    assert!(matches!(plugin_error(&err), PluginError::Unauthorized(m) if m.contains("anonymous")));

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/user/current"))
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .test_connection(&plugin, &cloud(&server))
        .await
        .unwrap_err();
    assert_malformed(&err);

    // OAuth is Cloud only: refused before anything is sent.
    let server = MockServer::start().await;
    let err = host
        .runtime
        .test_connection(
            &plugin,
            &connection_with(&server, "data-center", &[("auth-mode", "oauth")]),
        )
        .await
        .unwrap_err();
    assert!(invalid_input(&err).contains("auth-mode"));
    assert!(requests(&server).await.is_empty());
}

// ---- list-spaces -----------------------------------------------------------------

fn space(key: &str, name: &str, id: u64) -> Value {
    json!({
        "id": id,
        "key": key,
        "name": name,
        "type": "global",
        "status": "current",
        "_links": {"webui": format!("/spaces/{key}"), "self": format!("https://acme.atlassian.net/wiki/rest/api/space/{key}")},
        "_expandable": {"homepage": "/rest/api/content/65537"}
    })
}

#[tokio::test]
async fn list_spaces_follows_links_next_up_to_the_limit() {
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/space"))
        .and(query_param("limit", "3"))
        .and(query_param("start", "0"))
        .respond_with(paged(
            vec![
                space("ENG", "Engineering", 1),
                space("OPS", "Operations", 2),
            ],
            0,
            2,
            Some("/rest/api/space?limit=2&start=2"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    api("GET", &format!("{CLOUD}/space"))
        .and(query_param("limit", "2"))
        .and(query_param("start", "2"))
        .respond_with(paged(
            vec![space("HR", "People", 3), space("~ada", "Ada Lovelace", 4)],
            2,
            2,
            Some("/rest/api/space?limit=2&start=4"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let spaces = host
        .runtime
        .list_spaces(&confluence(&host), &cloud(&server), 3)
        .await
        .unwrap();
    let keys: Vec<&str> = spaces.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["ENG", "OPS", "HR"]);
    assert_eq!(spaces[0].name, "Engineering");
    assert_eq!(spaces[0].id.as_deref(), Some("1"));
    assert_eq!(spaces[0].kind.as_deref(), Some("global"));
    assert_eq!(
        spaces[0].url.as_deref(),
        Some(format!("{}/wiki/spaces/ENG", server.uri()).as_str())
    );
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn list_spaces_on_data_center_and_failures() {
    let host = host();
    let plugin = confluence(&host);
    let server = MockServer::start().await;
    api("GET", &format!("{DC}/space"))
        .and(query_param("limit", "25"))
        .respond_with(paged(vec![space("ENG", "Engineering", 1)], 0, 25, None))
        .expect(1)
        .mount(&server)
        .await;
    let spaces = host
        .runtime
        .list_spaces(&plugin, &data_center(&server), 0)
        .await
        .unwrap();
    assert_eq!(spaces.len(), 1);
    assert_eq!(
        spaces[0].url.as_deref(),
        Some(format!("{}/spaces/ENG", server.uri()).as_str())
    );

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/space"))
        .respond_with(confluence_error(
            403,
            "User not permitted to view spaces",
            "Forbidden",
        ))
        .mount(&server)
        .await;
    let err = host
        .runtime
        .list_spaces(&plugin, &cloud(&server), 10)
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::Forbidden("HTTP 403: User not permitted to view spaces".into())
    );

    // A next link to another origin is not followed.
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/space"))
        .respond_with(paged(
            vec![space("ENG", "Engineering", 1)],
            0,
            1,
            Some("https://evil.example/rest/api/space?start=1"),
        ))
        .mount(&server)
        .await;
    let err = host
        .runtime
        .list_spaces(&plugin, &cloud(&server), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::Upstream(f) if f.message.contains("evil.example"))
    );
}

// ---- search-pages ----------------------------------------------------------------

#[tokio::test]
async fn search_quotes_text_and_a_unicode_space_key_and_paginates() {
    let server = MockServer::start().await;
    let cql = r#"type=page AND text ~ "say \"hi\" \\o/" AND space = "Équipe Ops""#;
    api("GET", &format!("{CLOUD}/content/search"))
        .and(query_param("cql", cql))
        .and(query_param("limit", "3"))
        .and(query_param("start", "0"))
        .and(query_param("expand", "space,version"))
        .respond_with(paged(
            vec![
                content(
                    "65601",
                    "Runbook",
                    "Équipe Ops",
                    4,
                    "2026-11-20T10:15:00.123Z",
                ),
                content(
                    "65602",
                    "Postmortem",
                    "Équipe Ops",
                    1,
                    "2026-11-20T10:16:00.000Z",
                ),
            ],
            0,
            2,
            Some("/rest/api/content/search?next=true&cursor=_f_Mg%3D%3D&limit=2&start=2&cql=x"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    api("GET", &format!("{CLOUD}/content/search"))
        .and(query_param("cursor", "_f_Mg=="))
        .and(query_param("start", "2"))
        .respond_with(paged(
            vec![content(
                "65603",
                "Third",
                "Équipe Ops",
                2,
                "2026-11-20T10:17:00.000Z",
            )],
            2,
            2,
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let hits = host
        .runtime
        .search_pages(
            &confluence(&host),
            &cloud(&server),
            PageQuery {
                cql: None,
                text: Some(r#"say "hi" \o/"#.into()),
                space_key: Some(" Équipe Ops ".into()),
                limit: 3,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["65601", "65602", "65603"]);
    assert_eq!(hits[0].title, "Runbook");
    assert_eq!(hits[0].space_key.as_deref(), Some("Équipe Ops"));
    assert_eq!(hits[0].version, Some(4));
    assert_eq!(
        hits[0].url.as_deref(),
        Some(
            format!(
                "{}/wiki/spaces/Équipe Ops/pages/65601/Runbook",
                server.uri()
            )
            .as_str()
        )
    );
    // On the wire: UTF-8 percent-encoded, spaces as %20, quotes as %22.
    let first = &requests(&server).await[0];
    let query = first.url.query().unwrap();
    assert!(
        query.contains("space%20%3D%20%22%C3%89quipe%20Ops%22"),
        "{query}"
    );
    assert!(!query.contains('+') && !query.contains(' '), "{query}");
}

#[tokio::test]
async fn search_with_raw_cql_on_data_center_and_failures() {
    let host = host();
    let plugin = confluence(&host);
    let cql = "type=page AND label = \"incident\" ORDER BY created DESC";
    let query = |cql: Option<&str>, space: Option<&str>| PageQuery {
        cql: cql.map(str::to_string),
        text: None,
        space_key: space.map(str::to_string),
        limit: 0,
    };

    let server = MockServer::start().await;
    api("GET", &format!("{DC}/content/search"))
        .and(query_param("cql", cql))
        .and(query_param("limit", "25"))
        .respond_with(paged(
            vec![content("1", "Only", "ENG", 1, "2026-11-20T10:15:00.000Z")],
            0,
            25,
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let hits = host
        .runtime
        .search_pages(&plugin, &data_center(&server), query(Some(cql), None))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/search"))
        .respond_with(confluence_error(
            400,
            "Could not parse cql : type=page AND",
            "Bad Request",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .search_pages(&plugin, &cloud(&server), query(Some("type=page AND"), None))
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::InvalidInput("HTTP 400: Could not parse cql : type=page AND".into())
    );

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/search"))
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .search_pages(&plugin, &cloud(&server), query(None, None))
        .await
        .unwrap_err();
    assert_malformed(&err);

    // CQL and a space key together: refused, nothing sent.
    let server = MockServer::start().await;
    let err = host
        .runtime
        .search_pages(&plugin, &cloud(&server), query(Some(cql), Some("ENG")))
        .await
        .unwrap_err();
    assert!(invalid_input(&err).contains("not both"));
    assert!(requests(&server).await.is_empty());
}

// ---- get-page --------------------------------------------------------------------

#[tokio::test]
async fn get_page_reads_body_version_space_and_parent() {
    for (conn_of, root) in [
        (cloud as fn(&MockServer) -> Connection, CLOUD),
        (data_center, DC),
    ] {
        let server = MockServer::start().await;
        api("GET", &format!("{root}/content/65601"))
            .and(query_param(
                "expand",
                "body.storage,version,space,ancestors",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(content(
                "65601",
                "Runbook",
                "ENG",
                7,
                "2026-11-20T10:15:00.123Z",
            )))
            .expect(1)
            .mount(&server)
            .await;
        let host = host();
        let page = host
            .runtime
            .get_page(&confluence(&host), &conn_of(&server), "65601".into())
            .await
            .unwrap();
        assert_eq!(page.id, "65601");
        assert_eq!(page.title, "Runbook");
        assert_eq!(page.version, 7);
        assert_eq!(page.space_key.as_deref(), Some("ENG"));
        assert_eq!(page.parent_id.as_deref(), Some("65540"));
        assert_eq!(page.body, "<p>Body of Runbook</p>");
    }
}

#[tokio::test]
async fn get_page_failures_are_typed() {
    let host = host();
    let plugin = confluence(&host);

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/999"))
        .respond_with(confluence_error(
            404,
            "No content found with id: 999",
            "Not Found",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .get_page(&plugin, &cloud(&server), "999".into())
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::NotFound("HTTP 404: No content found with id: 999".into())
    );

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/5"))
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .get_page(&plugin, &cloud(&server), "5".into())
        .await
        .unwrap_err();
    assert_malformed(&err);

    // Not numeric: refused, nothing sent.
    let server = MockServer::start().await;
    for bad in ["abc", "12/../13", "1 OR 1=1", ""] {
        let err = host
            .runtime
            .get_page(&plugin, &cloud(&server), bad.into())
            .await
            .unwrap_err();
        assert!(invalid_input(&err).contains("digits only"), "{bad}");
    }
    assert!(requests(&server).await.is_empty());
}

// ---- publish-page ----------------------------------------------------------------

fn new_page(space: &str, title: &str, body: PageBody, parent: Option<&str>) -> NewPage {
    NewPage {
        space_key: space.to_string(),
        title: title.to_string(),
        body,
        parent_id: parent.map(str::to_string),
    }
}

fn markdown(text: &str) -> PageBody {
    PageBody {
        format: BodyFormat::Markdown,
        content: text.to_string(),
    }
}

fn storage(text: &str) -> PageBody {
    PageBody {
        format: BodyFormat::Storage,
        content: text.to_string(),
    }
}

#[tokio::test]
async fn publish_converts_markdown_escapes_html_and_sets_the_parent() {
    let md = "# Runbook\n\nRestart <script>alert(1)</script> **now**.\n\n\
              ```rust\nfn main() {}\n```\n\n- one\n- [docs](https://example.com)";
    let storage_body = "<h1>Runbook</h1><p>Restart &lt;script&gt;alert(1)&lt;/script&gt; \
         <strong>now</strong>.</p><ac:structured-macro ac:name=\"code\"><ac:parameter \
         ac:name=\"language\">rust</ac:parameter><ac:plain-text-body><![CDATA[fn main() {}]]>\
         </ac:plain-text-body></ac:structured-macro><ul><li>one</li><li><a \
         href=\"https://example.com\">docs</a></li></ul>";
    let server = MockServer::start().await;
    let mut answer = content(
        "65700",
        "Runbook",
        "Équipe Ops",
        1,
        "2026-11-20T10:15:00.000Z",
    );
    answer["body"]["storage"]["value"] = json!(storage_body);
    api("POST", &format!("{CLOUD}/content"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "type": "page",
            "title": "Runbook",
            "space": {"key": "Équipe Ops"},
            "ancestors": [{"id": "65540"}],
            "body": {"storage": {"value": storage_body, "representation": "storage"}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let page = host
        .runtime
        .publish_page(
            &confluence(&host),
            &cloud(&server),
            new_page(" Équipe Ops", " Runbook ", markdown(md), Some("65540")),
        )
        .await
        .unwrap();
    assert_eq!(page.id, "65700");
    assert_eq!(page.version, 1);
    assert_eq!(page.body, storage_body);
    let sent = &requests(&server).await[0];
    assert_eq!(content_type(sent), "application/json");
    let text = String::from_utf8_lossy(&sent.body);
    assert!(!text.contains("<script>"), "{text}");
}

#[tokio::test]
async fn publish_storage_without_parent_on_data_center() {
    let server = MockServer::start().await;
    let mut answer = content("65701", "Plain", "ENG", 1, "2026-11-20T10:15:00.000Z");
    answer.as_object_mut().unwrap().remove("body");
    api("POST", &format!("{DC}/content"))
        .and(body_json(json!({
            "type": "page",
            "title": "Plain",
            "space": {"key": "ENG"},
            "body": {"storage": {"value": "<p>as <b>is</b></p>", "representation": "storage"}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let page = host
        .runtime
        .publish_page(
            &confluence(&host),
            &data_center(&server),
            new_page("ENG", "Plain", storage("<p>as <b>is</b></p>"), None),
        )
        .await
        .unwrap();
    // The answer had no body: the one sent stands in.
    assert_eq!(page.body, "<p>as <b>is</b></p>");
}

#[tokio::test]
async fn publish_refuses_bad_input_before_sending() {
    let host = host();
    let plugin = confluence(&host);
    let server = MockServer::start().await;
    let cases = [
        (new_page("ENG", "  ", storage("x"), None), "empty"),
        (
            new_page("ENG", &"x".repeat(100 * 1024), storage("x"), None),
            "255",
        ),
        (new_page(" ", "T", storage("x"), None), "space key"),
        (new_page("ENG", "T", storage("x"), Some("home")), "parent"),
    ];
    for (page, needle) in cases {
        let err = host
            .runtime
            .publish_page(&plugin, &cloud(&server), page)
            .await
            .unwrap_err();
        let message = invalid_input(&err);
        assert!(message.contains(needle), "{message}");
    }
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn publish_maps_upstream_failures() {
    let host = host();
    let plugin = confluence(&host);
    let cases: Vec<(ResponseTemplate, PluginError)> = vec![
        (
            confluence_error(
                400,
                "A page with this title already exists: A page already exists with the title Runbook in this space",
                "Bad Request",
            ),
            PluginError::InvalidInput(
                "HTTP 400: A page with this title already exists: A page already exists with the \
                 title Runbook in this space"
                    .into(),
            ),
        ),
        (
            confluence_error(401, "Client must be authenticated", "Unauthorized"),
            PluginError::Unauthorized("HTTP 401: Client must be authenticated".into()),
        ),
        (
            confluence_error(403, "Could not create content with type page", "Forbidden"),
            PluginError::Forbidden("HTTP 403: Could not create content with type page".into()),
        ),
        (
            confluence_error(404, "No space with key : NOPE", "Not Found"),
            PluginError::NotFound("HTTP 404: No space with key : NOPE".into()),
        ),
        (
            confluence_error(429, "Rate limit exceeded", "Too Many Requests")
                .insert_header("retry-after", "120"),
            PluginError::RateLimited(RateLimit {
                retry_after_secs: Some(120),
                message: "HTTP 429: Rate limit exceeded".into(),
            }),
        ),
        (
            confluence_error(
                500,
                "java.lang.NullPointerException",
                "Internal Server Error",
            ),
            PluginError::Upstream(UpstreamFailure {
                status: 500,
                message: "HTTP 500: java.lang.NullPointerException".into(),
            }),
        ),
        (
            malformed(),
            PluginError::Upstream(UpstreamFailure {
                status: 0,
                message: String::new(),
            }),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        api("POST", &format!("{CLOUD}/content"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .publish_page(
                &plugin,
                &cloud(&server),
                new_page("ENG", "Runbook", storage("<p>x</p>"), None),
            )
            .await
            .unwrap_err();
        match &expected {
            PluginError::Upstream(UpstreamFailure { status: 0, .. }) => assert_malformed(&err),
            expected => assert_eq!(plugin_error(&err), expected),
        }
    }
}

// ---- update-page -----------------------------------------------------------------

fn page_update(id: &str, title: Option<&str>, version: Option<u32>, body: PageBody) -> PageUpdate {
    PageUpdate {
        id: id.to_string(),
        title: title.map(str::to_string),
        body,
        version,
    }
}

#[tokio::test]
async fn update_reads_the_version_and_puts_the_next_one() {
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/65601"))
        .and(query_param("expand", "version"))
        .respond_with(ResponseTemplate::new(200).set_body_json(content(
            "65601",
            "Runbook",
            "ENG",
            4,
            "2026-11-20T10:15:00.000Z",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let mut answer = content("65601", "Runbook", "ENG", 5, "2026-11-20T10:20:00.000Z");
    answer["body"]["storage"]["value"] = json!("<p>new &amp; <em>better</em></p>");
    api("PUT", &format!("{CLOUD}/content/65601"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "id": "65601",
            "type": "page",
            "title": "Runbook",
            "version": {"number": 5},
            "body": {"storage": {"value": "<p>new &amp; <em>better</em></p>", "representation": "storage"}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let page = host
        .runtime
        .update_page(
            &confluence(&host),
            &cloud(&server),
            page_update("65601", None, None, markdown("new & *better*")),
        )
        .await
        .unwrap();
    assert_eq!(page.version, 5);
    assert_eq!(page.body, "<p>new &amp; <em>better</em></p>");
}

#[tokio::test]
async fn update_with_version_and_title_puts_directly_on_data_center() {
    let server = MockServer::start().await;
    api("PUT", &format!("{DC}/content/65601"))
        .and(body_json(json!({
            "id": "65601",
            "type": "page",
            "title": "Runbook v2",
            "version": {"number": 8},
            "body": {"storage": {"value": "<p>x</p>", "representation": "storage"}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(content(
            "65601",
            "Runbook v2",
            "ENG",
            8,
            "2026-11-20T10:20:00.000Z",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let host = host();
    let page = host
        .runtime
        .update_page(
            &confluence(&host),
            &data_center(&server),
            page_update("65601", Some("Runbook v2"), Some(7), storage("<p>x</p>")),
        )
        .await
        .unwrap();
    assert_eq!(page.version, 8);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn update_conflicts_name_both_versions() {
    let host = host();
    let plugin = confluence(&host);

    // A stale version given, the title kept: the read shows version 7.
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/65601"))
        .respond_with(ResponseTemplate::new(200).set_body_json(content(
            "65601",
            "Runbook",
            "ENG",
            7,
            "2026-11-20T10:15:00.000Z",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .update_page(
            &plugin,
            &cloud(&server),
            page_update("65601", None, Some(5), storage("<p>x</p>")),
        )
        .await
        .unwrap_err();
    let message = conflict(&err);
    assert!(
        message.contains("version 7") && message.contains("version 5"),
        "{message}"
    );
    assert_eq!(
        requests(&server).await.len(),
        1,
        "no PUT after a stale read"
    );

    // Someone saved in between: HTTP 409 from the PUT.
    let server = MockServer::start().await;
    api("PUT", &format!("{CLOUD}/content/65601"))
        .respond_with(confluence_error(
            409,
            "Version must be incremented on update. Current version is: 9",
            "Conflict",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .update_page(
            &plugin,
            &cloud(&server),
            page_update("65601", Some("Runbook"), Some(7), storage("<p>x</p>")),
        )
        .await
        .unwrap_err();
    let message = conflict(&err);
    assert!(
        message.contains("version 7") && message.contains("version 8"),
        "{message}"
    );
    assert!(message.contains("Current version is: 9"), "{message}");
}

#[tokio::test]
async fn update_failures_are_typed() {
    let host = host();
    let plugin = confluence(&host);
    let put_cases: Vec<(ResponseTemplate, PluginError)> = vec![
        (
            confluence_error(
                400,
                "Cannot update a page with an empty body",
                "Bad Request",
            ),
            PluginError::InvalidInput("HTTP 400: Cannot update a page with an empty body".into()),
        ),
        (
            confluence_error(401, "Client must be authenticated", "Unauthorized"),
            PluginError::Unauthorized("HTTP 401: Client must be authenticated".into()),
        ),
        (
            confluence_error(403, "Not permitted to edit content 65601", "Forbidden"),
            PluginError::Forbidden("HTTP 403: Not permitted to edit content 65601".into()),
        ),
        (
            confluence_error(429, "Rate limit exceeded", "Too Many Requests")
                .insert_header("retry-after", "90"),
            PluginError::RateLimited(RateLimit {
                retry_after_secs: Some(90),
                message: "HTTP 429: Rate limit exceeded".into(),
            }),
        ),
        (
            confluence_error(500, "Internal error", "Internal Server Error"),
            PluginError::Upstream(UpstreamFailure {
                status: 500,
                message: "HTTP 500: Internal error".into(),
            }),
        ),
    ];
    for (answer, expected) in put_cases {
        let server = MockServer::start().await;
        api("PUT", &format!("{CLOUD}/content/65601"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = host
            .runtime
            .update_page(
                &plugin,
                &cloud(&server),
                page_update("65601", Some("T"), Some(1), storage("<p>x</p>")),
            )
            .await
            .unwrap_err();
        assert_eq!(plugin_error(&err), &expected);
    }

    // The page to update does not exist: the version read says so.
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/999"))
        .respond_with(confluence_error(
            404,
            "No content found with id: 999",
            "Not Found",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .update_page(
            &plugin,
            &cloud(&server),
            page_update("999", None, None, storage("x")),
        )
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::NotFound("HTTP 404: No content found with id: 999".into())
    );

    // A malformed answer to the PUT.
    let server = MockServer::start().await;
    api("PUT", &format!("{CLOUD}/content/65601"))
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .update_page(
            &plugin,
            &cloud(&server),
            page_update("65601", Some("T"), Some(1), storage("<p>x</p>")),
        )
        .await
        .unwrap_err();
    assert_malformed(&err);

    // Bad input: nothing sent.
    let server = MockServer::start().await;
    for (update, needle) in [
        (
            page_update("abc", Some("T"), Some(1), storage("x")),
            "digits only",
        ),
        (
            page_update("65601", Some(" "), Some(1), storage("x")),
            "empty",
        ),
        (
            page_update("65601", Some(&"t".repeat(256)), Some(1), storage("x")),
            "255",
        ),
    ] {
        let err = host
            .runtime
            .update_page(&plugin, &cloud(&server), update)
            .await
            .unwrap_err();
        assert!(invalid_input(&err).contains(needle), "{needle}");
    }
    assert!(requests(&server).await.is_empty());
}

// ---- sync ------------------------------------------------------------------------

fn sync_cql(since: Option<&str>) -> String {
    let condition = since
        .map(|s| format!(" AND lastmodified >= \"{s}\""))
        .unwrap_or_default();
    format!("type=page AND space in (\"ENG\",\"Équipe\"){condition} ORDER BY lastmodified ASC")
}

#[tokio::test]
async fn sync_reads_everything_over_two_pages_then_only_changes() {
    let t1 = "2026-11-20T10:15:00.123Z";
    let t2 = "2026-11-20T10:16:10.000Z";
    let t2b = "2026-11-20T11:16:40.000+01:00"; // the same UTC minute as t2
    let t3 = "2026-11-20T10:17:30.500Z";
    let t4 = "2026-11-21T08:00:00.001Z";
    let server = MockServer::start().await;
    let search = format!("{CLOUD}/content/search");
    let expand = "version,space,ancestors,body.storage";

    // Full sync, page 1 (Confluence has more).
    api("GET", &search)
        .and(query_param("cql", sync_cql(None)))
        .and(query_param("limit", "2"))
        .and(query_param("start", "0"))
        .and(query_param("expand", expand))
        .respond_with(paged(
            vec![
                content("1", "One", "ENG", 1, t1),
                content("2", "Two", "ENG", 3, t2),
            ],
            0,
            2,
            Some("/rest/api/content/search?next=true&cursor=x&limit=2&start=2"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // Page 2: Confluence's next link (a Cloud cursor), followed as given.
    api("GET", &search)
        .and(query_param("cursor", "x"))
        .and(query_param("limit", "2"))
        .respond_with(paged(
            vec![
                content("5", "Five", "Équipe", 1, t2b),
                content("3", "Three", "Équipe", 2, t3),
            ],
            2,
            2,
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    // Delta: the newest minute again (3, unchanged), then 4, new.
    api("GET", &search)
        .and(query_param("cql", sync_cql(Some("2026-11-20 10:17"))))
        .and(query_param("limit", "10"))
        .and(query_param("start", "0"))
        .respond_with(paged(
            vec![
                content("3", "Three", "Équipe", 2, t3),
                content("4", "Four", "ENG", 1, t4),
            ],
            0,
            10,
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;

    let host = host();
    let plugin = confluence(&host);
    let conn = connection_with(&server, "cloud", &[("spaces", "ENG, Équipe")]);
    let ids = |page: &airlock::runtime::types::SyncPage| {
        page.records
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    };

    let page1 = host
        .runtime
        .fetch_page(
            &plugin,
            &conn,
            SyncRequest {
                cursor: None,
                page_size: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&page1), ["1", "2"]);
    assert!(page1.has_more);
    assert_eq!(page1.records[0].kind, "page");
    assert_eq!(page1.records[0].updated_at.as_deref(), Some(t1));
    let data: Value = serde_json::from_str(&page1.records[1].data).unwrap();
    assert_eq!(data["title"], "Two");
    assert_eq!(data["version"]["number"], 3);

    let page2 = host
        .runtime
        .fetch_page(
            &plugin,
            &conn,
            SyncRequest {
                cursor: page1.next_cursor.clone(),
                page_size: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["5", "3"]);

    let delta = host
        .runtime
        .fetch_page(
            &plugin,
            &conn,
            SyncRequest {
                cursor: page2.next_cursor.clone(),
                page_size: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&delta), ["3", "4"]);
    assert!(!delta.has_more);
    assert!(delta.next_cursor.is_some());
}

#[tokio::test]
async fn sync_failures_are_typed() {
    let host = host();
    let plugin = confluence(&host);

    let server = MockServer::start().await;
    let err = host
        .runtime
        .fetch_page(
            &plugin,
            &cloud(&server),
            SyncRequest {
                cursor: Some("not-a-cursor!".into()),
                page_size: 10,
            },
        )
        .await
        .unwrap_err();
    assert!(invalid_input(&err).contains("cursor"));
    assert!(requests(&server).await.is_empty());

    let server = MockServer::start().await;
    api("GET", &format!("{DC}/content/search"))
        .respond_with(confluence_error(
            401,
            "Client must be authenticated",
            "Unauthorized",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = host
        .runtime
        .fetch_page(
            &plugin,
            &data_center(&server),
            SyncRequest {
                cursor: None,
                page_size: 10,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        plugin_error(&err),
        &PluginError::Unauthorized("HTTP 401: Client must be authenticated".into())
    );

    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/search"))
        .respond_with(malformed())
        .mount(&server)
        .await;
    let err = host
        .runtime
        .fetch_page(
            &plugin,
            &cloud(&server),
            SyncRequest {
                cursor: None,
                page_size: 10,
            },
        )
        .await
        .unwrap_err();
    assert_malformed(&err);
}

#[tokio::test]
async fn get_page_from_a_slow_site_times_out() {
    let server = MockServer::start().await;
    api("GET", &format!("{CLOUD}/content/7"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(content("7", "Slow", "ENG", 1, "2026-11-20T10:15:00.000Z"))
                .set_delay(std::time::Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let host = host_with(
        airlock::AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        airlock::Limits {
            first_byte_timeout: std::time::Duration::from_millis(800),
            ..test_limits()
        },
    );
    let started = std::time::Instant::now();
    let err = host
        .runtime
        .get_page(&confluence(&host), &cloud(&server), "7".into())
        .await
        .unwrap_err();
    assert!(
        matches!(plugin_error(&err), PluginError::Timeout(_)),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// ---- Cloud over OAuth 2.0 (3LO) ----------------------------------------------------

const CLOUD_ID: &str = "1324a887-45db-1bf4-1e99-ef0ff456d421";
const ACCESS_TOKEN: &str = "atlassian-access-token-7f3c";

/// A Confluence OAuth connection whose site, OAuth server and API gateway
/// all stand in on `server`.
fn oauth_connection(name: &str, server: &MockServer) -> airlock::service::NewConnection {
    let uri = server.uri();
    airlock::service::NewConnection {
        name: name.into(),
        plugin_id: "confluence".into(),
        settings: [
            ("base-url", uri.as_str()),
            ("auth-mode", "oauth"),
            ("oauth-server", uri.as_str()),
            ("api-gateway", uri.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        auth: airlock::service::AuthInput::OAuth2 {
            client_id: Some("confluence-client".into()),
            client_secret: Some(secrecy::SecretString::from("confluence-client-secret")),
        },
        scope: airlock::service::Scope::Global,
    }
}

/// Atlassian's token endpoint: an authorization-code exchange.
async fn mount_token_endpoint(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(wiremock::matchers::body_string_contains(
            "grant_type=authorization_code",
        ))
        .and(wiremock::matchers::body_string_contains("code=the-code"))
        .and(wiremock::matchers::body_string_contains("code_verifier="))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS_TOKEN,
            "refresh_token": "atlassian-refresh-token",
            "expires_in": 3600,
            "token_type": "Bearer",
            "scope": "read:confluence-space.summary offline_access"
        })))
        .expect(1)
        .mount(server)
        .await;
}

/// `GET /oauth/token/accessible-resources` answering with these sites.
async fn mount_resources(server: &MockServer, sites: &[(&str, &str)], calls: u64) {
    let resources: Vec<Value> = sites
        .iter()
        .map(|(id, url)| {
            json!({
                "id": id,
                "url": url,
                "name": "acme",
                "scopes": ["read:confluence-space.summary"],
                "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/rocket.png"
            })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/oauth/token/accessible-resources"))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(resources))
        .expect(calls)
        .mount(server)
        .await;
}

/// Authorise `name`: start the flow, then deliver the provider's redirect.
async fn authorise(airlock: &airlock::Airlock, name: &str) {
    let start = airlock.oauth_start_on(name, 9).unwrap();
    let url = url::Url::parse(&start.authorization_url).unwrap();
    assert_eq!(url.path(), "/authorize");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["audience"], "api.atlassian.com");
    assert_eq!(q["client_id"], "confluence-client");
    assert!(q["scope"].contains("offline_access"), "{q:?}");
    airlock
        .oauth_callback(
            &format!("code=the-code&state={}", start.state),
            &start.redirect_uri,
        )
        .await
        .unwrap();
}

/// A service with the Confluence plugin and an authorised OAuth connection
/// `wiki` to `server`.
async fn authorised_service(dir: &std::path::Path, server: &MockServer) -> airlock::Airlock {
    let airlock = crate::service::open(dir);
    crate::service::install(&airlock, crate::openai::plugin_path("confluence"));
    airlock
        .add_connection(oauth_connection("wiki", server))
        .unwrap();
    authorise(&airlock, "wiki").await;
    airlock
}

#[tokio::test]
async fn cloud_over_oauth_discovers_the_cloud_id_once_and_calls_through_the_gateway() {
    let server = MockServer::start().await;
    mount_token_endpoint(&server).await;
    mount_resources(
        &server,
        &[
            (
                "0f0f0f0f-0000-4000-8000-000000000000",
                "https://other.atlassian.net",
            ),
            (CLOUD_ID, &server.uri()),
        ],
        1,
    )
    .await;
    let gateway_api = format!("/ex/confluence/{CLOUD_ID}/wiki/rest/api");
    Mock::given(method("GET"))
        .and(path(format!("{gateway_api}/space")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(paged(
            vec![
                space("ENG", "Engineering", 1),
                space("OPS", "Operations", 2),
            ],
            0,
            25,
            None,
        ))
        .expect(2)
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let airlock = authorised_service(dir.path(), &server).await;

    // Twice: the cloud id is discovered on the first call and then read
    // from the connection's state (accessible-resources expects 1 call).
    for _ in 0..2 {
        let spaces = airlock
            .call("wiki", "documents.list-spaces", json!({"limit": 10}), None)
            .await
            .unwrap();
        let keys: Vec<&str> = spaces
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["ENG", "OPS"]);
    }
    // The plugin never set Authorization itself: every gateway request
    // carried exactly the token the host obtained.
    for request in requests(&server).await {
        if request.url.path() != "/oauth/token" {
            assert_eq!(
                request.headers.get_all("authorization").iter().count(),
                1,
                "{}",
                request.url
            );
        }
    }
    assert!(airlock.verify_audit().unwrap().is_ok());
}

#[tokio::test]
async fn cloud_over_oauth_refuses_a_token_that_does_not_reach_the_site() {
    let server = MockServer::start().await;
    mount_token_endpoint(&server).await;
    mount_resources(&server, &[(CLOUD_ID, "https://other.atlassian.net")], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let airlock = authorised_service(dir.path(), &server).await;
    let err = airlock
        .call("wiki", "documents.list-spaces", json!({"limit": 10}), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not grant access"), "{err}");
    assert!(err.contains("https://other.atlassian.net"), "{err}");
    // Nothing but the discovery reached the gateway.
    let paths: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(paths, ["/oauth/token", "/oauth/token/accessible-resources"]);
}
