//! The loopback callback listener: bound to 127.0.0.1 only, alive only while
//! an authorisation is pending, serving `/callback` with a short page.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::flow::{CallbackOutcome, OAuthStart};
use crate::credential::oauth::OAuthError;
use crate::service::{Airlock, ServiceError};

/// Port of the callback listener unless configured otherwise.
pub const DEFAULT_CALLBACK_PORT: u16 = 8765;

/// A bound callback listener (127.0.0.1 only).
#[derive(Debug)]
pub struct CallbackListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl CallbackListener {
    /// Bind `127.0.0.1:<port>` (`0` picks a free port).
    pub async fn bind(port: u16) -> Result<Self, OAuthError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| {
                OAuthError::Listener(format!(
                    "cannot listen on 127.0.0.1:{port}: {e} (is another `airlock oauth connect` \
                     running? set another port with --port)"
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| OAuthError::Listener(e.to_string()))?;
        Ok(Self { listener, addr })
    }

    /// The address actually bound (always 127.0.0.1).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port actually bound (the free one chosen when bound with `0`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Where the management API's callback page sends the browser next: the
/// console's connections page, on the same origin.
pub const CONSOLE_LINK: &str = "/#/connections";

/// The page the browser sees after the management API's callback
/// (`GET /api/v1/oauth/callback`), with a link back to the console served
/// by the same server. Provider text is HTML-escaped; the page has no
/// script or style.
pub fn callback_page(result: &Result<CallbackOutcome, ServiceError>) -> (StatusCode, String) {
    page(result, Some(CONSOLE_LINK))
}

/// The page after the callback: `console` is the link back to the console
/// where one serves it; the `airlock oauth connect` listener has none (the
/// listener closes once the browser is back).
fn page(
    result: &Result<CallbackOutcome, ServiceError>,
    console: Option<&str>,
) -> (StatusCode, String) {
    let (status, title, detail) = match result {
        Ok(o) => (
            StatusCode::OK,
            "airlock: connected".to_string(),
            format!(
                "Connection <b>{}</b> is authorised. You can close this window.",
                escape(&o.connection.name)
            ),
        ),
        Err(e) if console.is_some() => (
            StatusCode::BAD_REQUEST,
            "airlock: authorisation failed".to_string(),
            format!(
                "{}<br>Start the authorisation again from the connection's page in the console.",
                escape(&e.to_string())
            ),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            "airlock: authorisation failed".to_string(),
            format!(
                "{}<br>You can close this window and run <code>airlock oauth connect</code> again.",
                escape(&e.to_string())
            ),
        ),
    };
    let back = console.map_or(String::new(), |href| {
        format!(
            "<p><a href=\"{}\">Back to the airlock console</a></p>",
            escape(href)
        )
    });
    (
        status,
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1><p>{detail}</p>{back}</body></html>"
        ),
    )
}

/// Minimal HTML escaping for text content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

type Reply = oneshot::Sender<(StatusCode, String)>;

impl Airlock {
    /// Serve the callback of `start` on `listener` until the authorisation
    /// completes (its `state` arrives, successfully or not) or expires.
    /// Callbacks with no or another `state` get an error page, are neither
    /// consumed nor exchanged, and the listener keeps waiting. The listener
    /// is closed when this returns.
    pub async fn oauth_serve(
        &self,
        listener: CallbackListener,
        start: &OAuthStart,
    ) -> Result<CallbackOutcome, ServiceError> {
        let expires = time::OffsetDateTime::parse(
            &start.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| OAuthError::Listener(format!("bad expiry: {e}")))?;
        let remaining = (expires - time::OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        let deadline = tokio::time::sleep(remaining);
        tokio::pin!(deadline);
        let (tx, mut rx) = mpsc::channel::<(String, Reply)>(16);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    return Err(OAuthError::Callback(
                        "the authorisation expired before the browser came back; start again".into(),
                    ).into());
                }
                accepted = listener.listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    if !peer.ip().is_loopback() {
                        continue;
                    }
                    let tx = tx.clone();
                    tasks.spawn(serve_connection(stream, tx));
                }
                Some((query, reply)) = rx.recv() => {
                    let ours = url::form_urlencoded::parse(query.as_bytes())
                        .any(|(k, v)| k == "state" && v == start.state.as_str());
                    if !ours {
                        // Another flow's answer (or a forgery): this listener
                        // neither consumes nor completes it.
                        let refused: Result<CallbackOutcome, ServiceError> =
                            Err(OAuthError::Callback(
                                "unknown or already used `state` for this listener, which waits for \
                                 another authorisation; nothing was exchanged"
                                    .into(),
                            )
                            .into());
                        let _ = reply.send(page(&refused, None));
                        continue;
                    }
                    let result = self.oauth_callback(&query, &start.redirect_uri).await;
                    let _ = reply.send(page(&result, None));
                    // Let the page reach the browser before closing.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                    return result;
                }
            }
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, tx: mpsc::Sender<(String, Reply)>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move { Ok::<_, Infallible>(handle(req, tx).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
}

async fn handle(
    req: Request<Incoming>,
    tx: mpsc::Sender<(String, Reply)>,
) -> Response<Full<Bytes>> {
    let page = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .header("referrer-policy", "no-referrer")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/callback" {
        return page(StatusCode::NOT_FOUND, "not found".into());
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx.send((query, reply_tx)).await.is_err() {
        return page(StatusCode::GONE, "this authorisation is over".into());
    }
    match reply_rx.await {
        Ok((status, body)) => page(status, body),
        Err(_) => page(StatusCode::GONE, "this authorisation is over".into()),
    }
}
