//! The operator console in a real browser: Debian's headless Chromium,
//! driven through ChromeDriver, against a real `airlock serve` (the
//! server's own code on loopback, a real data directory) and loopback
//! upstreams shaped like ServiceNow's Table API and OpenAI's streaming
//! chat. Each page's screenshot goes to `target/console-screenshots/<test>/`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use airlock::service::Role;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::{Api, Body};
use crate::browser::Browser;
use crate::common::with_manifest;
use crate::openai::{SSE_HEAD, api_key_connection, plugin_path};

const WAIT: Duration = Duration::from_secs(30);
const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";

/// The ServiceNow password the operator types; it must never come back.
const PASSWORD: &str = "console-canary-pw-7f3a9c";
/// The password it is replaced with.
const PASSWORD_2: &str = "console-canary-pw-second-41d2";
const USER: &str = "airlock.integration";

async fn sign_in(b: &Browser, api: &Api, token: &str) {
    b.goto(&api.url("/")).await;
    let input = b.wait_for("#signin input[name=token]", WAIT).await;
    input.send_keys(token).await;
    // The form submits from the keyboard.
    input.send_keys(ENTER).await;
    b.wait_for("#whoami", WAIT).await;
}

/// Pick `value` in the `<select>` at `css` and fire `change`, as choosing
/// it does.
async fn choose(b: &Browser, css: &str, value: &str) {
    let chosen = b
        .execute(
            "const s = document.querySelector(arguments[0]);
             if (!s) return null;
             s.value = arguments[1];
             s.dispatchEvent(new Event('change', { bubbles: true }));
             return s.value;",
            &[json!(css), json!(value)],
        )
        .await;
    assert_eq!(chosen, json!(value), "{css} has no option {value}");
}

async fn fill(b: &Browser, css: &str, text: &str) {
    let el = b.wait_for(css, WAIT).await;
    el.clear().await;
    el.send_keys(text).await;
}

/// Every form control on the page has a label.
async fn assert_labelled(b: &Browser) {
    let unlabelled = b
        .execute(
            "return [...document.querySelectorAll('main input, main select, main textarea')]
                .filter(e => !e.hidden && !(e.labels && e.labels.length))
                .map(e => e.outerHTML);",
            &[],
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

/// No dialog opened, no script ran that the policy blocked, and the page
/// fits the window's width.
async fn assert_clean(b: &Browser) {
    assert_eq!(b.alert_text().await, None, "a dialog opened");
    let state = b
        .execute(
            "return { violations: document.body.dataset.cspViolations || null,
                      overflow: document.documentElement.scrollWidth - window.innerWidth,
                      cookies: document.cookie };",
            &[],
        )
        .await;
    assert_eq!(state["violations"], Value::Null, "CSP violations: {state}");
    assert!(
        state["overflow"].as_i64().unwrap() <= 1,
        "wider than the window: {state}"
    );
    assert_eq!(state["cookies"], "", "the console sets no cookie");
}

async fn page_source(b: &Browser) -> String {
    b.execute("return document.documentElement.outerHTML;", &[])
        .await
        .as_str()
        .unwrap()
        .to_string()
}

fn basic() -> String {
    basic_with(PASSWORD)
}

fn basic_with(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"))
    )
}

/// A loopback server answering like ServiceNow's Table API for the
/// connection test and the creation of one incident.
async fn servicenow_mock() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(wiremock::matchers::header(
            "authorization",
            basic().as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": "6816f79cc0a8016401c5a33be04be441",
            "user_name": USER,
            "name": "Airlock Integration",
            "email": "airlock@acme.example"
        }]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .and(wiremock::matchers::header(
            "authorization",
            basic().as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": [{"sys_id": "9d385017c611228701d22104cc95c371"}]})),
        )
        .mount(&server)
        .await;
    // After the secret is replaced: the connection test with the new one.
    Mock::given(method("GET"))
        .and(wiremock::matchers::header(
            "authorization",
            basic_with(PASSWORD_2).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": "6816f79cc0a8016401c5a33be04be441",
            "user_name": USER,
            "name": "Airlock Integration"
        }]})))
        .mount(&server)
        .await;
    // Whatever credential: the test checks which one arrived.
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"result": {
            "sys_id": "9d385017c611228701d22104cc95c371",
            "number": "INC0010042",
            "short_description": "VPN down on floor 3",
            "description": "Since 09:00",
            "urgency": "1",
            "impact": "1",
            "priority": "1",
            "state": "1",
            "active": "true",
            "sys_created_on": "2026-12-05 09:00:00",
            "sys_updated_on": "2026-12-05 09:00:00"
        }})))
        .mount(&server)
        .await;
    server
}

/// The connection id the page shows (`#/connections/<id>`).
async fn connection_id_from_url(b: &Browser) -> String {
    let url = b.current_url().await;
    url.rsplit("#/connections/")
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_installs_servicenow_connects_it_and_files_a_ticket_in_the_browser() {
    const TEST: &str = "admin_servicenow";
    let api = Api::start().await;
    let admin = api.token("console-admin", Role::Admin, None);
    let upstream = servicenow_mock().await;
    let b = Browser::start(1280, 900).await;

    // Sign in.
    b.goto(&api.url("/")).await;
    b.wait_for("#signin", WAIT).await;
    assert_labelled(&b).await;
    b.shot(TEST, "01-sign-in").await;
    sign_in(&b, &api, &admin).await;
    assert!(
        b.find("#whoami").await.text().await.contains("admin"),
        "the role is shown"
    );

    // Upload servicenow.wasm and read what it asks for.
    b.goto(&api.url("/#/plugins")).await;
    let file = b.wait_for("#upload-file", WAIT).await;
    let wasm = Path::new(plugin_path("servicenow")).canonicalize().unwrap();
    file.send_keys(wasm.to_str().unwrap()).await;
    b.find("#upload").await.click().await;
    let pending = b.wait_for("#pending", WAIT).await;
    let review = pending.text().await;
    for needle in [
        "ServiceNow",
        "basic, bearer, oauth2",
        "base-url",
        "Nothing else.",
        "{base-url}/oauth_token.do",
    ] {
        assert!(
            review.contains(needle),
            "the review lacks {needle}: {review}"
        );
    }
    let added = b.find_all("#diff li.added").await;
    assert!(
        !added.is_empty(),
        "a new plugin's capabilities are additions"
    );
    assert!(
        added[0].text().await.contains("servicenow"),
        "{}",
        added[0].text().await
    );
    let sha = b.find("#pending code.sha").await.text().await;
    assert_eq!(sha.len(), 64, "the hash approved is shown whole: {sha}");
    assert_clean(&b).await;
    b.shot(TEST, "02-plugin-review").await;
    b.find("#approve").await.click().await;
    b.wait_for("#installed", WAIT).await;
    let installed = api.airlock.list_plugins().unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].sha256, sha, "exactly the reviewed file");

    // Create a connection through the form generated from the manifest.
    b.goto(&api.url("/#/connections/new")).await;
    b.wait_for("#connection-form", WAIT).await;
    choose(&b, "select[name=plugin]", "servicenow").await;
    b.wait_for("[data-setting=base-url]", WAIT).await;
    fill(&b, "#connection-form input[name=name]", "sn").await;
    fill(&b, "[data-setting=base-url]", &upstream.uri()).await;
    let table_default = b.find("[data-setting=table]").await.prop("value").await;
    assert_eq!(table_default, json!("incident"), "defaults are prefilled");
    choose(&b, "select[name=auth-kind]", "basic").await;
    fill(&b, "input[name=username]", USER).await;
    // A wrong password: the connection test fails and nothing is saved.
    fill(&b, "input[name=password]", "not-the-password").await;
    b.find("#create-connection").await.click().await;
    let refused = b.wait_for("#flash .msg.error", WAIT).await.text().await;
    assert!(refused.contains("connection_test_failed"), "{refused}");
    assert!(api.airlock.connection("sn").is_err(), "nothing saved");
    fill(&b, "input[name=password]", PASSWORD).await;
    assert_eq!(
        b.find("input[name=password]").await.attr("type").await,
        Some("password".into())
    );
    assert_labelled(&b).await;
    b.shot(TEST, "03-new-connection").await;
    b.find("#create-connection").await.click().await;
    b.wait_for_text("#connection-title", "sn", WAIT).await;
    let id = connection_id_from_url(&b).await;
    assert_eq!(api.airlock.connection("sn").unwrap().id, id);

    // Test it and read the report.
    b.find("#test-connection").await.click().await;
    b.wait_for_text("#test-report", "Airlock Integration", WAIT)
        .await;
    assert!(
        b.find("#test-report").await.text().await.contains(USER),
        "the account is shown"
    );
    b.shot(TEST, "04-connection").await;

    // Replace the secret: the next test goes out with the new one.
    b.find("#replace-secret").await.click().await;
    b.wait_for("#secret-form", WAIT).await;
    assert_labelled(&b).await;
    fill(&b, "#secret-form input[name=username]", USER).await;
    fill(&b, "#secret-form input[name=password]", PASSWORD_2).await;
    b.find("#secret-form button[type=submit]")
        .await
        .click()
        .await;
    b.wait_for_text("#flash .msg.ok", "Replaced", WAIT).await;
    let before = upstream.received_requests().await.unwrap().len();
    b.find("#test-connection").await.click().await;
    b.wait_for_text("#test-report", "Airlock Integration", WAIT)
        .await;
    let sent = upstream.received_requests().await.unwrap();
    assert!(sent.len() > before, "tested again");
    assert_eq!(
        sent.last().unwrap().headers["authorization"]
            .to_str()
            .unwrap(),
        basic_with(PASSWORD_2),
        "the replaced credential went out"
    );

    // File a ticket through the operation form.
    b.goto(&api.url(&format!("/#/operations?connection={id}")))
        .await;
    b.wait_for("#operation-pick", WAIT).await;
    choose(&b, "#operation-pick", "tickets.create").await;
    fill(&b, "[data-field=title]", "VPN down on floor 3").await;
    fill(&b, "[data-field=description]", "Since 09:00").await;
    choose(&b, "select[data-field=priority]", "p1").await;
    fill(&b, "[data-field=fields]", "{\"category\": \"network\"}").await;
    assert_labelled(&b).await;
    b.find("#run").await.click().await;
    let result = b
        .wait_for_text("#result-json", "INC0010042", WAIT)
        .await
        .text()
        .await;
    let answer: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(answer["number"], "INC0010042");
    assert_eq!(answer["priority"], "p1");
    b.shot(TEST, "05-operation").await;
    let sent = upstream.received_requests().await.unwrap();
    let post = sent
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .expect("the ticket was created upstream");
    assert_eq!(
        post.headers.get("authorization").unwrap().to_str().unwrap(),
        basic_with(PASSWORD_2),
        "the host injected the (replaced) credential"
    );
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["short_description"], "VPN down on floor 3");
    assert_eq!(body["category"], "network");

    // The audit log shows the requests; a row's detail; the chain verifies.
    b.goto(&api.url("/#/audit")).await;
    b.wait_for("#audit-rows tr[data-seq]", WAIT).await;
    let rows = b.find("#audit-rows").await.text().await;
    assert!(
        rows.contains("POST") && rows.contains("/api/now/table/incident"),
        "{rows}"
    );
    assert_eq!(
        b.find_all("#audit-rows tr[data-seq]").await.len(),
        sent.len(),
        "one row per request upstream received"
    );
    // Filters: none denied for this connection; its allowed rows are there.
    choose(&b, "#audit-form select[name=connection]", &id).await;
    choose(&b, "#audit-form select[name=decision]", "denied").await;
    b.find("#audit-filter").await.click().await;
    b.wait_for_text("#audit-rows", "No recorded request matches.", WAIT)
        .await;
    choose(&b, "#audit-form select[name=decision]", "allowed").await;
    b.find("#audit-filter").await.click().await;
    b.wait_for("#audit-rows tr[data-seq]", WAIT).await;
    b.find("#audit-rows tr[data-seq]").await.click().await;
    let detail = b.wait_for("#audit-row", WAIT).await.text().await;
    assert!(detail.contains("Credential added\nyes"), "{detail}");
    b.find("#verify-chain").await.click().await;
    let verified = b
        .wait_for_text("#verify-result", "The chain verifies", WAIT)
        .await
        .text()
        .await;
    let head = b.find("#head-hash").await.text().await;
    assert_eq!(head.len(), 64, "the head hash is shown: {verified}");
    assert_clean(&b).await;
    b.shot(TEST, "06-audit").await;

    // The secret never came back to the browser.
    let source = page_source(&b).await;
    assert!(!source.contains(PASSWORD));
    b.goto(&api.url(&format!("/#/connections/{id}"))).await;
    b.wait_for("#connection-title", WAIT).await;
    let source = page_source(&b).await;
    assert!(!source.contains(PASSWORD) && !source.contains(PASSWORD_2));

    // A phone-sized window: the same pages fit.
    b.set_window_size(390, 844).await;
    b.goto(&api.url("/#/connections")).await;
    b.wait_for("tr[data-connection=sn]", WAIT).await;
    assert_clean(&b).await;
    b.shot(TEST, "07-connections-390px").await;
    b.goto(&api.url("/#/audit")).await;
    b.wait_for("#audit-rows tr[data-seq]", WAIT).await;
    assert_clean(&b).await;
    b.shot(TEST, "08-audit-390px").await;
    for (page, ready, name) in [
        ("/#/plugins/servicenow", "#installed", "09-plugin-390px"),
        (
            &format!("/#/connections/{id}")[..],
            "#test-connection",
            "10-connection-390px",
        ),
        (
            &format!("/#/operations?connection={id}")[..],
            "#operation-form",
            "11-operation-390px",
        ),
        (
            &format!("/#/sync?connection={id}")[..],
            "#runs table",
            "12-sync-390px",
        ),
        ("/#/chat", "#connection-pick", "13-chat-390px"),
        ("/#/tokens", "#token-form", "14-tokens-390px"),
    ] {
        b.goto(&api.url(page)).await;
        b.wait_for(ready, WAIT).await;
        assert_clean(&b).await;
        assert_labelled(&b).await;
        b.shot(TEST, name).await;
    }
}

/// A loopback server answering one OpenAI-style streamed completion: the
/// first delta at once, the rest only when `release` fires. `sent_last`
/// turns true just before the last delta is written.
async fn gated_stream() -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<String>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let sent_last = Arc::new(AtomicBool::new(false));
    let flag = sent_last.clone();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = crate::common::read_http_request(&mut socket).await;
        let chunk = |content: &str| {
            format!(
                "data: {}\n\n",
                json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
            )
        };
        socket.write_all(SSE_HEAD.as_bytes()).await.unwrap();
        socket
            .write_all(chunk("First words arrive").as_bytes())
            .await
            .unwrap();
        socket.flush().await.unwrap();
        let _ = released.await;
        flag.store(true, Ordering::SeqCst);
        let rest = format!(
            "{}data: {}\n\ndata: [DONE]\n\n",
            chunk(", the rest follows."),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        );
        socket.write_all(rest.as_bytes()).await.unwrap();
        socket.shutdown().await.unwrap();
        request
    });
    (base, release, sent_last, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_into_the_page_before_the_answer_is_complete() {
    const TEST: &str = "chat_streaming";
    let api = Api::start().await;
    crate::service::install(&api.airlock, plugin_path("openai"));
    let (base, release, sent_last, upstream) = gated_stream().await;
    api.airlock
        .add_connection(api_key_connection(
            "gpt",
            "openai",
            &[("base-url", &base), ("model", "gpt-4o-mini")],
            "",
            "",
        ))
        .unwrap();
    let user = api.token("console-user", Role::User, None);
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &user).await;

    // A user token sees the pages it may use, and not the others.
    let nav = b.find("#nav").await.text().await;
    assert!(nav.contains("Chat") && nav.contains("Operations"), "{nav}");
    for hidden in ["Plugins", "Connections", "Tokens", "Audit"] {
        assert!(!nav.contains(hidden), "a user sees {hidden}: {nav}");
    }

    b.goto(&api.url("/#/chat")).await;
    let pick = b.wait_for("#connection-pick", WAIT).await;
    pick.send_keys("gpt").await;
    pick.send_keys(TAB).await;
    let message = b.wait_for("#chat-message", WAIT).await;
    assert_labelled(&b).await;
    message
        .send_keys("Summarise the outage for ada.lovelace@example.com")
        .await;
    b.find("#chat-send").await.click().await;

    // The first delta is on screen while the upstream still holds the rest.
    b.wait_for_text("#chat-streaming", "First words arrive", WAIT)
        .await;
    assert!(
        !sent_last.load(Ordering::SeqCst),
        "the last delta was not sent yet"
    );
    b.shot(TEST, "01-first-delta").await;
    release.send(()).unwrap();
    let done = b
        .wait_for("#chat-log .bubble.assistant[data-done=true]", WAIT)
        .await;
    assert_eq!(
        done.text().await,
        "First words arrive, the rest follows.",
        "deltas in order, nothing lost"
    );
    let info = b.find("#chat-info").await.text().await;
    assert!(info.contains("email 1"), "redaction counts shown: {info}");
    let request = upstream.await.unwrap();
    assert!(
        !request.contains("ada.lovelace@example.com") && request.contains("[EMAIL_1]"),
        "the address was redacted before it left: {request}"
    );

    // The conversation is listed; deleting it removes it.
    let item = b
        .wait_for("#conversations li[data-conversation]", WAIT)
        .await;
    assert!(item.text().await.contains("Summarise the outage"));
    assert_clean(&b).await;
    b.shot(TEST, "02-answer").await;
    // Reopened from the list: the stored turn, as the server kept it.
    b.find("#new-conversation").await.click().await;
    b.wait_until(
        "document.querySelectorAll('#chat-log .bubble').length === 0",
        WAIT,
    )
    .await;
    // The list is drawn again when the new conversation starts.
    b.click_fresh("#conversations li[data-conversation] a", WAIT)
        .await;
    b.wait_for_text(
        "#chat-log .bubble.assistant",
        "First words arrive, the rest follows.",
        WAIT,
    )
    .await;
    b.find("#delete-conversation").await.click().await;
    b.wait_for("[data-confirm=yes]", WAIT).await.click().await;
    b.wait_until(
        "document.querySelectorAll('#conversations li[data-conversation]').length === 0",
        WAIT,
    )
    .await;
    let left = api
        .send("GET", "/api/v1/conversations", Some(&user), Body::Empty)
        .await;
    assert_eq!(left.json(), json!([]), "deleted on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_no_upload_and_the_upload_route_refuses_it() {
    let api = Api::start().await;
    crate::service::install(&api.airlock, plugin_path("servicenow"));
    let operator = api.token("console-operator", Role::Operator, None);
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &operator).await;
    let nav = b.find("#nav").await.text().await;
    assert!(nav.contains("Plugins") && nav.contains("Audit"), "{nav}");
    assert!(
        !nav.contains("Tokens"),
        "an operator manages no tokens: {nav}"
    );
    b.goto(&api.url("/#/plugins")).await;
    b.wait_for("tr[data-plugin=servicenow]", WAIT).await;
    assert!(
        b.find_all("#upload-form, #upload-file").await.is_empty(),
        "no upload for an operator"
    );
    b.goto(&api.url("/#/plugins/servicenow")).await;
    b.wait_for("#installed", WAIT).await;
    assert!(b.find_all("#remove").await.is_empty(), "no remove either");
    b.shot("operator", "01-plugins").await;

    // The server refuses it whatever the page shows.
    let wasm = std::fs::read(plugin_path("servicenow")).unwrap();
    let refused = api
        .send(
            "POST",
            "/api/v1/plugins",
            Some(&operator),
            Body::Raw("application/wasm", wasm),
        )
        .await;
    refused.assert_error(403, "forbidden");
}

const HOSTILE_NAME: &str = "<script>alert('name')</script><img src=x onerror=alert('img')>";
const HOSTILE_DESCRIPTION: &str =
    "<img src=x onerror=\"window.__xss=1;alert(document.domain)\"> <b>not bold</b>";
const HOSTILE_ACCOUNT: &str = "<img src=y onerror=\"window.__xss=2;alert('upstream')\">";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_plugins_and_upstreams_shows_literally_and_runs_nothing() {
    let api = Api::start().await;
    let admin = api.token("console-admin", Role::Admin, None);
    let minimal = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let manifest = format!(
        r#"id = "hostile-text"
name = {name}
version = "0.1.0"
api-version = "0.1"
category = "connector"
description = {description}

[auth]
kinds = ["none", "bearer"]

[[egress]]
url = "https://api.example.com/v1/"
methods = ["GET"]
reason = {reason}
credential = ["bearer"]

[[settings]]
name = "base-url"
type = "url"
required = true
description = {description}
"#,
        name = toml_string(HOSTILE_NAME),
        description = toml_string(HOSTILE_DESCRIPTION),
        reason = toml_string("<script>alert('reason')</script>"),
    );
    let wasm = with_manifest(&minimal, &manifest);
    let uploaded = api
        .send(
            "POST",
            "/api/v1/plugins",
            Some(&admin),
            Body::Raw("application/wasm", wasm),
        )
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text());

    // An upstream whose answer carries markup too.
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"name": HOSTILE_ACCOUNT})))
        .mount(&upstream)
        .await;

    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &admin).await;
    b.goto(&api.url("/#/plugins")).await;
    b.wait_for("#main table", WAIT).await;
    b.goto(&api.url("/#/plugins/hostile-text")).await;
    b.wait_for("#pending .plugin-name", WAIT).await;
    assert_eq!(
        b.find("#plugin-title").await.text().await,
        HOSTILE_NAME,
        "the name shows literally"
    );
    assert_eq!(
        b.find("#pending .plugin-description").await.text().await,
        HOSTILE_DESCRIPTION
    );
    let grant = b.find("#pending tr.grant").await.text().await;
    assert!(
        grant.contains("<script>alert('reason')</script>") && grant.contains("bearer"),
        "the reason shows literally, and which origin receives the credential: {grant}"
    );
    b.find("#approve").await.click().await;
    b.wait_for("#installed", WAIT).await;

    // A connection whose test reports the upstream's hostile account name.
    b.goto(&api.url("/#/connections/new")).await;
    b.wait_for("#connection-form", WAIT).await;
    choose(&b, "select[name=plugin]", "hostile-text").await;
    b.wait_for("[data-setting=base-url]", WAIT).await;
    fill(&b, "#connection-form input[name=name]", "hostile").await;
    fill(&b, "[data-setting=base-url]", &upstream.uri()).await;
    choose(&b, "select[name=auth-kind]", "none").await;
    b.find("#create-connection").await.click().await;
    b.wait_for("#connection-title", WAIT).await;
    b.find("#test-connection").await.click().await;
    let report = b.wait_for("#test-report .panel", WAIT).await.text().await;
    assert!(report.contains(HOSTILE_ACCOUNT), "{report}");

    let state = b
        .execute(
            "return { xss: window.__xss || null,
                      images: document.querySelectorAll('img').length,
                      scripts: [...document.querySelectorAll('script')].map(s => s.src),
                      bold: document.querySelectorAll('main b').length };",
            &[],
        )
        .await;
    assert_eq!(
        state,
        json!({"xss": null, "images": 0, "scripts": [api.url("/console/app.js")], "bold": 0}),
        "no markup from the plugin or the upstream became elements"
    );
    assert_clean(&b).await;
    b.shot("hostile_text", "01-hostile-connection").await;

    // Pause, resume, delete (confirmed).
    b.find("#pause").await.click().await;
    b.wait_for("#resume", WAIT).await;
    assert_eq!(
        api.airlock.connection("hostile").unwrap().status,
        airlock::service::ConnectionStatus::Paused
    );
    b.find("#resume").await.click().await;
    b.wait_for("#pause", WAIT).await;
    b.find("#delete").await.click().await;
    b.wait_for("[data-confirm=yes]", WAIT).await.click().await;
    b.wait_for("a#new-connection", WAIT).await;
    assert!(api.airlock.connection("hostile").is_err(), "deleted");

    // A refused request (a private address no one allowed) stands out.
    let private = api
        .airlock
        .add_connection(airlock::service::NewConnection {
            name: "private".into(),
            plugin_id: "hostile-text".into(),
            settings: [("base-url".to_string(), "http://10.255.255.1".to_string())].into(),
            auth: airlock::service::AuthInput::None,
            scope: airlock::service::Scope::Global,
        })
        .unwrap();
    let denied = api
        .send(
            "POST",
            &format!("/api/v1/connections/{}/test", private.id),
            Some(&admin),
            Body::Empty,
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    b.goto(&api.url("/#/audit")).await;
    let row = b.wait_for("#audit-rows tr.denied", WAIT).await;
    assert!(row.text().await.contains("10.255.255.1"));
    let colours = b
        .execute(
            "const d = getComputedStyle(document.querySelector('#audit-rows tr.denied td')).backgroundColor;
             const a = document.querySelector('#audit-rows tr.allowed td');
             return [d, a ? getComputedStyle(a).backgroundColor : 'rgba(0, 0, 0, 0)'];",
            &[],
        )
        .await;
    assert_ne!(colours[0], colours[1], "denied rows stand out: {colours}");
    row.click().await;
    let detail = b.wait_for("#audit-row", WAIT).await.text().await;
    assert!(detail.contains("Reason"), "{detail}");
    b.shot("hostile_text", "02-denied-row").await;
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[tokio::test]
async fn every_console_answer_carries_the_security_headers() {
    let api = Api::start().await;
    for (route, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
        ("/console/no-such-file.js", "application/json"),
        ("/api/v1/me", "application/json"),
    ] {
        let resp = api.send("GET", route, None, Body::Empty).await;
        let header = |name: &str| {
            resp.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert!(
            header("content-type").starts_with(content_type),
            "{route}: {}",
            header("content-type")
        );
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{route}: {csp}");
        }
        assert_eq!(header("x-content-type-options"), "nosniff", "{route}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{route}");
        assert!(resp.headers.get("set-cookie").is_none(), "{route}");
        assert!(
            resp.headers.get("access-control-allow-origin").is_none(),
            "{route}"
        );
    }
    // The page and its files need no token; the API still does.
    assert_eq!(api.send("GET", "/", None, Body::Empty).await.status, 200);
    assert_eq!(
        api.send("GET", "/console/app.js", None, Body::Empty)
            .await
            .status,
        200
    );
    api.send("GET", "/console/no-such-file.js", None, Body::Empty)
        .await
        .assert_error(404, "not_found");
    api.send("GET", "/api/v1/me", None, Body::Empty)
        .await
        .assert_error(401, "unauthorized");
    // Only GET: the console's routes take nothing.
    let post = api.send("POST", "/", None, Body::Empty).await;
    assert!(matches!(post.status, 401 | 405), "{}", post.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_connect_goes_to_the_provider_and_back_to_the_console() {
    use airlock::service::{AuthInput, NewConnection, Scope};
    let idp = crate::idp::Idp::start();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": "6816f79cc0a8016401c5a33be04be441", "user_name": "alice", "name": "Alice"
        }]})))
        .mount(&upstream)
        .await;
    let api = Api::start().await;
    crate::service::install(&api.airlock, plugin_path("servicenow"));
    let record = api
        .airlock
        .add_connection(NewConnection {
            name: "snow-oauth".into(),
            plugin_id: "servicenow".into(),
            settings: [("base-url".to_string(), upstream.uri())].into(),
            auth: AuthInput::OAuth2 {
                client_id: Some("airlock-e2e".into()),
                client_secret: Some("CANARY-idp-client-secret".to_string().into()),
            },
            scope: Scope::Global,
        })
        .unwrap();
    let overrides = api
        .airlock
        .parse_oauth_endpoints(
            Some(&format!("{}/authorize", idp.url)),
            Some(&format!("{}/token", idp.url)),
            Some(&idp.issuer),
        )
        .unwrap();
    api.airlock
        .set_oauth_endpoints("snow-oauth", &overrides, "test")
        .await
        .unwrap();
    let admin = api.token("console-admin", Role::Admin, None);
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &admin).await;
    b.goto(&api.url(&format!("/#/connections/{}", record.id)))
        .await;
    b.wait_for("#oauth-connect", WAIT).await.click().await;

    // The provider sends the browser back to this server's callback page,
    // which links back to the console.
    let back = b.wait_for("a[href='/#/connections']", WAIT).await;
    let page = b.find("body").await.text().await;
    assert!(
        page.contains("snow-oauth") && page.contains("authorised"),
        "{page}"
    );
    assert!(
        b.current_url()
            .await
            .starts_with(&api.url("/api/v1/oauth/callback"))
    );
    back.click().await;

    // Still signed in (same tab), and the connection now works.
    b.wait_for("tr[data-connection=snow-oauth]", WAIT).await;
    b.goto(&api.url(&format!("/#/connections/{}", record.id)))
        .await;
    b.wait_for("#test-connection", WAIT).await.click().await;
    b.wait_for_text("#test-report", "alice", WAIT).await;
    let sent = upstream.received_requests().await.unwrap();
    assert!(
        sent.iter().all(|r| r
            .headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer "))),
        "the provider's token went upstream"
    );
    assert_clean(&b).await;
    b.shot("oauth_connect", "01-connected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_and_revoked_and_sync_pages_through_records() {
    const TEST: &str = "tokens_and_sync";
    let api = Api::start().await;
    crate::service::install(&api.airlock, plugin_path("servicenow"));
    // 120 incidents (more than one page of the console's list), one titled
    // with markup.
    let upstream = MockServer::start().await;
    let incidents: Vec<Value> = (0..120)
        .map(|i| {
            json!({
                "sys_id": format!("{i:032x}"),
                "number": format!("INC{:07}", 10_000 + i),
                "short_description": if i == 7 { HOSTILE_ACCOUNT.to_string() } else { format!("Incident {i}") },
                "description": "", "urgency": "3", "impact": "3", "priority": "5", "state": "1",
                "active": "true",
                "sys_created_on": "2026-12-01 09:00:00",
                "sys_updated_on": format!("2026-12-01 09:{:02}:{:02}", i / 60, i % 60)
            })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(Incidents(incidents))
        .mount(&upstream)
        .await;
    api.airlock
        .add_connection(airlock::service::NewConnection {
            name: "sn".into(),
            plugin_id: "servicenow".into(),
            settings: [("base-url".to_string(), upstream.uri())].into(),
            auth: airlock::service::AuthInput::Bearer {
                token: "CANARY-sync-token-0123456789".to_string().into(),
            },
            scope: airlock::service::Scope::Global,
        })
        .unwrap();
    let admin = api.token("console-admin", Role::Admin, None);
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &admin).await;

    // Settings: edited through the form generated from the schema; an
    // emptied setting is removed (its default applies again).
    let sn_id = api.airlock.connection("sn").unwrap().id;
    b.goto(&api.url(&format!("/#/connections/{sn_id}"))).await;
    b.wait_for("#edit-settings", WAIT).await.click().await;
    b.wait_for("#settings-form", WAIT).await;
    assert_labelled(&b).await;
    fill(&b, "#settings-form [data-setting=table]", "u_case").await;
    b.find("#settings-form button[type=submit]")
        .await
        .click()
        .await;
    b.wait_for_text("#flash .msg.ok", "Saved the settings", WAIT)
        .await;
    assert_eq!(
        api.airlock.connection("sn").unwrap().settings.get("table"),
        Some(&"u_case".to_string())
    );
    b.wait_for("#edit-settings", WAIT).await.click().await;
    b.wait_for("#settings-form", WAIT).await;
    b.find("#settings-form [data-setting=table]")
        .await
        .clear()
        .await;
    b.find("#settings-form button[type=submit]")
        .await
        .click()
        .await;
    b.wait_for_text("#flash .msg.ok", "Saved the settings", WAIT)
        .await;
    assert_eq!(
        api.airlock.connection("sn").unwrap().settings.get("table"),
        Some(&"incident".to_string()),
        "removed: the plugin's default applies again"
    );
    // A credential's origin cannot move: the server refuses, the page says so.
    b.wait_for("#edit-settings", WAIT).await.click().await;
    b.wait_for("#settings-form", WAIT).await;
    fill(
        &b,
        "#settings-form [data-setting=base-url]",
        "https://elsewhere.example.com",
    )
    .await;
    b.find("#settings-form button[type=submit]")
        .await
        .click()
        .await;
    let refused = b.wait_for("#flash .msg.error", WAIT).await.text().await;
    assert!(refused.contains("origin"), "{refused}");
    assert_eq!(
        api.airlock.connection("sn").unwrap().settings["base-url"],
        upstream.uri()
    );

    // Tokens: created and shown once; gone from the page on reload.
    b.goto(&api.url("/#/tokens")).await;
    b.wait_for("#token-form", WAIT).await;
    assert_labelled(&b).await;
    fill(&b, "#token-form input[name=name]", "ci-bot").await;
    choose(&b, "#token-form select[name=role]", "user").await;
    b.find("#create-token").await.click().await;
    let value = b.wait_for("#token-value", WAIT).await.text().await;
    assert!(value.len() >= 32, "{value}");
    let me = api
        .send("GET", "/api/v1/me", Some(&value), Body::Empty)
        .await;
    assert_eq!(me.json()["name"], "ci-bot", "the shown token works");
    b.shot(TEST, "01-token-created").await;
    b.goto(&api.url("/#/sync")).await;
    b.goto(&api.url("/#/tokens")).await;
    b.wait_for("tr[data-token=ci-bot]", WAIT).await;
    assert!(
        !page_source(&b).await.contains(&value),
        "the token is not shown again"
    );
    assert!(
        b.find_all("[data-revoke=console-admin]").await.is_empty(),
        "the token signed in offers no revoke"
    );
    b.find("[data-revoke=ci-bot]").await.click().await;
    b.wait_for("[data-confirm=yes]", WAIT).await.click().await;
    b.wait_for_text("tr[data-token=ci-bot]", "revoked", WAIT)
        .await;
    api.send("GET", "/api/v1/me", Some(&value), Body::Empty)
        .await
        .assert_error(401, "unauthorized");
    b.shot(TEST, "02-tokens").await;

    // Sync: a full run, its status, the records a page at a time.
    b.goto(&api.url("/#/sync")).await;
    b.wait_for("#connection-pick", WAIT).await;
    choose(
        &b,
        "#connection-pick",
        &api.airlock.connection("sn").unwrap().id,
    )
    .await;
    fill(&b, "input[name=page_size]", "40").await;
    b.wait_for("#sync-full", WAIT).await.click().await;
    b.wait_for_text("#runs", "succeeded", WAIT).await;
    b.wait_for("#records tr.record", WAIT).await;
    assert_eq!(b.find_all("#records tr.record").await.len(), 50, "one page");
    b.find("#records-next").await.click().await;
    b.wait_for_text("#records", "Records 51–100", WAIT).await;
    b.find("#records-next").await.click().await;
    b.wait_for_text("#records", "Records 101–120", WAIT).await;
    let titles = b.find("#records").await.text().await;
    assert!(titles.contains("Incident 119"), "{titles}");
    b.find("#records tr.record").await.click().await;
    b.wait_for("#record-detail pre", WAIT).await;
    // The hostile title is on the first page (records are listed by id).
    b.goto(&api.url("/#/audit")).await;
    b.goto(&api.url(&format!(
        "/#/sync?connection={}",
        api.airlock.connection("sn").unwrap().id
    )))
    .await;
    b.wait_for("#records tr.record", WAIT).await;
    let all = b.find("#records").await.text().await
        + &{
            b.find("#records-next").await.click().await;
            b.wait_for_text("#records", "Records 51", WAIT).await;
            b.find("#records").await.text().await
        };
    assert!(
        all.contains(HOSTILE_ACCOUNT),
        "the markup title shows as text"
    );
    assert_clean(&b).await;
    let images = b
        .execute("return document.querySelectorAll('img').length;", &[])
        .await;
    assert_eq!(images, json!(0));
    b.shot(TEST, "03-sync").await;
}

/// Incidents paged as the Table API pages them for the plugin's keyset
/// query (`sys_updated_on>=T^sys_updated_on>T^ORsys_id>ID`, ordered by
/// both), at most `sysparm_limit`; the rows are in that order already.
struct Incidents(Vec<Value>);

impl wiremock::Respond for Incidents {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let q: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        let limit = q
            .get("sysparm_limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let query = q.get("sysparm_query").cloned().unwrap_or_default();
        let operand = |prefix: &str| {
            query
                .split('^')
                .find_map(|t| t.trim_start_matches("OR").strip_prefix(prefix))
                .map(str::to_string)
        };
        let since = operand("sys_updated_on>=");
        let last = operand("sys_id>");
        let result: Vec<&Value> = self
            .0
            .iter()
            .filter(|r| {
                let updated = r["sys_updated_on"].as_str().unwrap();
                let id = r["sys_id"].as_str().unwrap();
                match (&since, &last) {
                    (Some(t), Some(l)) => {
                        updated >= t.as_str() && (updated > t.as_str() || id > l.as_str())
                    }
                    (Some(t), None) => updated >= t.as_str(),
                    _ => true,
                }
            })
            .take(limit)
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "result": result }))
    }
}

/// A manifest for the minimal guest's code under id `upgrade-demo`.
fn demo_manifest(version: &str, egress: &[(&str, &str)], kinds: &str) -> String {
    let mut m = format!(
        r#"id = "upgrade-demo"
name = "Upgrade demo"
version = "{version}"
api-version = "0.1"
category = "connector"
description = "The minimal guest under another name."

[auth]
kinds = {kinds}

[[settings]]
name = "base-url"
type = "url"
required = true
"#
    );
    for (url, credential) in egress {
        m.push_str(&format!(
            "\n[[egress]]\nurl = \"{url}\"\nmethods = [\"GET\"]\nreason = \"status\"\ncredential = {credential}\n"
        ));
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_shows_what_it_adds_and_removes_before_approval() {
    let api = Api::start().await;
    let admin = api.token("console-admin", Role::Admin, None);
    let minimal = std::fs::read(airlock_test_artifacts::MINIMAL).unwrap();
    let v1 = with_manifest(
        &minimal,
        &demo_manifest(
            "1.0.0",
            &[("https://status.example.com/", "[]")],
            r#"["bearer"]"#,
        ),
    );
    let plan = api.airlock.plan_install(v1).unwrap();
    api.airlock.install(&plan, true).unwrap();
    let v2 = with_manifest(
        &minimal,
        &demo_manifest(
            "2.0.0",
            &[("https://telemetry.example.net/v1/", r#"["bearer"]"#)],
            r#"["bearer", "basic"]"#,
        ),
    );
    let uploaded = api
        .send(
            "POST",
            "/api/v1/plugins",
            Some(&admin),
            Body::Raw("application/wasm", v2),
        )
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text());

    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &admin).await;
    b.goto(&api.url("/#/plugins")).await;
    b.wait_for("a[href='#/plugins/upgrade-demo']", WAIT).await;
    assert!(
        b.find("#main")
            .await
            .text()
            .await
            .contains("Waiting for approval"),
        "the pending upgrade is listed"
    );
    b.goto(&api.url("/#/plugins/upgrade-demo")).await;
    b.wait_for("#pending #diff", WAIT).await;
    let added: Vec<String> = {
        let mut v = Vec::new();
        for li in b.find_all("#diff li.added").await {
            v.push(li.text().await);
        }
        v
    };
    let removed: Vec<String> = {
        let mut v = Vec::new();
        for li in b.find_all("#diff li.removed").await {
            v.push(li.text().await);
        }
        v
    };
    assert!(
        added.iter().any(|t| t.contains("telemetry.example.net")),
        "the new destination is an addition: {added:?}"
    );
    assert!(
        removed.iter().any(|t| t.contains("status.example.com")),
        "the dropped destination is a removal: {removed:?}"
    );
    let diff = b.find("#diff").await.text().await;
    assert!(diff.contains("basic") && diff.contains("2.0.0"), "{diff}");
    // The installed version is shown beside it, unchanged until approval.
    let installed = b.find("#installed").await.text().await;
    assert!(installed.contains("1.0.0") && installed.contains("status.example.com"));
    assert_clean(&b).await;
    b.shot("upgrade", "01-capability-diff").await;
    b.find("#approve").await.click().await;
    b.wait_until(
        "!document.querySelector('#pending') && !!document.querySelector('#installed')",
        WAIT,
    )
    .await;
    assert_eq!(
        api.airlock.list_plugins().unwrap()[0].version,
        "2.0.0",
        "approved"
    );

    // Remove, confirmed.
    b.find("#remove").await.click().await;
    b.wait_for("[data-confirm=yes]", WAIT).await.click().await;
    b.wait_for_text("#main", "No plugin is installed.", WAIT)
        .await;
    assert!(api.airlock.list_plugins().unwrap().is_empty(), "removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_token_sees_its_pages_and_a_revoked_token_is_signed_out() {
    let api = Api::start().await;
    let scoped = api.token("console-team", Role::Operator, Some("team-a"));
    let b = Browser::start(1280, 900).await;
    sign_in(&b, &api, &scoped).await;
    let nav = b.find("#nav").await.text().await;
    assert!(
        nav.contains("Connections") && nav.contains("Audit"),
        "{nav}"
    );
    assert!(
        !nav.contains("Plugins"),
        "host-wide pages are hidden from a project token: {nav}"
    );
    assert!(b.find("#whoami").await.text().await.contains("team-a"));
    b.goto(&api.url("/#/audit")).await;
    b.wait_for("#audit-form", WAIT).await;
    assert!(
        b.find_all("#verify-chain").await.is_empty(),
        "verifying the whole chain needs an unrestricted token"
    );
    // Where the token lives: this tab's session storage, nowhere else.
    let storage = b
        .execute(
            "return { session: sessionStorage.getItem('airlock.token'),
                      local: localStorage.length, cookie: document.cookie };",
            &[],
        )
        .await;
    assert_eq!(
        storage,
        json!({"session": scoped, "local": 0, "cookie": ""}),
        "the token is in session storage only"
    );

    // Revoked while signed in: the next request signs the tab out.
    api.airlock.revoke_token("console-team").unwrap();
    b.goto(&api.url("/#/connections")).await;
    b.wait_for("#signin", WAIT).await;
    assert!(
        b.find("#signin").await.text().await.contains("revoked"),
        "says why"
    );
    let left = b
        .execute("return sessionStorage.getItem('airlock.token');", &[])
        .await;
    assert_eq!(left, Value::Null, "the refused token is forgotten");
    // Signing out forgets it too.
    let admin = api.token("console-admin", Role::Admin, None);
    sign_in(&b, &api, &admin).await;
    b.find("#sign-out").await.click().await;
    b.wait_for("#signin", WAIT).await;
    let left = b
        .execute("return sessionStorage.getItem('airlock.token');", &[])
        .await;
    assert_eq!(left, Value::Null);
}

/// Each script parses as a module (Node.js, which the suite needs for its
/// identity provider anyway): a syntax error is named here at once rather
/// than as a page that never signs in.
#[test]
fn every_console_script_parses_as_a_module() {
    use std::io::Write as _;
    let mut checked = 0;
    for name in airlock::server::console::asset_names().filter(|n| n.ends_with(".js")) {
        let mut node = std::process::Command::new("node")
            .args(["--input-type=module", "--check"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("node (installed by .ci/run with the distribution's nodejs)");
        node.stdin
            .take()
            .unwrap()
            .write_all(airlock::server::console::asset(name).unwrap().as_bytes())
            .unwrap();
        let out = node.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked} scripts");
}
