//! PII redaction: what the host replaces in text before it is handed to an
//! AI provider plugin (and so before it can leave the machine).
//!
//! A [`Redactor`] finds e-mail addresses, phone numbers, IPv4 and IPv6
//! addresses, payment card numbers (only those passing the Luhn check),
//! JWTs, bearer/basic credentials and common API-key shapes (`sk-…`,
//! `ghp_…`, `github_pat_…`, `AKIA…`, `xox?-…`, `AIza…`, `glpat-…`,
//! `sk_live_…`) and replaces each with a typed placeholder such as
//! `[EMAIL_1]`. One redactor numbers values across every text it is given,
//! so the same address is the same placeholder in every message of a
//! conversation. [`Redactor::counts`] says how many of each kind were
//! replaced (for the audit log); the values themselves are never reported.
//!
//! Detection is deliberately conservative where a false positive would
//! mangle ordinary text: 16-digit numbers that fail the Luhn check stay,
//! dates and version numbers are not phone numbers or addresses, and a
//! phone number without a leading `+` needs 10 or 11 digits in groups.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

/// What was found. The placeholder is `[<NAME>_<n>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Jwt,
    ApiKey,
    BearerToken,
    Email,
    Ipv6,
    Ipv4,
    Card,
    Phone,
}

impl Kind {
    /// Every kind, in the order overlapping matches are decided: the first
    /// kind that claims text keeps it.
    pub const ALL: [Kind; 8] = [
        Kind::Jwt,
        Kind::ApiKey,
        Kind::BearerToken,
        Kind::Email,
        Kind::Ipv6,
        Kind::Ipv4,
        Kind::Card,
        Kind::Phone,
    ];

    /// The name used in placeholders (`EMAIL`) and, lower-cased, in counts.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jwt => "JWT",
            Kind::ApiKey => "API_KEY",
            Kind::BearerToken => "BEARER_TOKEN",
            Kind::Email => "EMAIL",
            Kind::Ipv6 => "IPV6",
            Kind::Ipv4 => "IPV4",
            Kind::Card => "CARD",
            Kind::Phone => "PHONE",
        }
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("redaction patterns are valid")
}

static JWT: LazyLock<Regex> =
    LazyLock::new(|| re(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"));
static API_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"sk-(?:proj-|ant-|live-|test-|svcacct-)?[A-Za-z0-9_-]{16,}",
        r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",
        r"|github_pat_[A-Za-z0-9_]{22,}",
        r"|(?:AKIA|ASIA)[A-Z0-9]{16}",
        r"|xox[abprs]-[A-Za-z0-9-]{10,}",
        r"|AIza[0-9A-Za-z_-]{35}",
        r"|glpat-[A-Za-z0-9_-]{20,}",
        r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    ))
});
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/-]+=*)"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}")
});
static IPV6: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\d(?:[ -]?\d){12,18}"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\+?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,5}"));

/// One accepted match: the byte range replaced and its kind.
#[derive(Debug, Clone, Copy)]
struct Found {
    start: usize,
    end: usize,
    kind: Kind,
}

fn before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn after(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The Luhn checksum of a digit string.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Candidate matches of one kind, each already checked.
fn find(kind: Kind, text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    match kind {
        Kind::Jwt => {
            for m in JWT.find_iter(text) {
                if !is_word(before(text, m.start())) {
                    out.push((m.start(), m.end()));
                }
            }
        }
        Kind::ApiKey => {
            for m in API_KEY.find_iter(text) {
                if !is_word(before(text, m.start())) && !is_word(after(text, m.end())) {
                    out.push((m.start(), m.end()));
                }
            }
        }
        Kind::BearerToken => {
            for caps in BEARER.captures_iter(text) {
                let token = caps.get(1).expect("group 1 always takes part");
                // A real credential is long and not a plain word ("bearer
                // of bad news").
                let t = token.as_str();
                if t.len() >= 8 && t.chars().any(|c| !c.is_ascii_lowercase()) {
                    out.push((token.start(), token.end()));
                }
            }
        }
        Kind::Email => {
            for m in EMAIL.find_iter(text) {
                out.push((m.start(), m.end()));
            }
        }
        Kind::Ipv6 => {
            for m in IPV6.find_iter(text) {
                if is_word(before(text, m.start())) {
                    continue;
                }
                // Sentence punctuation may follow an address: try shorter.
                let mut candidate = m.as_str();
                while !candidate.is_empty() {
                    if candidate.parse::<Ipv6Addr>().is_ok() {
                        break;
                    }
                    match candidate.char_indices().next_back() {
                        Some((i, '.' | ':')) => candidate = &candidate[..i],
                        _ => {
                            candidate = "";
                        }
                    }
                }
                let hex_digits = candidate.chars().filter(char::is_ascii_hexdigit).count();
                if hex_digits > 0 && !is_word(after(text, m.start() + candidate.len())) {
                    out.push((m.start(), m.start() + candidate.len()));
                }
            }
        }
        Kind::Ipv4 => {
            for m in IPV4.find_iter(text) {
                let (b, a) = (before(text, m.start()), text[m.end()..].chars().take(2));
                let next: Vec<char> = a.collect();
                // Not part of a longer dotted number (a version 1.2.3.4.5).
                let longer = matches!(b, Some(c) if c.is_ascii_digit() || c == '.')
                    || matches!(next.as_slice(), [c, ..] if c.is_ascii_digit())
                    || matches!(next.as_slice(), ['.', d, ..] if d.is_ascii_digit());
                let octets_ok = m.as_str().split('.').all(|o| {
                    o.parse::<u16>().is_ok_and(|n| n <= 255) && (o == "0" || !o.starts_with('0'))
                });
                if !longer && octets_ok && !is_word(b) {
                    out.push((m.start(), m.end()));
                }
            }
        }
        Kind::Card => {
            for m in CARD.find_iter(text) {
                let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
                if (13..=19).contains(&digits.len())
                    && luhn(&digits)
                    && !is_word(before(text, m.start()))
                    && !is_word(after(text, m.end()))
                {
                    out.push((m.start(), m.end()));
                }
            }
        }
        Kind::Phone => {
            for m in PHONE.find_iter(text) {
                if looks_like_phone(text, m.start(), m.end()) {
                    out.push((m.start(), m.end()));
                }
            }
        }
    }
    out
}

fn looks_like_phone(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let b = before(text, start);
    if is_word(b) || matches!(b, Some('.' | '-' | '/' | ':')) || is_word(after(text, end)) {
        return false;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if s.starts_with('+') {
        return (8..=15).contains(&digits);
    }
    let grouped = s.contains([' ', '-', '.', '(']);
    // Dates (2024-05-01, 01.05.2024) and times are not phone numbers.
    let groups: Vec<usize> = s
        .split([' ', '-', '.', '(', ')'])
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let date_like = matches!(groups.as_slice(), [4, 2, 2, ..] | [2, 2, 4, ..] | [2, 2, 2]);
    // A time follows a date ("2026-11-22 03:28"), not a phone number.
    if after(text, end) == Some(':') {
        return false;
    }
    grouped && !date_like && (10..=11).contains(&digits)
}

/// Replaces PII with numbered, typed placeholders; see the module docs.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Placeholder of each value seen, by kind and value.
    seen: HashMap<(Kind, String), String>,
    next: BTreeMap<Kind, usize>,
    counts: BTreeMap<Kind, u32>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// `text` with every PII value replaced by its placeholder.
    pub fn redact(&mut self, text: &str) -> String {
        let mut accepted: Vec<Found> = Vec::new();
        for kind in Kind::ALL {
            for (start, end) in find(kind, text) {
                if accepted.iter().all(|f| end <= f.start || start >= f.end) {
                    accepted.push(Found { start, end, kind });
                }
            }
        }
        if accepted.is_empty() {
            return text.to_string();
        }
        accepted.sort_by_key(|f| f.start);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in accepted {
            out.push_str(&text[at..f.start]);
            let value = &text[f.start..f.end];
            let key = (f.kind, normalise(f.kind, value));
            let placeholder = match self.seen.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let n = self.next.entry(f.kind).or_insert(0);
                    *n += 1;
                    let p = format!("[{}_{}]", f.kind.name(), n);
                    self.seen.insert(key, p.clone());
                    p
                }
            };
            *self.counts.entry(f.kind).or_insert(0) += 1;
            out.push_str(&placeholder);
            at = f.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// How many values of each kind were replaced so far (every occurrence
    /// counts), by lower-case kind name; kinds with none are left out.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        self.counts
            .iter()
            .map(|(k, n)| (k.name().to_ascii_lowercase(), *n))
            .collect()
    }

    /// Total replacements so far.
    #[cfg(test)]
    pub fn total(&self) -> u32 {
        self.counts.values().sum()
    }
}

/// The same value written differently gets the same placeholder.
fn normalise(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Email => value.to_ascii_lowercase(),
        Kind::Card | Kind::Phone => value.chars().filter(char::is_ascii_digit).collect(),
        Kind::Ipv6 => value
            .parse::<Ipv6Addr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| value.to_ascii_lowercase()),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        Redactor::new().redact(text)
    }

    #[test]
    fn emails_including_inside_urls() {
        assert_eq!(
            redact("mail ada.lovelace+ops@example.co.uk, or Ada.Lovelace+ops@Example.CO.uk!"),
            "mail [EMAIL_1], or [EMAIL_1]!"
        );
        assert_eq!(
            redact("see https://crm.example.com/contact?email=bob@corp.example.org&x=1"),
            "see https://crm.example.com/contact?email=[EMAIL_1]&x=1"
        );
        assert_eq!(redact("mailto:eve@mail.example"), "mailto:[EMAIL_1]");
        assert_eq!(
            redact("user@localhost and @handle"),
            "user@localhost and @handle"
        );
    }

    #[test]
    fn phone_formats() {
        for phone in [
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "+33 1 23 45 67 89",
            "+4930123456",
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "0171 234 5678",
        ] {
            assert_eq!(
                redact(&format!("call {phone} now")),
                "call [PHONE_1] now",
                "{phone}"
            );
        }
        for not_phone in [
            "2024-05-01",
            "01.05.2024",
            "order 12345678",
            "version 10.2.3",
            "PO-555-123-4567",
            "12:30:45",
            "port 8080",
            "at 2026-11-22 03:28:12 UTC",
            "22.11.2026 03:28",
            "id 123e4567-e89b-12d3-a456-426614174000",
            "mac 00:1A:2B:3C:4D:5E",
        ] {
            assert_eq!(redact(not_phone), not_phone);
        }
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            redact("hosts 10.0.0.1, 192.168.1.254 and 8.8.8.8."),
            "hosts [IPV4_1], [IPV4_2] and [IPV4_3]."
        );
        for not_ip in ["v1.2.3.4.5", "999.1.1.1", "1.2.3", "01.02.03.04"] {
            assert_eq!(redact(not_ip), not_ip);
        }
        assert_eq!(
            redact("ipv6 2001:db8::8a2e:370:7334, loopback ::1 and fe80::1."),
            "ipv6 [IPV6_1], loopback [IPV6_2] and [IPV6_3]."
        );
        assert_eq!(
            redact("2001:0db8:0000:0000:0000:0000:0000:0001 is 2001:db8::1"),
            "[IPV6_1] is [IPV6_1]"
        );
        // IPv4-mapped: one IPv6 address, not an IPv6 plus an IPv4.
        assert_eq!(redact("from ::ffff:192.0.2.128 ok"), "from [IPV6_1] ok");
        for not_ip in ["at 12:30:45", "a::b::c", "std::env", "key: value", "::"] {
            assert_eq!(redact(not_ip), not_ip);
        }
    }

    #[test]
    fn cards_only_when_luhn_valid() {
        assert_eq!(
            redact("card 4111 1111 1111 1111 or 4111-1111-1111-1111 or 5555555555554444"),
            "card [CARD_1] or [CARD_1] or [CARD_2]"
        );
        for not_card in [
            "4111 1111 1111 1112",
            "1234567812345678",
            "id 12345678901234567890",
        ] {
            assert_eq!(redact(not_card), not_card);
        }
    }

    #[test]
    fn tokens_and_keys() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(redact(&format!("token={jwt};")), "token=[JWT_1];");
        assert_eq!(
            redact(&format!("Authorization: Bearer {jwt}")),
            "Authorization: Bearer [JWT_1]"
        );
        assert_eq!(
            redact("Authorization: Bearer abc123DEF456ghi"),
            "Authorization: Bearer [BEARER_TOKEN_1]"
        );
        assert_eq!(
            redact("header basic dXNlcjpwYXNzd29yZA=="),
            "header basic [BEARER_TOKEN_1]"
        );
        assert_eq!(redact("the bearer of bad news"), "the bearer of bad news");
        for key in [
            "sk-proj-abcdefghijklmnop1234567890",
            "sk-abcdefghijklmnopqrstuvwx",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-123456789012-abcdefghij",
            "glpat-abcdefghij0123456789",
            "sk_live_abcdefghijklmnop1234",
        ] {
            assert_eq!(
                redact(&format!("key {key} here")),
                "key [API_KEY_1] here",
                "{key}"
            );
        }
        for not_key in [
            "task-list",
            "risk-assessment-of-the-week",
            "AKIA",
            "ghp_short",
        ] {
            assert_eq!(redact(not_key), not_key);
        }
    }

    #[test]
    fn utf8_around_matches_and_numbering() {
        let mut r = Redactor::new();
        assert_eq!(
            r.redact("Grüße→ada@example.com←日本 tél. +49 30 1234567 ü"),
            "Grüße→[EMAIL_1]←日本 tél. [PHONE_1] ü"
        );
        // Numbering carries across texts; counts include every occurrence.
        assert_eq!(
            r.redact("again ada@example.com and bob@example.com, 10.1.2.3"),
            "again [EMAIL_1] and [EMAIL_2], [IPV4_1]"
        );
        assert_eq!(
            r.counts(),
            BTreeMap::from([
                ("email".to_string(), 3),
                ("ipv4".to_string(), 1),
                ("phone".to_string(), 1)
            ])
        );
        assert_eq!(r.total(), 5);
        assert_eq!(Redactor::new().redact("nothing here ✓"), "nothing here ✓");
    }
}
