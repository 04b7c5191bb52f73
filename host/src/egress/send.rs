//! `send_request` for one call: the [`WasiHttpHooks`] implementation that
//! decides, records, injects and sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use crate::audit::{AuditSink, Decision, EgressOutcome, EgressRecord, RecordId};
use crate::connection::{AuthBinding, Connection};
use crate::limits::Limits;
use crate::net::{ConnectError, HttpClient};
use crate::net::{EgressRule, Target};

type HttpError = wasmtime_wasi_http::Error;
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(Response<WasiBody>, IoFuture), HttpError>;

/// Shared by every call: the pooled client and the audit sink.
#[derive(Debug, Clone)]
pub struct EgressShared {
    pub client: HttpClient,
    pub audit: Arc<dyn AuditSink>,
}

/// What happened on the wire during one call, for the caller's error message.
#[derive(Debug, Default)]
pub struct CallTracker {
    sent: AtomicU32,
    denials: Mutex<Vec<String>>,
}

impl CallTracker {
    /// Why requests of this call were refused, in order.
    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().unwrap().clone()
    }

    /// Outbound requests attempted so far (allowed or not).
    pub fn attempted(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    fn deny(&self, reason: String) {
        tracing::warn!(target: "airlock::egress", "{reason}");
        self.denials.lock().unwrap().push(reason);
    }
}

/// The per-call egress context, stored in the call's `Store`.
#[derive(Debug, Clone)]
pub struct CallEgress {
    inner: Arc<CallInner>,
}

#[derive(Debug)]
struct CallInner {
    shared: EgressShared,
    plugin_id: String,
    plugin_version: String,
    connection: Arc<Connection>,
    grants: Vec<EgressRule>,
    limits: Limits,
    tracker: Arc<CallTracker>,
    forbidden: Vec<HeaderName>,
    /// When the call's wall-clock deadline passes: a retry must fit before it.
    deadline: Instant,
}

impl CallEgress {
    pub fn new(
        shared: EgressShared,
        plugin_id: &str,
        plugin_version: &str,
        connection: Arc<Connection>,
        grants: Vec<EgressRule>,
        limits: Limits,
        tracker: Arc<CallTracker>,
    ) -> Self {
        let mut forbidden: Vec<HeaderName> = DEFAULT_FORBIDDEN_HEADERS.to_vec();
        forbidden.extend([
            http::header::AUTHORIZATION,
            http::header::COOKIE,
            http::header::PROXY_AUTHORIZATION,
        ]);
        forbidden.extend(connection.auth_header().cloned());
        let limits_deadline = limits.wall_clock;
        Self {
            inner: Arc::new(CallInner {
                shared,
                plugin_id: plugin_id.to_string(),
                plugin_version: plugin_version.to_string(),
                connection,
                grants,
                limits,
                tracker,
                forbidden,
                deadline: Instant::now() + limits_deadline,
            }),
        }
    }
}

impl WasiHttpHooks for CallEgress {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let inner = self.inner.clone();
        Arc::new(move |name| inner.forbidden.contains(name))
    }

    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        self.inner.forbidden.contains(name)
    }

    // The host writes `Host` itself, from the normalised origin it checked.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let inner = self.inner.clone();
        Box::new(async move { inner.send(request, options).await })
    }
}

impl CallInner {
    fn who(&self) -> String {
        format!(
            "plugin `{}` (connection `{}`)",
            self.plugin_id, self.connection.name
        )
    }

    fn record(&self, method: &http::Method, url: String, decision: Decision) -> EgressRecord {
        EgressRecord {
            time: SystemTime::now(),
            plugin_id: self.plugin_id.clone(),
            plugin_version: self.plugin_version.clone(),
            connection_id: self.connection.id.clone(),
            project: self.connection.project.clone(),
            method: method.to_string(),
            url,
            request_bytes: 0,
            request_sha256: String::new(),
            credential_used: false,
            decision,
            detail: self.connection.audit_detail.clone(),
        }
    }

    /// Refuse a request: record it in the audit log and the call tracker.
    async fn deny(
        &self,
        method: &http::Method,
        url: String,
        reason: String,
        code: HttpError,
    ) -> HttpError {
        let record = self.record(method, url, Decision::Denied(reason.clone()));
        if let Ok(id) = self.shared.audit.begin(&record).await {
            self.shared.audit.finish(
                id,
                &EgressOutcome {
                    status: None,
                    response_bytes: 0,
                    duration: Default::default(),
                    error: Some(reason.clone()),
                },
            );
        }
        self.tracker.deny(reason);
        code
    }

    async fn send(
        self: Arc<Self>,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendResult {
        let (parts, body) = request.into_parts();
        let method = parts.method;
        let raw_uri = parts.uri.to_string();

        let attempt = self.tracker.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if attempt > self.limits.outbound_requests {
            return Err(self
                .deny(
                    &method,
                    raw_uri,
                    format!(
                        "{} exceeded its limit of {} outbound requests per call",
                        self.who(),
                        self.limits.outbound_requests
                    ),
                    HttpError::HttpRequestDenied,
                )
                .await);
        }

        let target = match Target::parse(&raw_uri) {
            Ok(t) => t,
            Err(e) => {
                return Err(self
                    .deny(
                        &method,
                        raw_uri.clone(),
                        format!("{} sent to {raw_uri:?}, which was refused: {e}", self.who()),
                        HttpError::HttpRequestDenied,
                    )
                    .await);
            }
        };
        let url = target.redacted();

        if let Some(name) = parts.headers.keys().find(|n| self.forbidden.contains(n)) {
            return Err(self
                .deny(
                    &method,
                    url,
                    format!("{} tried to set the forbidden header `{name}`", self.who()),
                    HttpError::HttpRequestDenied,
                )
                .await);
        }
        let header_bytes: usize = parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.limits.header_bytes {
            return Err(self
                .deny(
                    &method,
                    url,
                    format!(
                        "{} sent {header_bytes} bytes of headers; the limit is {}",
                        self.who(),
                        self.limits.header_bytes
                    ),
                    HttpError::HttpRequestHeaderSectionSize(Some(self.limits.header_bytes as u32)),
                )
                .await);
        }

        if !self.grants.iter().any(|rule| rule.allows(&method, &target)) {
            let granted: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
            return Err(self
                .deny(
                    &method,
                    url.clone(),
                    format!(
                        "{} may not send {method} {url}: origin {} is not granted (granted: {})",
                        self.who(),
                        target.origin,
                        if granted.is_empty() {
                            "nothing".to_string()
                        } else {
                            granted.join(", ")
                        }
                    ),
                    HttpError::HttpRequestDenied,
                )
                .await);
        }

        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(code) => {
                return Err(self
                    .deny(
                        &method,
                        url,
                        format!(
                            "{} sent a request body over the limit of {} bytes",
                            self.who(),
                            self.limits.request_body_bytes
                        ),
                        code,
                    )
                    .await);
            }
        };

        // The credential source, when this request's origin is one the
        // connection's credential is bound to.
        let source = match &self.connection.auth {
            AuthBinding::Header {
                origins, source, ..
            } if origins.contains(&target.origin) => Some(source.clone()),
            _ => None,
        };
        let mut credential = match &source {
            Some(source) => match source.credential(&self.connection.id).await {
                Ok(c) => Some(c),
                Err(e) => {
                    return Err(self
                        .deny(
                            &method,
                            url,
                            format!("{}: {e}", self.who()),
                            HttpError::InternalError(Some(e.to_string())),
                        )
                        .await);
                }
            },
            None => None,
        };

        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(self.limits.first_byte_timeout)
            .min(self.limits.first_byte_timeout);
        let request_sha256 = hex::encode(Sha256::digest(&body));
        // Resends: once after the upstream refused the injected credential
        // (401) and the source refreshed it, and up to MAX_RATE_RETRIES times
        // when a 429/503 carries a Retry-After that fits the deadline. Each
        // send is its own audit record.
        let mut refreshed = false;
        let mut rate_retries = 0u32;
        let (response, audit) =
            loop {
                let mut record = self.record(&method, url.clone(), Decision::Allowed);
                record.request_bytes = body.len() as u64;
                record.request_sha256 = request_sha256.clone();
                record.credential_used = credential.is_some();
                let audit_id = match self.shared.audit.begin(&record).await {
                    Ok(id) => id,
                    Err(e) => {
                        let reason = format!("{}: {e}; the request was not sent", self.who());
                        self.tracker.deny(reason.clone());
                        return Err(HttpError::InternalError(Some(reason)));
                    }
                };
                let mut audit = AuditGuard {
                    sink: self.shared.audit.clone(),
                    id: audit_id,
                    started: Instant::now(),
                    status: None,
                    done: false,
                };

                let mut builder = Request::builder()
                    .method(method.clone())
                    .uri(target.uri())
                    .header(http::header::HOST, target.origin.authority());
                for (name, value) in parts.headers.iter() {
                    builder = builder.header(name, value);
                }
                if let Some(credential) = &credential {
                    match credential.header_value() {
                        Ok(value) => builder = builder.header(credential.header_name(), value),
                        Err(_) => {
                            let reason = format!(
                                "{}: the stored credential does not form a valid header value",
                                self.who()
                            );
                            audit.fail(&reason);
                            self.tracker.deny(reason.clone());
                            return Err(HttpError::InternalError(Some(reason)));
                        }
                    }
                }
                let outbound = builder
                    .body(Full::new(body.clone()))
                    .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;

                let response =
                    match tokio::time::timeout(first_byte, self.shared.client.request(outbound))
                        .await
                    {
                        Err(_) => {
                            audit.fail("timed out waiting for response headers");
                            return Err(HttpError::HttpResponseTimeout);
                        }
                        Ok(Err(e)) => {
                            let (code, reason) = self.map_client_error(&e);
                            audit.fail(&reason);
                            return Err(code);
                        }
                        Ok(Ok(r)) => r,
                    };

                let retry = response.status() == http::StatusCode::UNAUTHORIZED && !refreshed;
                match (&source, &credential) {
                    (Some(source), Some(rejected)) if retry && source.can_refresh() => {
                        audit.status = Some(response.status().as_u16());
                        drop(response);
                        audit.complete(
                            0,
                            Some("the upstream refused the credential (401); refreshing it".into()),
                        );
                        match source.refresh(&self.connection.id, rejected).await {
                            Ok(fresh) => {
                                credential = Some(fresh);
                                refreshed = true;
                                continue;
                            }
                            Err(e) => {
                                let reason = format!("{}: {e}", self.who());
                                self.tracker.deny(reason.clone());
                                return Err(HttpError::InternalError(Some(reason)));
                            }
                        }
                    }
                    _ => {}
                }
                // 429/503 with Retry-After: resend idempotent requests once
                // the upstream asks, if the wait fits in the call's deadline.
                if let Some(wait) = self.retry_after(&method, &response, rate_retries) {
                    audit.status = Some(response.status().as_u16());
                    drop(response);
                    audit.complete(
                        0,
                        Some(format!("upstream asked to retry after {}s", wait.as_secs())),
                    );
                    let attempt = self.tracker.sent.fetch_add(1, Ordering::Relaxed) + 1;
                    if attempt > self.limits.outbound_requests {
                        return Err(self
                            .deny(
                                &method,
                                url,
                                format!(
                                    "{} exceeded its limit of {} outbound requests per call \
                                     while retrying",
                                    self.who(),
                                    self.limits.outbound_requests
                                ),
                                HttpError::HttpRequestDenied,
                            )
                            .await);
                    }
                    rate_retries += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                break (response, audit);
            };

        let (parts, incoming) = response.into_parts();
        let mut audit = audit;
        audit.status = Some(parts.status.as_u16());
        let header_bytes: usize = parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.limits.header_bytes {
            audit.fail("response header section over the limit");
            return Err(HttpError::HttpResponseHeaderSectionSize(Some(
                self.limits.header_bytes as u32,
            )));
        }
        let limit = self.limits.response_body_bytes;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            audit.fail("response body over the limit");
            self.tracker.deny(format!(
                "{}: response of {} bytes exceeds the limit of {limit} bytes",
                self.who(),
                declared.unwrap_or(0)
            ));
            return Err(HttpError::HttpResponseBodySize(declared));
        }
        let body = CappedBody {
            inner: incoming,
            limit,
            received: 0,
            audit,
            tracker: self.tracker.clone(),
            who: self.who(),
        };
        let io: IoFuture = Box::new(async { Ok(()) });
        Ok((Response::from_parts(parts, body.boxed_unsync()), io))
    }

    async fn read_body(&self, body: WasiBody) -> Result<Bytes, HttpError> {
        let limit = self.limits.request_body_bytes;
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > limit {
                    return Err(HttpError::HttpRequestBodySize(Some(limit)));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    }

    /// How long to wait before resending, when the answer asks for a retry
    /// that this request may take: idempotent method, 429 or 503 with a
    /// `Retry-After`, retries left, and the wait fits before the deadline.
    fn retry_after<B>(
        &self,
        method: &http::Method,
        response: &Response<B>,
        done: u32,
    ) -> Option<Duration> {
        let status = response.status();
        if done >= MAX_RATE_RETRIES
            || !(status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::SERVICE_UNAVAILABLE)
            || !is_idempotent(method)
        {
            return None;
        }
        let value = response
            .headers()
            .get(http::header::RETRY_AFTER)?
            .to_str()
            .ok()?;
        let wait = parse_retry_after(value, SystemTime::now())?;
        // Leave room for the retried request itself.
        let room = self
            .deadline
            .saturating_duration_since(Instant::now())
            .checked_sub(Duration::from_secs(1))?;
        (wait <= room).then_some(wait)
    }

    fn map_client_error(&self, err: &hyper_util::client::legacy::Error) -> (HttpError, String) {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(c) = e.downcast_ref::<ConnectError>() {
                let reason = format!("{}: {c}", self.who());
                let code = match c {
                    ConnectError::Denied(_) => {
                        self.tracker.deny(reason.clone());
                        HttpError::DestinationIpProhibited
                    }
                    ConnectError::Dns { .. } => HttpError::DnsError {
                        rcode: Some(c.to_string()),
                        info_code: None,
                    },
                    ConnectError::DnsTimeout { .. } => HttpError::DnsTimeout,
                    ConnectError::NoAddress { .. } => HttpError::DestinationNotFound,
                    ConnectError::Connect { source, .. }
                        if source.kind() == std::io::ErrorKind::ConnectionRefused =>
                    {
                        HttpError::ConnectionRefused
                    }
                    ConnectError::Connect { .. } => HttpError::DestinationUnavailable,
                    ConnectError::Timeout { .. } => HttpError::ConnectionTimeout,
                    ConnectError::NoHost => HttpError::HttpRequestUriInvalid,
                };
                return (code, reason);
            }
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                let code = match tls {
                    rustls::Error::InvalidCertificate(_) => HttpError::TlsCertificateError,
                    _ => HttpError::TlsProtocolError,
                };
                return (code, format!("{}: TLS failed: {tls}", self.who()));
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                let code = if h.is_incomplete_message() {
                    HttpError::HttpResponseIncomplete
                } else {
                    HttpError::HttpProtocolError
                };
                return (code, format!("{}: HTTP error: {h}", self.who()));
            }
            source = e.source();
        }
        (
            HttpError::ConnectionTerminated,
            format!("{}: request failed: {err}", self.who()),
        )
    }
}

/// Completes an audit record exactly once: when the body ends, fails, or is
/// dropped half-read.
struct AuditGuard {
    sink: Arc<dyn AuditSink>,
    id: RecordId,
    started: Instant,
    status: Option<u16>,
    done: bool,
}

impl AuditGuard {
    fn complete(&mut self, response_bytes: u64, error: Option<String>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.sink.finish(
            self.id,
            &EgressOutcome {
                status: self.status,
                response_bytes,
                duration: self.started.elapsed(),
                error,
            },
        );
    }

    fn fail(mut self, reason: &str) {
        self.complete(0, Some(reason.to_string()));
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        self.complete(0, Some("response body not read to the end".into()));
    }
}

/// The response body handed to the guest: counted for the audit log and cut
/// off with a precise error past the limit.
struct CappedBody {
    inner: hyper::body::Incoming,
    limit: u64,
    received: u64,
    audit: AuditGuard,
    tracker: Arc<CallTracker>,
    who: String,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.audit.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                let received = this.received;
                this.audit.complete(received, None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let received = this.received;
                this.audit.complete(received, Some(e.to_string()));
                Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        let reason = format!(
                            "{}: response body exceeded the limit of {} bytes",
                            this.who, this.limit
                        );
                        let received = this.received;
                        this.audit.complete(received, Some(reason.clone()));
                        this.tracker.deny(reason);
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.limit,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}

/// Most resends of one request on 429/503.
const MAX_RATE_RETRIES: u32 = 2;

fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
    )
}

/// `Retry-After` as delta-seconds or an HTTP-date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let when = SystemTime::from(when);
    Some(when.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert!(is_idempotent(&http::Method::GET) && !is_idempotent(&http::Method::POST));
    }
}
