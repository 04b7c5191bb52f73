//! Send with retries: each send its own audit record, committed before the
//! request leaves; a resend once after a 401 with a refreshed credential;
//! resends of idempotent requests when a 429/503 asks to retry after a wait
//! that fits the call's deadline.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use super::admit::{Attempt, BoundCredential};
use super::call::{CallInner, HttpError};
use super::response::AuditGuard;
use crate::audit::Decision;
use crate::credential::Credential;
use crate::net::{ConnectError, Target};

/// Most resends of one request on 429/503.
const MAX_RATE_RETRIES: u32 = 2;

/// A request that passed every check, as each of its sends goes out.
#[derive(Debug)]
pub(super) struct Outbound {
    pub(super) method: http::Method,
    pub(super) target: Target,
    /// The target with query values removed, for the audit log and messages.
    pub(super) url: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) body_sha256: String,
}

impl Outbound {
    /// `Host` comes from the origin that was checked, never from the guest.
    fn request(
        &self,
        credential: Option<(HeaderName, HeaderValue)>,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.target.uri())
            .header(http::header::HOST, self.target.origin.authority());
        for (name, value) in self.headers.iter() {
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = credential {
            builder = builder.header(name, value);
        }
        builder.body(Full::new(self.body.clone()))
    }
}

impl CallInner {
    /// The response the guest gets, with the audit record that is completed
    /// when its body has been read.
    pub(super) async fn send_with_retries(
        &self,
        out: &Outbound,
        mut credential: Option<BoundCredential>,
        first_byte: Duration,
    ) -> Result<(Response<Incoming>, AuditGuard, Option<Credential>), HttpError> {
        let mut refreshed = false;
        let mut rate_retries = 0u32;
        loop {
            let current = credential.as_ref().map(|c| &c.current);
            let (response, audit) = self.send_once(out, current, first_byte).await?;
            // Only a credential this host injected can be the cause of a 401
            // worth refreshing for, and only once: a second 401 is the
            // upstream's answer.
            if response.status() == http::StatusCode::UNAUTHORIZED
                && !refreshed
                && let Some(bound) = credential.as_mut().filter(|c| c.source.can_refresh())
            {
                let note = "the upstream refused the credential (401); refreshing it";
                audit.discard(response, note.into());
                bound.current = self.refresh(bound).await?;
                refreshed = true;
                continue;
            }
            if let Some(wait) = self.retry_after(&out.method, &response, rate_retries) {
                let note = format!("upstream asked to retry after {}s", wait.as_secs());
                audit.discard(response, note);
                if let Err(refusal) = self.take_request_budget(Attempt::RateRetry) {
                    return Err(self.deny(&out.method, out.url.clone(), refusal).await);
                }
                rate_retries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok((response, audit, credential.map(|c| c.current)));
        }
    }

    /// One send. A failed audit write means the request is not sent at all.
    async fn send_once(
        &self,
        out: &Outbound,
        credential: Option<&Credential>,
        first_byte: Duration,
    ) -> Result<(Response<Incoming>, AuditGuard), HttpError> {
        let mut record = self.record(&out.method, out.url.clone(), Decision::Allowed);
        record.request_bytes = out.body.len() as u64;
        record.request_sha256 = out.body_sha256.clone();
        record.credential_used = credential.is_some();
        let audit = match self.shared.audit.begin(&record).await {
            Ok(id) => AuditGuard::new(self.shared.audit.clone(), id),
            Err(e) => {
                let reason = format!("{}: {e}; the request was not sent", self.who());
                return Err(self.internal_failure(reason));
            }
        };
        let header = match credential.map(|c| self.credential_header(c)).transpose() {
            Ok(header) => header,
            Err(reason) => {
                audit.fail(&reason);
                return Err(self.internal_failure(reason));
            }
        };
        // Cannot fail for a parsed target and typed headers; if it ever did,
        // the guard closes the record as it drops.
        let request = out
            .request(header)
            .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
        match tokio::time::timeout(first_byte, self.shared.client.request(request)).await {
            Err(_) => {
                audit.fail("timed out waiting for response headers");
                Err(HttpError::HttpResponseTimeout)
            }
            Ok(Err(e)) => {
                let (code, reason) = self.map_client_error(&e);
                audit.fail(&reason);
                Err(code)
            }
            Ok(Ok(response)) => Ok((response, audit)),
        }
    }

    fn credential_header(
        &self,
        credential: &Credential,
    ) -> Result<(HeaderName, HeaderValue), String> {
        match credential.header_value() {
            Ok(value) => Ok((credential.header_name(), value)),
            Err(_) => Err(format!(
                "{}: the stored credential does not form a valid header value",
                self.who()
            )),
        }
    }

    async fn refresh(&self, rejected: &BoundCredential) -> Result<Credential, HttpError> {
        rejected
            .source
            .refresh(&self.connection.id, &rejected.current)
            .await
            .map_err(|e| self.internal_failure(format!("{}: {e}", self.who())))
    }

    /// How long to wait before resending, when the answer asks for a retry
    /// that this request may take: idempotent method, 429 or 503 with a
    /// `Retry-After`, retries left, and the wait fits before the deadline.
    pub(super) fn retry_after<B>(
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

    /// The wasi-http code for a failed send, and the reason for the audit
    /// record. Only an address the policy refused is a denial of the plugin;
    /// the rest are the network's doing.
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

/// Resending is only safe when sending twice means the same as sending once.
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
    use http::header::RETRY_AFTER;

    use super::*;
    use crate::audit::EgressOutcome;
    use crate::credential::CredentialError;
    use crate::egress::fakes::{
        FakeSource, Harness, Upstream, answer, connection, get, request, who,
    };
    use crate::limits::Limits;
    use crate::net::{AddressPolicy, EgressRule};

    /// A connection whose `base-url` is `up`, with a Bearer credential from
    /// `source` bound to it.
    fn with_credential(up: &Upstream, source: std::sync::Arc<FakeSource>) -> Harness {
        let conn = connection()
            .with_setting("base-url", up.url("/"))
            .with_credential_for(
                http::header::AUTHORIZATION,
                vec![up.origin_parsed()],
                source,
            );
        Harness::new(
            conn,
            vec![EgressRule::origin(up.origin_parsed())],
            Limits::default(),
        )
    }

    fn outcomes(h: &Harness) -> Vec<EgressOutcome> {
        h.audit
            .records()
            .into_iter()
            .map(|(_, outcome)| outcome.expect("every record is complete"))
            .collect()
    }

    fn statuses(h: &Harness) -> Vec<Option<u16>> {
        outcomes(h).iter().map(|o| o.status).collect()
    }

    #[tokio::test]
    async fn audit_write_failure_sends_nothing() {
        let up = Upstream::start(vec![answer("200 OK", &[], "")]).await;
        let h = Harness::open(&up, Limits::default());
        h.audit.fail_writes(true);
        let err = h.refuse(get(&up.url("/"), &[])).await;
        let reason = format!(
            "{}: audit log write failed: memory audit is set to fail; the request was not sent",
            who()
        );
        assert!(
            matches!(&err, HttpError::InternalError(Some(m)) if *m == reason),
            "{err:?}"
        );
        assert_eq!(h.tracker.denials(), [reason]);
        assert!(h.audit.records().is_empty());
        // Give a request that did leave time to arrive before checking it did not.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(up.seen().is_empty());
    }

    #[tokio::test]
    async fn a_401_refreshes_once_and_resends_with_the_fresh_credential() {
        let up = Upstream::start(vec![
            answer("401 Unauthorized", &[], "expired"),
            answer("200 OK", &[], "ok"),
        ])
        .await;
        let source = FakeSource::new(true);
        let h = with_credential(&up, source.clone());
        let (response, _) = h.send(get(&up.url("/"), &[])).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(Harness::read(response).await.unwrap(), "ok");

        let sent: Vec<_> = up
            .seen()
            .iter()
            .map(|s| s.header("authorization").map(String::from))
            .collect();
        assert_eq!(
            sent,
            [Some("Bearer old".into()), Some("Bearer fresh".into())]
        );
        assert_eq!(source.rejected(), ["Bearer old"]);
        let records = h.audit.records();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|(r, _)| r.credential_used));
        let outcomes = outcomes(&h);
        assert_eq!(outcomes[0].status, Some(401));
        assert_eq!(
            outcomes[0].error.as_deref(),
            Some("the upstream refused the credential (401); refreshing it")
        );
        assert_eq!(
            (outcomes[1].status, outcomes[1].error.as_deref()),
            (Some(200), None)
        );
    }

    #[tokio::test]
    async fn a_second_401_goes_back_to_the_guest() {
        let up = Upstream::start(vec![answer("401 Unauthorized", &[], "no")]).await;
        let source = FakeSource::new(true);
        let h = with_credential(&up, source.clone());
        // Bounded, so a refresh loop fails the test instead of hanging it.
        let sent = tokio::time::timeout(Duration::from_secs(10), h.send(get(&up.url("/"), &[])));
        let (response, _) = sent.await.expect("no refresh loop").unwrap();
        assert_eq!(response.status(), 401);
        Harness::read(response).await.unwrap();
        assert_eq!(up.seen().len(), 2);
        assert_eq!(source.rejected().len(), 1);
        assert_eq!(statuses(&h), [Some(401), Some(401)]);
    }

    #[tokio::test]
    async fn a_401_is_not_retried_without_a_refreshable_injected_credential() {
        // A source that cannot refresh.
        let up = Upstream::start(vec![answer("401 Unauthorized", &[], "")]).await;
        let h = with_credential(&up, FakeSource::new(false));
        let (response, _) = h.send(get(&up.url("/"), &[])).await.unwrap();
        assert_eq!(response.status(), 401);
        drop(response);
        assert_eq!(up.seen().len(), 1);

        // No credential on this request: the 401 is not about the host's.
        let up = Upstream::start(vec![answer("401 Unauthorized", &[], "")]).await;
        let h = Harness::open(&up, Limits::default());
        let (response, _) = h.send(get(&up.url("/"), &[])).await.unwrap();
        assert_eq!(response.status(), 401);
        drop(response);
        assert_eq!(up.seen().len(), 1);
        let outcome = &outcomes(&h)[0];
        assert_eq!(
            outcome.error.as_deref(),
            Some("response body not read to the end")
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_fails_the_request() {
        #[derive(Debug)]
        struct Stale;
        impl crate::credential::CredentialSource for Stale {
            fn credential<'a>(
                &'a self,
                _: &'a str,
            ) -> futures::future::BoxFuture<'a, Result<Credential, CredentialError>> {
                Box::pin(async {
                    Ok(Credential::Bearer {
                        token: "old".to_string().into(),
                    })
                })
            }
            fn can_refresh(&self) -> bool {
                true
            }
        }
        let up = Upstream::start(vec![answer("401 Unauthorized", &[], "")]).await;
        let conn = connection().with_credential_for(
            http::header::AUTHORIZATION,
            vec![up.origin_parsed()],
            std::sync::Arc::new(Stale),
        );
        let h = Harness::new(
            conn,
            vec![EgressRule::origin(up.origin_parsed())],
            Limits::default(),
        );
        let err = h.refuse(get(&up.url("/"), &[])).await;
        // The trait's default refresh, which cannot.
        let reason = format!(
            "{}: refreshing the credential of connection `conn-id` failed: this credential \
             cannot be refreshed",
            who()
        );
        assert!(
            matches!(&err, HttpError::InternalError(Some(m)) if *m == reason),
            "{err:?}"
        );
        assert_eq!(h.tracker.denials(), [reason]);
        assert_eq!(up.seen().len(), 1);
        assert_eq!(statuses(&h), [Some(401)]);
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_resent_for_get_not_for_post() {
        let answers = || {
            vec![
                answer(
                    "429 Too Many Requests",
                    &[("retry-after", "0")],
                    "slow down",
                ),
                answer("200 OK", &[], "ok"),
            ]
        };
        let up = Upstream::start(answers()).await;
        let h = Harness::open(&up, Limits::default());
        let (response, _) = h.send(get(&up.url("/"), &[])).await.unwrap();
        assert_eq!(Harness::read(response).await.unwrap(), "ok");
        assert_eq!(up.seen().len(), 2);
        let outcomes = outcomes(&h);
        assert_eq!(outcomes[0].status, Some(429));
        assert_eq!(
            outcomes[0].error.as_deref(),
            Some("upstream asked to retry after 0s")
        );
        assert_eq!(
            (outcomes[1].status, outcomes[1].error.as_deref()),
            (Some(200), None)
        );

        let up = Upstream::start(answers()).await;
        let h = Harness::open(&up, Limits::default());
        let (response, _) = h
            .send(request("POST", &up.url("/"), &[], "x"))
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(Harness::read(response).await.unwrap(), "slow down");
        assert_eq!(up.seen().len(), 1);
        assert_eq!(h.audit.records().len(), 1);
    }

    #[tokio::test]
    async fn rate_limit_resends_stop_after_two() {
        let up = Upstream::start(vec![answer(
            "503 Service Unavailable",
            &[("retry-after", "0")],
            "",
        )])
        .await;
        let h = Harness::open(&up, Limits::default());
        let (response, _) = h.send(get(&up.url("/"), &[])).await.unwrap();
        assert_eq!(response.status(), 503);
        drop(response);
        assert_eq!(up.seen().len(), 3);
        assert_eq!(statuses(&h), [Some(503); 3]);
    }

    #[tokio::test]
    async fn budget_exceeded_while_retrying_is_refused() {
        let up = Upstream::start(vec![answer(
            "429 Too Many Requests",
            &[("retry-after", "0")],
            "",
        )])
        .await;
        let limits = Limits {
            outbound_requests: 1,
            ..Limits::default()
        };
        let h = Harness::open(&up, limits);
        let err = h.refuse(get(&up.url("/a?k=v"), &[])).await;
        assert!(matches!(err, HttpError::HttpRequestDenied), "{err:?}");
        assert_eq!(up.seen().len(), 1);
        let reason = format!(
            "{} exceeded its limit of 1 outbound requests per call while retrying",
            who()
        );
        assert_eq!(h.tracker.denials(), std::slice::from_ref(&reason));
        let records = h.audit.records();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0.decision, Decision::Allowed);
        assert_eq!(records[1].0.decision, Decision::Denied(reason));
        assert_eq!(records[1].0.url, format!("{}/a?k=", up.origin));
    }

    #[test]
    fn retry_after_needs_a_retryable_answer_that_fits_the_deadline() {
        let limits = Limits {
            wall_clock: Duration::from_secs(10),
            ..Limits::default()
        };
        let h = Harness::new(connection(), vec![], limits);
        let answer = |status: u16, retry_after: Option<&str>| {
            let mut builder = Response::builder().status(status);
            if let Some(value) = retry_after {
                builder = builder.header(RETRY_AFTER, value);
            }
            builder.body(()).unwrap()
        };
        let get = http::Method::GET;
        let wait = |method, response, done| h.inner.retry_after(method, &response, done);
        assert_eq!(
            wait(&get, answer(429, Some("2")), 0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            wait(&get, answer(503, Some("2")), 1),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            wait(&http::Method::DELETE, answer(503, Some("0")), 0),
            Some(Duration::ZERO)
        );
        assert_eq!(wait(&get, answer(503, Some("2")), MAX_RATE_RETRIES), None);
        assert_eq!(wait(&get, answer(500, Some("2")), 0), None);
        assert_eq!(wait(&get, answer(429, None), 0), None);
        assert_eq!(wait(&get, answer(429, Some("soon")), 0), None);
        assert_eq!(wait(&http::Method::POST, answer(429, Some("0")), 0), None);
        assert_eq!(wait(&http::Method::PATCH, answer(429, Some("0")), 0), None);
        // A second is kept back for the resend itself.
        assert_eq!(wait(&get, answer(429, Some("9")), 0), None);
        assert_eq!(wait(&get, answer(429, Some("60")), 0), None);
    }

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

    #[tokio::test]
    async fn first_byte_timeout_is_the_shorter_of_the_guests_and_the_limit() {
        let up = Upstream::start(vec![String::new()]).await;
        let h = Harness::open(&up, Limits::default());
        let options = wasmtime_wasi_http::RequestOptions {
            first_byte_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let started = Instant::now();
        let err = h.refuse_with(get(&up.url("/"), &[]), Some(options)).await;
        assert!(matches!(err, HttpError::HttpResponseTimeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let outcome = &outcomes(&h)[0];
        assert_eq!(
            outcome.error.as_deref(),
            Some("timed out waiting for response headers")
        );

        // The guest cannot lengthen it past the limit.
        let limits = Limits {
            first_byte_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let h = Harness::open(&up, limits);
        let options = wasmtime_wasi_http::RequestOptions {
            first_byte_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let started = Instant::now();
        let err = h.refuse_with(get(&up.url("/"), &[]), Some(options)).await;
        assert!(matches!(err, HttpError::HttpResponseTimeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn connection_failures_map_to_wasi_http_codes() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin =
            crate::net::Origin::parse(&format!("http://{}", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let url = format!("{origin}/");
        let h = Harness::new(
            connection(),
            vec![EgressRule::origin(origin.clone())],
            Limits::default(),
        );
        let err = h.refuse(get(&url, &[])).await;
        assert!(matches!(err, HttpError::ConnectionRefused), "{err:?}");
        let error = outcomes(&h)[0].error.clone().unwrap();
        assert!(
            error.starts_with(&format!("{}: connecting to", who())),
            "{error}"
        );
        // The network's failure, not the plugin's: no denial.
        assert!(h.tracker.denials().is_empty());

        // An address the policy refuses is the plugin's denial.
        let h = Harness::with_policy(
            connection(),
            vec![EgressRule::origin(origin)],
            Limits::default(),
            AddressPolicy::global_only(),
        );
        let err = h.refuse(get(&url, &[])).await;
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err:?}");
        assert_eq!(h.tracker.denials().len(), 1);
        assert_eq!(
            outcomes(&h)[0].error.as_deref(),
            Some(h.tracker.denials()[0].as_str())
        );
    }

    #[tokio::test]
    async fn a_credential_that_is_no_header_value_is_recorded_and_not_sent() {
        let up = Upstream::start(vec![answer("200 OK", &[], "")]).await;
        let source = crate::credential::StaticCredential::new(Credential::Bearer {
            token: "line\nbreak".to_string().into(),
        });
        let conn = connection().with_credential_for(
            http::header::AUTHORIZATION,
            vec![up.origin_parsed()],
            source,
        );
        let h = Harness::new(
            conn,
            vec![EgressRule::origin(up.origin_parsed())],
            Limits::default(),
        );
        let err = h.refuse(get(&up.url("/"), &[])).await;
        let reason = format!(
            "{}: the stored credential does not form a valid header value",
            who()
        );
        assert!(
            matches!(&err, HttpError::InternalError(Some(m)) if *m == reason),
            "{err:?}"
        );
        assert_eq!(h.tracker.denials(), std::slice::from_ref(&reason));
        let records = h.audit.records();
        assert_eq!(records.len(), 1);
        assert!(records[0].0.credential_used);
        assert_eq!(outcomes(&h)[0].error.as_deref(), Some(reason.as_str()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(up.seen().is_empty());
    }

    #[test]
    fn the_request_carries_the_checked_host_and_the_credential() {
        let out = Outbound {
            method: http::Method::POST,
            target: Target::parse("HTTPS://API.Example.com:443/a/./b?x=1").unwrap(),
            url: String::new(),
            headers: [(
                HeaderName::from_static("x-t"),
                HeaderValue::from_static("1"),
            )]
            .into_iter()
            .collect(),
            body: Bytes::from_static(b"body"),
            body_sha256: String::new(),
        };
        let credential = (
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        let request = out.request(Some(credential)).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://api.example.com/a/b?x=1");
        assert_eq!(request.headers()["host"], "api.example.com");
        assert_eq!(request.headers()["x-t"], "1");
        assert_eq!(request.headers()["authorization"], "Bearer t");
        assert!(
            out.request(None)
                .unwrap()
                .headers()
                .get("authorization")
                .is_none()
        );
    }
}
