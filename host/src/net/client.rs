//! The pooled keep-alive HTTP client every plugin call shares, and the
//! connector under it that resolves names, filters addresses, and connects
//! only to an address it checked.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::addr::{AddressDenied, AddressPolicy};

/// Body type the client sends: request bodies are buffered (and capped)
/// before they leave so the audit record can carry their hash.
pub type OutgoingBody = http_body_util::Full<Bytes>;

/// The shared client.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<FilteringConnector>, OutgoingBody>;

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

/// Resolves, filters, connects. Cloned into the client's pool.
#[derive(Debug, Clone)]
pub struct FilteringConnector {
    policy: Arc<AddressPolicy>,
    connect_timeout: Duration,
}

impl FilteringConnector {
    pub fn new(policy: Arc<AddressPolicy>, connect_timeout: Duration) -> Self {
        Self {
            policy,
            connect_timeout,
        }
    }

    async fn connect(self, uri: http::Uri) -> Result<TokioIo<TcpStream>, ConnectError> {
        let host = uri.host().ok_or(ConnectError::NoHost)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });

        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((host.clone(), port));
                match tokio::time::timeout(self.connect_timeout, lookup).await {
                    Err(_) => return Err(ConnectError::DnsTimeout { host }),
                    Ok(Err(source)) => return Err(ConnectError::Dns { host, source }),
                    Ok(Ok(addrs)) => addrs.collect(),
                }
            }
        };
        if addrs.is_empty() {
            return Err(ConnectError::NoAddress { host });
        }

        // Every address is checked, and only checked addresses are dialled:
        // a name that resolves to one public and one private address can never
        // reach the private one.
        let mut last_err = None;
        for addr in addrs {
            if let Err(denied) = self.policy.check(addr.ip()) {
                last_err.get_or_insert(ConnectError::Denied(denied));
                continue;
            }
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
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
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(FilteringConnector::new(policy, connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https)
}
