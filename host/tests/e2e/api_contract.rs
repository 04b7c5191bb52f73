//! The management API against its own OpenAPI document: every route's
//! success answer (and the errors met on the way) is checked against the
//! schema the served document gives for that route, status and media type,
//! with the document's `$ref`s resolved; and the conversation routes keep
//! each project's conversations to tokens of that project.

use std::collections::BTreeSet;

use airlock::service::Role;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::{Api, Body, Resp};
use crate::api_scenario::{SYS_ID, USER, servicenow, servicenow_wasm};
use crate::common::CANARY;
use crate::openai::{api_key_connection, completion, plugin_path};

/// The served document, and the routes whose success answers were checked.
struct Contract {
    doc: Value,
    succeeded: BTreeSet<(String, String)>,
}

/// The template of `doc` that `concrete` (without its query) matches.
fn template_of(doc: &Value, method: &str, concrete: &str) -> String {
    let concrete = concrete.split('?').next().unwrap();
    let segments: Vec<&str> = concrete.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| ops.get(method.to_lowercase()).is_some())
        .map(|(t, _)| t)
        .find(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .unwrap_or_else(|| panic!("{method} {concrete} is not in the document"))
        .clone()
}

/// A validator for `schema` whose `$ref`s point into `doc`'s components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root.as_object_mut()
        .expect("schemas are objects")
        .insert("components".into(), doc["components"].clone());
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

impl Contract {
    async fn fetch(api: &Api, token: &str) -> Self {
        let resp = api
            .send("GET", "/api/v1/openapi.json", Some(token), Body::Empty)
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let mut contract = Self {
            doc: resp.json(),
            succeeded: BTreeSet::new(),
        };
        contract.check("GET", "/api/v1/openapi.json", &resp);
        contract
    }

    /// `resp`, the answer to `method concrete`, is documented for its route
    /// with its status and media type, and a JSON body matches the schema.
    fn check(&mut self, method: &str, concrete: &str, resp: &Resp) {
        let template = template_of(&self.doc, method, concrete);
        let what = format!("{method} {concrete} answered {}", resp.status);
        let response = &self.doc["paths"][&template][method.to_lowercase()]["responses"]
            [resp.status.to_string()];
        assert!(response.is_object(), "{what}, which is not documented");
        if resp.status == 204 {
            assert!(resp.body.is_empty(), "{what} with a body");
        } else {
            let mime = resp.headers["content-type"].to_str().unwrap();
            let mime = mime.split(';').next().unwrap().trim();
            let media = &response["content"][mime];
            assert!(
                media.is_object(),
                "{what} as {mime}, which is not documented"
            );
            if mime == "application/json" {
                let body = resp.json();
                let v = validator(&self.doc, &media["schema"]);
                let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
                assert!(
                    errors.is_empty(),
                    "{what}: the body does not match {}: {errors:#?}\n{body:#}",
                    media["schema"]
                );
            }
        }
        if template.contains("/invoke/") && resp.status == 200 {
            self.check_operation(concrete, &resp.json());
        }
        if (200..300).contains(&resp.status) {
            self.succeeded
                .insert((method.to_string(), template.to_string()));
        }
    }

    /// An invoke answer matches its own operation's output schema, the
    /// component named after the interface and operation.
    fn check_operation(&self, concrete: &str, body: &Value) {
        let segments: Vec<&str> = concrete.split('?').next().unwrap().split('/').collect();
        let pascal: String = segments[6..8]
            .iter()
            .flat_map(|s| s.split('-'))
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        let name = format!("{pascal}Output");
        assert!(
            self.doc["components"]["schemas"][&name].is_object(),
            "no component {name}"
        );
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        let errors: Vec<String> = validator(&self.doc, &schema)
            .iter_errors(body)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{concrete}: not a {name}: {errors:#?}\n{body:#}"
        );
    }

    /// Send, check, and hand the answer back.
    async fn send(
        &mut self,
        api: &Api,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> Resp {
        self.send_with(api, method, path, token, body, &[]).await
    }

    async fn send_with(
        &mut self,
        api: &Api,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        let resp = api.send_with(method, path, token, body, headers).await;
        self.check(method, path, &resp);
        resp
    }

    /// Routes of the document whose success was never seen.
    fn unchecked(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (path, ops) in self.doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                let key = (method.to_uppercase(), path.clone());
                if !self.succeeded.contains(&key) {
                    all.push(key);
                }
            }
        }
        all
    }
}

/// An OpenAI-compatible completions endpoint answering `answer`.
async fn completions(answer: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(answer)))
        .mount(&server)
        .await;
    server
}

/// Install the openai plugin and add connection `gpt` to `server`.
fn add_gpt(api: &Api, server: &MockServer) {
    let plan = api
        .airlock
        .plan_install(std::fs::read(plugin_path("openai")).unwrap())
        .unwrap();
    api.airlock.install(&plan, true).unwrap();
    let base = format!("{}/v1", server.uri());
    api.airlock
        .add_connection(api_key_connection(
            "gpt",
            "openai",
            &[("base-url", &base), ("model", "gpt-4o-mini")],
            "Authorization",
            "Bearer ",
        ))
        .unwrap();
}

#[tokio::test]
async fn every_route_answers_as_the_served_document_says() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    let op = api.token("ops", Role::Operator, None);
    let user = api.token("user", Role::User, None);
    let (a, o, u) = (Some(admin.as_str()), Some(op.as_str()), Some(user.as_str()));
    let mut c = Contract::fetch(&api, &admin).await;
    assert_eq!(c.doc["servers"][0]["url"], format!("http://{}", api.addr));

    plugins(&api, &mut c, a).await;
    let sn = servicenow().await;
    connections(&api, &mut c, o, u, &sn).await;
    oauth(&api, &mut c, o).await;
    chat_and_conversations(&api, &mut c, u).await;

    let operations = c
        .send(
            &api,
            "GET",
            "/api/v1/connections/sn/operations",
            u,
            Body::Empty,
        )
        .await;
    assert_eq!(operations.status, 200, "{}", operations.text());
    tokens(&api, &mut c, a, u).await;
    trust(&api, &mut c, a, o).await;

    let listed = c
        .send(
            &api,
            "GET",
            "/api/v1/audit?connection=sn&decision=allowed&since=2020-01-01",
            o,
            Body::Empty,
        )
        .await;
    let newest = listed.json()[0]["seq"].as_i64().unwrap();
    c.send(
        &api,
        "GET",
        &format!("/api/v1/audit?before={newest}&limit=10"),
        o,
        Body::Empty,
    )
    .await;
    c.send(&api, "GET", "/api/v1/audit/verify", o, Body::Empty)
        .await;
    c.send(&api, "GET", "/metrics", o, Body::Empty).await;
    for conn in ["sn-oauth", "sn"] {
        let path = format!("/api/v1/connections/{conn}");
        let gone = c.send(&api, "DELETE", &path, o, Body::Empty).await;
        assert_eq!(gone.status, 204, "{}", gone.text());
    }
    let gone = c
        .send(&api, "DELETE", &path_of("servicenow"), a, Body::Empty)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
    // Errors are the documented shape too.
    let missing = c
        .send(&api, "GET", &path_of("servicenow"), a, Body::Empty)
        .await;
    missing.assert_error(404, "not_found");

    assert_eq!(
        c.unchecked(),
        Vec::<(String, String)>::new(),
        "routes never seen succeeding"
    );
}

/// The calling token, and a token created, listed and revoked.
async fn tokens(api: &Api, c: &mut Contract, a: Option<&str>, u: Option<&str>) {
    let me = c.send(api, "GET", "/api/v1/me", u, Body::Empty).await;
    assert_eq!(me.json()["name"], "user");
    let body = Body::Json(json!({ "name": "contract", "role": "user", "project": "web" }));
    let created = c.send(api, "POST", "/api/v1/tokens", a, body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    c.send(api, "GET", "/api/v1/tokens", a, Body::Empty).await;
    let revoked = c
        .send(api, "DELETE", "/api/v1/tokens/contract", a, Body::Empty)
        .await;
    assert_eq!(revoked.json()["revoked"], true);
}

/// The trust policy read, a key trusted and removed, signatures required
/// and no longer.
async fn trust(api: &Api, c: &mut Contract, a: Option<&str>, o: Option<&str>) {
    let key = json!({ "name": "contract", "key": crate::api::TRUSTED_KEY, "plugin": "minimal" });
    let added = c
        .send(api, "POST", "/api/v1/trust/keys", a, Body::Json(key))
        .await;
    assert_eq!(added.status, 201, "{}", added.text());
    for on in [true, false] {
        let body = Body::Json(json!({ "require_signature": on }));
        let set = c
            .send(api, "PUT", "/api/v1/trust/require-signature", a, body)
            .await;
        assert_eq!(set.json()["require_signature"], on);
    }
    let policy = c.send(api, "GET", "/api/v1/trust", o, Body::Empty).await;
    assert_eq!(policy.json()["keys"][0]["name"], "contract");
    let gone = c
        .send(api, "DELETE", "/api/v1/trust/keys/contract", a, Body::Empty)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
}

fn path_of(plugin: &str) -> String {
    format!("/api/v1/plugins/{plugin}")
}

async fn plugins(api: &Api, c: &mut Contract, a: Option<&str>) {
    let wasm = || Body::Raw("application/wasm", servicenow_wasm());
    let plan = c.send(api, "POST", "/api/v1/plugins", a, wasm()).await;
    assert_eq!(plan.status, 202, "{}", plan.text());
    let sha256 = plan.json()["sha256"].as_str().unwrap().to_string();
    let waiting = c
        .send(api, "GET", "/api/v1/plugins/pending", a, Body::Empty)
        .await;
    assert_eq!(waiting.json()[0]["sha256"], sha256.as_str());
    let pending = c
        .send(api, "GET", &path_of("servicenow"), a, Body::Empty)
        .await;
    assert_eq!(pending.json()["installed"], Value::Null);
    let approve = format!("{}/approve", path_of("servicenow"));
    let approved = c
        .send(
            api,
            "POST",
            &approve,
            a,
            Body::Json(json!({ "sha256": sha256 })),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    let again = c.send(api, "POST", "/api/v1/plugins", a, wasm()).await;
    assert_eq!(
        (again.status, &again.json()["status"]),
        (200, &json!("unchanged"))
    );
    c.send(api, "GET", "/api/v1/plugins", a, Body::Empty).await;
    c.send(api, "GET", &path_of("servicenow"), a, Body::Empty)
        .await;
}

async fn connections(
    api: &Api,
    c: &mut Contract,
    o: Option<&str>,
    u: Option<&str>,
    sn: &MockServer,
) {
    let created = c
        .send(
            api,
            "POST",
            "/api/v1/connections",
            o,
            Body::Json(json!({
                "name": "sn", "plugin": "servicenow", "settings": { "base-url": sn.uri() },
                "auth": { "kind": "basic", "username": USER, "password": CANARY }
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let base = "/api/v1/connections/sn";
    let settings = Body::Json(json!({ "settings": { "base-url": sn.uri() } }));
    for (method, path, body) in [
        (
            "GET",
            "/api/v1/connections?plugin=servicenow".to_string(),
            Body::Empty,
        ),
        ("GET", base.to_string(), Body::Empty),
        ("PATCH", base.to_string(), settings),
        ("POST", format!("{base}/test"), Body::Empty),
        (
            "PUT",
            format!("{base}/secret"),
            Body::Json(json!({ "kind": "basic", "username": USER, "password": CANARY })),
        ),
        ("POST", format!("{base}/pause"), Body::Empty),
        ("POST", format!("{base}/resume"), Body::Empty),
        (
            "POST",
            format!("{base}/sync?full=true&page_size=50"),
            Body::Empty,
        ),
        ("GET", format!("{base}/sync/runs?limit=5"), Body::Empty),
        (
            "GET",
            format!("{base}/sync/records?limit=5&offset=0"),
            Body::Empty,
        ),
    ] {
        let resp = c.send(api, method, &path, o, body).await;
        assert_eq!(resp.status, 200, "{method} {path}: {}", resp.text());
    }
    let ticket = c
        .send(
            api,
            "POST",
            &format!("{base}/invoke/tickets/create"),
            u,
            Body::Json(json!({
                "title": "Printer on fire", "description": null, "kind": null,
                "priority": null, "fields": null
            })),
        )
        .await;
    assert_eq!(ticket.status, 200, "{}", ticket.text());
    assert_eq!(ticket.json()["id"], SYS_ID);
    // A paused connection's call is refused with a documented status.
    c.send(api, "POST", &format!("{base}/pause"), o, Body::Empty)
        .await;
    let paused = c
        .send(
            api,
            "POST",
            &format!("{base}/invoke/tickets/get"),
            u,
            Body::Json(json!({ "id": SYS_ID })),
        )
        .await;
    paused.assert_error(409, "connection_paused");
    c.send(api, "POST", &format!("{base}/resume"), o, Body::Empty)
        .await;
}

async fn oauth(api: &Api, c: &mut Contract, o: Option<&str>) {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(body_string_contains("code=the-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "CANARY-access-token", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&idp)
        .await;
    let created = c
        .send(
            api,
            "POST",
            "/api/v1/connections",
            o,
            Body::Json(json!({
                "name": "sn-oauth", "plugin": "servicenow", "settings": { "base-url": idp.uri() },
                "auth": { "kind": "oauth2", "client_id": "cid", "client_secret": "CANARY-secret" }
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let start = c
        .send(
            api,
            "POST",
            "/api/v1/connections/sn-oauth/oauth/start",
            o,
            Body::Empty,
        )
        .await;
    let state = start.json()["state"].as_str().unwrap().to_string();
    let callback = format!("/api/v1/oauth/callback?code=the-code&state={state}");
    let json_accept = [("accept", "application/json")];
    let back = c
        .send_with(api, "GET", &callback, None, Body::Empty, &json_accept)
        .await;
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.json()["connection"]["status"], "active");
    // Used once: a replay is a documented error.
    let replay = c
        .send_with(api, "GET", &callback, None, Body::Empty, &json_accept)
        .await;
    replay.assert_error(400, "oauth_error");
}

async fn chat_and_conversations(api: &Api, c: &mut Contract, u: Option<&str>) {
    let server = completions("Noted.").await;
    add_gpt(api, &server);
    let answer = c
        .send(
            api,
            "POST",
            "/api/v1/connections/gpt/chat",
            u,
            Body::Json(json!({ "message": "Mail ada@example.com about it" })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let id = answer.json()["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = c
        .send(
            api,
            "GET",
            "/api/v1/conversations?connection=gpt&limit=10",
            u,
            Body::Empty,
        )
        .await;
    assert_eq!(listed.json()[0]["id"], id.as_str());
    let one = format!("/api/v1/conversations/{id}");
    let shown = c.send(api, "GET", &one, u, Body::Empty).await;
    assert_eq!(shown.json()["messages"][1]["content"], "Noted.");
    let gone = c.send(api, "DELETE", &one, u, Body::Empty).await;
    assert_eq!(gone.status, 204);
    c.send(api, "GET", &one, u, Body::Empty)
        .await
        .assert_error(404, "not_found");
}

/// The ids `token` lists with `query`, sorted.
async fn list(c: &mut Contract, api: &Api, token: &str, query: &str) -> Vec<String> {
    let path = format!("/api/v1/conversations{query}");
    let resp = c.send(api, "GET", &path, Some(token), Body::Empty).await;
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    let mut ids: Vec<String> = resp
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn conversations_over_the_api_are_scoped_to_the_tokens_project() {
    let api = Api::start().await;
    let server = completions("ok").await;
    add_gpt(&api, &server);
    let x = api.token("x-user", Role::User, Some("x"));
    let y = api.token("y-user", Role::User, Some("y"));
    let anyone = api.token("any-user", Role::User, None);
    let mut c = Contract::fetch(&api, &anyone).await;
    let mut started = Vec::new();
    for (token, message) in [
        (&x, "plans of x"),
        (&y, "plans of y"),
        (&anyone, "no project"),
    ] {
        let resp = c
            .send(
                &api,
                "POST",
                "/api/v1/connections/gpt/chat",
                Some(token),
                Body::Json(json!({ "message": message })),
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        started.push(resp.json()["conversation_id"].as_str().unwrap().to_string());
    }
    let (of_x, of_y, of_none) = (&started[0], &started[1], &started[2]);
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(list(&mut c, &api, &x, "").await, vec![of_x.clone()]);
    assert_eq!(
        list(&mut c, &api, &x, "?project=x&connection=gpt").await,
        vec![of_x.clone()]
    );
    assert_eq!(list(&mut c, &api, &y, "").await, vec![of_y.clone()]);
    assert_eq!(
        list(&mut c, &api, &anyone, "").await,
        sorted(vec![of_x, of_y, of_none])
    );
    assert_eq!(
        list(&mut c, &api, &anyone, "?project=y").await,
        vec![of_y.clone()]
    );
    assert_eq!(
        list(&mut c, &api, &anyone, "?no_project=true").await,
        vec![of_none.clone()]
    );

    // A project token cannot widen its view, and another project's
    // conversation does not exist for it: not found, as for chat.
    for query in ["?project=y", "?no_project=true"] {
        let path = format!("/api/v1/conversations{query}");
        c.send(&api, "GET", &path, Some(&x), Body::Empty)
            .await
            .assert_error(403, "forbidden");
    }
    let of = |id: &str| format!("/api/v1/conversations/{id}");
    for id in [of_y, of_none] {
        for m in ["GET", "DELETE"] {
            c.send(&api, m, &of(id), Some(&x), Body::Empty)
                .await
                .assert_error(404, "not_found");
        }
    }
    c.send(
        &api,
        "GET",
        &format!("{}?project=x", of(of_y)),
        Some(&anyone),
        Body::Empty,
    )
    .await
    .assert_error(404, "not_found");
    c.send(
        &api,
        "GET",
        &format!("{}?project=y&no_project=true", of(of_y)),
        Some(&anyone),
        Body::Empty,
    )
    .await
    .assert_error(400, "invalid_request");
    // Still there for its own project.
    let shown = c.send(&api, "GET", &of(of_y), Some(&y), Body::Empty).await;
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(shown.json()["conversation"]["project"], "y");
    assert_eq!(shown.json()["messages"][0]["content"], "plans of y");

    // x deletes its own; the others stay.
    let gone = c
        .send(&api, "DELETE", &of(of_x), Some(&x), Body::Empty)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
    c.send(&api, "GET", &of(of_x), Some(&x), Body::Empty)
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        list(&mut c, &api, &anyone, "").await,
        sorted(vec![of_y, of_none])
    );
}
