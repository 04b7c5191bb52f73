//! The pooled keep-alive HTTP client every plugin call shares, and the
//! connector under it that resolves names, filters addresses, and connects
//! only to an address it checked.
//!
//! A destination can be admitted before anything is sent
//! ([`HttpClient::admit`]): its name is resolved and checked against the
//! address policy, so a refused address is a refusal the caller can record,
//! not a failed send. The checked resolution is pinned for a short while and
//! the connector dials exactly those addresses, so a name that resolves
//! differently a moment later (DNS rebinding) cannot slip another address in.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::addr::{AddressDenied, AddressPolicy};

/// Body type the client sends: request bodies are buffered (and capped)
/// before they leave so the audit record can carry their hash.
pub type OutgoingBody = http_body_util::Full<Bytes>;

type Pooled = Client<hyper_rustls::HttpsConnector<FilteringConnector>, OutgoingBody>;

/// The shared client: a keep-alive pool over the filtering connector, and
/// the resolver that admits destinations.
#[derive(Debug, Clone)]
pub struct HttpClient {
    pooled: Pooled,
    resolver: Arc<Resolver>,
}

impl HttpClient {
    /// Send a request (the pool's `request`); redirects are never followed.
    pub fn request(
        &self,
        request: http::Request<OutgoingBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.pooled.request(request)
    }

    /// Resolve `origin`'s host and check its addresses before anything is
    /// sent there: `Err(ConnectError::Denied)` when the policy allows none of
    /// them. The checked addresses are what the connector then dials.
    pub async fn admit(&self, origin: &super::Origin) -> Result<(), ConnectError> {
        let addrs = self.resolver.resolve(origin.host(), origin.port()).await?;
        self.resolver.allowed(&addrs).map(|_| ())
    }
}

/// How long a checked resolution is reused by admissions and the connector.
const PIN_TTL: Duration = Duration::from_secs(30);

/// A checked resolution and when it was made.
type Pinned = (Arc<[SocketAddr]>, Instant);

/// Resolves names (with a short-lived pin of each answer) and checks
/// addresses against the policy.
#[derive(Debug)]
struct Resolver {
    policy: Arc<AddressPolicy>,
    timeout: Duration,
    pins: Mutex<HashMap<(String, u16), Pinned>>,
}

impl Resolver {
    /// The addresses of `host` (a name, or an IP literal, bracketed or not).
    async fn resolve(&self, host: &str, port: u16) -> Result<Arc<[SocketAddr]>, ConnectError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.pins.lock().unwrap().get(&key)
            && at.elapsed() < PIN_TTL
        {
            return Ok(addrs.clone());
        }
        let lookup = tokio::net::lookup_host((host, port));
        let addrs: Arc<[SocketAddr]> = match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => return Err(ConnectError::DnsTimeout { host: key.0 }),
            Ok(Err(source)) => {
                return Err(ConnectError::Dns {
                    host: key.0,
                    source,
                });
            }
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>().into(),
        };
        if addrs.is_empty() {
            return Err(ConnectError::NoAddress { host: key.0 });
        }
        let mut pins = self.pins.lock().unwrap();
        pins.retain(|_, (_, at)| at.elapsed() < PIN_TTL);
        pins.insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }

    /// The addresses the policy allows, in order; `Denied` (naming the first
    /// refused one) when there is none.
    fn allowed(&self, addrs: &[SocketAddr]) -> Result<Vec<SocketAddr>, ConnectError> {
        let mut denied = None;
        let ok: Vec<SocketAddr> = addrs
            .iter()
            .filter(|a| match self.policy.check(a.ip()) {
                Ok(()) => true,
                Err(d) => {
                    denied.get_or_insert(d);
                    false
                }
            })
            .copied()
            .collect();
        match (ok.is_empty(), denied) {
            (true, Some(d)) => Err(ConnectError::Denied(d)),
            _ => Ok(ok),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DNS lookup of {host} failed: {source}")]
    Dns {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS lookup of {host} timed out")]
    DnsTimeout { host: String },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error(transparent)]
    Denied(#[from] AddressDenied),
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {host} timed out")]
    Timeout { host: String },
    #[error("request URI has no host")]
    NoHost,
}

/// Connects to checked addresses only. Cloned into the client's pool.
#[derive(Debug, Clone)]
pub struct FilteringConnector {
    resolver: Arc<Resolver>,
}

impl FilteringConnector {
    async fn connect(self, uri: http::Uri) -> Result<TokioIo<TcpStream>, ConnectError> {
        let host = uri.host().ok_or(ConnectError::NoHost)?.to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        // Every address is checked, and only checked addresses are dialled:
        // a name that resolves to one public and one private address can
        // never reach the private one.
        let addrs = self.resolver.resolve(&host, port).await?;
        let mut last_err = None;
        for addr in self.resolver.allowed(&addrs)? {
            let connect = TcpStream::connect(addr);
            match tokio::time::timeout(self.resolver.timeout, connect).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(source)) => last_err = Some(ConnectError::Connect { addr, source }),
                Err(_) => last_err = Some(ConnectError::Timeout { host: host.clone() }),
            }
        }
        Err(last_err.unwrap_or(ConnectError::NoAddress { host }))
    }
}

impl tower_service::Service<http::Uri> for FilteringConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// Build the shared client: HTTP/1.1 keep-alive pool, TLS with the Mozilla
/// root set, connections only through the filtering connector. The client
/// itself never follows redirects.
pub fn build_client(policy: Arc<AddressPolicy>, connect_timeout: Duration) -> HttpClient {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
    .with_no_client_auth();
    let resolver = Arc::new(Resolver {
        policy,
        timeout: connect_timeout,
        pins: Mutex::default(),
    });
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(FilteringConnector {
            resolver: resolver.clone(),
        });
    let pooled = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https);
    HttpClient { pooled, resolver }
}
