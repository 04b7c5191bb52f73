//! `airlock:plugin/outbound`: a whole request in one host call.
//!
//! The request is parsed here into `http` types (a bad method, URL or header
//! is the guest's error, answered as wasi:http would answer it) and handed
//! to the call's egress ([`CallEgress::send_whole`]), which runs every stage
//! a wasi:http request runs. What it saves is the guest's dozen host calls
//! over fields, bodies, streams and pollables per request, and the task
//! wasi:http spawns for each.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use wasmtime::component::HasData;
use wasmtime_wasi_http::p2::bindings::http::types::{
    DnsErrorPayload, ErrorCode, FieldSizePayload, TlsAlertReceivedPayload,
};

use super::bindings::airlock::plugin::outbound::{self, HeaderRefusal, Request, Response};
use crate::egress::{CallEgress, WholeError};

/// `HasData` marker for the outbound interface: it needs only the call's
/// egress.
pub(super) struct OutboundApi;

impl HasData for OutboundApi {
    type Data<'a> = &'a mut CallEgress;
}

impl outbound::Host for CallEgress {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Sent> {
        let request = match into_http(request) {
            Ok(request) => request,
            Err(Refused::Header(refusal)) => return Ok(Err(refusal)),
            Err(Refused::Http(code)) => return Ok(Ok(Err(code))),
        };
        Ok(match self.send_whole(request).await {
            Ok(response) => Ok(Ok(from_http(response))),
            Err(WholeError::ForbiddenHeader(name)) => {
                Err(HeaderRefusal::Forbidden(name.to_string()))
            }
            Err(WholeError::Http(e)) => Ok(Err(error_code(e))),
        })
    }
}

/// What `send` answers: a header refusal, or wasi:http's result.
type Sent = Result<Result<Response, ErrorCode>, HeaderRefusal>;

/// Why a request could not be built from what the guest gave.
#[derive(Debug)]
enum Refused {
    Header(HeaderRefusal),
    Http(ErrorCode),
}

/// The guest's request as `http` types, or the error wasi:http gives for the
/// same mistake when the guest builds its request there.
fn into_http(request: Request) -> Result<http::Request<Bytes>, Refused> {
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| Refused::Http(ErrorCode::HttpRequestMethodInvalid))?;
    let uri = Uri::try_from(request.url.as_str())
        .map_err(|_| Refused::Http(ErrorCode::HttpRequestUriInvalid))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    let headers = builder
        .headers_mut()
        .expect("a builder with a valid method and URI has headers");
    for (name, value) in request.headers {
        let invalid = || Refused::Header(HeaderRefusal::Invalid(name.clone()));
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| invalid())?;
        headers.append(header, value);
    }
    let body = request.body.map_or_else(Bytes::new, Bytes::from);
    builder
        .body(body)
        .map_err(|e| Refused::Http(ErrorCode::InternalError(Some(e.to_string()))))
}

fn from_http(response: http::Response<Bytes>) -> Response {
    let (parts, body) = response.into_parts();
    Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
        body: body.into(),
    }
}

/// The wasi:http error code the guest would have got for `e` through
/// wasi:http (whose own conversion is private to wasmtime-wasi-http).
fn error_code(e: wasmtime_wasi_http::Error) -> ErrorCode {
    use wasmtime_wasi_http::Error as E;
    match e {
        E::DnsTimeout => ErrorCode::DnsTimeout,
        E::DnsError { rcode, info_code } => {
            ErrorCode::DnsError(DnsErrorPayload { rcode, info_code })
        }
        E::DestinationNotFound => ErrorCode::DestinationNotFound,
        E::DestinationUnavailable => ErrorCode::DestinationUnavailable,
        E::DestinationIpProhibited => ErrorCode::DestinationIpProhibited,
        E::DestinationIpUnroutable => ErrorCode::DestinationIpUnroutable,
        E::ConnectionRefused => ErrorCode::ConnectionRefused,
        E::ConnectionTerminated => ErrorCode::ConnectionTerminated,
        E::ConnectionTimeout => ErrorCode::ConnectionTimeout,
        E::ConnectionReadTimeout => ErrorCode::ConnectionReadTimeout,
        E::ConnectionWriteTimeout => ErrorCode::ConnectionWriteTimeout,
        E::ConnectionLimitReached => ErrorCode::ConnectionLimitReached,
        E::TlsProtocolError => ErrorCode::TlsProtocolError,
        E::TlsCertificateError => ErrorCode::TlsCertificateError,
        E::TlsAlertReceived {
            alert_id,
            alert_message,
        } => ErrorCode::TlsAlertReceived(TlsAlertReceivedPayload {
            alert_id,
            alert_message,
        }),
        E::HttpRequestDenied => ErrorCode::HttpRequestDenied,
        E::HttpRequestLengthRequired => ErrorCode::HttpRequestLengthRequired,
        E::HttpRequestBodySize(n) => ErrorCode::HttpRequestBodySize(n),
        E::HttpRequestMethodInvalid => ErrorCode::HttpRequestMethodInvalid,
        E::HttpRequestUriInvalid => ErrorCode::HttpRequestUriInvalid,
        E::HttpRequestUriTooLong => ErrorCode::HttpRequestUriTooLong,
        E::HttpRequestHeaderSectionSize(n) => ErrorCode::HttpRequestHeaderSectionSize(n),
        E::HttpRequestHeaderSize {
            field_name,
            field_size,
        } => ErrorCode::HttpRequestHeaderSize(Some(FieldSizePayload {
            field_name,
            field_size,
        })),
        E::HttpResponseIncomplete => ErrorCode::HttpResponseIncomplete,
        E::HttpResponseHeaderSectionSize(n) => ErrorCode::HttpResponseHeaderSectionSize(n),
        E::HttpResponseHeaderSize {
            field_name,
            field_size,
        } => ErrorCode::HttpResponseHeaderSize(FieldSizePayload {
            field_name,
            field_size,
        }),
        E::HttpResponseBodySize(n) => ErrorCode::HttpResponseBodySize(n),
        E::HttpResponseTimeout => ErrorCode::HttpResponseTimeout,
        E::HttpProtocolError => ErrorCode::HttpProtocolError,
        E::InternalError(message) => ErrorCode::InternalError(message),
        E::HttpRequestTrailerSectionSize(n) => ErrorCode::HttpRequestTrailerSectionSize(n),
        E::HttpRequestTrailerSize {
            field_name,
            field_size,
        } => ErrorCode::HttpRequestTrailerSize(FieldSizePayload {
            field_name,
            field_size,
        }),
        E::HttpResponseTrailerSectionSize(n) => ErrorCode::HttpResponseTrailerSectionSize(n),
        E::HttpResponseTrailerSize {
            field_name,
            field_size,
        } => ErrorCode::HttpResponseTrailerSize(FieldSizePayload {
            field_name,
            field_size,
        }),
        E::HttpResponseTransferCoding(c) => ErrorCode::HttpResponseTransferCoding(c),
        E::HttpResponseContentCoding(c) => ErrorCode::HttpResponseContentCoding(c),
        E::HttpUpgradeFailed => ErrorCode::HttpUpgradeFailed,
        E::LoopDetected => ErrorCode::LoopDetected,
        E::ConfigurationError => ErrorCode::ConfigurationError,
        // The error type is open to new variants: one this build does not
        // know reaches the guest in words, and the operator's log in full.
        other => {
            tracing::warn!(error = ?other, "unclassified transport error answered as internal-error");
            ErrorCode::InternalError(Some(
                "the transport failed in a way this airlock does not classify; the host's \
                 log has the details"
                    .into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, url: &str, headers: &[(&str, &[u8])]) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: None,
        }
    }

    #[test]
    fn a_bad_method_url_or_header_is_the_error_wasi_http_gives() {
        let bad_method = into_http(request("G T", "https://a.example/", &[]));
        assert!(matches!(
            bad_method,
            Err(Refused::Http(ErrorCode::HttpRequestMethodInvalid))
        ));
        let bad_url = into_http(request("GET", "https://a.example/ x", &[]));
        assert!(matches!(
            bad_url,
            Err(Refused::Http(ErrorCode::HttpRequestUriInvalid))
        ));
        let bad_name = into_http(request("GET", "https://a.example/", &[("x y", b"1")]));
        assert!(matches!(bad_name, Err(Refused::Header(HeaderRefusal::Invalid(n))) if n == "x y"));
        let bad_value = into_http(request("GET", "https://a.example/", &[("x", b"a\r\nb: c")]));
        assert!(matches!(bad_value, Err(Refused::Header(HeaderRefusal::Invalid(n))) if n == "x"));
    }

    #[test]
    fn headers_keep_their_order_and_repeats_and_the_body_its_bytes() {
        let mut req = request(
            "POST",
            "https://a.example/p?q=1",
            &[
                ("X-A", b"1"),
                ("x-a", b"2"),
                ("content-type", b"text/plain"),
            ],
        );
        req.body = Some(b"hi".to_vec());
        let req = into_http(req).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "https://a.example/p?q=1");
        let values: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(req.body().as_ref(), b"hi");
    }

    #[test]
    fn error_codes_carry_their_payloads() {
        use wasmtime_wasi_http::Error as E;
        assert!(matches!(
            error_code(E::HttpResponseBodySize(Some(9))),
            ErrorCode::HttpResponseBodySize(Some(9))
        ));
        assert!(matches!(
            error_code(E::InternalError(Some("audit".into()))),
            ErrorCode::InternalError(Some(m)) if m == "audit"
        ));
        assert!(matches!(
            error_code(E::HttpRequestDenied),
            ErrorCode::HttpRequestDenied
        ));
        assert!(matches!(
            error_code(E::LoopDetected),
            ErrorCode::LoopDetected
        ));
        assert!(matches!(
            error_code(E::HttpResponseTrailerSize {
                field_name: Some("x-t".into()),
                field_size: Some(3),
            }),
            ErrorCode::HttpResponseTrailerSize(FieldSizePayload {
                field_name: Some(n),
                field_size: Some(3),
            }) if n == "x-t"
        ));
    }
}
