//! Each OAuth-capable plugin (ServiceNow, Azure DevOps, Confluence Data
//! Center) against a real OAuth 2.0 provider on loopback
//! (`oauth2-mock-server`, [`crate::idp`]), its endpoints set by the
//! operator's override on the connection or on the plugin's app: the
//! authorization-code flow with PKCE through the loopback callback, a call
//! whose request to the API (a wiremock stand-in) carries the provider's
//! access token, one refresh for several calls after expiry, and
//! `invalid_grant` on refresh marking the connection needs-reauth.

use std::time::Duration;

use airlock::Airlock;
use airlock::oauth::{CallbackListener, EndpointSource};
use airlock::service::{AuthInput, ConnectionStatus, NewConnection, Scope};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use secrecy::SecretString;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::idp::Idp;

const CLIENT_ID: &str = "airlock-e2e";

/// Where the overrides are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Connection,
    App,
}

/// The plugin, its settings besides `base-url`, and where its overrides go.
struct Case {
    plugin: &'static str,
    settings: &'static [(&'static str, &'static str)],
    layer: Layer,
}

const SERVICENOW: Case = Case {
    plugin: "servicenow",
    settings: &[],
    layer: Layer::App,
};
const AZURE_DEVOPS_SERVER: Case = Case {
    plugin: "azure-devops",
    settings: &[("project", "Web")],
    layer: Layer::Connection,
};
const CONFLUENCE_DATA_CENTER: Case = Case {
    plugin: "confluence",
    settings: &[("deployment", "data-center")],
    layer: Layer::Connection,
};

/// One answer every plugin's `test-connection` accepts: a ServiceNow
/// `result` list, an Azure DevOps project, a Confluence user.
fn api_answer() -> serde_json::Value {
    serde_json::json!({
        "result": [{"sys_id": "6816f79cc0a8016401c5a33be04be441", "user_name": "alice", "name": "Alice"}],
        "id": "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "name": "Web", "state": "wellFormed",
        "type": "known", "username": "alice", "displayName": "Alice"
    })
}

/// A browser that follows nothing: GET, status and `location`.
async fn get(url: &str) -> (StatusCode, Option<String>) {
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
    let _ = resp.into_body().collect().await;
    (status, location)
}

/// Authorise `name`: the provider's authorize page redirects (as a user's
/// consent would) to airlock's loopback callback.
async fn connect(airlock: &Airlock, name: &str) -> Result<(), airlock::ServiceError> {
    let listener = CallbackListener::bind(0).await.unwrap();
    let start = airlock.oauth_start_on(name, listener.port()).unwrap();
    let browser = async {
        let (status, location) = get(&start.authorization_url).await;
        assert_eq!(status, StatusCode::FOUND, "{}", start.authorization_url);
        let location = location.expect("a redirect to the callback");
        assert!(location.contains("iss="), "{location}");
        get(&location).await
    };
    let (served, _) = tokio::join!(airlock.oauth_serve(listener, &start), browser);
    served.map(|_| ())
}

/// The `Authorization` headers the API saw, in order.
async fn bearer_tokens(api: &MockServer) -> Vec<String> {
    api.received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

struct Stand {
    _dir: tempfile::TempDir,
    airlock: Airlock,
    idp: Idp,
    api: MockServer,
}

/// A service with `case.plugin` installed, an OAuth connection `work` to
/// the API stand-in, and its endpoints pointed at the provider.
async fn stand(case: &Case) -> Stand {
    let idp = Idp::start();
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(api_answer()))
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    crate::service::install(&airlock, crate::openai::plugin_path(case.plugin));
    let mut settings: std::collections::BTreeMap<String, String> = case
        .settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    settings.insert("base-url".into(), api.uri());
    let secret = SecretString::from("CANARY-idp-client-secret");
    let own_app = case.layer == Layer::Connection;
    airlock
        .add_connection(NewConnection {
            name: "work".into(),
            plugin_id: case.plugin.into(),
            settings,
            auth: AuthInput::OAuth2 {
                client_id: own_app.then(|| CLIENT_ID.to_string()),
                client_secret: own_app.then(|| secret.clone()),
            },
            scope: Scope::Global,
        })
        .unwrap();
    let overrides = airlock
        .parse_oauth_endpoints(
            Some(&format!("{}/authorize", idp.url)),
            Some(&format!("{}/token", idp.url)),
            Some(&idp.issuer),
        )
        .unwrap();
    match case.layer {
        Layer::Connection => {
            airlock
                .set_oauth_endpoints("work", &overrides, "test")
                .await
                .unwrap();
        }
        Layer::App => {
            airlock
                .set_oauth_app(case.plugin, CLIENT_ID, Some(&secret), &overrides)
                .unwrap();
        }
    }
    Stand {
        _dir: dir,
        airlock,
        idp,
        api,
    }
}

async fn full_flow(case: Case) {
    let mut s = stand(&case).await;
    let shown = s.airlock.oauth_endpoints("work").unwrap();
    let source = match case.layer {
        Layer::Connection => EndpointSource::Connection,
        Layer::App => EndpointSource::App,
    };
    assert_eq!(shown.token_url, format!("{}/token", s.idp.url));
    assert_eq!(
        (
            shown.authorize_url_from,
            shown.token_url_from,
            shown.issuer_from
        ),
        (source, source, Some(source))
    );

    // Tokens that are due for a refresh a second after they are issued.
    s.idp.configure("expires_in 2");
    connect(&s.airlock, "work").await.unwrap();
    let authorize: Vec<_> = s
        .idp
        .events()
        .into_iter()
        .filter(|e| e["event"] == "authorize")
        .collect();
    assert_eq!(authorize.len(), 1);
    assert_eq!(authorize[0]["code_challenge_method"], "S256");
    assert_eq!(authorize[0]["client_id"], CLIENT_ID);
    let exchange = s.idp.token_requests("authorization_code");
    assert_eq!(exchange.len(), 1, "{exchange:?}");
    assert_eq!(exchange[0]["status"], 200);
    assert_eq!(exchange[0]["has_code_verifier"], true);
    assert_eq!(exchange[0]["client_authenticated"], true);
    let first = exchange[0]["access_token"].as_str().unwrap().to_string();

    s.airlock.test_connection("work").await.unwrap();
    let seen = bearer_tokens(&s.api).await;
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|h| *h == format!("Bearer {first}")),
        "{seen:?}"
    );

    // Expired: several calls at once refresh once, and use the new token.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let calls = (0..4).map(|_| s.airlock.test_connection("work"));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let refreshes = s.idp.token_requests("refresh_token");
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    let second = refreshes[0]["access_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let seen = bearer_tokens(&s.api).await;
    assert_eq!(seen.last().unwrap(), &format!("Bearer {second}"));

    // The provider refuses the next refresh: the connection needs a new
    // authorisation, and says so.
    s.idp.configure("refresh invalid_grant");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = s.airlock.test_connection("work").await.unwrap_err();
    let text = format!("{:#}", anyhow::Error::new(err));
    assert!(
        text.contains("`work`") && text.contains("invalid_grant"),
        "{text}"
    );
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::NeedsReauth
    );
    assert_eq!(s.idp.token_requests("refresh_token").len(), 2);

    // A new authorisation brings it back.
    s.idp.configure("refresh ok");
    connect(&s.airlock, "work").await.unwrap();
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::Active
    );
    s.airlock.test_connection("work").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicenow_through_a_local_identity_provider_set_on_the_org_app() {
    full_flow(SERVICENOW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_devops_server_through_a_local_identity_provider() {
    full_flow(AZURE_DEVOPS_SERVER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluence_data_center_through_a_local_identity_provider() {
    full_flow(CONFLUENCE_DATA_CENTER).await;
}

/// The provider names itself `http://localhost:PORT` while its endpoints
/// are at `127.0.0.1`: without the issuer override the `iss` check refuses
/// its answer before any exchange.
#[tokio::test]
async fn the_overridden_issuer_is_the_one_iss_must_name() {
    let s = stand(&AZURE_DEVOPS_SERVER).await;
    let without_issuer = s
        .airlock
        .parse_oauth_endpoints(
            Some(&format!("{}/authorize", s.idp.url)),
            Some(&format!("{}/token", s.idp.url)),
            None,
        )
        .unwrap();
    s.airlock
        .set_oauth_endpoints("work", &without_issuer, "test")
        .await
        .unwrap();
    let err = connect(&s.airlock, "work").await.unwrap_err().to_string();
    assert!(err.contains("issuer"), "{err}");
    assert!(s.idp.token_requests("authorization_code").is_empty());
}

/// A token endpoint changed after the authorisation never receives the
/// refresh token the old one issued: the connection needs a new
/// authorisation instead.
#[tokio::test]
async fn a_changed_token_endpoint_gets_no_refresh_token() {
    let mut s = stand(&CONFLUENCE_DATA_CENTER).await;
    s.idp.configure("expires_in 2");
    connect(&s.airlock, "work").await.unwrap();
    let elsewhere = s
        .airlock
        .parse_oauth_endpoints(
            Some(&format!("{}/authorize", s.idp.url)),
            Some(&format!("{}/other/token", s.idp.url)),
            Some(&s.idp.issuer),
        )
        .unwrap();
    s.airlock
        .set_oauth_endpoints("work", &elsewhere, "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = s.airlock.test_connection("work").await.unwrap_err();
    let text = format!("{:#}", anyhow::Error::new(err));
    assert!(text.contains("token endpoint is now"), "{text}");
    assert!(s.idp.token_requests("refresh_token").is_empty());
    assert_eq!(
        s.airlock.connection("work").unwrap().status,
        ConnectionStatus::NeedsReauth
    );
}

/// Overrides are refused at the edge: plain http to a non-loopback host, a
/// query, credentials in the URL.
#[tokio::test]
async fn overrides_are_checked_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    for (token, needle) in [
        ("http://idp.example.com/token", "plain http"),
        ("https://idp.example.com/token?x=1", "query"),
        ("https://u:p@idp.example.com/token", "credentials"),
    ] {
        let err = airlock
            .parse_oauth_endpoints(None, Some(token), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains("token-url"),
            "{token}: {err}"
        );
    }
}

/// `airlock` on `dir`; exit code, stdout, stderr.
fn cli(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_PASSPHRASE")
        .env_remove("AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS")
        .envs(env.iter().copied())
        .output()
        .expect("run airlock");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's commands: overrides on `connection add` (Confluence Data
/// Center's own provider), shown with their source, refused over plain
/// http unless allowed in clear text, cleared back to the manifest's.
#[test]
fn the_cli_sets_shows_and_clears_endpoint_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wasm = crate::openai::plugin_path("confluence");
    let (code, _, err) = cli(d, &["plugin", "install", wasm, "--approve"], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(
        d,
        &[
            "connection",
            "add",
            "wiki",
            "--plugin",
            "confluence",
            "--auth",
            "oauth2",
            "--global",
            "--setting",
            "base-url=https://wiki.acme.example",
            "--setting",
            "deployment=data-center",
            "--client-id",
            "airlock",
            "--secret-env",
            "WIKI_SECRET",
            "--oauth-authorize-url",
            "{base-url}/rest/oauth2/latest/authorize",
            "--oauth-token-url",
            "{base-url}/rest/oauth2/latest/token",
        ],
        &[("WIKI_SECRET", "CANARY-wiki-secret")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("https://wiki.acme.example/rest/oauth2/latest/token (connection override"),
        "{out}"
    );
    let (code, out, err) = cli(d, &["oauth", "endpoints", "wiki", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["token_url_from"], "connection");
    assert_eq!(
        shown["authorize_url"],
        "https://wiki.acme.example/rest/oauth2/latest/authorize"
    );

    let plain = [
        "oauth",
        "app",
        "set",
        "confluence",
        "--client-id",
        "org",
        "--token-url",
        "http://idp.intranet.example/token",
    ];
    let (code, _, err) = cli(d, &plain, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS"),
        "{err}"
    );
    let allowed = [(
        "AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS",
        "http://idp.intranet.example",
    )];
    let (code, out, err) = cli(d, &plain, &allowed);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("http://idp.intranet.example/token (organisation app"),
        "{out}"
    );

    let (code, _, err) = cli(
        d,
        &[
            "connection",
            "add",
            "pat",
            "--plugin",
            "confluence",
            "--auth",
            "bearer",
            "--global",
            "--setting",
            "base-url=https://wiki.acme.example",
            "--secret-env",
            "WIKI_SECRET",
            "--oauth-token-url",
            "https://idp.example/token",
        ],
        &[("WIKI_SECRET", "x")],
    );
    assert_eq!(code, 2, "{err}");

    let (code, out, err) = cli(
        d,
        &["oauth", "endpoints", "wiki", "--clear", "--json"],
        &allowed,
    );
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["token_url"], "http://idp.intranet.example/token");
    assert_eq!(shown["token_url_from"], "app");
    assert_eq!(shown["authorize_url_from"], "manifest");
}
