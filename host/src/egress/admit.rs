//! The stages a request passes before it may leave: request budget, target,
//! headers, grant, body cap, credential. Each answers with a [`Refusal`],
//! which `CallInner::send` records.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

use super::call::{CallInner, HttpError, Refusal, header_section_bytes};
use crate::connection::AuthBinding;
use crate::credential::{Credential, CredentialSource};
use crate::net::{ConnectError, Target, cleartext_advice, may_carry_credential};

/// Which send of a request takes from the budget: every send counts, the
/// rate-limit resends included, so a plugin cannot multiply its budget by
/// provoking 429s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    First,
    RateRetry,
}

/// The credential a request carries, with the source that can refresh it
/// after a 401.
#[derive(Debug)]
pub(super) struct BoundCredential {
    pub(super) source: Arc<dyn CredentialSource>,
    pub(super) current: Credential,
}

impl CallInner {
    /// The stages after the target is known, in order; the body and the
    /// credential are what the send needs of them.
    pub(super) async fn admit(
        &self,
        parts: &Parts,
        target: &Target,
        url: &str,
        body: WasiBody,
    ) -> Result<(Bytes, Option<BoundCredential>), Refusal> {
        self.check_headers(&parts.headers)?;
        self.check_grant(&parts.method, target, url)?;
        let body = self.read_body(body).await?;
        // Before the credential: a refused address must not cost a refresh.
        self.check_destination(target).await?;
        let credential = self.credential_for(target).await?;
        Ok((body, credential))
    }

    /// Counts one send against the call's budget; a refused send still counts.
    pub(super) fn take_request_budget(&self, attempt: Attempt) -> Result<(), Refusal> {
        let sent = self.tracker.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if sent <= self.limits.outbound_requests {
            return Ok(());
        }
        let during = match attempt {
            Attempt::First => "",
            Attempt::RateRetry => " while retrying",
        };
        Err(Refusal {
            reason: format!(
                "{} exceeded its limit of {} outbound requests per call{during}",
                self.who(),
                self.limits.outbound_requests
            ),
            code: HttpError::HttpRequestDenied,
        })
    }

    /// The one parse of the URL: the grant check, the connection and the
    /// credential binding all use its result.
    pub(super) fn parse_target(&self, raw_uri: &str) -> Result<Target, Refusal> {
        Target::parse(raw_uri).map_err(|e| Refusal {
            reason: format!("{} sent to {raw_uri:?}, which was refused: {e}", self.who()),
            code: HttpError::HttpRequestDenied,
        })
    }

    /// wasi-http already filters forbidden headers when the guest sets them;
    /// this is the check that holds if that filter ever lets one through.
    pub(super) fn check_headers(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if let Some(name) = headers.keys().find(|n| self.forbidden.contains(n)) {
            return Err(Refusal {
                reason: format!("{} tried to set the forbidden header `{name}`", self.who()),
                code: HttpError::HttpRequestDenied,
            });
        }
        let bytes = header_section_bytes(headers);
        let limit = self.limits.header_bytes;
        if bytes > limit {
            return Err(Refusal {
                reason: format!(
                    "{} sent {bytes} bytes of headers; the limit is {limit}",
                    self.who()
                ),
                code: HttpError::HttpRequestHeaderSectionSize(Some(limit as u32)),
            });
        }
        Ok(())
    }

    /// A refusal lists every grant, so the plugin's author can see what the
    /// call may reach.
    pub(super) fn check_grant(
        &self,
        method: &http::Method,
        target: &Target,
        url: &str,
    ) -> Result<(), Refusal> {
        if self.grants.iter().any(|rule| rule.allows(method, target)) {
            return Ok(());
        }
        let granted: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
        Err(Refusal {
            reason: format!(
                "{} may not send {method} {url}: origin {} is not granted (granted: {})",
                self.who(),
                target.origin,
                if granted.is_empty() {
                    "nothing".to_string()
                } else {
                    granted.join(", ")
                }
            ),
            code: HttpError::HttpRequestDenied,
        })
    }

    /// The whole body, read before anything leaves: the audit record carries
    /// its hash. Reading stops at the first frame past the cap.
    pub(super) async fn read_body(&self, mut body: WasiBody) -> Result<Bytes, Refusal> {
        let limit = self.limits.request_body_bytes;
        let over = |code| Refusal {
            reason: format!(
                "{} sent a request body over the limit of {limit} bytes",
                self.who()
            ),
            code,
        };
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(over)?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > limit {
                    return Err(over(HttpError::HttpRequestBodySize(Some(limit))));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    }

    /// Where the request would go, resolved and checked against the address
    /// policy before anything is recorded as allowed: a refused address
    /// (loopback, private, metadata: the SSRF attempts) is a refusal of its
    /// own. The checked resolution is what the connector dials. A name that
    /// does not resolve is left to the send, which reports it as it fails.
    pub(super) async fn check_destination(&self, target: &Target) -> Result<(), Refusal> {
        match self.shared.client.admit(&target.origin).await {
            Err(ConnectError::Denied(denied)) => Err(Refusal {
                reason: format!("{}: {denied}", self.who()),
                code: HttpError::DestinationIpProhibited,
            }),
            _ => Ok(()),
        }
    }

    /// The credential for this request, asked of its source only when the
    /// target's origin is one the connection's credential is bound to: a
    /// plugin granted other origins must never be able to carry it there.
    /// Over plain http it goes only to a loopback host or an origin the
    /// operator allowed; otherwise the request is refused, not sent bare.
    pub(super) async fn credential_for(
        &self,
        target: &Target,
    ) -> Result<Option<BoundCredential>, Refusal> {
        let source = match &self.connection.auth {
            AuthBinding::Header {
                origins, source, ..
            } if origins.contains(&target.origin) => source.clone(),
            _ => return Ok(None),
        };
        if !may_carry_credential(&target.origin, &self.shared.cleartext_origins) {
            return Err(Refusal {
                reason: format!(
                    "{} may not send the connection's credential in clear text to {}: {}",
                    self.who(),
                    target.origin,
                    cleartext_advice(&target.origin)
                ),
                code: HttpError::HttpRequestDenied,
            });
        }
        match source.credential(&self.connection.id).await {
            Ok(current) => Ok(Some(BoundCredential { source, current })),
            Err(e) => Err(Refusal {
                reason: format!("{}: {e}", self.who()),
                code: HttpError::InternalError(Some(e.to_string())),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http::{HeaderName, HeaderValue, Method};

    use super::*;
    use crate::audit::Decision;
    use crate::connection::Connection;
    use crate::credential::CredentialError;
    use crate::egress::fakes::{
        FakeSource, Harness, Upstream, answer, body_of, connection, failing_body, get, request, who,
    };
    use crate::limits::Limits;
    use crate::net::{EgressRule, Origin};

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn limits(edit: impl FnOnce(&mut Limits)) -> Limits {
        let mut limits = Limits::default();
        edit(&mut limits);
        limits
    }

    #[test]
    fn budget_counts_every_send_and_names_a_retry() {
        let h = Harness::new(connection(), vec![], limits(|l| l.outbound_requests = 2));
        assert!(h.inner.take_request_budget(Attempt::First).is_ok());
        assert!(h.inner.take_request_budget(Attempt::RateRetry).is_ok());
        let first = h.inner.take_request_budget(Attempt::First).unwrap_err();
        assert_eq!(
            first.reason,
            format!(
                "{} exceeded its limit of 2 outbound requests per call",
                who()
            )
        );
        assert!(matches!(first.code, HttpError::HttpRequestDenied));
        let retry = h.inner.take_request_budget(Attempt::RateRetry).unwrap_err();
        assert_eq!(
            retry.reason,
            format!(
                "{} exceeded its limit of 2 outbound requests per call while retrying",
                who()
            )
        );
        assert!(matches!(retry.code, HttpError::HttpRequestDenied));
        // Refused sends count too: the budget never frees up again.
        assert_eq!(h.inner.tracker.sent.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn budget_exceeded_on_a_first_attempt_is_refused_before_sending() {
        let up = Upstream::start(vec![answer("200 OK", &[], "")]).await;
        let h = Harness::open(&up, limits(|l| l.outbound_requests = 1));
        let (response, _) = h.send(get(&up.url("/one"), &[])).await.unwrap();
        Harness::read(response).await.unwrap();
        let err = h.refuse(get(&up.url("/two"), &[])).await;
        assert!(matches!(err, HttpError::HttpRequestDenied));
        assert_eq!(up.seen().len(), 1);
        let reason = format!(
            "{} exceeded its limit of 1 outbound requests per call",
            who()
        );
        assert_eq!(h.tracker.denials(), std::slice::from_ref(&reason));
        let records = h.audit.records();
        assert_eq!(records[1].0.decision, Decision::Denied(reason));
    }

    #[test]
    fn target_refuses_relative_and_non_http_urls() {
        let h = Harness::new(connection(), vec![], Limits::default());
        let relative = h.inner.parse_target("/just/a/path").unwrap_err();
        assert_eq!(
            relative.reason,
            format!(
                "{} sent to \"/just/a/path\", which was refused: \"/just/a/path\" is not an \
                 absolute URL: relative URL without a base",
                who()
            )
        );
        assert!(matches!(relative.code, HttpError::HttpRequestDenied));
        let ftp = h.inner.parse_target("ftp://example.com/x").unwrap_err();
        assert_eq!(
            ftp.reason,
            format!(
                "{} sent to \"ftp://example.com/x\", which was refused: scheme `ftp` is not \
                 allowed: only http and https",
                who()
            )
        );
        assert!(matches!(ftp.code, HttpError::HttpRequestDenied));
        let user = h.inner.parse_target("http://me@example.com/").unwrap_err();
        assert!(
            user.reason.ends_with("`user@host`) are not allowed"),
            "{}",
            user.reason
        );
        let ok = h
            .inner
            .parse_target("HTTP://Example.COM.:80/a/../b")
            .unwrap();
        assert_eq!(ok.uri(), "http://example.com/b");
    }

    #[test]
    fn headers_refuse_credential_headers_even_the_connections_own() {
        let origin = Origin::parse("https://api.example.com/").unwrap();
        let h = Harness::new(Harness::keyed_connection(origin), vec![], Limits::default());
        for name in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "x-api-key",
            "connection",
        ] {
            let refusal = h
                .inner
                .check_headers(&headers(&[("accept", "*/*"), (name, "v")]))
                .unwrap_err();
            assert_eq!(
                refusal.reason,
                format!("{} tried to set the forbidden header `{name}`", who())
            );
            assert!(matches!(refusal.code, HttpError::HttpRequestDenied));
        }
        assert!(
            h.inner
                .check_headers(&headers(&[("accept", "*/*")]))
                .is_ok()
        );
        // Without a custom credential header, x-api-key is the guest's to set.
        let plain = Harness::new(connection(), vec![], Limits::default());
        assert!(
            plain
                .inner
                .check_headers(&headers(&[("x-api-key", "v")]))
                .is_ok()
        );
    }

    #[test]
    fn headers_refuse_a_section_over_the_limit() {
        let h = Harness::new(connection(), vec![], limits(|l| l.header_bytes = 10));
        // `x-a` + 7 bytes is exactly the limit.
        assert!(
            h.inner
                .check_headers(&headers(&[("x-a", "1234567")]))
                .is_ok()
        );
        let refusal = h
            .inner
            .check_headers(&headers(&[("x-a", "1234567"), ("x-b", "")]))
            .unwrap_err();
        assert_eq!(
            refusal.reason,
            format!("{} sent 13 bytes of headers; the limit is 10", who())
        );
        assert!(matches!(
            refusal.code,
            HttpError::HttpRequestHeaderSectionSize(Some(10))
        ));
        // A forbidden header is named even when the section is also too big.
        let both = h
            .inner
            .check_headers(&headers(&[("cookie", "0123456789")]))
            .unwrap_err();
        assert!(
            both.reason.contains("forbidden header `cookie`"),
            "{}",
            both.reason
        );
    }

    #[test]
    fn grant_refusal_lists_the_grants_or_nothing() {
        let t = target("https://evil.example/steal?k=v");
        let url = t.redacted();
        let none = Harness::new(connection(), vec![], Limits::default());
        let refusal = none.inner.check_grant(&Method::GET, &t, &url).unwrap_err();
        assert_eq!(
            refusal.reason,
            format!(
                "{} may not send GET https://evil.example:443/steal?k=: origin \
                 https://evil.example:443 is not granted (granted: nothing)",
                who()
            )
        );
        assert!(matches!(refusal.code, HttpError::HttpRequestDenied));

        let grants = vec![
            EgressRule::parse("https://api.example.com/v1", &["GET".into()]).unwrap(),
            EgressRule::parse("https://cdn.example.com", &[]).unwrap(),
        ];
        let some = Harness::new(connection(), grants, Limits::default());
        let refusal = some.inner.check_grant(&Method::GET, &t, &url).unwrap_err();
        assert!(
            refusal.reason.ends_with(
                "(granted: https://api.example.com:443/v1/* [GET], https://cdn.example.com:443)"
            ),
            "{}",
            refusal.reason
        );
    }

    #[test]
    fn grant_narrows_by_method_and_path() {
        let grants =
            vec![EgressRule::parse("https://api.example.com/v1", &["GET".into()]).unwrap()];
        let h = Harness::new(connection(), grants, Limits::default());
        let check = |method: Method, url: &str| {
            let t = target(url);
            h.inner.check_grant(&method, &t, &t.redacted())
        };
        assert!(check(Method::GET, "https://api.example.com/v1/items").is_ok());
        let method = check(Method::POST, "https://api.example.com/v1/items").unwrap_err();
        assert!(
            method
                .reason
                .contains("may not send POST https://api.example.com:443/v1/items"),
            "{}",
            method.reason
        );
        let path = check(Method::GET, "https://api.example.com/v2/items").unwrap_err();
        assert!(path.reason.contains("may not send GET"), "{}", path.reason);
        // A prefix is a path segment, not a string prefix; dot segments are
        // resolved before the check.
        assert!(check(Method::GET, "https://api.example.com/v1evil").is_err());
        assert!(check(Method::GET, "https://api.example.com/v1/../admin").is_err());
    }

    #[tokio::test]
    async fn body_over_the_cap_is_refused() {
        let h = Harness::new(connection(), vec![], limits(|l| l.request_body_bytes = 4));
        assert_eq!(h.inner.read_body(body_of("1234")).await.unwrap(), "1234");
        let refusal = h.inner.read_body(body_of("12345")).await.unwrap_err();
        assert_eq!(
            refusal.reason,
            format!("{} sent a request body over the limit of 4 bytes", who())
        );
        assert!(matches!(
            refusal.code,
            HttpError::HttpRequestBodySize(Some(4))
        ));
    }

    // Documents today's behaviour: the guest's own body error keeps its code
    // but is reported under the body-cap reason.
    #[tokio::test]
    async fn a_failing_body_keeps_its_error_code() {
        let h = Harness::new(connection(), vec![], Limits::default());
        let refusal = h.inner.read_body(failing_body()).await.unwrap_err();
        assert!(
            matches!(refusal.code, HttpError::ConnectionTerminated),
            "{:?}",
            refusal.code
        );
        assert!(refusal.reason.contains("request body over the limit"));
    }

    #[tokio::test]
    async fn credential_is_asked_for_only_on_bound_origins() {
        let bound = Origin::parse("https://api.example.com/").unwrap();
        let source = FakeSource::new(true);
        let conn = connection().with_credential_for(
            http::header::AUTHORIZATION,
            vec![bound],
            source.clone(),
        );
        let h = Harness::new(conn, vec![], Limits::default());
        let other = h
            .inner
            .credential_for(&target("https://cdn.example.com/x"))
            .await
            .unwrap();
        assert!(other.is_none());
        // Same host, other port: a different origin.
        let port = h
            .inner
            .credential_for(&target("https://api.example.com:8443/x"))
            .await
            .unwrap();
        assert!(port.is_none());
        assert_eq!(source.asked(), 0);
        let given = h
            .inner
            .credential_for(&target("https://API.example.com./x"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(given.current.header_value().unwrap(), "Bearer old");
        assert_eq!(source.asked(), 1);
    }

    #[tokio::test]
    async fn credential_source_error_is_refused_with_its_message() {
        let source = FakeSource::failing(CredentialError::Missing {
            connection: "conn-id".into(),
        });
        let bound = Origin::parse("https://api.example.com/").unwrap();
        let conn =
            connection().with_credential_for(http::header::AUTHORIZATION, vec![bound], source);
        let h = Harness::new(conn, vec![], Limits::default());
        let refusal = h
            .inner
            .credential_for(&target("https://api.example.com/"))
            .await
            .unwrap_err();
        let message = "connection conn-id has no stored credential; add one before calling it";
        assert_eq!(refusal.reason, format!("{}: {message}", who()));
        assert!(
            matches!(&refusal.code, HttpError::InternalError(Some(m)) if m == message),
            "{:?}",
            refusal.code
        );
    }

    // Through `send`: the credential reaches the bound origin's server and
    // never the other one, and the audit rows say which carried it.
    #[tokio::test]
    async fn credential_goes_on_the_wire_only_to_bound_origins() {
        let bound = Upstream::start(vec![answer("200 OK", &[], "")]).await;
        let other = Upstream::start(vec![answer("200 OK", &[], "")]).await;
        let source = FakeSource::new(false);
        let conn = connection().with_credential_for(
            http::header::AUTHORIZATION,
            vec![bound.origin_parsed()],
            source,
        );
        let grants = vec![
            EgressRule::origin(bound.origin_parsed()),
            EgressRule::origin(other.origin_parsed()),
        ];
        let h = Harness::new(conn, grants, Limits::default());
        for url in [bound.url("/"), other.url("/")] {
            let (response, _) = h.send(get(&url, &[])).await.unwrap();
            Harness::read(response).await.unwrap();
        }
        assert_eq!(bound.seen()[0].header("authorization"), Some("Bearer old"));
        assert_eq!(other.seen()[0].header("authorization"), None);
        let used: Vec<bool> = h
            .audit
            .records()
            .iter()
            .map(|r| r.0.credential_used)
            .collect();
        assert_eq!(used, [true, false]);
    }

    #[tokio::test]
    async fn stages_run_in_order() {
        // Each request breaks two rules; the earlier stage must be the one named.
        let up = Upstream::start(vec![answer("200 OK", &[], "")]).await;
        let source = FakeSource::failing(CredentialError::Missing {
            connection: "conn-id".into(),
        });
        let conn = Connection::new("conn-id", "conn").with_credential_for(
            http::header::AUTHORIZATION,
            vec![up.origin_parsed()],
            source,
        );
        let h = Harness::new(
            conn,
            vec![EgressRule::origin(up.origin_parsed())],
            limits(|l| {
                l.header_bytes = 8;
                l.request_body_bytes = 1;
            }),
        );
        let cases = [
            // Unparseable and over the header limit: the URL is named.
            (
                request("GET", "ftp://x/", &[("x-big", "123456789")], ""),
                "which was refused",
            ),
            // Ungranted and over the header limit: the headers are named.
            (
                request("GET", "http://127.0.0.2:1/", &[("x-big", "123456789")], ""),
                "bytes of headers",
            ),
            // Ungranted and body over the cap: the grant is named.
            (
                request("POST", "http://127.0.0.2:1/", &[], "xx"),
                "is not granted",
            ),
            // Body over the cap and no credential: the body is named.
            (
                request("POST", &up.url("/"), &[], "xx"),
                "request body over the limit",
            ),
            (
                request("POST", &up.url("/"), &[], "x"),
                "has no stored credential",
            ),
        ];
        for (req, expected) in cases {
            assert!(h.send(req).await.is_err());
            let last = h.tracker.denials().pop().unwrap();
            assert!(last.contains(expected), "{last} should contain {expected}");
        }
        assert!(up.seen().is_empty());
    }
}
