//! The management HTTP API (`airlock serve`): a JSON API under `/api/v1`
//! over the same [`Airlock`] calls the CLI makes, plus `/metrics`.
//!
//! Layout: [`openapi`] is the route registry (every route is added there
//! with its documentation and required role), [`auth`] checks tokens and
//! roles, [`hardening`] the `Host` header and body sizes, [`error`] the one
//! error shape, `routes/` has one file per route group, and [`console`]
//! serves the operator console at `/` (public files, no data).
//!
//! Adding a route group: write `routes/<group>.rs` with a
//! `pub fn routes(r: Routes) -> Routes` that calls [`Routes::add`] for each
//! route, and chain it in [`routes()`]. It is then authenticated, documented in
//! `/api/v1/openapi.json` (its request and answer schemas generated from the
//! handler's types) and covered by the OpenAPI lint and the README's route
//! table test.

pub mod auth;
pub mod console;
pub mod error;
pub mod hardening;
pub mod openapi;
mod routes;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::Method;

pub use auth::{Access, Principal};
pub use error::ApiError;
pub use openapi::{Operation, Routes};

use crate::service::Airlock;
use crate::service::InstallPlan;

/// The default address of `airlock serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7300";

/// Template of the plugin upload route, whose body limit is the larger one.
pub(crate) const UPLOAD_PATH: &str = "/api/v1/plugins";

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted body of every route but the plugin upload.
    pub max_body_bytes: usize,
    /// Largest accepted plugin upload.
    pub max_upload_bytes: usize,
    /// The URL browsers reach this server at (for the OAuth redirect URI);
    /// `http://<bound address>` when `None`.
    pub public_url: Option<String>,
    /// After SIGINT/SIGTERM, how long in-flight requests may take to finish
    /// before the server stops anyway. Plugin calls end at their own
    /// deadline well before this by default.
    pub shutdown_grace: Duration,
    /// Uploaded plugins waiting for approval, at most.
    pub max_pending_uploads: usize,
    /// Open client connections, at most; more are closed on accept.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (slow
    /// clients cannot hold connections open forever).
    pub header_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_upload_bytes: 64 << 20,
            public_url: None,
            shutdown_grace: Duration::from_secs(60),
            max_pending_uploads: 8,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    airlock: Arc<Airlock>,
    config: ServerConfig,
    loopback_only: bool,
    public_url: String,
    access: HashMap<(Method, &'static str), Access>,
    openapi: serde_json::Value,
    /// Uploaded plugins waiting for approval, by plugin id.
    pending: Mutex<HashMap<String, InstallPlan>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("public_url", &self.inner.public_url)
            .field("loopback_only", &self.inner.loopback_only)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The host the handlers act on.
    pub fn airlock(&self) -> &Arc<Airlock> {
        &self.inner.airlock
    }

    /// The configuration the server was built with.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn access(&self, method: &Method, path: &str) -> Option<Access> {
        // HEAD is answered by GET routes.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.inner
            .access
            .iter()
            .find(|((m, p), _)| m == method && *p == path)
            .map(|(_, a)| *a)
    }

    pub(crate) fn loopback_only(&self) -> bool {
        self.inner.loopback_only
    }

    pub(crate) fn body_limit(&self, route: Option<&str>) -> usize {
        if route == Some(UPLOAD_PATH) {
            self.inner.config.max_upload_bytes
        } else {
            self.inner.config.max_body_bytes
        }
    }

    /// The URL the OAuth provider sends the browser back to.
    pub fn oauth_redirect_uri(&self) -> String {
        format!(
            "{}/api/v1/oauth/callback",
            self.inner.public_url.trim_end_matches('/')
        )
    }

    pub(crate) fn openapi(&self) -> &serde_json::Value {
        &self.inner.openapi
    }

    pub(crate) fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, InstallPlan>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every route of the API, documented.
pub fn routes(config: &ServerConfig) -> Routes {
    let r = Routes::new();
    let r = routes::plugins::routes(r, config.max_upload_bytes);
    let r = routes::connections::routes(r);
    let r = routes::invoke::routes(r);
    let r = routes::oauth::routes(r);
    let r = routes::sync::routes(r);
    let r = routes::audit::routes(r);
    let r = routes::chat::routes(r);
    let r = routes::conversations::routes(r);
    let r = routes::tokens::routes(r);
    let r = routes::trust::routes(r);
    routes::meta::routes(r)
}

/// The complete application for a server bound at `addr`.
pub fn build(airlock: Arc<Airlock>, config: ServerConfig, addr: SocketAddr) -> Router {
    let (router, ops) = routes(&config).into_parts();
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let document = openapi::document(&ops, &public_url);
    let state = AppState {
        inner: Arc::new(Inner {
            airlock,
            loopback_only: addr.ip().is_loopback(),
            public_url,
            access: openapi::access_table(&ops)
                .into_iter()
                .chain(console::public_routes().map(|route| (route, Access::Public)))
                .collect(),
            openapi: document,
            pending: Mutex::new(HashMap::new()),
            config: config.clone(),
        }),
    };
    use axum::middleware::from_fn_with_state;
    // Layers run outermost last-added: security headers (on every answer,
    // refusals included), log, then Host check, then the declared length,
    // then the token.
    router
        .merge(console::router())
        .fallback(routes::meta::not_found)
        .method_not_allowed_fallback(routes::meta::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), hardening::check_length))
        .layer(from_fn_with_state(state.clone(), hardening::check_host))
        .layer(from_fn_with_state(state.clone(), hardening::access_log))
        .layer(axum::middleware::from_fn(console::security_headers))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves; then stop accepting, let
/// in-flight requests finish (each plugin call ends at its own deadline) for
/// at most [`ServerConfig::shutdown_grace`], and return.
///
/// Connections are bounded ([`ServerConfig::max_connections`]) and so is the
/// time a client may take over its headers
/// ([`ServerConfig::header_read_timeout`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    airlock: Arc<Airlock>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let addr = listener.local_addr()?;
    let grace = config.shutdown_grace;
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let app = build(airlock, config, addr);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing a new connection");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "requests still running after the shutdown grace period; stopping anyway");
        }
    }
    Ok(())
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// installed by this call (inside a Tokio runtime), not when the future is
/// first polled, so a signal that arrives right after start-up is not lost
/// to the default action.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
