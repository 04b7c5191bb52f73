//! A small blocking HTTP client. [`Request::send`] hands the whole request
//! to the host in one call (`airlock:plugin/outbound`) and gets the whole
//! answer back; [`Request::send_streaming`], and a body over 512 KiB, use
//! `wasi:http/outgoing-handler`. Both pass the host's same checks.
//!
//! ```rust,ignore
//! use airlock_sdk::http::Request;
//!
//! let me: Me = Request::get("https://example.atlassian.net/rest/api/3/myself").send_json()?;
//! let created = Request::post(url).json(&body).send()?.error_for_status()?;
//! ```
//!
//! The host checks each request against the plugin's egress grants and adds
//! the connection's credential itself; a refused request is
//! [`PluginError::EgressDenied`]. [`Request::send`] returns every answer the
//! upstream gives, redirects included (it never follows them);
//! [`Response::error_for_status`] and [`Request::send_json`] turn non-2xx
//! answers into the matching [`PluginError`]:
//!
//! | status       | error                                              |
//! |--------------|----------------------------------------------------|
//! | 400, 422     | `InvalidInput`                                     |
//! | 401          | `Unauthorized`                                     |
//! | 403          | `Forbidden`                                        |
//! | 404          | `NotFound`                                         |
//! | 409          | `Conflict`                                         |
//! | 429          | `RateLimited` (with `Retry-After` in seconds)      |
//! | anything else| `Upstream { status, message }`                     |
//!
//! The message is the service's own (`message`, `error.message`, `error`,
//! `error_description`, `errorMessages[0]` or `error.detail` of a JSON body,
//! else the body text cut to 500 characters), prefixed with `HTTP <status>`.
//!
//! Transport failures map as follows: the host refusing the request, its
//! destination address, an oversized request body or header section, or a
//! header the plugin may not set → `EgressDenied`; connect, read, DNS and
//! response timeouts → `Timeout`; a response body over the host's limit →
//! `Upstream { status: 0, .. }` (the upstream did answer, the host would not
//! take all of it); anything else → `Upstream { status: 0, .. }` with the
//! wasi:http error code in the message.

use crate::__bindings::base::airlock::plugin::outbound;
use crate::__bindings::base::wasi::http::{outgoing_handler, types as wasi};
use crate::__bindings::base::wasi::io::streams::StreamError;
use crate::types::{PluginError, RateLimit, UpstreamFailure};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest request body [`Request::send`] hands the host in one call
/// (`airlock:plugin/outbound`); a larger one streams through wasi:http,
/// because a host call's data is capped (1 MiB by default) below the
/// request body cap (10 MiB).
const WHOLE_BODY_LIMIT: usize = 512 * 1024;

/// Whether a request with `body` goes to the host in one call
/// (`airlock:plugin/outbound`) rather than over wasi:http's streams.
fn goes_whole(body: Option<&[u8]>) -> bool {
    body.is_none_or(|body| body.len() <= WHOLE_BODY_LIMIT)
}
/// Largest chunk `blocking-write-and-flush` accepts in one call.
const WRITE_CHUNK: usize = 4096;
/// How much to ask `blocking-read` for at a time.
const READ_CHUNK: u64 = 64 * 1024;
/// Longest upstream message kept in an error, in characters.
const MESSAGE_LIMIT: usize = 500;

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    /// Any other method, sent as written.
    Other(String),
}

impl Method {
    /// The method's name as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(other) => other,
        }
    }

    fn to_wasi(&self) -> wasi::Method {
        match self {
            Method::Get => wasi::Method::Get,
            Method::Head => wasi::Method::Head,
            Method::Post => wasi::Method::Post,
            Method::Put => wasi::Method::Put,
            Method::Patch => wasi::Method::Patch,
            Method::Delete => wasi::Method::Delete,
            Method::Options => wasi::Method::Options,
            Method::Other(other) => wasi::Method::Other(other.clone()),
        }
    }
}

impl From<&str> for Method {
    /// Standard methods case-insensitively, anything else as [`Method::Other`].
    fn from(method: &str) -> Self {
        match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other(method.to_string()),
        }
    }
}

impl From<String> for Method {
    fn from(method: String) -> Self {
        Method::from(method.as_str())
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `http` or `https`: the only schemes a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute `http(s)` URL split the way wasi:http wants it. Parsing is
/// deliberately simple: no percent-decoding or normalisation, the fragment
/// is dropped and user info (`user:pass@`) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Url {
    /// Parse an absolute URL; anything but `http`/`https` is `InvalidInput`.
    pub fn parse(input: &str) -> Result<Url, PluginError> {
        let input = input.trim();
        let invalid =
            |why: &str| PluginError::InvalidInput(format!("invalid URL `{input}`: {why}"));
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or control characters"));
        }
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| invalid("not an absolute http(s) URL"))?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else {
            return Err(invalid(&format!(
                "scheme `{scheme}` is not allowed, only http and https"
            )));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        if authority.contains('@') {
            return Err(invalid("credentials in URLs are not supported"));
        }
        let tail = tail.split('#').next().unwrap_or_default();
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(Url {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host` or `host:port` as written.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path and query, always starting with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// `scheme://authority`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority)
    }

    /// Resolve a reference such as a `Location` header against this URL: an
    /// absolute URL, `//authority/path`, `/path`, `?query` or a relative path
    /// (dot segments are not resolved).
    pub fn join(&self, reference: &str) -> Result<Url, PluginError> {
        let reference = reference.trim();
        let has_scheme = reference
            .find("://")
            .is_some_and(|at| !reference[..at].contains(['/', '?', '#']));
        if has_scheme {
            Url::parse(reference)
        } else if reference.starts_with("//") {
            Url::parse(&format!("{}:{reference}", self.scheme.as_str()))
        } else if reference.starts_with('/') {
            Url::parse(&format!("{}{reference}", self.origin()))
        } else {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            if reference.starts_with('?') {
                Url::parse(&format!("{}{path}{reference}", self.origin()))
            } else if reference.is_empty() || reference.starts_with('#') {
                Ok(self.clone())
            } else {
                let dir = &path[..path.rfind('/').map_or(0, |at| at + 1)];
                Url::parse(&format!("{}{dir}{reference}", self.origin()))
            }
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority,
            self.path_and_query
        )
    }
}

/// Percent-encode one URL component (a path segment or a query value):
/// every byte of its UTF-8 form except the RFC 3986 unreserved characters
/// `A-Z a-z 0-9 - . _ ~` becomes `%XX`, so `^`, `=`, `&`, `+`, spaces and
/// non-ASCII text cannot change the meaning of the URL they are put in.
pub fn encode_component(text: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `base` and `path` joined with exactly one `/` between them:
/// `join_url("https://x/wiki/", "/rest/api")` is `https://x/wiki/rest/api`.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    }
}

/// An outbound request, built up and then [sent](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// A failure while building (JSON serialisation), reported by `send`.
    error: Option<PluginError>,
}

impl Request {
    pub fn new(method: impl Into<Method>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            error: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    pub fn put(url: impl Into<String>) -> Self {
        Request::new(Method::Put, url)
    }

    pub fn patch(url: impl Into<String>) -> Self {
        Request::new(Method::Patch, url)
    }

    pub fn delete(url: impl Into<String>) -> Self {
        Request::new(Method::Delete, url)
    }

    /// Add a header (repeating a name adds another value). Credentials are
    /// added by the host: a plugin setting `authorization` itself is refused.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Send `value` as a JSON body with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.body(body, "application/json"),
            Err(e) => Request {
                error: Some(PluginError::Internal(format!(
                    "cannot serialize the request body as JSON: {e}"
                ))),
                ..self
            },
        }
    }

    /// Send `body` with the given content type (replacing any set before).
    pub fn body(mut self, body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_string(), content_type.to_string()));
        self.body = Some(body.into());
        self
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers as set so far, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Send the request and read the whole answer, whatever its status
    /// (redirects are returned, not followed). `Err` means no usable answer:
    /// the host refused the request, it timed out, or the transport failed.
    ///
    /// The request goes to the host in one call and the whole answer comes
    /// back in one (`airlock:plugin/outbound`: the same checks as wasi:http,
    /// without its per-request resources and streams); a body over 512 KiB
    /// goes through wasi:http.
    pub fn send(self) -> Result<Response, PluginError> {
        if goes_whole(self.body.as_deref()) {
            return self.send_whole();
        }
        let (incoming, status, headers, what) = self.start()?;
        let body = read_body(&incoming, &what)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Send the request and return as soon as the response headers arrive;
    /// the body is read piece by piece with [`StreamingResponse::read_chunk`]
    /// (server-sent events, long answers). Errors as for [`send`](Request::send).
    pub fn send_streaming(self) -> Result<StreamingResponse, PluginError> {
        let (incoming, status, headers, what) = self.start()?;
        let body = incoming.consume().map_err(|()| {
            PluginError::Internal(format!("the response body of {what} was already taken"))
        })?;
        let stream = body.stream().map_err(|()| {
            PluginError::Internal(format!("the response body of {what} was already taken"))
        })?;
        Ok(StreamingResponse {
            status,
            headers,
            reader: Some(BodyReader {
                stream,
                _body: body,
                _response: incoming,
            }),
            what,
        })
    }

    /// [`send`](Request::send) in one host call.
    fn send_whole(self) -> Result<Response, PluginError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let url = Url::parse(&self.url)?;
        let what = format!("{} {url}", self.method);
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect();
        if let Some(length) = self.implied_content_length() {
            headers.push(("content-length".into(), length.into_bytes()));
        }
        let request = outbound::Request {
            method: self.method.as_str().to_string(),
            url: url.to_string(),
            headers,
            body: self.body,
        };
        match outbound::send(&request) {
            Ok(Ok(response)) => Ok(Response {
                status: response.status,
                headers: response
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
                    .collect(),
                body: response.body,
            }),
            Ok(Err(code)) => Err(error_from_code(code, &what)),
            Err(outbound::HeaderRefusal::Forbidden(name)) => {
                Err(header_error(&name, wasi::HeaderError::Forbidden))
            }
            Err(outbound::HeaderRefusal::Invalid(name)) => {
                Err(header_error(&name, wasi::HeaderError::InvalidSyntax))
            }
        }
    }

    /// The `content-length` a body implies, unless one is set.
    fn implied_content_length(&self) -> Option<String> {
        let body = self.body.as_ref()?;
        let has_length = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        (!has_length).then(|| body.len().to_string())
    }

    /// Send the request and wait for the response headers.
    #[allow(clippy::type_complexity)]
    fn start(
        self,
    ) -> Result<(wasi::IncomingResponse, u16, Vec<(String, String)>, String), PluginError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let url = Url::parse(&self.url)?;
        let what = format!("{} {url}", self.method);

        let headers = wasi::Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| header_error(name, e))?;
        }
        if let Some(length) = self.implied_content_length() {
            headers
                .append("content-length", length.as_bytes())
                .map_err(|e| header_error("content-length", e))?;
        }

        let request = wasi::OutgoingRequest::new(headers);
        request
            .set_method(&self.method.to_wasi())
            .map_err(|()| PluginError::InvalidInput(format!("invalid HTTP method in {what}")))?;
        let scheme = match url.scheme() {
            Scheme::Http => wasi::Scheme::Http,
            Scheme::Https => wasi::Scheme::Https,
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| PluginError::InvalidInput(format!("invalid URL scheme in {what}")))?;
        request
            .set_authority(Some(url.authority()))
            .map_err(|()| PluginError::InvalidInput(format!("invalid host in {what}")))?;
        request
            .set_path_with_query(Some(url.path_and_query()))
            .map_err(|()| PluginError::InvalidInput(format!("invalid path in {what}")))?;

        let outgoing_body = match self.body {
            Some(_) => Some(request.body().map_err(|()| {
                PluginError::Internal(format!("request body of {what} already taken"))
            })?),
            None => None,
        };

        // Start the request before writing the body: the host streams it, so
        // writing first could block on a pipe nobody reads yet.
        let future =
            outgoing_handler::handle(request, None).map_err(|code| error_from_code(code, &what))?;

        let mut write_failure = None;
        if let (Some(outgoing_body), Some(body)) = (outgoing_body, self.body.as_deref()) {
            match write_body(&outgoing_body, body) {
                Ok(()) => wasi::OutgoingBody::finish(outgoing_body, None)
                    .map_err(|code| error_from_code(code, &what))?,
                // Dropping the unfinished body tells the host the request is
                // abandoned; the response future then says why, unless the
                // upstream answered early.
                Err(failure) => write_failure = Some(failure),
            }
        }

        let incoming = match wait_for_response(&future, &what)? {
            Ok(incoming) => incoming,
            Err(code) => {
                return Err(match write_failure {
                    Some(WriteFailure {
                        code: Some(write_code),
                        ..
                    }) => error_from_code(write_code, &what),
                    _ => error_from_code(code, &what),
                });
            }
        };

        let status = incoming.status();
        let headers = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        Ok((incoming, status, headers, what))
    }

    /// [`send`](Request::send), then [`Response::error_for_status`], then
    /// parse the body as JSON (an empty body parses as `null`). Adds
    /// `accept: application/json` unless an `accept` header is set.
    pub fn send_json<T: DeserializeOwned>(self) -> Result<T, PluginError> {
        let has_accept = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("accept"));
        let request = if has_accept {
            self
        } else {
            self.header("accept", "application/json")
        };
        request.send()?.error_for_status()?.json()
    }
}

/// Why writing a request body stopped early.
struct WriteFailure {
    /// The wasi:http error behind the stream error, when the host gave one.
    code: Option<wasi::ErrorCode>,
}

fn write_body(body: &wasi::OutgoingBody, bytes: &[u8]) -> Result<(), WriteFailure> {
    let stream = body.write().map_err(|()| WriteFailure { code: None })?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| WriteFailure {
                code: match e {
                    StreamError::LastOperationFailed(io) => wasi::http_error_code(&io),
                    StreamError::Closed => None,
                },
            })?;
    }
    Ok(())
}

fn wait_for_response(
    future: &wasi::FutureIncomingResponse,
    what: &str,
) -> Result<Result<wasi::IncomingResponse, wasi::ErrorCode>, PluginError> {
    loop {
        match future.get() {
            Some(Ok(result)) => return Ok(result),
            Some(Err(())) => {
                return Err(PluginError::Internal(format!(
                    "the response to {what} was already taken"
                )));
            }
            None => future.subscribe().block(),
        }
    }
}

fn read_body(incoming: &wasi::IncomingResponse, what: &str) -> Result<Vec<u8>, PluginError> {
    let incoming_body = incoming.consume().map_err(|()| {
        PluginError::Internal(format!("the response body of {what} was already taken"))
    })?;
    let mut body = Vec::new();
    {
        let stream = incoming_body.stream().map_err(|()| {
            PluginError::Internal(format!("the response body of {what} was already taken"))
        })?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match wasi::http_error_code(&e) {
                        Some(code) => error_from_code(code, what),
                        None => PluginError::Upstream(UpstreamFailure {
                            status: 0,
                            message: format!(
                                "{what}: reading the response body failed: {}",
                                e.to_debug_string()
                            ),
                        }),
                    });
                }
            }
        }
    }
    // Trailers are not used; finishing releases the body.
    drop(wasi::IncomingBody::finish(incoming_body));
    Ok(body)
}

/// The `PluginError` for a wasi:http error code; `what` names the request
/// (`GET https://...`).
fn error_from_code(code: wasi::ErrorCode, what: &str) -> PluginError {
    use wasi::ErrorCode as E;
    match code {
        E::HttpRequestDenied => {
            PluginError::EgressDenied(format!("the host refused the request {what}"))
        }
        E::DestinationIpProhibited => PluginError::EgressDenied(format!(
            "the host refused the request {what}: its destination address is prohibited"
        )),
        E::HttpRequestBodySize(_) => PluginError::EgressDenied(format!(
            "the host refused the request {what}: the request body exceeds its limit"
        )),
        E::HttpRequestHeaderSectionSize(_) => PluginError::EgressDenied(format!(
            "the host refused the request {what}: the request headers exceed its limit"
        )),
        E::HttpRequestHeaderSize(field) => {
            let name = field
                .and_then(|f| f.field_name)
                .map(|name| format!(" (`{name}`)"))
                .unwrap_or_default();
            PluginError::EgressDenied(format!(
                "the host refused the request {what}: a request header{name} exceeds its limit"
            ))
        }
        E::DnsTimeout => PluginError::Timeout(format!("{what}: DNS lookup timed out")),
        E::ConnectionTimeout => PluginError::Timeout(format!("{what}: connecting timed out")),
        E::ConnectionReadTimeout => {
            PluginError::Timeout(format!("{what}: reading the response timed out"))
        }
        E::ConnectionWriteTimeout => {
            PluginError::Timeout(format!("{what}: sending the request timed out"))
        }
        E::HttpResponseTimeout => {
            PluginError::Timeout(format!("{what}: no response arrived in time"))
        }
        E::HttpResponseBodySize(_) => PluginError::Upstream(UpstreamFailure {
            status: 0,
            message: format!("{what}: response body exceeds the host's limit"),
        }),
        E::InternalError(Some(message)) => PluginError::Upstream(UpstreamFailure {
            status: 0,
            message: format!("{what}: {message}"),
        }),
        other => PluginError::Upstream(UpstreamFailure {
            status: 0,
            message: format!("{what}: {}", describe_code(&other)),
        }),
    }
}

/// What a wasi-http error code means, in words (never the Rust variant
/// name a `{:?}` would print).
fn describe_code(code: &wasi::ErrorCode) -> String {
    use wasi::ErrorCode as E;
    let text = match code {
        E::DnsError(payload) => {
            return match &payload.rcode {
                Some(rcode) => format!("the name lookup failed ({rcode})"),
                None => "the name lookup failed".to_string(),
            };
        }
        E::TlsAlertReceived(payload) => {
            return match &payload.alert_message {
                Some(message) => format!("the server ended TLS with an alert: {message}"),
                None => "the server ended TLS with an alert".to_string(),
            };
        }
        E::DestinationNotFound => "the server's name does not resolve",
        E::DestinationUnavailable => "the server is unavailable",
        E::DestinationIpUnroutable => "the server's address is unroutable",
        E::ConnectionRefused => "the server refused the connection",
        E::ConnectionTerminated => "the server closed the connection",
        E::ConnectionLimitReached => "too many connections are open",
        E::TlsProtocolError => "TLS failed",
        E::TlsCertificateError => "the server's TLS certificate is not trusted",
        E::HttpRequestLengthRequired => "the server requires a content length",
        E::HttpRequestMethodInvalid => "the request method is invalid",
        E::HttpRequestUriInvalid => "the request URL is invalid",
        E::HttpRequestUriTooLong => "the request URL is too long",
        E::HttpRequestTrailerSectionSize(_) | E::HttpRequestTrailerSize(_) => {
            "the request trailers exceed the limit"
        }
        E::HttpResponseIncomplete => "the response ended before it was complete",
        E::HttpResponseHeaderSectionSize(_) | E::HttpResponseHeaderSize(_) => {
            "the response headers exceed the limit"
        }
        E::HttpResponseTrailerSectionSize(_) | E::HttpResponseTrailerSize(_) => {
            "the response trailers exceed the limit"
        }
        E::HttpResponseTransferCoding(_) => "the response's transfer coding is not supported",
        E::HttpResponseContentCoding(_) => "the response's content coding is not supported",
        E::HttpUpgradeFailed => "the protocol upgrade failed",
        E::HttpProtocolError => "the server broke the HTTP protocol",
        E::LoopDetected => "a request loop was detected",
        E::ConfigurationError => "the host's HTTP configuration is wrong",
        E::InternalError(None) => "the host's HTTP client failed",
        _ => "the request failed",
    };
    text.to_string()
}

fn header_error(name: &str, error: wasi::HeaderError) -> PluginError {
    match error {
        wasi::HeaderError::Forbidden => PluginError::EgressDenied(format!(
            "the host does not allow plugins to set the `{name}` header"
        )),
        wasi::HeaderError::InvalidSyntax => {
            PluginError::InvalidInput(format!("invalid HTTP header `{name}`"))
        }
        wasi::HeaderError::Immutable => {
            PluginError::Internal(format!("cannot set header `{name}`: headers are immutable"))
        }
    }
}

/// An upstream answer whose body is still arriving; see
/// [`Request::send_streaming`].
pub struct StreamingResponse {
    pub status: u16,
    /// Names as the host delivered them (lower case), values decoded lossily
    /// as UTF-8, in order.
    pub headers: Vec<(String, String)>,
    /// `None` once the body has ended.
    reader: Option<BodyReader>,
    what: String,
}

/// The wasi handles of a body being read. Fields drop in declaration order:
/// the stream before the body it belongs to, the body before its response.
struct BodyReader {
    stream: crate::__bindings::base::wasi::io::streams::InputStream,
    _body: wasi::IncomingBody,
    _response: wasi::IncomingResponse,
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("ended", &self.reader.is_none())
            .finish()
    }
}

impl StreamingResponse {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The next piece of the body as the host received it (pieces split
    /// anywhere, even inside a UTF-8 character); `None` once the body has
    /// ended. Blocks until data arrives, the body ends or the call's
    /// deadline passes.
    pub fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, PluginError> {
        loop {
            let Some(reader) = &self.reader else {
                return Ok(None);
            };
            match reader.stream.blocking_read(READ_CHUNK) {
                // An empty read means "nothing yet" on some hosts: wait again.
                Ok(chunk) if chunk.is_empty() => continue,
                Ok(chunk) => return Ok(Some(chunk)),
                Err(StreamError::Closed) => {
                    self.finish();
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    let error = match wasi::http_error_code(&e) {
                        Some(code) => error_from_code(code, &self.what),
                        None => PluginError::Upstream(UpstreamFailure {
                            status: 0,
                            message: format!(
                                "{}: reading the response body failed: {}",
                                self.what,
                                e.to_debug_string()
                            ),
                        }),
                    };
                    self.reader = None;
                    return Err(error);
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let BodyReader {
                stream,
                _body,
                _response,
            } = reader;
            drop(stream);
            // Trailers are not used; finishing releases the body.
            drop(wasi::IncomingBody::finish(_body));
        }
    }

    /// Read the rest of the body and return the whole answer (for error
    /// messages, or servers that ignored a request to stream).
    pub fn into_response(mut self) -> Result<Response, PluginError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.read_chunk()? {
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body,
        })
    }

    /// `Ok(self)` for 2xx; otherwise the body is read and the answer becomes
    /// the matching [`PluginError`], as [`Response::error_for_status`] does.
    pub fn error_for_status(self) -> Result<StreamingResponse, PluginError> {
        if self.is_success() {
            Ok(self)
        } else {
            let response = self.into_response()?;
            Err(status_error(
                response.status,
                &response.headers,
                &response.body,
                SystemTime::now(),
            ))
        }
    }
}

/// A whole upstream answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names as the host delivered them (lower case), values decoded lossily
    /// as UTF-8, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parse the body as JSON; a malformed body is `Upstream { status, .. }`.
    /// An empty body parses as `null`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| {
            PluginError::Upstream(UpstreamFailure {
                status: self.status,
                message: format!("malformed JSON from upstream: {e}"),
            })
        })
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Ok(self)` for 2xx, else the matching [`PluginError`] (see the
    /// [module docs](self)).
    pub fn error_for_status(self) -> Result<Response, PluginError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(status_error(
                self.status,
                &self.headers,
                &self.body,
                SystemTime::now(),
            ))
        }
    }
}

fn status_error(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> PluginError {
    let detail = upstream_message(body);
    let message = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    match status {
        400 | 422 => PluginError::InvalidInput(message),
        401 => PluginError::Unauthorized(message),
        403 => PluginError::Forbidden(message),
        404 => PluginError::NotFound(message),
        409 => PluginError::Conflict(message),
        429 => PluginError::RateLimited(RateLimit {
            retry_after_secs: headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, value)| retry_after_secs(value, now)),
            message,
        }),
        _ => PluginError::Upstream(UpstreamFailure { status, message }),
    }
}

/// The service's own message from an error body: the first non-empty of the
/// usual JSON fields, else the body text; at most [`MESSAGE_LIMIT`] chars.
fn upstream_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = json.get("error");
        let candidates = [
            json.get("message"),
            error.and_then(|e| e.get("message")),
            error,
            json.get("error_description"),
            json.get("errorMessages").and_then(|m| m.get(0)),
            error.and_then(|e| e.get("detail")),
        ];
        let found = candidates
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(str::trim)
            .find(|s| !s.is_empty());
        if let Some(message) = found {
            return truncate(message);
        }
    }
    truncate(String::from_utf8_lossy(body).trim())
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Seconds to wait from a `Retry-After` value: delta-seconds, or an
/// HTTP-date counted from `now` (0 when it has passed).
fn retry_after_secs(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok();
    }
    let date = http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(date.saturating_sub(now))
}

/// Seconds since the Unix epoch of an HTTP-date in any of the three forms
/// RFC 9110 accepts: `Sun, 06 Nov 1994 08:49:37 GMT`,
/// `Sunday, 06-Nov-94 08:49:37 GMT` and `Sun Nov  6 08:49:37 1994`.
fn http_date(value: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const LONG_DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];

    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for token in value
        .split([' ', ',', '-'])
        .filter(|token| !token.is_empty())
    {
        let lower = token.to_ascii_lowercase();
        if token.contains(':') {
            let mut parts = token.split(':').map(|part| part.parse::<u64>().ok());
            let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
            if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
                return None;
            }
            time = Some(h * 3600 + m * 60 + s);
        } else if let Some(index) = MONTHS.iter().position(|m| *m == lower) {
            month = Some(index as u64 + 1);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            let number: u64 = token.parse().ok()?;
            if day.is_none() && token.len() <= 2 {
                day = Some(number);
            } else if year.is_none() {
                year = Some(match token.len() {
                    2 if number < 70 => 2000 + number,
                    2 => 1900 + number,
                    4 => number,
                    _ => return None,
                });
            } else {
                return None;
            }
        } else if !(DAYS.contains(&lower.as_str())
            || LONG_DAYS.contains(&lower.as_str())
            || lower == "gmt"
            || lower == "utc")
        {
            return None;
        }
    }
    let (day, month, year, time) = (day?, month?, year?, time?);
    if !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // year >= 1970, so the day count is not negative.
    let days = crate::time::days_from_civil(year as i64, month as i64, day as i64);
    Some(days as u64 * 86_400 + time)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README and `send`'s docs: up to 512 KiB in one host call, more
    /// over wasi:http.
    #[test]
    fn bodies_over_512_kib_go_over_wasi_http() {
        assert!(goes_whole(None));
        assert!(goes_whole(Some(&[])));
        assert!(goes_whole(Some(&vec![0; 512 * 1024])));
        assert!(!goes_whole(Some(&vec![0; 512 * 1024 + 1])));
    }

    /// Error codes read as words: never a Rust variant name.
    #[test]
    fn error_codes_are_described_in_words() {
        use wasi::ErrorCode as E;
        for code in [
            E::ConnectionRefused,
            E::ConnectionTerminated,
            E::HttpProtocolError,
            E::TlsCertificateError,
            E::DestinationNotFound,
            E::HttpResponseIncomplete,
        ] {
            let debug = format!("{code:?}");
            let variant = debug.trim_start_matches("ErrorCode::");
            let text = describe_code(&code);
            assert!(!text.contains(variant) && !text.contains("::"), "{text}");
            assert!(text.contains(' '), "{text}");
        }
        let err = error_from_code(E::ConnectionRefused, "GET https://x.example/a");
        assert_eq!(
            err,
            PluginError::Upstream(UpstreamFailure {
                status: 0,
                message: "GET https://x.example/a: the server refused the connection".into(),
            })
        );
    }

    #[test]
    fn encode_component_leaves_only_unreserved_characters() {
        assert_eq!(encode_component("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(
            encode_component("short_descriptionLIKEa^b=c&d+e f/g#h%"),
            "short_descriptionLIKEa%5Eb%3Dc%26d%2Be%20f%2Fg%23h%25"
        );
        assert_eq!(
            encode_component("café 日本"),
            "caf%C3%A9%20%E6%97%A5%E6%9C%AC"
        );
    }
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn error(status: u16, body: &str) -> PluginError {
        status_error(status, &[], body.as_bytes(), at(0))
    }

    // ---- URLs ------------------------------------------------------------

    #[test]
    fn parses_urls() {
        let url = Url::parse("https://api.example.com:8443/v1/items?q=a b").unwrap_err();
        assert!(matches!(url, PluginError::InvalidInput(_)));

        let url = Url::parse("https://api.example.com:8443/v1/items?q=ab#frag").unwrap();
        assert_eq!(url.scheme(), Scheme::Https);
        assert_eq!(url.authority(), "api.example.com:8443");
        assert_eq!(url.path_and_query(), "/v1/items?q=ab");
        assert_eq!(url.origin(), "https://api.example.com:8443");
        assert_eq!(
            url.to_string(),
            "https://api.example.com:8443/v1/items?q=ab"
        );

        let url = Url::parse(" HTTP://127.0.0.1:3000 ").unwrap();
        assert_eq!(url.scheme(), Scheme::Http);
        assert_eq!(url.path_and_query(), "/");
        assert_eq!(
            Url::parse("http://h?x=1").unwrap().path_and_query(),
            "/?x=1"
        );
        assert_eq!(
            Url::parse("http://[::1]:80/a").unwrap().authority(),
            "[::1]:80"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://example.com/file",
            "file:///etc/passwd",
            "example.com/path",
            "https://",
            "https:///path",
            "https://user:pass@example.com/",
            "",
        ] {
            match Url::parse(bad) {
                Err(PluginError::InvalidInput(message)) => {
                    assert!(message.contains("invalid URL"), "{message}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let Err(PluginError::InvalidInput(message)) = Url::parse("ftp://x/") else {
            unreachable!()
        };
        assert!(message.contains("scheme `ftp`"), "{message}");
    }

    #[test]
    fn joins_urls() {
        assert_eq!(
            join_url("https://x.example/wiki/", "/rest/api"),
            "https://x.example/wiki/rest/api"
        );
        assert_eq!(
            join_url("https://x.example", "rest/api"),
            "https://x.example/rest/api"
        );
        assert_eq!(
            join_url("https://x.example//", "//api/me"),
            "https://x.example/api/me"
        );
        assert_eq!(join_url("https://x.example/", ""), "https://x.example");
    }

    #[test]
    fn resolves_references() {
        let base = Url::parse("http://a.example:8080/dir/page?x=1").unwrap();
        let join = |r: &str| base.join(r).unwrap().to_string();
        assert_eq!(join("https://b.example/z"), "https://b.example/z");
        assert_eq!(join("//c.example/y"), "http://c.example/y");
        assert_eq!(join("/abs?q=2"), "http://a.example:8080/abs?q=2");
        assert_eq!(join("other"), "http://a.example:8080/dir/other");
        assert_eq!(join("?q=3"), "http://a.example:8080/dir/page?q=3");
        assert_eq!(
            join("/p?next=http://x/"),
            "http://a.example:8080/p?next=http://x/"
        );
        assert!(matches!(
            base.join("ftp://x/"),
            Err(PluginError::InvalidInput(_))
        ));
    }

    #[test]
    fn methods() {
        assert_eq!(Method::from("get"), Method::Get);
        assert_eq!(Method::from("PATCH"), Method::Patch);
        assert_eq!(Method::from("PROPFIND"), Method::Other("PROPFIND".into()));
        assert_eq!(Method::Delete.to_string(), "DELETE");
    }

    // ---- requests ----------------------------------------------------------

    #[test]
    fn builds_requests() {
        let request = Request::post("https://x/")
            .header("content-type", "text/plain")
            .header("x-a", "1")
            .json(&serde_json::json!({"a": 1}));
        assert_eq!(request.method(), &Method::Post);
        assert_eq!(
            request.headers(),
            &[
                ("x-a".to_string(), "1".to_string()),
                ("content-type".to_string(), "application/json".to_string())
            ]
        );
        assert_eq!(request.body_bytes(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn serialization_errors_surface_on_send() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        let request = Request::put("https://x/").json(&map);
        assert!(matches!(request.send(), Err(PluginError::Internal(_))));
    }

    #[test]
    fn bad_urls_fail_before_reaching_the_host() {
        assert!(matches!(
            Request::get("gopher://x/").send(),
            Err(PluginError::InvalidInput(_))
        ));
    }

    // ---- status mapping ----------------------------------------------------

    #[test]
    fn maps_statuses() {
        assert_eq!(
            error(400, r#"{"message":"title is empty"}"#),
            PluginError::InvalidInput("HTTP 400: title is empty".into())
        );
        assert_eq!(
            error(422, "bad field"),
            PluginError::InvalidInput("HTTP 422: bad field".into())
        );
        assert_eq!(error(401, ""), PluginError::Unauthorized("HTTP 401".into()));
        assert_eq!(
            error(403, "nope"),
            PluginError::Forbidden("HTTP 403: nope".into())
        );
        assert_eq!(
            error(404, "gone"),
            PluginError::NotFound("HTTP 404: gone".into())
        );
        assert_eq!(
            error(409, "stale"),
            PluginError::Conflict("HTTP 409: stale".into())
        );
        assert_eq!(
            error(429, "slow down"),
            PluginError::RateLimited(RateLimit {
                retry_after_secs: None,
                message: "HTTP 429: slow down".into()
            })
        );
        assert_eq!(
            error(503, "maintenance"),
            PluginError::Upstream(UpstreamFailure {
                status: 503,
                message: "HTTP 503: maintenance".into()
            })
        );
        assert_eq!(
            error(302, ""),
            PluginError::Upstream(UpstreamFailure {
                status: 302,
                message: "HTTP 302".into()
            })
        );
    }

    #[test]
    fn error_for_status_passes_2xx() {
        let ok = response(204, &[], "");
        assert_eq!(ok.clone().error_for_status(), Ok(ok));
        assert!(matches!(
            response(500, &[], "").error_for_status(),
            Err(PluginError::Upstream(UpstreamFailure { status: 500, .. }))
        ));
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let now = at(784_111_747); // Sun, 06 Nov 1994 08:49:07 GMT
        let limited = |value: &str| {
            let headers = [("Retry-After".to_string(), value.to_string())];
            match status_error(429, &headers, b"", now) {
                PluginError::RateLimited(limit) => limit.retry_after_secs,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(limited("120"), Some(120));
        assert_eq!(limited(" 7 "), Some(7));
        assert_eq!(limited("Sun, 06 Nov 1994 08:49:37 GMT"), Some(30));
        assert_eq!(limited("Sunday, 06-Nov-94 08:50:07 GMT"), Some(60));
        assert_eq!(limited("Sun Nov  6 08:49:17 1994"), Some(10));
        assert_eq!(limited("Sat, 05 Nov 1994 08:49:37 GMT"), Some(0));
        assert_eq!(limited("soon"), None);
        assert_eq!(limited("-5"), None);
        assert_eq!(limited("Sun, 32 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            http_date("Fri, 31 Dec 2038 23:59:59 GMT"),
            Some(2_177_452_799)
        );
        assert_eq!(http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(http_date("06 Nov 1994"), None);
    }

    #[test]
    fn extracts_service_messages() {
        let cases = [
            (r#"{"message":"m1"}"#, "m1"),
            (r#"{"error":{"message":"m2","detail":"d"}}"#, "m2"),
            (r#"{"error":"invalid_grant"}"#, "invalid_grant"),
            (
                r#"{"error":{"code":1},"error_description":"expired"}"#,
                "expired",
            ),
            (
                r#"{"errorMessages":["Issue does not exist"],"errors":{}}"#,
                "Issue does not exist",
            ),
            (r#"{"error":{"detail":"no such record"}}"#, "no such record"),
            (r#"{"message":"  ","error":"e"}"#, "e"),
            (r#"{"other":1}"#, r#"{"other":1}"#),
            ("plain text\n", "plain text"),
            ("", ""),
        ];
        for (body, expected) in cases {
            assert_eq!(upstream_message(body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn truncates_long_messages() {
        let long = "é".repeat(2000);
        let message = upstream_message(long.as_bytes());
        assert_eq!(message.chars().count(), MESSAGE_LIMIT + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn parses_json_bodies() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Me {
            name: String,
        }
        assert_eq!(
            response(200, &[], r#"{"name":"ada"}"#).json::<Me>(),
            Ok(Me { name: "ada".into() })
        );
        assert_eq!(response(204, &[], "").json::<Option<Me>>(), Ok(None));
        match response(200, &[], "<html>").json::<Me>() {
            Err(PluginError::Upstream(UpstreamFailure { status, message })) => {
                assert_eq!(status, 200);
                assert!(
                    message.starts_with("malformed JSON from upstream: "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_headers_case_insensitively() {
        let r = response(200, &[("content-type", "a"), ("Content-Type", "b")], "ü");
        assert_eq!(r.header("CONTENT-TYPE"), Some("a"));
        assert_eq!(r.header("x"), None);
        assert_eq!(r.text(), "ü");
    }

    // ---- transport errors --------------------------------------------------

    #[test]
    fn maps_transport_errors() {
        use wasi::ErrorCode as E;
        let what = "GET https://x/";
        let denied = |code| match error_from_code(code, what) {
            PluginError::EgressDenied(message) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            denied(E::HttpRequestDenied),
            "the host refused the request GET https://x/"
        );
        assert!(denied(E::DestinationIpProhibited).contains("destination address"));
        assert!(denied(E::HttpRequestBodySize(Some(10))).contains("request body"));
        assert!(denied(E::HttpRequestHeaderSectionSize(None)).contains("headers"));
        assert!(
            denied(E::HttpRequestHeaderSize(Some(wasi::FieldSizePayload {
                field_name: Some("x-big".into()),
                field_size: None,
            })))
            .contains("`x-big`")
        );
        for code in [
            E::ConnectionTimeout,
            E::ConnectionReadTimeout,
            E::ConnectionWriteTimeout,
            E::HttpResponseTimeout,
            E::DnsTimeout,
        ] {
            assert!(matches!(
                error_from_code(code, what),
                PluginError::Timeout(_)
            ));
        }
        assert_eq!(
            error_from_code(E::HttpResponseBodySize(Some(1)), what),
            PluginError::Upstream(UpstreamFailure {
                status: 0,
                message: "GET https://x/: response body exceeds the host's limit".into()
            })
        );
        assert_eq!(
            error_from_code(E::InternalError(Some("budget spent".into())), what),
            PluginError::Upstream(UpstreamFailure {
                status: 0,
                message: "GET https://x/: budget spent".into()
            })
        );
        assert_eq!(
            error_from_code(E::ConnectionRefused, what),
            PluginError::Upstream(UpstreamFailure {
                status: 0,
                message: "GET https://x/: the server refused the connection".into()
            })
        );
    }

    #[test]
    fn maps_header_errors() {
        assert_eq!(
            header_error("authorization", wasi::HeaderError::Forbidden),
            PluginError::EgressDenied(
                "the host does not allow plugins to set the `authorization` header".into()
            )
        );
        assert!(matches!(
            header_error("bad name", wasi::HeaderError::InvalidSyntax),
            PluginError::InvalidInput(_)
        ));
    }
}
