//! `send_request` for one call: the [`WasiHttpHooks`] implementation, the
//! per-call context the stages share, and [`CallInner::send`], which runs the
//! stages in order.

use std::future::Future;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderName, Request, Response};
use sha2::{Digest, Sha256};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use super::admit::Attempt;
use super::wire::Outbound;
use crate::audit::{AuditSink, Decision, EgressOutcome, EgressRecord};
use crate::connection::Connection;
use crate::limits::Limits;
use crate::net::{EgressRule, HttpClient, Origin};

pub(super) type HttpError = wasmtime_wasi_http::Error;
pub(super) type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
pub(super) type SendResult = Result<(Response<WasiBody>, IoFuture), HttpError>;

/// Shared by every call: the pooled client, the audit sink, and the origins
/// the operator lets receive a credential over plain http.
#[derive(Debug, Clone)]
pub struct EgressShared {
    pub client: HttpClient,
    pub audit: Arc<dyn AuditSink>,
    pub cleartext_origins: Arc<Vec<Origin>>,
}

/// What happened on the wire during one call, for the caller's error message.
#[derive(Debug, Default)]
pub struct CallTracker {
    /// Outbound requests attempted so far, allowed or not: the request budget.
    pub(super) sent: AtomicU32,
    denials: Mutex<Vec<String>>,
}

impl CallTracker {
    /// Why requests of this call were refused, in order.
    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().unwrap().clone()
    }

    pub(super) fn deny(&self, reason: String) {
        tracing::warn!(target: "airlock::egress", "{reason}");
        self.denials.lock().unwrap().push(reason);
    }
}

/// The per-call egress context, stored in the call's `Store`.
#[derive(Debug, Clone)]
pub struct CallEgress {
    pub(super) inner: Arc<CallInner>,
}

#[derive(Debug)]
pub(super) struct CallInner {
    pub(super) shared: EgressShared,
    pub(super) plugin_id: String,
    pub(super) plugin_version: String,
    pub(super) connection: Arc<Connection>,
    pub(super) grants: Vec<EgressRule>,
    pub(super) limits: Limits,
    pub(super) tracker: Arc<CallTracker>,
    /// Headers the guest may not set: wasi-http's own list, every credential
    /// header, and the connection's custom credential header.
    pub(super) forbidden: Vec<HeaderName>,
    /// When the call's wall-clock deadline passes: a retry must fit before it.
    pub(super) deadline: Instant,
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
    // Checked where the guest builds its fields, so the guest hears at once
    // which header it may not set. Answers reach this check only after
    // `cap_response` removed every forbidden name from them, so a refused
    // name here is always the guest's own attempt: a credential header is
    // recorded as a denied row (hop-by-hop names are protocol, not policy).
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let inner = self.inner.clone();
        Arc::new(move |name| inner.refuse_header(name))
    }

    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        self.inner.refuse_header(name)
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

/// Why a request was refused before it left, and the error the guest gets.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) reason: String,
    pub(super) code: HttpError,
}

/// Bytes of a header section as both caps count them: names plus values.
pub(super) fn header_section_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

impl CallInner {
    /// The stages of the module doc, in order. A refusal before the target
    /// is parsed can only name the URI as the guest wrote it.
    async fn send(
        self: Arc<Self>,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendResult {
        let (parts, body) = request.into_parts();
        let raw_uri = parts.uri.to_string();
        let target = match self
            .take_request_budget(Attempt::First)
            .and_then(|()| self.parse_target(&raw_uri))
        {
            Ok(target) => target,
            Err(refusal) => return Err(self.deny(&parts.method, raw_uri, refusal).await),
        };
        let url = target.redacted();
        let admitted = match self.admit(&parts, &target, &url, body).await {
            Ok(admitted) => self.check_destination(&target).await.map(|()| admitted),
            Err(refusal) => Err(refusal),
        };
        let (body, credential) = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => return Err(self.deny(&parts.method, url, refusal).await),
        };

        // The guest may shorten the wait for response headers, never lengthen it.
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(self.limits.first_byte_timeout)
            .min(self.limits.first_byte_timeout);
        let outbound = Outbound {
            method: parts.method,
            target,
            url,
            headers: parts.headers,
            body_sha256: hex::encode(Sha256::digest(&body)),
            body,
        };
        let (response, audit, sent) = self
            .send_with_retries(&outbound, credential, first_byte)
            .await?;
        self.cap_response(response, audit, sent.as_ref())
    }

    pub(super) fn who(&self) -> String {
        format!(
            "plugin `{}` (connection `{}`)",
            self.plugin_id, self.connection.name
        )
    }

    pub(super) fn record(
        &self,
        method: &http::Method,
        url: String,
        decision: Decision,
    ) -> EgressRecord {
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
    /// The refusal stands even when the audit write fails: nothing is sent.
    pub(super) async fn deny(
        &self,
        method: &http::Method,
        url: String,
        refusal: Refusal,
    ) -> HttpError {
        let Refusal { reason, code } = refusal;
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

    /// Whether the guest may not set `name`; an attempt on a credential
    /// header is denied in the audit log (written in the background: the
    /// hook that asks is synchronous) and in the call's tracker.
    pub(super) fn refuse_header(self: &Arc<Self>, name: &HeaderName) -> bool {
        if !self.forbidden.contains(name) {
            return false;
        }
        if DEFAULT_FORBIDDEN_HEADERS.contains(name) {
            return true;
        }
        let reason = format!("{} tried to set the forbidden header `{name}`", self.who());
        self.tracker.deny(reason.clone());
        // No request exists yet: the row names what was refused instead.
        let mut record = self.record(
            &http::Method::GET,
            format!("(header `{name}`)"),
            Decision::Denied(reason.clone()),
        );
        record.method = "-".into();
        let audit = self.shared.audit.clone();
        let write = async move {
            if let Ok(id) = audit.begin(&record).await {
                let outcome = EgressOutcome {
                    status: None,
                    response_bytes: 0,
                    duration: Default::default(),
                    error: Some(reason),
                };
                audit.finish(id, &outcome);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(write)),
            Err(_) => {
                tracing::warn!(target: "airlock::egress", "no runtime to record a refused header")
            }
        }
        true
    }

    /// A failure of the host's own machinery (audit log, credential store):
    /// the caller hears why; there is no request to record as denied.
    pub(super) fn internal_failure(&self, reason: String) -> HttpError {
        self.tracker.deny(reason.clone());
        HttpError::InternalError(Some(reason))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http::HeaderValue;

    use super::*;
    use crate::egress::fakes::{Harness, Upstream, answer, connection, get, request, who};
    use crate::net::Origin;

    #[test]
    fn header_section_counts_names_and_values() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_section_bytes(&headers), 0);
        headers.insert("x-a", HeaderValue::from_static("12345"));
        headers.append("x-a", HeaderValue::from_static("6"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        // x-a+12345, x-a+6, accept+*/*: each repeated name counted again.
        assert_eq!(header_section_bytes(&headers), 3 + 5 + 3 + 1 + 6 + 3);
    }

    #[tokio::test]
    async fn guest_may_not_set_credential_or_hop_headers_and_credential_attempts_are_audited() {
        let origin = Origin::parse("http://127.0.0.1:9/").unwrap();
        let h = Harness::new(Harness::keyed_connection(origin), vec![], Limits::default());
        let mut egress = CallEgress {
            inner: h.inner.clone(),
        };
        let filter = egress.forbidden_header_filter();
        for name in ["host", "connection", "transfer-encoding"] {
            let name = HeaderName::from_static(name);
            assert!(filter(&name) && egress.is_forbidden_header(&name), "{name}");
        }
        assert!(
            h.audit.records().is_empty(),
            "hop-by-hop names are not audited"
        );
        for name in ["authorization", "cookie", "x-api-key"] {
            let name = HeaderName::from_static(name);
            assert!(egress.is_forbidden_header(&name), "{name}");
        }
        let accept = HeaderName::from_static("accept");
        assert!(!filter(&accept) && !egress.is_forbidden_header(&accept));
        // One denied row per attempt, written in the background.
        for _ in 0..100 {
            if h.audit.records().len() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let records = h.audit.records();
        assert_eq!(records.len(), 3);
        for (record, _) in &records {
            assert!(
                matches!(&record.decision, Decision::Denied(r) if r.contains("forbidden header")),
                "{record:?}"
            );
        }
        assert_eq!(h.inner.tracker.denials().len(), 3);
    }

    // Every refusal goes through `deny`: one audit row marked denied with the
    // reason, the reason in the tracker, the guest's error code, and nothing
    // on the wire.
    #[tokio::test]
    async fn a_refusal_is_recorded_and_nothing_is_sent() {
        let up = Upstream::start(vec![answer("200 OK", &[], "ok")]).await;
        let h = Harness::open(&up, Limits::default());
        let err = h
            .refuse(request(
                "POST",
                &up.url("/x?token=abc"),
                &[("cookie", "c")],
                "b",
            ))
            .await;
        assert!(matches!(err, HttpError::HttpRequestDenied), "{err:?}");
        let reason = format!("{} tried to set the forbidden header `cookie`", who());
        assert_eq!(h.tracker.denials(), std::slice::from_ref(&reason));
        let records = h.audit.records();
        assert_eq!(records.len(), 1);
        let (record, outcome) = &records[0];
        assert_eq!(record.decision, Decision::Denied(reason.clone()));
        assert_eq!(record.method, "POST");
        assert_eq!(record.url, format!("{}/x?token=", up.origin));
        assert_eq!(outcome.as_ref().unwrap().error, Some(reason));
        assert!(up.seen().is_empty());
    }

    #[tokio::test]
    async fn a_refusal_stands_when_the_audit_log_fails() {
        let up = Upstream::start(vec![answer("200 OK", &[], "ok")]).await;
        let h = Harness::open(&up, Limits::default());
        h.audit.fail_writes(true);
        let err = h.send(get(&up.url("/"), &[("cookie", "c")])).await;
        assert!(matches!(err, Err(HttpError::HttpRequestDenied)));
        assert_eq!(h.tracker.denials().len(), 1);
        assert!(up.seen().is_empty());
    }

    // The budget is taken before anything else, so an over-budget request is
    // refused as such whatever else is wrong with it, under the URI as written.
    #[tokio::test]
    async fn budget_is_checked_first_and_names_the_raw_uri() {
        let h = Harness::new(connection(), vec![], Limits::default());
        h.inner
            .tracker
            .sent
            .store(h.inner.limits.outbound_requests, Ordering::Relaxed);
        let err = h.send(get("ftp://example.com/?k=secret", &[])).await;
        assert!(matches!(err, Err(HttpError::HttpRequestDenied)));
        let reason = format!(
            "{} exceeded its limit of 64 outbound requests per call",
            who()
        );
        assert_eq!(h.tracker.denials(), std::slice::from_ref(&reason));
        let (record, _) = &h.audit.records()[0];
        assert_eq!(record.url, "ftp://example.com/?k=secret");
        assert_eq!(record.decision, Decision::Denied(reason));
    }

    #[tokio::test]
    async fn an_allowed_request_is_recorded_with_its_body_hash() {
        let up = Upstream::start(vec![answer("200 OK", &[], "hello")]).await;
        let h = Harness::open(&up, Limits::default());
        let (response, _io) = h
            .send(request(
                "PUT",
                &up.url("/a/../b?q=1"),
                &[("x-t", "1")],
                "body",
            ))
            .await
            .unwrap();
        assert_eq!(Harness::read(response).await.unwrap(), "hello");
        let seen = up.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].method.as_str(), seen[0].target.as_str()),
            ("PUT", "/b?q=1")
        );
        assert_eq!(seen[0].header("host"), Some(up.authority().as_str()));
        assert_eq!(seen[0].header("x-t"), Some("1"));
        assert_eq!(seen[0].body, b"body");
        let records = h.audit.records();
        let (record, outcome) = &records[0];
        assert_eq!(record.decision, Decision::Allowed);
        assert_eq!(record.url, format!("{}/b?q=", up.origin));
        assert_eq!(record.request_bytes, 4);
        assert_eq!(record.request_sha256, hex::encode(Sha256::digest(b"body")));
        assert!(!record.credential_used);
        let outcome = outcome.as_ref().unwrap();
        assert_eq!((outcome.status, outcome.response_bytes), (Some(200), 5));
        assert_eq!(outcome.error, None);
    }
}
