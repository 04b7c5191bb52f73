//! Response caps: the header section, the declared `content-length`, and the
//! streamed body ([`CappedBody`]), which also completes the audit record.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::send::{CallInner, CallTracker, HttpError, IoFuture, SendResult, header_section_bytes};
use crate::audit::{AuditSink, EgressOutcome, RecordId};

impl CallInner {
    /// A declared length over the cap is refused before any of the body is
    /// read; a body that lies about its length is cut off while it streams.
    pub(super) fn cap_response(
        &self,
        response: Response<Incoming>,
        mut audit: AuditGuard,
    ) -> SendResult {
        let (parts, incoming) = response.into_parts();
        audit.status = Some(parts.status.as_u16());
        if header_section_bytes(&parts.headers) > self.limits.header_bytes {
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
        if let Some(declared) = declared.filter(|&n| n > limit) {
            audit.fail("response body over the limit");
            self.tracker.deny(format!(
                "{}: response of {declared} bytes exceeds the limit of {limit} bytes",
                self.who(),
            ));
            return Err(HttpError::HttpResponseBodySize(Some(declared)));
        }
        let body = CappedBody {
            inner: incoming,
            limit,
            received: 0,
            audit,
            tracker: self.tracker.clone(),
            who: self.who(),
        };
        // The request body was sent whole before the response came back.
        let io: IoFuture = Box::new(async { Ok(()) });
        Ok((Response::from_parts(parts, body.boxed_unsync()), io))
    }
}

/// Completes an audit record exactly once: when the body ends, fails, or is
/// dropped half-read.
pub(super) struct AuditGuard {
    sink: Arc<dyn AuditSink>,
    id: RecordId,
    started: Instant,
    status: Option<u16>,
    done: bool,
}

impl AuditGuard {
    /// Starts timing the request whose record `id` was just committed.
    pub(super) fn new(sink: Arc<dyn AuditSink>, id: RecordId) -> Self {
        Self {
            sink,
            id,
            started: Instant::now(),
            status: None,
            done: false,
        }
    }

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

    pub(super) fn fail(mut self, reason: &str) {
        self.complete(0, Some(reason.to_string()));
    }

    /// Closes the record of a send whose answer is dropped for a resend.
    pub(super) fn discard<B>(mut self, response: Response<B>, note: String) {
        self.status = Some(response.status().as_u16());
        drop(response);
        self.complete(0, Some(note));
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
    inner: Incoming,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EgressOutcome;
    use crate::egress::fakes::{Harness, Upstream, answer, chunked, get, who};
    use crate::limits::Limits;

    async fn call(
        answer: String,
        edit: impl FnOnce(&mut Limits),
    ) -> (Harness, Upstream, SendResult) {
        let up = Upstream::start(vec![answer]).await;
        let mut limits = Limits::default();
        edit(&mut limits);
        let h = Harness::open(&up, limits);
        let result = h.send(get(&up.url("/"), &[])).await;
        (h, up, result)
    }

    fn outcome(h: &Harness) -> EgressOutcome {
        let records = h.audit.records();
        assert_eq!(records.len(), 1);
        records[0].1.clone().expect("the record is complete")
    }

    #[tokio::test]
    async fn response_header_section_over_the_limit_is_refused() {
        let big = "v".repeat(100);
        let (h, _up, result) = call(answer("200 OK", &[("x-big", &big)], "ok"), |l| {
            l.header_bytes = 100
        })
        .await;
        let err = result.err().expect("refused");
        assert!(
            matches!(err, HttpError::HttpResponseHeaderSectionSize(Some(100))),
            "{err:?}"
        );
        let outcome = outcome(&h);
        assert_eq!(outcome.status, Some(200));
        assert_eq!(
            outcome.error.as_deref(),
            Some("response header section over the limit")
        );

        // `x-big` + 95 plus `content-length` + `2` is 115: within 120.
        let (_, _, result) = call(answer("200 OK", &[("x-big", &"v".repeat(95))], "ok"), |l| {
            l.header_bytes = 120
        })
        .await;
        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn declared_length_over_the_cap_is_refused_before_reading() {
        let body = "x".repeat(20);
        let (h, _up, result) =
            call(answer("200 OK", &[], &body), |l| l.response_body_bytes = 10).await;
        let err = result.err().expect("refused");
        assert!(
            matches!(err, HttpError::HttpResponseBodySize(Some(20))),
            "{err:?}"
        );
        let outcome = outcome(&h);
        assert_eq!((outcome.status, outcome.response_bytes), (Some(200), 0));
        assert_eq!(
            outcome.error.as_deref(),
            Some("response body over the limit")
        );
        assert_eq!(
            h.tracker.denials(),
            [format!(
                "{}: response of 20 bytes exceeds the limit of 10 bytes",
                who()
            )]
        );
    }

    #[tokio::test]
    async fn streamed_body_over_the_cap_is_cut_off() {
        let (h, _up, result) = call(chunked(&["123456", "789012"]), |l| {
            l.response_body_bytes = 10
        })
        .await;
        let (response, _) = result.expect("headers pass");
        let err = Harness::read(response).await.unwrap_err();
        assert!(
            matches!(err, HttpError::HttpResponseBodySize(Some(10))),
            "{err:?}"
        );
        let reason = format!("{}: response body exceeded the limit of 10 bytes", who());
        let outcome = outcome(&h);
        assert_eq!(outcome.status, Some(200));
        // Counted up to the frame that crossed the cap.
        assert!((11..=12).contains(&outcome.response_bytes), "{outcome:?}");
        assert_eq!(outcome.error.as_deref(), Some(reason.as_str()));
        assert_eq!(h.tracker.denials(), [reason]);
    }

    #[tokio::test]
    async fn streamed_body_within_the_cap_is_counted() {
        let (h, _up, result) =
            call(chunked(&["12345", "67890"]), |l| l.response_body_bytes = 10).await;
        let (response, _) = result.unwrap();
        assert_eq!(Harness::read(response).await.unwrap(), "1234567890");
        let outcome = outcome(&h);
        assert_eq!((outcome.status, outcome.response_bytes), (Some(200), 10));
        assert_eq!(outcome.error, None);
        assert!(h.tracker.denials().is_empty());
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_is_recorded_as_such() {
        let (h, _up, result) = call(answer("200 OK", &[], "unread"), |_| {}).await;
        drop(result.unwrap());
        let outcome = outcome(&h);
        assert_eq!(outcome.status, Some(200));
        assert_eq!(
            outcome.error.as_deref(),
            Some("response body not read to the end")
        );
    }
}
