//! Test doubles for the egress stages: a call context over a
//! [`MemoryAudit`], a credential source that can refresh or fail, and a
//! hand-written HTTP/1.1 upstream on 127.0.0.1 that records what reached it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderName, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::call::{CallInner, CallTracker, EgressShared, HttpError, SendResult};
use super::send::CallEgress;
use crate::audit::MemoryAudit;
use crate::connection::Connection;
use crate::credential::{Credential, CredentialError, CredentialSource, StaticCredential};
use crate::limits::Limits;
use crate::net::{AddressPolicy, EgressRule, Origin, build_client};

/// How every denial names the caller in these tests.
pub(super) fn who() -> String {
    "plugin `probe` (connection `conn`)".to_string()
}

/// A connection named as [`who`] expects, with no settings or credential.
pub(super) fn connection() -> Connection {
    Connection::new("conn-id", "conn")
}

/// One call's egress context, with the audit log and tracker it writes to.
pub(super) struct Harness {
    pub(super) inner: Arc<CallInner>,
    pub(super) audit: Arc<MemoryAudit>,
    pub(super) tracker: Arc<CallTracker>,
}

impl Harness {
    /// The client may reach loopback only, where [`Upstream`] listens.
    pub(super) fn new(connection: Connection, grants: Vec<EgressRule>, limits: Limits) -> Self {
        let policy = AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap();
        Self::with_policy(connection, grants, limits, policy)
    }

    pub(super) fn with_policy(
        connection: Connection,
        grants: Vec<EgressRule>,
        limits: Limits,
        policy: AddressPolicy,
    ) -> Self {
        let audit = Arc::new(MemoryAudit::new());
        let tracker = Arc::new(CallTracker::default());
        let shared = EgressShared {
            client: build_client(Arc::new(policy), limits.connect_timeout),
            audit: audit.clone(),
            cleartext_origins: Arc::default(),
        };
        let egress = CallEgress::new(
            shared,
            "probe",
            "1.0.0",
            Arc::new(connection),
            grants,
            limits,
            tracker.clone(),
        );
        Self {
            inner: egress.inner,
            audit,
            tracker,
        }
    }

    /// A connection whose `base-url` is `up`, granted as the runtime grants it.
    pub(super) fn open(up: &Upstream, limits: Limits) -> Self {
        let conn = connection().with_setting("base-url", up.url("/"));
        Self::new(conn, vec![EgressRule::origin(up.origin_parsed())], limits)
    }

    /// A connection whose credential goes in `x-api-key` to `origin`.
    pub(super) fn keyed_connection(origin: Origin) -> Connection {
        let header = HeaderName::from_static("x-api-key");
        let source = StaticCredential::new(Credential::ApiKey {
            header: header.clone(),
            prefix: String::new(),
            key: SecretString::from("k"),
        });
        connection().with_credential_for(header, vec![origin], source)
    }

    /// Through the hook wasmtime calls, as a guest's request arrives.
    pub(super) async fn send(&self, request: Request<WasiBody>) -> SendResult {
        self.send_with(request, None).await
    }

    pub(super) async fn send_with(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendResult {
        let mut egress = CallEgress {
            inner: self.inner.clone(),
        };
        let guest_io = Box::new(async { Ok(()) });
        Box::into_pin(egress.send_request(request, options, guest_io)).await
    }

    /// The error of a request that must not get a response.
    pub(super) async fn refuse(&self, request: Request<WasiBody>) -> HttpError {
        self.refuse_with(request, None).await
    }

    pub(super) async fn refuse_with(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> HttpError {
        match self.send_with(request, options).await {
            Ok((response, _)) => panic!("answered {}, expected a refusal", response.status()),
            Err(e) => e,
        }
    }

    /// The whole response body, as the guest would read it.
    pub(super) async fn read(response: Response<WasiBody>) -> Result<String, HttpError> {
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }
}

pub(super) fn body_of(body: &'static str) -> WasiBody {
    Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body whose stream breaks after one frame.
pub(super) fn failing_body() -> WasiBody {
    let frames: Vec<Result<Frame<Bytes>, HttpError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"part"))),
        Err(HttpError::ConnectionTerminated),
    ];
    StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
}

pub(super) fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Request<WasiBody> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body_of(body)).unwrap()
}

pub(super) fn get(uri: &str, headers: &[(&str, &str)]) -> Request<WasiBody> {
    request("GET", uri, headers, "")
}

/// Hands out `Bearer old`, then `Bearer fresh` once refreshed; or always
/// fails with one error.
#[derive(Debug)]
pub(super) struct FakeSource {
    refreshable: bool,
    error: Option<CredentialError>,
    token: Mutex<String>,
    asked: AtomicU32,
    rejected: Mutex<Vec<String>>,
}

impl FakeSource {
    pub(super) fn new(refreshable: bool) -> Arc<Self> {
        Arc::new(Self {
            refreshable,
            error: None,
            token: Mutex::new("old".into()),
            asked: AtomicU32::new(0),
            rejected: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn failing(error: CredentialError) -> Arc<Self> {
        Arc::new(Self {
            refreshable: true,
            error: Some(error),
            token: Mutex::new("old".into()),
            asked: AtomicU32::new(0),
            rejected: Mutex::new(Vec::new()),
        })
    }

    /// How often [`CredentialSource::credential`] was called.
    pub(super) fn asked(&self) -> u32 {
        self.asked.load(Ordering::SeqCst)
    }

    /// The header values [`CredentialSource::refresh`] was told were refused.
    pub(super) fn rejected(&self) -> Vec<String> {
        self.rejected.lock().unwrap().clone()
    }

    fn current(&self) -> Result<Credential, CredentialError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(Credential::Bearer {
                token: SecretString::from(self.token.lock().unwrap().clone()),
            }),
        }
    }
}

impl CredentialSource for FakeSource {
    fn credential<'a>(
        &'a self,
        _connection_id: &'a str,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(self.current()))
    }

    fn can_refresh(&self) -> bool {
        self.refreshable
    }

    fn refresh<'a>(
        &'a self,
        _connection_id: &'a str,
        rejected: &'a Credential,
    ) -> BoxFuture<'a, Result<Credential, CredentialError>> {
        let value = rejected.header_value().unwrap();
        let value = value.to_str().unwrap().to_string();
        self.rejected.lock().unwrap().push(value);
        *self.token.lock().unwrap() = "fresh".into();
        Box::pin(std::future::ready(self.current()))
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) method: String,
    /// The request target as sent: path and query.
    pub(super) target: String,
    /// Lower-cased names, in order.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Seen {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers its n-th request with the
/// n-th raw answer (the last one repeats); an empty answer never comes.
pub(super) struct Upstream {
    /// `http://127.0.0.1:<port>`.
    pub(super) origin: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub(super) async fn start(answers: Vec<String>) -> Self {
        assert!(!answers.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(answers);
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read, mut write) = stream.into_split();
                let (seen, answers) = (recorded.clone(), answers.clone());
                tokio::spawn(async move {
                    let mut read = BufReader::new(read);
                    while let Some(request) = read_request(&mut read).await {
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(request);
                            seen.len() - 1
                        };
                        let answer = &answers[n.min(answers.len() - 1)];
                        if !answer.is_empty() && write.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { origin, seen, task }
    }

    pub(super) fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }

    pub(super) fn origin_parsed(&self) -> Origin {
        Origin::parse(&self.origin).unwrap()
    }

    /// `127.0.0.1:<port>`, as the `Host` header should carry it.
    pub(super) fn authority(&self) -> String {
        self.origin.trim_start_matches("http://").to_string()
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(read: &mut BufReader<OwnedReadHalf>) -> Option<Seen> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        read.read_line(&mut line).await.ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

/// A raw answer with a `content-length` matching `body`.
pub(super) fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut raw = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    raw
}

/// A 200 whose body streams in `chunks`, with no declared length.
pub(super) fn chunked(chunks: &[&str]) -> String {
    let mut raw = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_string();
    for chunk in chunks {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    raw
}
