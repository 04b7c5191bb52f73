//! Origins and allow-list rules, parsed once into types.
//!
//! Every URL a plugin sends to is parsed with the WHATWG URL parser (which
//! normalises case, IDNA, numeric IPv4 forms like `0x7f.1`, dot segments and
//! default ports); the trailing dot of a fully qualified name is dropped. The
//! resulting [`Target`] is what the check, the connection and the credential
//! injection all use, so they can never disagree about where a request goes.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// `scheme://host:port`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

/// The schemes plugins may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// `http`, default port 80.
    Http,
    /// `https`, default port 443.
    Https,
}

impl Scheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Why a URL or rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The text (first field) is not an absolute URL; the parser's message.
    #[error("{0:?} is not an absolute URL: {1}")]
    Parse(String, String),
    /// The scheme (given) is neither `http` nor `https`.
    #[error("scheme `{0}` is not allowed: only http and https")]
    Scheme(String),
    /// The URL has no host, or an empty one (`http://./`).
    #[error("URL has no host")]
    NoHost,
    /// The URL carries `user:password@`; credentials come from the vault,
    /// never from a URL.
    #[error("credentials in the URL (`user@host`) are not allowed")]
    UserInfo,
    /// An egress rule's URL has a query or fragment; rules match origin,
    /// path and method only.
    #[error("a rule may not carry a query or fragment")]
    QueryOrFragment,
    /// A rule's method (given) is not a valid HTTP method token.
    #[error("unknown HTTP method `{0}`")]
    Method(String),
}

impl Origin {
    /// Parse the origin of an absolute http(s) URL. User info is refused.
    pub fn parse(url: &str) -> Result<Self, RuleError> {
        Ok(Target::parse(url)?.origin)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The normalised host: lower-case ASCII (punycode), IPv4 dotted, IPv6 bracketed.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port: explicit, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// `host:port` for the `Host` header, with the port left out when default.
    pub fn authority(&self) -> String {
        let default = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

/// A parsed outbound destination: origin plus normalised path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub origin: Origin,
    url: Url,
}

impl Target {
    pub fn parse(input: &str) -> Result<Self, RuleError> {
        let url =
            Url::parse(input).map_err(|e| RuleError::Parse(input.to_string(), e.to_string()))?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(RuleError::Scheme(other.to_string())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RuleError::UserInfo);
        }
        let host = match url.host() {
            None => return Err(RuleError::NoHost),
            Some(Host::Domain(d)) => {
                let d = d.strip_suffix('.').unwrap_or(d);
                if d.is_empty() {
                    return Err(RuleError::NoHost);
                }
                d.to_string()
            }
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        };
        let port = url.port_or_known_default().ok_or(RuleError::NoHost)?;
        Ok(Self {
            origin: Origin { scheme, host, port },
            url,
        })
    }

    /// The normalised path (dot segments resolved, percent-encoding kept).
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// Path plus query exactly as it will be sent upstream.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }

    /// The URL with every query value removed, for logs and the audit trail:
    /// query strings often carry tokens or personal data.
    pub fn redacted(&self) -> String {
        let mut s = format!("{}{}", self.origin, self.url.path());
        if let Some(q) = self.url.query() {
            let keys: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split('=').next().unwrap_or(""))
                .collect();
            s.push('?');
            s.push_str(&keys.join("=&"));
            s.push('=');
        }
        s
    }

    /// The absolute URI to hand to the HTTP client.
    pub fn uri(&self) -> String {
        format!(
            "{}://{}{}",
            self.origin.scheme.as_str(),
            self.origin.authority(),
            self.path_and_query()
        )
    }
}

/// One granted destination: an origin, optionally narrowed to methods and a
/// path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    /// The granted origin; a request's must be equal (scheme, host, port).
    pub origin: Origin,
    /// A path the request's must equal or lie under (`/v1` admits `/v1` and
    /// `/v1/x`, not `/v10`), without a trailing slash; `None` admits every
    /// path.
    pub path_prefix: Option<String>,
    /// Methods allowed; empty allows every method.
    pub methods: Vec<http::Method>,
}

impl EgressRule {
    /// Parse a rule from a URL (its path, when not `/`, becomes a prefix) and
    /// an optional list of methods.
    pub fn parse(url: &str, methods: &[String]) -> Result<Self, RuleError> {
        let target = Target::parse(url)?;
        if target.url.query().is_some() || target.url.fragment().is_some() {
            return Err(RuleError::QueryOrFragment);
        }
        let path = target.path().trim_end_matches('/').to_string();
        let methods = methods
            .iter()
            .map(|m| {
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| RuleError::Method(m.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            origin: target.origin,
            path_prefix: (!path.is_empty()).then_some(path),
            methods,
        })
    }

    /// A rule granting a whole origin to every method.
    pub fn origin(origin: Origin) -> Self {
        Self {
            origin,
            path_prefix: None,
            methods: Vec::new(),
        }
    }

    /// Whether a `method` request to `target` falls under this rule.
    pub fn allows(&self, method: &http::Method, target: &Target) -> bool {
        if self.origin != target.origin {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        match &self.path_prefix {
            None => true,
            Some(prefix) => {
                let path = target.path();
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(p) = &self.path_prefix {
            write!(f, "{p}/*")?;
        }
        if !self.methods.is_empty() {
            let m: Vec<&str> = self.methods.iter().map(http::Method::as_str).collect();
            write!(f, " [{}]", m.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> String {
        Origin::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_hosts_once() {
        assert_eq!(origin("HTTPS://Example.COM."), "https://example.com:443");
        assert_eq!(origin("http://example.com:80/x"), "http://example.com:80");
        assert_eq!(
            origin("https://bücher.example/"),
            "https://xn--bcher-kva.example:443"
        );
        assert_eq!(origin("http://2130706433/"), "http://127.0.0.1:80");
        assert_eq!(origin("http://0x7f.1/"), "http://127.0.0.1:80");
        assert_eq!(origin("http://[::1]:8080/"), "http://[::1]:8080");
        assert_eq!(
            origin("http://[::ffff:169.254.169.254]/"),
            "http://[::ffff:169.254.169.254]:80"
        );
    }

    #[test]
    fn refuses_userinfo_and_other_schemes() {
        assert_eq!(
            Target::parse("https://allowed@evil.example/"),
            Err(RuleError::UserInfo)
        );
        assert_eq!(
            Target::parse("https://a:b@evil.example/"),
            Err(RuleError::UserInfo)
        );
        assert!(matches!(
            Target::parse("file:///etc/passwd"),
            Err(RuleError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("/relative"),
            Err(RuleError::Parse(..))
        ));
    }

    #[test]
    fn rules_match_origin_method_and_path_segment() {
        let rule = EgressRule::parse("https://api.example.com/v1/", &["get".into()]).unwrap();
        let t = |u: &str| Target::parse(u).unwrap();
        assert!(rule.allows(&http::Method::GET, &t("https://api.example.com/v1")));
        assert!(rule.allows(
            &http::Method::GET,
            &t("https://API.example.com:443/v1/x?q=1")
        ));
        assert!(!rule.allows(&http::Method::POST, &t("https://api.example.com/v1/x")));
        assert!(!rule.allows(&http::Method::GET, &t("https://api.example.com/v10")));
        assert!(!rule.allows(
            &http::Method::GET,
            &t("https://api.example.com/v1/../admin")
        ));
        assert!(!rule.allows(
            &http::Method::GET,
            &t("https://api.example.com/v1/%2e%2e/admin")
        ));
        assert!(!rule.allows(&http::Method::GET, &t("http://api.example.com/v1/x")));
        assert!(!rule.allows(&http::Method::GET, &t("https://api.example.com:8443/v1/x")));
        assert!(!rule.allows(&http::Method::GET, &t("https://api.example.com.evil/v1/x")));
    }

    #[test]
    fn redaction_drops_query_values() {
        let t = Target::parse("https://x.example/a/b?token=s3cret&q=hello%20there").unwrap();
        let r = t.redacted();
        assert_eq!(r, "https://x.example:443/a/b?token=&q=");
        assert!(!r.contains("s3cret"));
    }
}
