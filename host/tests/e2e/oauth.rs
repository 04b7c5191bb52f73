//! OAuth2 end to end: a real airlock data directory, the `oauth-minimal`
//! guest, and an authorisation server stand-in on loopback that checks the
//! PKCE verifier for real and issues and rotates tokens.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use airlock::oauth::{CallbackListener, callback_page};
use airlock::service::{AuthInput, NewConnection};
use airlock::service::{ConnectionStatus, Scope};
use airlock::{Airlock, ServiceError};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "airlock-test-client";
const CLIENT_SECRET: &str = "CANARY-oauth-client-secret-91c2";

/// How the token endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenMode {
    Normal,
    Redirect,
    ServerError,
    Malformed,
    NoAccessToken,
    InvalidGrant,
}

#[derive(Debug)]
struct AuthState {
    mode: TokenMode,
    /// code -> (challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    access: Option<String>,
    refresh: Option<String>,
    client: (String, String),
    last_authorize_query: String,
    issued: Vec<String>,
    /// An `iss` to add to the authorisation response (RFC 9207).
    iss: Option<String>,
}

/// The authorisation server stand-in, which also plays the upstream API
/// (`/api/me` answers 200 only to the current access token).
#[derive(Clone)]
struct AuthServer {
    addr: SocketAddr,
    state: Arc<Mutex<AuthState>>,
    token_requests: Arc<AtomicU32>,
    refresh_requests: Arc<AtomicU32>,
    api_requests: Arc<AtomicU32>,
    next_expires_in: Arc<AtomicU64>,
    counter: Arc<AtomicU32>,
}

impl AuthServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = AuthServer {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(AuthState {
                mode: TokenMode::Normal,
                codes: HashMap::new(),
                access: None,
                refresh: None,
                client: (CLIENT_ID.into(), CLIENT_SECRET.into()),
                last_authorize_query: String::new(),
                issued: Vec::new(),
                iss: None,
            })),
            token_requests: Arc::default(),
            refresh_requests: Arc::default(),
            api_requests: Arc::default(),
            next_expires_in: Arc::new(AtomicU64::new(3600)),
            counter: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        server
    }

    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_mode(&self, mode: TokenMode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn set_client(&self, id: &str, secret: &str) {
        self.state.lock().unwrap().client = (id.into(), secret.into());
    }

    fn current_access(&self) -> Option<String> {
        self.state.lock().unwrap().access.clone()
    }

    fn current_refresh(&self) -> Option<String> {
        self.state.lock().unwrap().refresh.clone()
    }

    /// Every token issued so far (for the canary checks).
    fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// The upstream stops accepting the current access token.
    fn revoke_access(&self) {
        self.state.lock().unwrap().access = Some("revoked".into());
    }

    fn issue(&self, st: &mut AuthState) -> serde_json::Value {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let access = format!("CANARY-access-{n}-{}", self.addr.port());
        let refresh = format!("CANARY-refresh-{n}-{}", self.addr.port());
        st.access = Some(access.clone());
        st.refresh = Some(refresh.clone());
        st.issued.push(access.clone());
        st.issued.push(refresh.clone());
        serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "expires_in": self.next_expires_in.load(Ordering::SeqCst),
        })
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, ctype: &str, body: String| {
            Response::builder()
                .status(status)
                .header("content-type", ctype)
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let json = |status, v: serde_json::Value| reply(status, "application/json", v.to_string());
        match req.uri().path() {
            "/authorize" => {
                let query = req.uri().query().unwrap_or("").to_string();
                let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                let mut st = self.state.lock().unwrap();
                st.last_authorize_query = query.clone();
                assert_eq!(q["response_type"], "code");
                assert_eq!(q["code_challenge_method"], "S256");
                assert_eq!(q["client_id"], st.client.0);
                let code = format!("code-{}", self.counter.fetch_add(1, Ordering::SeqCst));
                st.codes.insert(
                    code.clone(),
                    (q["code_challenge"].clone(), q["redirect_uri"].clone()),
                );
                let mut location = format!(
                    "{}?code={code}&state={}",
                    q["redirect_uri"],
                    url::form_urlencoded::byte_serialize(q["state"].as_bytes()).collect::<String>()
                );
                if let Some(iss) = &st.iss {
                    location.push_str("&iss=");
                    location.extend(url::form_urlencoded::byte_serialize(iss.as_bytes()));
                }
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", location)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }
            "/token" => {
                self.token_requests.fetch_add(1, Ordering::SeqCst);
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let form: HashMap<String, String> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                let mut st = self.state.lock().unwrap();
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", st.client.0, st.client.1))
                );
                if auth.as_deref() != Some(expected.as_str()) {
                    return json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({"error": "invalid_client"}),
                    );
                }
                match st.mode {
                    TokenMode::Normal | TokenMode::InvalidGrant => {}
                    TokenMode::Redirect => {
                        return Response::builder()
                            .status(StatusCode::FOUND)
                            .header("location", format!("{}/elsewhere", self.uri()))
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                    }
                    TokenMode::ServerError => {
                        return reply(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "text/plain",
                            "boom".into(),
                        );
                    }
                    TokenMode::Malformed => {
                        return reply(
                            StatusCode::OK,
                            "application/json",
                            "{\"access_token\": \"CANARY-half".into(),
                        );
                    }
                    TokenMode::NoAccessToken => {
                        return json(StatusCode::OK, serde_json::json!({"token_type": "Bearer"}));
                    }
                }
                match form.get("grant_type").map(String::as_str) {
                    Some("authorization_code") => {
                        let Some((challenge, redirect)) = st.codes.remove(&form["code"]) else {
                            return json(
                                StatusCode::BAD_REQUEST,
                                serde_json::json!({"error": "invalid_grant"}),
                            );
                        };
                        // PKCE for real: S256(verifier) must be the challenge.
                        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(Sha256::digest(verifier.as_bytes()));
                        if computed != challenge || form.get("redirect_uri") != Some(&redirect) {
                            return json(
                                StatusCode::BAD_REQUEST,
                                serde_json::json!({"error": "invalid_grant",
                                    "error_description": "PKCE verification failed"}),
                            );
                        }
                        let body = self.issue(&mut st);
                        json(StatusCode::OK, body)
                    }
                    Some("refresh_token") => {
                        self.refresh_requests.fetch_add(1, Ordering::SeqCst);
                        if st.mode == TokenMode::InvalidGrant
                            || form.get("refresh_token") != st.refresh.as_ref()
                        {
                            return json(
                                StatusCode::BAD_REQUEST,
                                serde_json::json!({"error": "invalid_grant"}),
                            );
                        }
                        let body = self.issue(&mut st);
                        json(StatusCode::OK, body)
                    }
                    _ => json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": "unsupported_grant_type"}),
                    ),
                }
            }
            "/api/me" => {
                self.api_requests.fetch_add(1, Ordering::SeqCst);
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let current = self.current_access();
                if current.is_some_and(|t| auth == format!("Bearer {t}")) {
                    json(StatusCode::OK, serde_json::json!({"name": "alice"}))
                } else {
                    json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({"error": "nope"}),
                    )
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found".into()),
        }
    }
}

/// A minimal "browser": GET with no redirect following.
async fn get(url: &str) -> (StatusCode, Option<String>, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(url.parse().unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Follow the authorisation URL to its redirect, then the callback.
async fn browse(authorization_url: &str) -> (StatusCode, String) {
    let (status, location, _) = get(authorization_url).await;
    assert_eq!(status, StatusCode::FOUND);
    let (status, _, page) = get(&location.expect("a redirect to the callback")).await;
    (status, page)
}

struct Setup {
    dir: tempfile::TempDir,
    airlock: Airlock,
    server: AuthServer,
}

fn new_airlock(dir: &std::path::Path) -> Airlock {
    let mut config = crate::service::config(dir);
    // The concurrency test runs many calls at once.
    config.pooling = false;
    config.max_concurrent_calls = 128;
    Airlock::open(config).unwrap()
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let airlock = new_airlock(dir.path());
    crate::service::install(&airlock, airlock_test_artifacts::OAUTH_MINIMAL);
    let server = AuthServer::start().await;
    airlock
        .add_connection(connection("work", &server, true))
        .unwrap();
    Setup {
        dir,
        airlock,
        server,
    }
}

fn connection(name: &str, server: &AuthServer, own_app: bool) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "oauth-minimal".into(),
        settings: [
            ("base-url".to_string(), server.uri()),
            ("auth-server".to_string(), server.uri()),
        ]
        .into(),
        auth: AuthInput::OAuth2 {
            client_id: own_app.then(|| CLIENT_ID.to_string()),
            client_secret: own_app.then(|| SecretString::from(CLIENT_SECRET)),
        },
        scope: Scope::Global,
    }
}

/// Run the whole flow through the loopback listener.
async fn connect(s: &Setup, name: &str) -> Result<(), ServiceError> {
    let listener = CallbackListener::bind(0).await.unwrap();
    let start = s.airlock.oauth_start_on(name, listener.port()).unwrap();
    let (served, (status, page)) = tokio::join!(
        s.airlock.oauth_serve(listener, &start),
        browse(&start.authorization_url)
    );
    if served.is_ok() {
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("close this window"), "{page}");
    }
    served.map(|_| ())
}

fn secret(s: &Setup, field: &str) -> Option<String> {
    let id = s.airlock.connection("work").unwrap().id;
    airlock::__test_support::open_connection_secret(&s.airlock, &id, field)
        .map(|v| v.expose_secret().to_string())
}

async fn call(s: &Setup) -> Result<String, ServiceError> {
    s.airlock
        .test_connection("work")
        .await
        .map(|r| r.account.unwrap_or_default())
}

use crate::common::LogCapture;

/// Neither a token the provider issued nor the client secret is logged.
trait AssertClean {
    fn assert_clean(&self, s: &Setup);
}

impl AssertClean for LogCapture {
    fn assert_clean(&self, s: &Setup) {
        let text = self.text();
        assert!(!text.is_empty(), "the capture saw no log lines");
        for n in s.server.issued().iter().chain([&CLIENT_SECRET.to_string()]) {
            assert!(!text.contains(n.as_str()), "{n} in the logs");
        }
    }
}

/// No token and no client secret anywhere in the audit log or the raw
/// database files.
fn assert_no_secrets_at_rest(s: &Setup) {
    let mut needles = s.server.issued();
    needles.push(CLIENT_SECRET.to_string());
    let entries = s
        .airlock
        .list_audit(&airlock::audit::AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    let audit_text = format!("{entries:?}");
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{n} found in {}",
                    path.display()
                );
            }
        }
    }
    for n in &needles {
        assert!(!audit_text.contains(n.as_str()), "{n} in the audit log");
    }
    assert!(!audit_text.contains("CANARY"), "{audit_text}");
}

#[tokio::test]
async fn full_flow_then_a_call_carries_the_new_token() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let s = setup().await;
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::NeedsReauth
    );
    let listener = CallbackListener::bind(0).await.unwrap();
    // Bound to loopback only.
    assert_eq!(
        listener.local_addr().ip(),
        std::net::IpAddr::from([127, 0, 0, 1])
    );
    let port = listener.port();
    let start = s.airlock.oauth_start_on("work", port).unwrap();
    assert_eq!(
        start.redirect_uri,
        format!("http://127.0.0.1:{port}/callback")
    );
    let url = url::Url::parse(&start.authorization_url).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["audience"], "api.example.test");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["scope"], "read:me offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], start.state);
    // Not reachable on another address of the machine (IPv6 loopback here).
    assert!(
        tokio::net::TcpStream::connect(("::1", port)).await.is_err(),
        "the listener answers on ::1"
    );
    // The state is stored only as its hash.
    let db = rusqlite::Connection::open(s.dir.path().join("airlock.db")).unwrap();
    let stored: String = db
        .query_row("SELECT state_hash FROM oauth_states", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, hex::encode(Sha256::digest(start.state.as_bytes())));

    let (served, (status, page)) = tokio::join!(
        s.airlock.oauth_serve(listener, &start),
        browse(&start.authorization_url)
    );
    let outcome = served.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("can close this window"), "{page}");
    assert_eq!(outcome.connection.status, ConnectionStatus::Active);
    assert_eq!(s.server.token_requests.load(Ordering::SeqCst), 1);
    // The listener is gone once the flow is over.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );

    assert_eq!(secret(&s, "access-token"), s.server.current_access());
    assert_eq!(secret(&s, "refresh-token"), s.server.current_refresh());
    assert_eq!(call(&s).await.unwrap(), "alice");
    assert_eq!(s.server.api_requests.load(Ordering::SeqCst), 1);

    // The exchange was audited like a send; the call too.
    let entries = s
        .airlock
        .list_audit(&airlock::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let text = format!("{entries:?}");
    assert!(text.contains("/token"), "{text}");
    assert!(text.contains("/api/me"), "{text}");
    assert!(s.airlock.verify_audit().unwrap().is_ok());
    assert_no_secrets_at_rest(&s);
    logs.assert_clean(&s);
}

#[tokio::test]
async fn expiry_refreshes_once_and_persists_the_rotated_refresh_token() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let s = setup().await;
    // Issued with a lifetime inside the refresh margin: due halfway through.
    s.server.next_expires_in.store(1, Ordering::SeqCst);
    connect(&s, "work").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let first_refresh = secret(&s, "refresh-token").unwrap();
    s.server.next_expires_in.store(3600, Ordering::SeqCst);

    assert_eq!(call(&s).await.unwrap(), "alice");
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);
    let rotated = secret(&s, "refresh-token").unwrap();
    assert_ne!(rotated, first_refresh);
    assert_eq!(Some(rotated), s.server.current_refresh());
    assert_eq!(secret(&s, "access-token"), s.server.current_access());

    // Fresh now: no more refreshes; and a restart reads the rotated tokens.
    assert_eq!(call(&s).await.unwrap(), "alice");
    let s = Setup {
        airlock: {
            drop(s.airlock);
            new_airlock(s.dir.path())
        },
        ..s
    };
    assert_eq!(call(&s).await.unwrap(), "alice");
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);
    assert_no_secrets_at_rest(&s);
    logs.assert_clean(&s);
}

/// A hundred concurrent calls on a connection whose token is due, the
/// refreshed token living `refreshed_lifetime` seconds: every call succeeds.
async fn hundred_calls_on_a_due_token(refreshed_lifetime: u64) -> Setup {
    let s = setup().await;
    s.server.next_expires_in.store(1, Ordering::SeqCst);
    connect(&s, "work").await.unwrap();
    // Due halfway through its one-second lifetime.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.server
        .next_expires_in
        .store(refreshed_lifetime, Ordering::SeqCst);
    let calls = (0..100).map(|_| call(&s));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), "alice");
    }
    assert_eq!(s.server.api_requests.load(Ordering::SeqCst), 100);
    s
}

#[tokio::test]
async fn a_hundred_concurrent_calls_on_an_expired_token_refresh_once() {
    let s = hundred_calls_on_a_due_token(3600).await;
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);
}

/// Three servers on one PostgreSQL database (three `Airlock`s, each with its
/// own data directory, sharing the master key): a hundred calls spread over
/// them on an expired token make one refresh at the provider between them,
/// and the rotated refresh token is the one stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_calls_over_three_servers_refresh_once() {
    let database =
        airlock::DatabaseUrl::parse(&airlock_test_artifacts::postgres::shared().database())
            .unwrap();
    let key = tempfile::tempdir().unwrap();
    let open = |dir: &std::path::Path| {
        let mut config = crate::service::config(dir);
        config.key_source = Some(airlock::KeySource::File(key.path().join("master.key")));
        config.database = database.clone();
        config.pooling = false;
        config.max_concurrent_calls = 128;
        Airlock::open(config).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    crate::service::install(&first, airlock_test_artifacts::OAUTH_MINIMAL);
    let server = AuthServer::start().await;
    first
        .add_connection(connection("work", &server, true))
        .unwrap();
    let s = Setup {
        dir,
        airlock: first,
        server,
    };
    s.server.next_expires_in.store(1, Ordering::SeqCst);
    connect(&s, "work").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.server.next_expires_in.store(3600, Ordering::SeqCst);
    let (dir_b, dir_c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let servers = [&s.airlock, &open(dir_b.path()), &open(dir_c.path())];

    let calls = (0..100).map(|i| servers[i % 3].test_connection("work"));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().account.as_deref(), Some("alice"));
    }
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);
    assert_eq!(s.server.api_requests.load(Ordering::SeqCst), 100);
    assert_eq!(secret(&s, "refresh-token"), s.server.current_refresh());
    assert_eq!(secret(&s, "access-token"), s.server.current_access());
}

/// Tokens that live shorter than the refresh margin are due as soon as they
/// arrive: a burst of calls still makes one refresh, not one per call, and
/// no call fails on a refresh token another call already rotated.
#[tokio::test]
async fn a_hundred_concurrent_calls_refresh_once_when_tokens_live_shorter_than_the_margin() {
    // The refreshed token is short-lived too (inside the 60 s margin).
    let s = hundred_calls_on_a_due_token(10).await;
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);
    assert_eq!(secret(&s, "access-token"), s.server.current_access());
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let s = setup().await;
    connect(&s, "work").await.unwrap();
    s.server.revoke_access();
    assert_eq!(call(&s).await.unwrap(), "alice");
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);
    assert_eq!(s.server.api_requests.load(Ordering::SeqCst), 2);
    assert_eq!(secret(&s, "access-token"), s.server.current_access());
}

#[tokio::test]
async fn invalid_grant_on_refresh_needs_reauth() {
    let s = setup().await;
    s.server.next_expires_in.store(1, Ordering::SeqCst);
    connect(&s, "work").await.unwrap();
    // Due halfway through its one-second lifetime.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let before = s.server.token_requests.load(Ordering::SeqCst);
    s.server.set_mode(TokenMode::InvalidGrant);
    let err = call(&s).await.unwrap_err().to_string();
    assert!(
        err.contains("connection `work` needs re-authorisation")
            && err.contains("OAuth flow again"),
        "{err}"
    );
    assert_eq!(s.server.token_requests.load(Ordering::SeqCst), before + 1);
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::NeedsReauth
    );
    // Later calls are refused up front, without asking the provider again.
    let err = call(&s).await.unwrap_err();
    assert!(matches!(err, ServiceError::NeedsReauth { .. }), "{err}");
    assert_eq!(s.server.token_requests.load(Ordering::SeqCst), before + 1);

    // Reconnecting fixes it.
    s.server.set_mode(TokenMode::Normal);
    s.server.next_expires_in.store(3600, Ordering::SeqCst);
    connect(&s, "work").await.unwrap();
    assert_eq!(call(&s).await.unwrap(), "alice");
}

/// Where `oauth_start_on(.., 1)` sends the browser back.
const REDIRECT_1: &str = "http://127.0.0.1:1/callback";

#[tokio::test]
async fn bad_callbacks_are_refused() {
    let s = setup().await;
    let a = &s.airlock;

    let err = a
        .oauth_callback("code=abc", REDIRECT_1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `state`"), "{err}");
    a.oauth_start_on("work", 1).unwrap();
    let err = a
        .oauth_callback("code=abc&state=forged", REDIRECT_1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown or already used"), "{err}");

    // Replayed: the first use consumes the state, even though it failed.
    let start = a.oauth_start_on("work", 1).unwrap();
    let q = format!("error=access_denied&state={}", start.state);
    let err = a
        .oauth_callback(&q, REDIRECT_1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("access_denied"), "{err}");
    let err = a
        .oauth_callback(&q, REDIRECT_1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown or already used"), "{err}");

    // Expired.
    let start = a.oauth_start_on("work", 1).unwrap();
    let db = rusqlite::Connection::open(s.dir.path().join("airlock.db")).unwrap();
    db.execute(
        "UPDATE oauth_states SET expires_at = '2000-01-01T00:00:00Z'",
        [],
    )
    .unwrap();
    let err = a
        .oauth_callback(&format!("code=abc&state={}", start.state), REDIRECT_1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired"), "{err}");
    assert_eq!(s.server.token_requests.load(Ordering::SeqCst), 0);
    assert_eq!(
        a.connection("work").unwrap().status,
        ConnectionStatus::NeedsReauth
    );
}

#[tokio::test]
async fn provider_errors_are_escaped_in_the_page() {
    let s = setup().await;
    let listener = CallbackListener::bind(0).await.unwrap();
    let start = s.airlock.oauth_start_on("work", listener.port()).unwrap();
    let callback = format!(
        "{}?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={}",
        start.redirect_uri, start.state
    );
    let stray = format!("{}?code=x&state=someone-else", start.redirect_uri);
    let browser = async {
        // A callback with another state gets an error page; the flow goes on.
        let (status, _, page) = get(&stray).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("unknown or already used"), "{page}");
        get(&callback).await
    };
    let (served, (status, _, page)) =
        tokio::join!(s.airlock.oauth_serve(listener, &start), browser);
    let err = served.unwrap_err().to_string();
    assert!(err.contains("access_denied"), "{err}");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    // The page renderer escapes whatever the error says.
    let (_, html) = callback_page(&Err(ServiceError::Invalid("<b>&".into())));
    assert!(html.contains("&lt;b&gt;&amp;"), "{html}");
}

#[tokio::test]
async fn token_endpoint_failures_are_clear_and_store_nothing() {
    let s = setup().await;
    for (mode, needle) in [
        (TokenMode::Redirect, "redirect"),
        (TokenMode::ServerError, "500"),
        (TokenMode::Malformed, "not JSON"),
        (TokenMode::NoAccessToken, "access_token"),
    ] {
        s.server.set_mode(mode);
        let err = connect(&s, "work").await.unwrap_err().to_string();
        assert!(err.contains(needle), "{mode:?}: {err}");
        assert!(!err.contains("CANARY"), "{err}");
        assert_eq!(secret(&s, "access-token"), None);
        assert_eq!(
            s.airlock.connection("work").unwrap().status,
            ConnectionStatus::NeedsReauth
        );
    }
    // Every one of them was audited, with its outcome.
    let entries = s
        .airlock
        .list_audit(&airlock::audit::AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_no_secrets_at_rest(&s);
}

#[tokio::test]
async fn app_credentials_resolve_connection_then_org_then_env() {
    let s = setup().await;
    s.airlock
        .add_connection(connection("shared", &s.server, false))
        .unwrap();
    let err = s.airlock.oauth_start("shared").unwrap_err().to_string();
    assert!(err.contains("its own client id"), "{err}");
    assert!(
        err.contains("register an OAuth app for plugin `oauth-minimal`"),
        "{err}"
    );
    assert!(err.contains("$AIRLOCK_TEST_OAUTH_CLIENT_ID"), "{err}");

    // An organisation-level app serves connections without their own.
    let org_secret = SecretString::from("CANARY-org-secret-77");
    s.airlock
        .set_oauth_app(
            "oauth-minimal",
            "org-client",
            Some(&org_secret),
            &Default::default(),
        )
        .unwrap();
    s.server.set_client("org-client", "CANARY-org-secret-77");
    connect(&s, "shared").await.unwrap();
    assert_eq!(
        s.airlock
            .test_connection("shared")
            .await
            .unwrap()
            .account
            .as_deref(),
        Some("alice")
    );
    // The connection's own app still wins for `work`.
    let start = s.airlock.oauth_start("work").unwrap();
    assert!(start.authorization_url.contains(CLIENT_ID));
    assert!(start.redirect_uri.starts_with("http://127.0.0.1:"));
}

/// `airlock oauth connect` as an operator runs it: the binary prints the
/// authorisation URL, the "browser" follows it, the binary exits 0 and the
/// connection is active with tokens sealed in the vault.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_connects_through_the_loopback_callback() {
    use std::io::BufRead;
    let s = setup().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["oauth", "connect", "work", "--no-browser", "--port", "0"])
        .env("AIRLOCK_DATA_DIR", s.dir.path())
        .env("AIRLOCK_EGRESS_ALLOW_PRIVATE", "127.0.0.0/8")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the URL, then keep draining stdout so the CLI can print its last line.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rest = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines().map(Result::unwrap);
        let url = lines
            .find_map(|l| {
                l.trim()
                    .starts_with("http://")
                    .then(|| l.trim().to_string())
            })
            .expect("the CLI prints the authorisation URL");
        tx.send(url).unwrap();
        lines.collect::<Vec<_>>().join("\n")
    });
    let url = rx.await.unwrap();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let (status, page) = browse(&url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = rest.await.unwrap();
    assert!(
        printed.contains("connection work is authorised"),
        "{printed}"
    );
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::Active
    );
    assert!(secret(&s, "access-token").is_some());
    call(&s).await.unwrap();
}

/// A connection setting pasted into an endpoint stays inside its path
/// segment: `x/../../evil` as the Entra tenant cannot move the authorize or
/// token request to another path of the identity provider, and `..` is refused.
#[test]
fn placeholder_values_cannot_escape_their_place_in_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    let (_, wasm) = airlock_test_artifacts::PLUGINS
        .iter()
        .find(|(n, _)| *n == "azure-devops")
        .unwrap();
    crate::service::install(&airlock, wasm);
    let add = |name: &str, tenant: &str| {
        airlock
            .add_connection(NewConnection {
                name: name.into(),
                plugin_id: "azure-devops".into(),
                settings: [
                    ("base-url", "https://dev.azure.com/acme"),
                    ("project", "Web"),
                    ("tenant", tenant),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                auth: AuthInput::OAuth2 {
                    client_id: Some("client-1".into()),
                    client_secret: None,
                },
                scope: Scope::Global,
            })
            .unwrap()
    };
    add("escape", "x/../../evil");
    let start = airlock.oauth_start_on("escape", 1).unwrap();
    let url = url::Url::parse(&start.authorization_url).unwrap();
    assert_eq!(url.host_str(), Some("login.microsoftonline.com"));
    assert_eq!(url.path(), "/x%2F..%2F..%2Fevil/oauth2/v2.0/authorize");

    add("dots", "..");
    let err = airlock.oauth_start_on("dots", 1).unwrap_err().to_string();
    assert!(err.contains("`tenant`") && err.contains("`..`"), "{err}");
}

/// RFC 9207: an authorisation response naming another issuer is refused
/// before its code is exchanged; one naming this provider goes through.
#[tokio::test]
async fn a_callback_from_another_issuer_is_refused_before_any_exchange() {
    let s = setup().await;
    s.server.state.lock().unwrap().iss = Some("https://evil.example".into());
    let err = connect(&s, "work").await.unwrap_err().to_string();
    assert!(
        err.contains("issuer") && err.contains("evil.example"),
        "{err}"
    );
    assert_eq!(s.server.token_requests.load(Ordering::SeqCst), 0);
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::NeedsReauth
    );
    // Same origin as the authorisation endpoint: accepted.
    s.server.state.lock().unwrap().iss = Some(s.server.uri());
    connect(&s, "work").await.unwrap();
    assert_eq!(call(&s).await.unwrap(), "alice");
}

/// A state answers only the flow that created it: a flow started for the
/// management API's callback is not completed at a CLI listener, nor at
/// another redirect, and the listener does not even consume it.
#[tokio::test]
async fn a_callback_is_bound_to_the_flow_and_redirect_that_started_it() {
    let s = setup().await;
    let api = s
        .airlock
        .oauth_start_redirect("work", "https://airlock.example/api/v1/oauth/callback")
        .unwrap();
    // The provider's answer for the API flow, delivered to a CLI listener
    // waiting for a flow of its own.
    let listener = CallbackListener::bind(0).await.unwrap();
    let port = listener.port();
    let cli = s.airlock.oauth_start_on("work", port).unwrap();
    let stray = format!(
        "http://127.0.0.1:{port}/callback?code=c&state={}",
        api.state
    );
    let serve = s.airlock.oauth_serve(listener, &cli);
    let deliver = async {
        let (status, _, page) = get(&stray).await;
        // Then the listener's own answer ends it.
        let own = format!(
            "http://127.0.0.1:{port}/callback?error=access_denied&state={}",
            cli.state
        );
        let _ = get(&own).await;
        (status, page)
    };
    let (served, (status, page)) = tokio::join!(serve, deliver);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("another authorisation"), "{page}");
    assert!(served.unwrap_err().to_string().contains("access_denied"));

    // The stray state was not consumed; delivered to the wrong redirect it
    // is refused (and consumed) without an exchange.
    let err = s
        .airlock
        .oauth_callback(
            &format!("code=c&state={}", api.state),
            &format!("http://127.0.0.1:{port}/callback"),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("was started for https://airlock.example"),
        "{err}"
    );
    assert_eq!(s.server.token_requests.load(Ordering::SeqCst), 0);
}

/// An OAuth connection's previous token rows put back into `airlock.db` (an
/// older copy of just those rows, same master key, no key rotation since)
/// are refused: the next call fails saying what happened and what to do,
/// without sending the superseded access token upstream and without
/// refreshing with the restored refresh token. Connecting again recovers.
#[tokio::test]
async fn restored_previous_token_rows_are_refused_without_being_used() {
    let s = setup().await;
    connect(&s, "work").await.unwrap();
    let id = s.airlock.connection("work").unwrap().id;
    let db = rusqlite::Connection::open(s.dir.path().join("airlock.db")).unwrap();
    // The "backup": the connection's secret rows as they are now.
    let backup: Vec<(String, String, u32, Vec<u8>, String)> = db
        .prepare(
            "SELECT id, field, key_version, ciphertext, updated_at
             FROM secrets WHERE connection_id = ?1",
        )
        .unwrap()
        .query_map([&id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let fields: Vec<&str> = backup.iter().map(|r| r.1.as_str()).collect();
    assert!(
        fields.contains(&"access-token") && fields.contains(&"refresh-token"),
        "{fields:?}"
    );

    // The upstream stops accepting the access token: a refresh replaces
    // the access and the refresh token.
    s.server.revoke_access();
    assert_eq!(call(&s).await.unwrap(), "alice");
    assert_eq!(s.server.refresh_requests.load(Ordering::SeqCst), 1);

    // The previous rows go back in, ids, ciphertexts and all.
    db.execute("DELETE FROM secrets WHERE connection_id = ?1", [&id])
        .unwrap();
    for (row_id, field, version, ciphertext, updated_at) in &backup {
        db.execute(
            "INSERT INTO secrets (id, connection_id, field, key_version, ciphertext, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![row_id, id, field, version, ciphertext, updated_at],
        )
        .unwrap();
    }
    let api_before = s.server.api_requests.load(Ordering::SeqCst);
    let tokens_before = s.server.token_requests.load(Ordering::SeqCst);
    let err = call(&s).await.unwrap_err().to_string();
    assert_eq!(
        s.server.api_requests.load(Ordering::SeqCst),
        api_before,
        "the superseded access token was sent upstream: {err}"
    );
    assert_eq!(
        s.server.token_requests.load(Ordering::SeqCst),
        tokens_before,
        "the restored refresh token was used: {err}"
    );
    assert!(err.contains("restored"), "{err}");
    assert!(err.contains("OAuth flow again"), "{err}");
    assert!(!err.contains("CANARY"), "{err}");
    // Still refused on the next call, after a restart too.
    let s = Setup {
        airlock: {
            drop(s.airlock);
            new_airlock(s.dir.path())
        },
        ..s
    };
    let err = call(&s).await.unwrap_err().to_string();
    assert!(err.contains("restored"), "{err}");
    assert_eq!(s.server.api_requests.load(Ordering::SeqCst), api_before);
    assert_eq!(
        s.server.token_requests.load(Ordering::SeqCst),
        tokens_before
    );

    // Connecting again replaces the rows.
    connect(&s, "work").await.unwrap();
    assert_eq!(call(&s).await.unwrap(), "alice");
    assert_no_secrets_at_rest(&s);
}
