//! The management API over real HTTP: a real server bound on 127.0.0.1:0
//! with a real data directory, driven by a hyper client. Every route
//! without a token, with a revoked one, with a role too low and with a
//! token restricted to another project; the hardening checks; the OpenAPI
//! document against the routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use airlock::Airlock;
use airlock::server::ServerConfig;
use airlock::service::Role;
use airlock::service::Scope;
use airlock::service::{AuthInput, NewConnection};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::CANARY;

/// A running server and its data directory.
pub struct Api {
    pub addr: SocketAddr,
    pub airlock: Arc<Airlock>,
    _dir: tempfile::TempDir,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// A request body.
pub enum Body {
    Empty,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body is the one error shape with this code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "only `error` at the top: {v}");
        let e = v["error"].as_object().unwrap();
        assert_eq!(e.len(), 2, "{v}");
        assert_eq!(e["code"], code, "{v}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
}

pub fn config(dir: &std::path::Path) -> airlock::AirlockConfig {
    crate::service::config(dir)
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(server: ServerConfig) -> Self {
        Self::start_custom(server, |_| {}).await
    }

    /// A server whose host configuration `adjust` changes first.
    pub async fn start_custom(
        server: ServerConfig,
        adjust: impl FnOnce(&mut airlock::AirlockConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut host = config(dir.path());
        adjust(&mut host);
        let airlock = Arc::new(Airlock::open(host).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(airlock::server::serve(
            listener,
            airlock.clone(),
            server,
            async move {
                let _ = stopped.await;
            },
        ));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Self {
            addr,
            airlock,
            _dir: dir,
            stop: std::sync::Mutex::new(Some(stop)),
            task: std::sync::Mutex::new(Some(task)),
            client,
        }
    }

    /// Send SIGTERM's equivalent: stop accepting, finish in-flight requests.
    pub fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
    }

    /// The server's task, to await its end.
    pub fn take_task(&self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        self.task.lock().unwrap().take().expect("taken once")
    }

    pub fn token(&self, name: &str, role: Role, project: Option<&str>) -> String {
        self.airlock
            .create_token(name, role, project)
            .unwrap()
            .token
            .expose_secret()
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Body) -> Resp {
        self.send_with(method, path, token, body, &[]).await
    }

    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = http::Request::builder().method(method).uri(self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Body::Empty => Full::new(Bytes::new()),
            Body::Json(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v).unwrap()))
            }
            Body::Raw(ct, bytes) => {
                req = req.header("content-type", ct);
                Full::new(Bytes::from(bytes))
            }
        };
        let resp = self.client.request(req.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Raw bytes over TCP, for requests a well-behaved client will not send.
    pub async fn raw(&self, request: &[u8]) -> String {
        let s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let request = request.to_vec();
        // The server may answer and close before it has read everything:
        // a failed write is expected then, and the answer is still read.
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&request).await;
            wr
        });
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the server neither answered nor closed"),
            }
        }
        writer.abort();
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A wiremock server answering the minimal plugin's `GET /api/me`.
pub async fn me_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "name": "alice" })))
        .mount(&server)
        .await;
    server
}

fn install(airlock: &Airlock, path: &str) {
    let plan = airlock.plan_install(std::fs::read(path).unwrap()).unwrap();
    airlock.install(&plan, true).unwrap();
}

/// A bearer connection of the minimal plugin, scoped to `projects`.
fn add_minimal(airlock: &Airlock, name: &str, base: &str, scope: Scope) -> String {
    airlock
        .add_connection(NewConnection {
            name: name.into(),
            plugin_id: "minimal".into(),
            settings: BTreeMap::from([("base-url".to_string(), base.to_string())]),
            auth: AuthInput::Bearer {
                token: SecretString::from(CANARY),
            },
            scope,
        })
        .unwrap()
        .id
}

/// What a token restricted to another project gets on a route.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Project {
    /// 403.
    Denied,
    /// 200, with the other project's rows left out.
    Narrowed,
    /// 404: what belongs to another project does not exist for it.
    Hidden,
    /// Not about projects.
    Any,
}

/// One route as the matrix exercises it.
struct Route {
    method: &'static str,
    path: &'static str,
    min: Role,
    project: Project,
}

/// Every token-protected route. The OpenAPI test checks this list against
/// the document, both ways.
const ROUTES: &[Route] = &[
    r("GET", "/api/v1/plugins", Role::Operator, Project::Denied),
    r(
        "GET",
        "/api/v1/plugins/pending",
        Role::Operator,
        Project::Denied,
    ),
    r("POST", "/api/v1/plugins", Role::Admin, Project::Denied),
    r(
        "GET",
        "/api/v1/plugins/{id}",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/plugins/{id}/approve",
        Role::Admin,
        Project::Denied,
    ),
    r(
        "DELETE",
        "/api/v1/plugins/{id}",
        Role::Admin,
        Project::Denied,
    ),
    r(
        "GET",
        "/api/v1/connections",
        Role::Operator,
        Project::Narrowed,
    ),
    r(
        "POST",
        "/api/v1/connections",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "GET",
        "/api/v1/connections/{id}",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "PATCH",
        "/api/v1/connections/{id}",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "DELETE",
        "/api/v1/connections/{id}",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/connections/{id}/test",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "PUT",
        "/api/v1/connections/{id}/secret",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/connections/{id}/pause",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/connections/{id}/resume",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/connections/{id}/invoke/{interface}/{operation}",
        Role::User,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/connections/{id}/oauth/start",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "POST",
        "/api/v1/connections/{id}/sync",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "GET",
        "/api/v1/connections/{id}/sync/runs",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "GET",
        "/api/v1/connections/{id}/sync/records",
        Role::Operator,
        Project::Denied,
    ),
    r("GET", "/api/v1/audit", Role::Operator, Project::Narrowed),
    r(
        "GET",
        "/api/v1/audit/verify",
        Role::Operator,
        Project::Denied,
    ),
    r(
        "GET",
        "/api/v1/connections/{id}/operations",
        Role::User,
        Project::Denied,
    ),
    r("GET", "/api/v1/openapi.json", Role::User, Project::Any),
    r("GET", "/api/v1/me", Role::User, Project::Any),
    r("GET", "/api/v1/tokens", Role::Admin, Project::Denied),
    r("POST", "/api/v1/tokens", Role::Admin, Project::Denied),
    r(
        "DELETE",
        "/api/v1/tokens/{id}",
        Role::Admin,
        Project::Denied,
    ),
    r("GET", "/metrics", Role::Operator, Project::Denied),
    r(
        "POST",
        "/api/v1/connections/{id}/chat",
        Role::User,
        Project::Denied,
    ),
    r(
        "GET",
        "/api/v1/conversations",
        Role::User,
        Project::Narrowed,
    ),
    r(
        "GET",
        "/api/v1/conversations/{id}",
        Role::User,
        Project::Hidden,
    ),
    r(
        "DELETE",
        "/api/v1/conversations/{id}",
        Role::User,
        Project::Hidden,
    ),
    r("GET", "/api/v1/trust", Role::Operator, Project::Denied),
    r("POST", "/api/v1/trust/keys", Role::Admin, Project::Denied),
    r(
        "DELETE",
        "/api/v1/trust/keys/{name}",
        Role::Admin,
        Project::Denied,
    ),
    r(
        "PUT",
        "/api/v1/trust/require-signature",
        Role::Admin,
        Project::Denied,
    ),
];

/// A publisher key the trust routes are asked to trust.
pub const TRUSTED_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJFsYpsKXQQS4ugSE4iqX1febl568q9hIOBXKZE4tVuF alice@example";

/// The one route without a token.
const PUBLIC: (&str, &str) = ("GET", "/api/v1/oauth/callback");

const fn r(method: &'static str, path: &'static str, min: Role, project: Project) -> Route {
    Route {
        method,
        path,
        min,
        project,
    }
}

/// A concrete request for `route` against connection `conn` of plugin
/// `minimal`, with a body that would succeed.
fn request(route: &Route, conn: &str, base: &str) -> (String, Body) {
    // A token route names the user token: a refusal that let it through
    // would revoke it, and the user's calls at the end would fail.
    let id = if route.path.starts_with("/api/v1/plugins") {
        "minimal"
    } else if route.path.starts_with("/api/v1/tokens") {
        "user"
    } else {
        conn
    };
    let path = route
        .path
        .replace("{id}", id)
        .replace("{interface}", "connector")
        .replace("{operation}", "test-connection")
        .replace("{name}", "matrix");
    let body = match (route.method, route.path) {
        ("POST", "/api/v1/plugins") => Body::Raw(
            "application/wasm",
            std::fs::read(airlock_test_artifacts::MINIMAL).unwrap(),
        ),
        ("POST", "/api/v1/plugins/{id}/approve") => Body::Json(json!({ "sha256": "00" })),
        ("POST", "/api/v1/tokens") => {
            Body::Json(json!({ "name": "created-by-matrix", "role": "admin" }))
        }
        ("POST", "/api/v1/connections") => Body::Json(json!({
            "name": "created-by-matrix", "plugin": "minimal",
            "settings": { "base-url": base }, "projects": ["alpha"],
            "auth": { "kind": "bearer", "token": CANARY }
        })),
        ("PATCH", _) => Body::Json(json!({ "settings": { "base-url": format!("{base}/moved") } })),
        ("PUT", p) if p.ends_with("/secret") => {
            Body::Json(json!({ "kind": "bearer", "token": "not-the-canary" }))
        }
        ("POST", p) if p.contains("/invoke/") => Body::Json(json!({})),
        ("POST", p) if p.ends_with("/chat") => Body::Json(json!({ "message": "hi" })),
        ("POST", "/api/v1/trust/keys") => {
            Body::Json(json!({ "name": "matrix", "key": TRUSTED_KEY }))
        }
        ("PUT", "/api/v1/trust/require-signature") => {
            Body::Json(json!({ "require_signature": true }))
        }
        _ => Body::Empty,
    };
    (path, body)
}

#[tokio::test]
async fn every_route_refuses_missing_revoked_underprivileged_and_other_project_tokens() {
    let api = Api::start().await;
    install(&api.airlock, airlock_test_artifacts::MINIMAL);
    let server = me_server().await;
    let conn = add_minimal(
        &api.airlock,
        "alpha-conn",
        &server.uri(),
        Scope::Projects(vec!["alpha".into()]),
    );
    // One audited send for project alpha, which beta must not see.
    api.airlock
        .call(
            "alpha-conn",
            "connector.test-connection",
            json!({}),
            Some("alpha"),
        )
        .await
        .unwrap();
    api.airlock.audit().flush().await.unwrap();
    let sent_before = server.received_requests().await.unwrap().len();
    let before = api.airlock.connection(&conn).unwrap();
    let audit_before = api.airlock.list_audit(&Default::default()).unwrap();

    let admin = api.token("admin", Role::Admin, None);
    let operator = api.token("operator", Role::Operator, None);
    let user = api.token("user", Role::User, None);
    let revoked = api.token("revoked", Role::Admin, None);
    api.airlock.revoke_token("revoked").unwrap();
    let beta = api.token("beta-admin", Role::Admin, Some("beta"));
    let tokens_before = api.airlock.list_tokens().unwrap();
    let below = |min: Role| match min {
        Role::Admin => vec![&operator, &user],
        Role::Operator => vec![&user],
        Role::User => vec![],
    };

    for route in ROUTES {
        let what = format!("{} {}", route.method, route.path);
        let (path, _) = request(route, &conn, &server.uri());
        for (label, token) in [("no token", None), ("revoked", Some(revoked.as_str()))] {
            let (_, body) = request(route, &conn, &server.uri());
            let resp = api.send(route.method, &path, token, body).await;
            assert_eq!(resp.status, 401, "{what} with {label}: {}", resp.text());
            resp.assert_error(401, "unauthorized");
        }
        let garbage = api
            .send(route.method, &path, Some("alk_not-a-token"), Body::Empty)
            .await;
        assert_eq!(garbage.status, 401, "{what} with an unknown token");
        for token in below(route.min) {
            let (_, body) = request(route, &conn, &server.uri());
            let resp = api.send(route.method, &path, Some(token), body).await;
            assert_eq!(resp.status, 403, "{what} with a low role: {}", resp.text());
            resp.assert_error(403, "forbidden");
        }
        let (_, body) = request(route, &conn, &server.uri());
        let resp = api.send(route.method, &path, Some(&beta), body).await;
        match route.project {
            Project::Denied => {
                assert_eq!(resp.status, 403, "{what} for project beta: {}", resp.text());
                resp.assert_error(403, "forbidden");
            }
            Project::Narrowed => {
                assert_eq!(resp.status, 200, "{what} for beta: {}", resp.text());
                assert!(
                    !resp.text().contains(&conn),
                    "{what} leaks alpha: {}",
                    resp.text()
                );
                let asked = api
                    .send(
                        route.method,
                        &format!("{path}?project=alpha"),
                        Some(&beta),
                        Body::Empty,
                    )
                    .await;
                asked.assert_error(403, "forbidden");
            }
            Project::Hidden => resp.assert_error(404, "not_found"),
            Project::Any => assert_eq!(resp.status, 200, "{what}"),
        }
    }

    // Nothing changed: same connection, no new one, plugin still there, no
    // request reached the service, no new audit entry.
    assert_eq!(api.airlock.connection(&conn).unwrap(), before);
    assert_eq!(
        api.airlock.connections(&Default::default()).unwrap().len(),
        1
    );
    assert_eq!(api.airlock.list_plugins().unwrap().len(), 1);
    assert_eq!(api.airlock.list_tokens().unwrap(), tokens_before);
    assert_eq!(api.airlock.trust_policy().unwrap(), Default::default());
    api.airlock.audit().flush().await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), sent_before);
    assert_eq!(
        api.airlock.list_audit(&Default::default()).unwrap(),
        audit_before
    );

    // The same requests succeed with the right token (the roles are not
    // simply refusing everything): a user invokes, an operator reads.
    let invoke = ROUTES.iter().find(|r| r.path.contains("/invoke/")).unwrap();
    let (path, body) = request(invoke, &conn, &server.uri());
    let ok = api.send("POST", &path, Some(&user), body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["account"], "alice");
    let alpha_user = api.token("alpha-user", Role::User, Some("alpha"));
    let ok = api
        .send("POST", &path, Some(&alpha_user), Body::Json(json!({})))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let ok = api
        .send(
            "GET",
            &format!("/api/v1/connections/{conn}"),
            Some(&operator),
            Body::Empty,
        )
        .await;
    assert_eq!(ok.status, 200);
    let _ = admin;
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    let resp = api
        .send("GET", "/api/v1/openapi.json", Some(&admin), Body::Empty)
        .await;
    assert_eq!(resp.status, 200);
    let doc = resp.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    let mut tested: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    tested.insert((PUBLIC.0.into(), PUBLIC.1.into()));
    assert_eq!(
        documented, tested,
        "the document and the tested routes differ"
    );
    let callback = &doc["paths"][PUBLIC.1]["get"];
    assert_eq!(callback["security"], json!([]));
    assert_eq!(
        doc["paths"]["/api/v1/plugins"]["post"]["x-airlock-role"],
        "admin"
    );

    // Every documented route exists on the server: without a token each
    // answers 401 (not 404 or 405); the callback answers without one.
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "x")
            .replace("{interface}", "connector")
            .replace("{operation}", "test-connection")
            .replace("{name}", "x");
        let resp = api.send(method, &concrete, None, Body::Empty).await;
        if (method.as_str(), path.as_str()) == PUBLIC {
            assert_eq!(resp.status, 400, "{}", resp.text());
        } else {
            resp.assert_error(401, "unauthorized");
        }
    }
}

#[tokio::test]
async fn a_request_for_another_host_name_is_refused() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
        let resp = api
            .send_with(
                "GET",
                "/api/v1/plugins",
                Some(&admin),
                Body::Empty,
                &[("host", host)],
            )
            .await;
        resp.assert_error(421, "forbidden_host");
    }
    // The callback (no token) is refused the same way.
    let resp = api
        .send_with(
            "GET",
            "/api/v1/oauth/callback?state=x",
            None,
            Body::Empty,
            &[("host", "evil.example")],
        )
        .await;
    resp.assert_error(421, "forbidden_host");
    for host in [
        "localhost",
        &format!("localhost:{}", api.addr.port()),
        "127.0.0.1",
    ] {
        let resp = api
            .send_with(
                "GET",
                "/api/v1/plugins",
                Some(&admin),
                Body::Empty,
                &[("host", host)],
            )
            .await;
        assert_eq!(resp.status, 200, "{host}");
    }
    // Without a Host header at all (HTTP/1.0 style).
    let raw = api.raw(b"GET /api/v1/plugins HTTP/1.0\r\n\r\n").await;
    assert!(
        raw.starts_with("HTTP/1.0 421") || raw.starts_with("HTTP/1.1 421"),
        "{raw}"
    );
}

#[tokio::test]
async fn no_cors_headers_are_sent() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    let origin = [("origin", "https://evil.example")];
    let get = api
        .send_with("GET", "/api/v1/plugins", Some(&admin), Body::Empty, &origin)
        .await;
    assert_eq!(get.status, 200);
    let preflight = api
        .send_with(
            "OPTIONS",
            "/api/v1/connections",
            None,
            Body::Empty,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization"),
            ],
        )
        .await;
    assert!(preflight.status >= 400, "{}", preflight.status);
    for resp in [&get, &preflight] {
        assert!(
            !resp
                .headers
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{:?}",
            resp.headers
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    // 100 MB declared: refused after the headers, nothing more is read.
    for route in ["/api/v1/connections", "/api/v1/plugins"] {
        let head = format!(
            "POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        );
        let raw = api.raw(head.as_bytes()).await;
        assert!(raw.starts_with("HTTP/1.1 413"), "{route}: {raw}");
        assert!(raw.contains("\"payload_too_large\""), "{raw}");
    }
    // A body just over the limit, actually sent.
    let big = vec![b' '; (1 << 20) + 1];
    let resp = api
        .send(
            "POST",
            "/api/v1/connections",
            Some(&admin),
            Body::Raw("application/json", big),
        )
        .await;
    resp.assert_error(413, "payload_too_large");
    // Without a declared length (chunked): cut off as it arrives.
    let mut chunked = format!(
        "POST /api/v1/connections HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 64 << 10));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = api.raw(&chunked).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        api.airlock
            .connections(&Default::default())
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_input_gets_the_one_error_shape() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    let t = Some(admin.as_str());
    for body in [&b"{not json"[..], b"", b"[]", b"{\"name\": 5}", b"\xff\xfe"] {
        let resp = api
            .send(
                "POST",
                "/api/v1/connections",
                t,
                Body::Raw("application/json", body.to_vec()),
            )
            .await;
        resp.assert_error(
            if body.is_empty() || body == b"{not json" || body == b"\xff\xfe" {
                400
            } else {
                422
            },
            "invalid_request",
        );
    }
    let resp = api
        .send(
            "POST",
            "/api/v1/connections",
            t,
            Body::Raw("text/plain", b"{}".to_vec()),
        )
        .await;
    resp.assert_error(415, "unsupported_media_type");
    // Unknown fields are refused rather than ignored.
    let resp = api
        .send(
            "POST",
            "/api/v1/connections",
            t,
            Body::Json(json!({"name": "x", "plugin": "minimal", "sneaky": true})),
        )
        .await;
    resp.assert_error(422, "invalid_request");
    let resp = api
        .send("GET", "/api/v1/audit?limit=lots", t, Body::Empty)
        .await;
    resp.assert_error(400, "invalid_request");
    let resp = api
        .send("GET", "/api/v1/audit?decision=maybe", t, Body::Empty)
        .await;
    resp.assert_error(400, "invalid_request");
    let resp = api.send("GET", "/api/v1/nowhere", t, Body::Empty).await;
    resp.assert_error(404, "not_found");
    let resp = api.send("PUT", "/api/v1/plugins", t, Body::Empty).await;
    resp.assert_error(405, "method_not_allowed");
    // Upload of something that is not a component.
    let resp = api
        .send(
            "POST",
            "/api/v1/plugins",
            t,
            Body::Raw("application/wasm", b"not wasm".to_vec()),
        )
        .await;
    resp.assert_error(422, "invalid_plugin");
    let resp = api
        .send(
            "POST",
            "/api/v1/plugins",
            t,
            Body::Raw("application/wasm", Vec::new()),
        )
        .await;
    resp.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn unknown_plugins_and_a_second_delete_are_not_found() {
    let api = Api::start().await;
    install(&api.airlock, airlock_test_artifacts::MINIMAL);
    let server = me_server().await;
    let admin = api.token("admin", Role::Admin, None);
    let t = Some(admin.as_str());
    api.send("GET", "/api/v1/plugins/nope", t, Body::Empty)
        .await
        .assert_error(404, "not_found");
    api.send("DELETE", "/api/v1/plugins/nope", t, Body::Empty)
        .await
        .assert_error(404, "not_found");
    api.send(
        "POST",
        "/api/v1/plugins/nope/approve",
        t,
        Body::Json(json!({"sha256": "ab"})),
    )
    .await
    .assert_error(404, "not_found");
    api.send(
        "POST",
        "/api/v1/connections",
        t,
        Body::Json(json!({"name": "c", "plugin": "nope", "settings": {"base-url": server.uri()}})),
    )
    .await
    .assert_error(404, "not_found");

    let created = api
        .send(
            "POST",
            "/api/v1/connections",
            t,
            Body::Json(json!({
                "name": "twice", "plugin": "minimal",
                "settings": {"base-url": server.uri()},
                "auth": {"kind": "bearer", "token": CANARY}
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(!created.text().contains(CANARY));
    let id = created.json()["id"].as_str().unwrap().to_string();
    let first = api
        .send(
            "DELETE",
            &format!("/api/v1/connections/{id}"),
            t,
            Body::Empty,
        )
        .await;
    assert_eq!(first.status, 204);
    api.send(
        "DELETE",
        &format!("/api/v1/connections/{id}"),
        t,
        Body::Empty,
    )
    .await
    .assert_error(404, "not_found");
    api.send("GET", &format!("/api/v1/connections/{id}"), t, Body::Empty)
        .await
        .assert_error(404, "not_found");
    // The plugin can go once nothing uses it, and only once.
    assert_eq!(
        api.send("DELETE", "/api/v1/plugins/minimal", t, Body::Empty)
            .await
            .status,
        204
    );
    api.send("DELETE", "/api/v1/plugins/minimal", t, Body::Empty)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn uploads_waiting_for_approval_are_bounded() {
    let api = Api::start_with(ServerConfig {
        max_pending_uploads: 1,
        ..ServerConfig::default()
    })
    .await;
    let admin = api.token("admin", Role::Admin, None);
    let upload = |path: &'static str| {
        let api = &api;
        let admin = admin.clone();
        async move {
            api.send(
                "POST",
                "/api/v1/plugins",
                Some(&admin),
                Body::Raw("application/wasm", std::fs::read(path).unwrap()),
            )
            .await
        }
    };
    assert_eq!(upload(airlock_test_artifacts::MINIMAL).await.status, 202);
    upload(airlock_test_artifacts::PROBE)
        .await
        .assert_error(429, "too_many_pending");
    // The same plugin id replaces its own pending upload.
    assert_eq!(upload(airlock_test_artifacts::MINIMAL).await.status, 202);
    assert!(api.airlock.list_plugins().unwrap().is_empty());
}

#[tokio::test]
async fn slow_clients_and_connection_floods_are_bounded() {
    let api = Api::start_with(ServerConfig {
        header_read_timeout: std::time::Duration::from_millis(500),
        max_connections: 2,
        ..ServerConfig::default()
    })
    .await;
    let admin = api.token("admin", Role::Admin, None);
    // Half a request line, then nothing: the server gives up on it.
    let started = std::time::Instant::now();
    let raw = api
        .raw(b"GET /api/v1/plugins HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await;
    assert!(!raw.contains(" 200 "), "{raw}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Two idle connections take both slots: a third is closed on accept.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(api.addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), third.read(&mut buf))
        .await
        .expect("closed at once, before any header timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed");
    // Once they are gone (the header timeout closes them too), requests
    // are served again.
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let resp = api
        .send("GET", "/api/v1/plugins", Some(&admin), Body::Empty)
        .await;
    assert_eq!(resp.status, 200);
}
