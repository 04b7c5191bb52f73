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

use super::call::{CallInner, CallTracker, HttpError, IoFuture, SendResult, header_section_bytes};
use super::scrub::{BodyScrub, Scrubber};
use crate::audit::{AuditSink, EgressOutcome, RecordId};
use crate::credential::Credential;

impl CallInner {
    /// A declared length over the cap is refused before any of the body is
    /// read; a body that lies about its length is cut off while it streams.
    pub(super) fn cap_response(
        &self,
        response: Response<Incoming>,
        mut audit: AuditGuard,
        sent: Option<&Credential>,
    ) -> SendResult {
        let (mut parts, incoming) = response.into_parts();
        // Names the guest may not set never come back to it either: an echoed
        // credential header, hop-by-hop fields. Stripping them here also means
        // every later forbidden-name check is the guest's own attempt.
        for name in &self.forbidden {
            parts.headers.remove(name);
        }
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
        let scrubber = sent.and_then(Scrubber::for_credential);
        let scrub = scrubber.map(|s| {
            let mut body = BodyScrub::new(s.clone());
            body.found = s.headers(&mut parts.headers);
            body
        });
        let body = CappedBody {
            inner: incoming,
            limit,
            received: 0,
            audit,
            tracker: self.tracker.clone(),
            who: self.who(),
            scrub,
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

/// The response body handed to the guest: counted for the audit log, cut
/// off with a precise error past the limit, and scrubbed of the injected
/// credential.
struct CappedBody {
    inner: Incoming,
    limit: u64,
    received: u64,
    audit: AuditGuard,
    tracker: Arc<CallTracker>,
    who: String,
    scrub: Option<BodyScrub>,
}

/// A body dropped half-read (the guest stopped reading, or trapped) is
/// recorded with the bytes that did arrive, not as an empty answer.
impl Drop for CappedBody {
    fn drop(&mut self) {
        let mut note = String::from("response body not read to the end");
        if let Some(scrubbed) = self.scrub_note() {
            note = format!("{note}; {scrubbed}");
        }
        self.audit.complete(self.received, Some(note));
    }
}

impl CappedBody {
    /// The audit note for a body the credential was removed from.
    fn scrub_note(&self) -> Option<String> {
        let found = self.scrub.as_ref().map_or(0, |s| s.found);
        (found > 0).then(|| {
            format!(
                "the response echoed the injected credential {found} time(s); airlock masked it"
            )
        })
    }
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
                let note = this.scrub_note();
                this.audit.complete(received, note);
                let tail = this.scrub.as_mut().map(BodyScrub::finish);
                match tail.filter(|t| !t.is_empty()) {
                    Some(tail) => Poll::Ready(Some(Ok(Frame::data(tail)))),
                    None => Poll::Ready(None),
                }
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
                match (this.scrub.as_mut(), frame.into_data()) {
                    (Some(scrub), Ok(data)) => {
                        Poll::Ready(Some(Ok(Frame::data(scrub.chunk(&data)))))
                    }
                    (_, Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    (_, Err(frame)) => Poll::Ready(Some(Ok(frame))),
                }
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
    async fn a_body_dropped_after_some_frames_records_the_bytes_that_arrived() {
        let (h, _up, result) = call(chunked(&["12345", "67890"]), |_| {}).await;
        let (response, _) = result.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"12345");
        // The guest stops here (it trapped, or stopped reading).
        drop(body);
        let outcome = outcome(&h);
        assert_eq!(outcome.response_bytes, 5, "{outcome:?}");
        assert_eq!(
            outcome.error.as_deref(),
            Some("response body not read to the end")
        );
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
