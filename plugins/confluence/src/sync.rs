//! Delta sync by last-modified time.
//!
//! A run is one CQL search, oldest change first, read page by page:
//!
//! ```text
//! type=page [AND space in ("ENG","OPS")] [AND lastmodified >= "2026-11-20 10:15"]
//! ORDER BY lastmodified ASC
//! ```
//!
//! The first page asks with `limit=<page-size>&start=0`; each later page
//! follows the answer's `_links.next` (a `cursor=` link on Cloud, a
//! `start=` offset on Data Center), kept in the sync cursor between pages.
//! So however many pages share one minute (a bulk import, a space copy),
//! the search is read to its end; nothing is skipped because it was "seen".
//! An offset link is asked from one result earlier with one more result,
//! and that first result must be the last page handed out (the anchor):
//! when it is not, a page changed meanwhile and offsets moved, so the
//! search starts again from the newest minute handed out (some pages come
//! twice, the host upserts by id; none is lost).
//!
//! CQL compares `lastmodified` to the minute. After the last page (no
//! `_links.next`) the cursor keeps only the newest minute handed out
//! (`since`), so the delta it starts reads that minute again from its
//! start, and later ones: a page saved in that minute after the run read it
//! is not missed, and that minute's pages come again. No cursor is a full
//! sync. Where Confluence cannot continue (a refused next page, or a
//! `totalSize` beyond the last page without a next link) the page fails:
//! a sync that cannot reach the end does not report success.
//!
//! Confluence reads the time in a CQL query in the time zone of the
//! account's profile; `since` is UTC, so an account set to a time zone
//! behind UTC should be switched to UTC for syncing (ahead of UTC only
//! widens the query: some pages come again, the host upserts by id).
//!
//! The cursor is base64url (no padding) of
//! `{"v":2,"scope":"ENG,OPS","since":"2026-11-20 10:15","next":"/rest/api/content/search?...","last":"65601"}`
//! (`next` and `last` only within a run). A version 1 cursor (`seen`: ids
//! handed out at `since`) is read as version 2: its minute is read again.
//! Deleted pages are not reported.

use airlock_sdk::time::{civil_from_days, days_from_civil};
use airlock_sdk::types::{PluginError, UpstreamFailure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::cql_string;

/// Records per page when the host asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// Most records per page (pages carry their bodies).
pub const MAX_PAGE_SIZE: u32 = 50;

const CURSOR_VERSION: u32 = 2;

pub fn page_size(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE as usize,
        n => n.min(MAX_PAGE_SIZE) as usize,
    }
}

/// The `spaces` setting as a list of keys.
pub fn spaces(setting: Option<&str>) -> Vec<String> {
    setting
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub v: u32,
    /// The spaces synced, joined with `,` (empty: all).
    pub scope: String,
    /// The newest minute handed out (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `_links.next` of the search in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The id of the last page handed out (the anchor of an offset link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// A cursor as stored by either version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    v: u32,
    scope: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    last: Option<String>,
    /// Version 1 only.
    #[serde(default)]
    seen: Option<Vec<String>>,
}

fn is_page_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

impl Cursor {
    pub fn start(scope: &[String]) -> Cursor {
        Cursor {
            v: CURSOR_VERSION,
            scope: scope.join(","),
            since: None,
            next: None,
            last: None,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str, scope: &[String]) -> Result<Cursor, PluginError> {
        let bad = |why: &str| {
            PluginError::InvalidInput(format!(
                "the sync cursor is not one this plugin issued ({why}); start a full sync \
                 without a cursor"
            ))
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| bad("not base64url"))?;
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor document"))?;
        let (next, last) = match (stored.v, stored.seen) {
            // Version 1 skipped the ids in `seen` within `since`; reading
            // that minute again from its start loses nothing.
            (1, Some(seen)) if seen.iter().all(|id| is_page_id(id)) => (None, None),
            (1, _) => return Err(bad("bad page id")),
            (CURSOR_VERSION, None) => (stored.next, stored.last),
            (v, _) => return Err(bad(&format!("version {v}"))),
        };
        if let Some(since) = &stored.since
            && !is_minute(since)
        {
            return Err(bad("bad time"));
        }
        if last.as_deref().is_some_and(|id| !is_page_id(id)) {
            return Err(bad("bad page id"));
        }
        if next.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(bad("empty link"));
        }
        let want = scope.join(",");
        if stored.scope != want {
            return Err(PluginError::InvalidInput(format!(
                "the sync cursor belongs to spaces `{}`, but the connection syncs `{want}`; \
                 start a full sync without a cursor",
                stored.scope
            )));
        }
        Ok(Cursor {
            v: CURSOR_VERSION,
            scope: stored.scope,
            since: stored.since,
            next,
            last,
        })
    }

    /// The CQL of a search from `since`.
    pub fn cql(&self) -> String {
        let mut cql = "type=page".to_string();
        let keys: Vec<String> = self
            .scope
            .split(',')
            .filter(|s| !s.is_empty())
            .map(cql_string)
            .collect();
        if !keys.is_empty() {
            cql.push_str(&format!(" AND space in ({})", keys.join(",")));
        }
        if let Some(since) = &self.since {
            cql.push_str(&format!(" AND lastmodified >= \"{since}\""));
        }
        cql.push_str(" ORDER BY lastmodified ASC");
        cql
    }

    /// The same search started again from `since`.
    pub fn restarted(&self) -> Cursor {
        Cursor {
            next: None,
            last: None,
            ..self.clone()
        }
    }

    /// The cursor after handing out `delivered` (ids with their UTC
    /// minutes, in order) from a page whose `_links.next` is `next`.
    pub fn advance(&self, delivered: &[(String, Option<String>)], next: Option<&str>) -> Cursor {
        let mut cursor = self.clone();
        for (id, minute) in delivered {
            if let Some(minute) = minute
                && cursor.since.as_deref().is_none_or(|s| s < minute.as_str())
            {
                cursor.since = Some(minute.clone());
            }
            cursor.last = Some(id.clone());
        }
        cursor.next = next.map(str::to_string);
        if cursor.next.is_none() {
            cursor.last = None;
        }
        cursor
    }
}

/// An offset link (`start=N`, no `cursor=`) asked from one result earlier
/// with one more result, so its first result is the anchor; `None` for a
/// cursor link or an offset of 0.
pub fn overlapped(link: &str) -> Option<String> {
    let (path, query) = link.split_once('?')?;
    let pairs: Vec<&str> = query.split('&').collect();
    if pairs.iter().any(|p| p.starts_with("cursor=")) {
        return None;
    }
    let number = |key: &str| {
        pairs
            .iter()
            .find_map(|p| p.strip_prefix(key))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let start = number("start=").filter(|s| *s > 0)?;
    let limit = number("limit=")?;
    let rewritten: Vec<String> = pairs
        .iter()
        .map(|p| {
            if p.starts_with("start=") {
                format!("start={}", start - 1)
            } else if p.starts_with("limit=") {
                format!("limit={}", limit + 1)
            } else {
                p.to_string()
            }
        })
        .collect();
    Some(format!("{path}?{}", rewritten.join("&")))
}

/// Refuse a last page that ends before Confluence's own count.
pub fn check_complete(
    start: Option<u64>,
    returned: usize,
    total: Option<u64>,
    has_next: bool,
) -> Result<(), PluginError> {
    let (Some(start), Some(total)) = (start, total) else {
        return Ok(());
    };
    let reached = start + returned as u64;
    if has_next || reached >= total {
        return Ok(());
    }
    Err(PluginError::Upstream(UpstreamFailure {
        status: 200,
        message: format!(
            "Confluence ended the search after {reached} of {total} results without a next \
             link; the sync cannot prove it is complete: narrow the `spaces` setting or ask \
             the site administrator about search result limits, then sync again"
        ),
    }))
}

/// `yyyy-MM-dd HH:mm`.
fn is_minute(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 16
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// An ISO 8601 time (`2026-11-20T10:15:00.123Z`, `...+01:00`, `...+0100`)
/// as the UTC minute `2026-11-20 10:15`, or `None`.
pub fn utc_minute(time: &str) -> Option<String> {
    let time = time.trim();
    let b = time.as_bytes();
    if b.len() < 16
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = time.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    // The zone: after the seconds and fraction.
    let rest = &time[16..];
    let zone_at = rest.find(['Z', 'z', '+', '-']);
    let offset_min = match zone_at {
        None => 0,
        Some(at) => {
            let zone = &rest[at..];
            if zone.eq_ignore_ascii_case("z") {
                0
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
                if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                let oh: i64 = digits[..2].parse().ok()?;
                let om: i64 = digits[2..].parse().ok()?;
                sign * (oh * 60 + om)
            }
        }
    };
    let minutes = days_from_civil(y, mo, d) * 1440 + h * 60 + mi - offset_min;
    let (y, mo, d) = civil_from_days(minutes.div_euclid(1440));
    let m = minutes.rem_euclid(1440);
    Some(format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}", m / 60, m % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_times_to_utc_minutes() {
        assert_eq!(
            utc_minute("2026-11-20T10:15:59.999Z").as_deref(),
            Some("2026-11-20 10:15")
        );
        assert_eq!(
            utc_minute("2026-01-01T00:30:00.000+01:00").as_deref(),
            Some("2025-12-31 23:30")
        );
        assert_eq!(
            utc_minute("2026-02-28T23:50:00-0530").as_deref(),
            Some("2026-03-01 05:20")
        );
        assert_eq!(utc_minute("yesterday"), None);
        assert_eq!(utc_minute("2026-11-20T10:15:00+1"), None);
    }

    fn minute(id: &str, m: &str) -> (String, Option<String>) {
        (id.to_string(), Some(m.to_string()))
    }

    #[test]
    fn cursors_round_trip_follow_links_and_rewind_at_the_end() {
        let scope = spaces(Some(" ENG , Équipe "));
        assert_eq!(scope, ["ENG", "Équipe"]);
        let start = Cursor::start(&scope);
        assert_eq!(
            start.cql(),
            "type=page AND space in (\"ENG\",\"Équipe\") ORDER BY lastmodified ASC"
        );
        assert_eq!(Cursor::decode(&start.encode(), &scope).unwrap(), start);
        assert!(Cursor::decode(&start.encode(), &[]).is_err());
        assert!(Cursor::decode("%%%", &scope).is_err());
        let link = "/rest/api/content/search?cql=x&limit=2&start=2";
        let next = start.advance(
            &[
                minute("1", "2026-11-20 10:15"),
                minute("2", "2026-11-20 10:16"),
            ],
            Some(link),
        );
        assert_eq!(next.since.as_deref(), Some("2026-11-20 10:16"));
        assert_eq!(
            (next.next.as_deref(), next.last.as_deref()),
            (Some(link), Some("2"))
        );
        assert_eq!(Cursor::decode(&next.encode(), &scope).unwrap(), next);
        // The last page: only the newest minute stays, read again by the delta.
        let done = next.advance(&[minute("3", "2026-11-20 10:16")], None);
        assert_eq!(
            done,
            Cursor {
                since: Some("2026-11-20 10:16".into()),
                ..Cursor::start(&scope)
            }
        );
        assert!(
            done.cql()
                .ends_with("AND lastmodified >= \"2026-11-20 10:16\" ORDER BY lastmodified ASC")
        );
        // An empty last page keeps the minute.
        assert_eq!(done.advance(&[], None), done);
        assert_eq!(next.restarted().since, next.since);
        assert_eq!(next.restarted().next, None);
    }

    #[test]
    fn a_version_1_cursor_reads_its_minute_again() {
        let scope = vec!["ENG".to_string()];
        let v1 = URL_SAFE_NO_PAD
            .encode(r#"{"v":1,"scope":"ENG","since":"2026-11-20 10:15","seen":["65601","7"]}"#);
        let upgraded = Cursor::decode(&v1, &scope).unwrap();
        assert_eq!(
            upgraded,
            Cursor {
                since: Some("2026-11-20 10:15".into()),
                ..Cursor::start(&scope)
            }
        );
        let v1_start = URL_SAFE_NO_PAD.encode(r#"{"v":1,"scope":"ENG","seen":[]}"#);
        assert_eq!(
            Cursor::decode(&v1_start, &scope).unwrap(),
            Cursor::start(&scope)
        );
        for bad in [
            r#"{"v":1,"scope":"ENG","seen":["x"]}"#,
            r#"{"v":2,"scope":"ENG","seen":[]}"#,
            r#"{"v":2,"scope":"ENG","last":"1;"}"#,
            r#"{"v":2,"scope":"ENG","next":" "}"#,
            r#"{"v":2,"scope":"ENG","since":"2026-11-20"}"#,
            r#"{"v":3,"scope":"ENG"}"#,
        ] {
            assert!(
                Cursor::decode(&URL_SAFE_NO_PAD.encode(bad), &scope).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn offset_links_are_asked_with_the_anchor() {
        assert_eq!(
            overlapped("/rest/api/content/search?cql=a%3Db&limit=25&start=50&expand=version")
                .as_deref(),
            Some("/rest/api/content/search?cql=a%3Db&limit=26&start=49&expand=version")
        );
        assert_eq!(
            overlapped("/rest/api/content/search?limit=25&start=0"),
            None
        );
        assert_eq!(
            overlapped("/rest/api/content/search?next=true&cursor=x&limit=2&start=2"),
            None
        );
        assert_eq!(overlapped("/rest/api/content/search"), None);
    }

    #[test]
    fn a_search_that_stops_short_of_its_total_fails() {
        assert!(check_complete(Some(0), 25, Some(25), false).is_ok());
        assert!(check_complete(Some(0), 25, Some(100), true).is_ok());
        assert!(check_complete(None, 25, None, false).is_ok());
        let err = check_complete(Some(975), 25, Some(1300), false).unwrap_err();
        assert!(matches!(&err, PluginError::Upstream(f) if f.message.contains("1000 of 1300")));
    }
}
