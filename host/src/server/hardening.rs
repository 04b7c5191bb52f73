//! Request checks that run before authentication: the `Host` allow-list of a
//! loopback-bound server (DNS rebinding), an early refusal of bodies whose
//! declared length is over the route's limit, and the access log and HTTP
//! metrics (which name the route template, never the raw path or query:
//! OAuth callbacks carry codes in their query).
//!
//! There is deliberately no CORS layer: browsers get no
//! `Access-Control-Allow-*` header, so no web page can read the API.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Whether `host` (a `Host` header value, port included or not) names this
/// machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => v6,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Middleware: on a server bound to loopback, refuse requests whose `Host`
/// is not a loopback name. A web page on `evil.example` that rebinds its
/// name to 127.0.0.1 still sends `Host: evil.example`.
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.loopback_only() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        match host {
            Some(h) if is_loopback_host(h) => {}
            other => {
                tracing::warn!(host = ?other, "refused a request for a non-loopback Host");
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "forbidden_host",
                    "this server is bound to loopback and only answers requests addressed to \
                     localhost, 127.0.0.1 or [::1]",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Middleware: refuse a body whose `Content-Length` is over the route's
/// limit before reading any of it. Bodies without a length are cut off by
/// the body-limit layer as they arrive.
pub async fn check_length(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let limit = state.body_limit(matched.as_ref().map(MatchedPath::as_str));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than this route accepts ({limit} bytes)"),
        )
        .into_response();
        // The unread body makes the connection unusable for another request.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(req).await
}

/// Middleware: log each request (method, route template, status, time) and
/// count it.
pub async fn access_log(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = matched
        .as_ref()
        .map_or("(unmatched)", MatchedPath::as_str)
        .to_string();
    let response = next.run(req).await;
    let status = response.status();
    tracing::info!(
        method = %method,
        route = %route,
        status = status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "api request"
    );
    state
        .airlock()
        .metrics()
        .record_http(method.as_str(), &route, status.as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_names_only() {
        for ok in [
            "localhost",
            "localhost:7300",
            "LOCALHOST:1",
            "api.localhost",
            "127.0.0.1",
            "127.0.0.1:7300",
            "127.5.6.7:80",
            "[::1]",
            "[::1]:7300",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7300",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "[::2]:80",
            "[::1]x",
            "localhost:port",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
