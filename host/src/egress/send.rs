//! `send_request` for one call: the [`WasiHttpHooks`] implementation,
//! [`CallEgress::send_whole`] for a request whose body is already whole,
//! and `CallInner::send`, which runs the stages in order for both.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use super::admit::Attempt;
use super::call::{CallInner, CallTracker, EgressShared, HttpError, SendResult};
use super::wire::Outbound;
use crate::connection::Connection;
use crate::limits::Limits;
use crate::net::EgressRule;

/// The per-call egress context, stored in the call's `Store`.
#[derive(Debug, Clone)]
pub struct CallEgress {
    pub(super) inner: Arc<CallInner>,
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

/// Why a whole request ([`CallEgress::send_whole`]) got no answer.
#[derive(Debug)]
pub enum WholeError {
    /// The plugin may not set this header; the attempt was recorded as a
    /// denied audit row, and nothing was sent.
    ForbiddenHeader(HeaderName),
    /// Refused or failed, as wasi:http would have said it.
    Http(HttpError),
}

impl CallEgress {
    /// Send a request whose body is already whole and read its whole answer.
    ///
    /// The same stages as a request through wasi:http, in the same order
    /// (the header check wasi:http makes as the guest builds its fields comes
    /// first); only the resources and streams between guest and host are
    /// saved. The answer's body is read through the same caps and scrubber,
    /// and its audit row completed when it has been read.
    pub async fn send_whole(&self, request: Request<Bytes>) -> Result<Response<Bytes>, WholeError> {
        if let Some(name) = request
            .headers()
            .keys()
            .find(|n| self.inner.refuse_header(n))
        {
            return Err(WholeError::ForbiddenHeader(name.clone()));
        }
        let request = request.map(|body| {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        let (response, _io) = self
            .inner
            .clone()
            .send(request, None)
            .await
            .map_err(WholeError::Http)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(WholeError::Http)?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

impl WasiHttpHooks for CallEgress {
    // Checked where the guest builds its fields, so the guest hears at once
    // which header it may not set. Answers reach this check only after
    // `cap_response` removed every forbidden name from them, so a refused
    // name here is always the guest's own attempt, recorded as a denied row.
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
        let (body, credential) = match self.admit(&parts, &target, &url, body).await {
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http::HeaderValue;

    use super::*;
    use crate::audit::Decision;
    use crate::egress::call::header_section_bytes;
    use crate::egress::fakes::{Harness, Upstream, answer, connection, get, request, who};
    use crate::net::Origin;
    use http::HeaderMap;

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
    async fn guest_may_not_set_credential_or_hop_headers_and_every_attempt_is_audited() {
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
            if h.audit.records().len() == 9 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let records = h.audit.records();
        assert_eq!(
            records.len(),
            9,
            "each of the nine checks above is an attempt"
        );
        for (record, _) in &records {
            assert!(
                matches!(&record.decision, Decision::Denied(r) if r.contains("forbidden header")),
                "{record:?}"
            );
        }
        assert_eq!(h.inner.tracker.denials().len(), 9);
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
