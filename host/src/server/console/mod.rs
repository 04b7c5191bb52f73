//! The operator console: a single-page app served at `/` from the same
//! origin as `/api/v1`, every file embedded in the binary (no CDN, no
//! request to any other origin, works offline).
//!
//! The console is plain HTML, CSS and JavaScript modules written by hand:
//! there is no front-end build step, so what is served is exactly what is
//! in `assets/` and nothing can go stale. It signs in with an API token kept
//! in the tab's `sessionStorage` and sent as `Authorization: Bearer`; there
//! is no cookie, so there is no CSRF surface, and every page is a client of
//! the same API the CLI documents (the server enforces roles and projects
//! whatever the page shows).
//!
//! The files are public (they hold no data); [`security_headers`] puts a
//! strict Content-Security-Policy on every answer of the server, so a page
//! can load only these files, run no inline script or style, and cannot be
//! framed.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// The console's Content-Security-Policy: only this origin's files, no
/// inline script or style, no plugins, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes: the page at `/` and its files under `/console/`.
pub const PATHS: &[&str] = &["/", "/console/{file}"];

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console serves.
const ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "forms.js" => JS,
    "plugins.js" => JS,
    "connections.js" => JS,
    "operations.js" => JS,
    "chat.js" => JS,
    "sync.js" => JS,
    "audit.js" => JS,
    "tokens.js" => JS,
];

/// The names of the embedded files (for tests).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// The body of an embedded file (for tests).
pub fn asset(name: &str) -> Option<&'static str> {
    ASSETS.iter().find(|a| a.name == name).map(|a| a.body)
}

fn serve_asset(name: &str) -> Response {
    match ASSETS
        .iter()
        .find(|a| a.name == name && a.name != "index.html")
    {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                // The files change with the binary; revalidate each load.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => ApiError::not_found(format!("the console has no file `{name}`")).into_response(),
    }
}

async fn index() -> Response {
    let page = asset("index.html").unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
        .into_response()
}

async fn file(Path(name): Path<String>) -> Response {
    serve_asset(&name)
}

/// The console's routes, public (the files hold no data).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(file))
}

/// The console's routes as the access table records them: GET, no token.
pub fn public_routes() -> impl Iterator<Item = (Method, &'static str)> {
    PATHS.iter().map(|p| (Method::GET, *p))
}

/// Middleware: the console's security headers on every answer of the
/// server (API answers included: none of them is meant to be rendered, and
/// `nosniff` stops a browser from guessing that one is).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests;
