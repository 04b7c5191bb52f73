//! Query strings for the Table API, and values inside ServiceNow encoded
//! queries.
//!
//! Two layers of encoding meet in `sysparm_query`:
//!
//! 1. The *encoded query* language: conditions `<field><operator><value>`
//!    joined by `^`. A literal `^` inside a value is written `^^`
//!    ([`query_value`]); nothing else needs escaping there, because the
//!    field and operator are found before the value.
//! 2. The URL: each parameter name and value is percent-encoded as UTF-8
//!    ([`component`]), keeping only RFC 3986 unreserved characters as they
//!    are. So `^`, `=`, `&`, `#`, `+`, `%`, spaces and non-ASCII text all
//!    arrive at the instance exactly as written; in particular `+` is sent as
//!    `%2B` (a bare `+` would be read as a space) and a space as `%20`.

use std::fmt::{self, Write as _};

/// Percent-encoding of one query component (the SDK's, shared by every plugin).
pub use airlock_sdk::http::encode_component as component;

/// A value for an encoded-query condition: `^` doubled so the instance reads
/// it as a character of the value, not as the start of the next condition.
pub fn query_value(value: &str) -> String {
    value.replace('^', "^^")
}

/// An ordered list of query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn new() -> Self {
        Query(Vec::new())
    }

    /// Add `name=value` (both encoded when rendered).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.push((name.to_string(), value.into()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Query {
    /// `a=1&b=x%20y`, without a leading `?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (name, value)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_char('&')?;
            }
            write!(f, "{}={}", component(name), component(value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode a query string the way a server does (`+` is a space there).
    fn decode(query: &str) -> Vec<(String, String)> {
        fn unescape(part: &str) -> String {
            let bytes = part.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'%' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 3;
                    }
                    b'+' => {
                        out.push(b' ');
                        i += 1;
                    }
                    other => {
                        out.push(other);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).unwrap()
        }
        query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (unescape(name), unescape(value))
            })
            .collect()
    }

    #[test]
    fn keeps_unreserved_characters() {
        assert_eq!(component("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(component(""), "");
    }

    #[test]
    fn escapes_everything_that_means_something_in_a_url() {
        assert_eq!(component(" "), "%20");
        assert_eq!(component("+"), "%2B");
        assert_eq!(component("^=&#?/%"), "%5E%3D%26%23%3F%2F%25");
        assert_eq!(
            component("a:b;c,d@e!f$g'h(i)j*k"),
            "a%3Ab%3Bc%2Cd%40e%21f%24g%27h%28i%29j%2Ak"
        );
        assert_eq!(component("\n\t\""), "%0A%09%22");
    }

    #[test]
    fn encodes_non_ascii_as_utf8() {
        assert_eq!(component("é"), "%C3%A9");
        assert_eq!(component("日本"), "%E6%97%A5%E6%9C%AC");
        assert_eq!(component("🔥"), "%F0%9F%94%A5");
    }

    #[test]
    fn round_trips_through_a_decoder() {
        let nasty = "short_descriptionLIKEa^^b=c & d #1 +2 100% café 日本 🔥/?";
        let query = Query::new()
            .set("sysparm_query", nasty)
            .set("sysparm_limit", "10");
        let rendered = query.to_string();
        assert!(!rendered.contains(' '), "{rendered}");
        assert!(!rendered.contains('+'), "{rendered}");
        assert_eq!(rendered.matches('&').count(), 1, "{rendered}");
        assert_eq!(rendered.matches('=').count(), 2, "{rendered}");
        assert!(rendered.is_ascii());
        assert_eq!(
            decode(&rendered),
            vec![
                ("sysparm_query".to_string(), nasty.to_string()),
                ("sysparm_limit".to_string(), "10".to_string()),
            ]
        );
    }

    #[test]
    fn renders_in_order() {
        let query = Query::new().set("b", "2").set("a", "1").set("b", "3");
        assert_eq!(query.to_string(), "b=2&a=1&b=3");
        assert!(Query::new().is_empty());
        assert_eq!(Query::new().to_string(), "");
    }

    #[test]
    fn doubles_carets_in_query_values() {
        assert_eq!(query_value("a^b"), "a^^b");
        assert_eq!(query_value("^^"), "^^^^");
        assert_eq!(query_value("x=y ORDERBY z"), "x=y ORDERBY z");
        assert_eq!(query_value("ünïcode"), "ünïcode");
    }
}
