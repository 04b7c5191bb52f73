//! Delta sync by last-modified time.
//!
//! Each page runs one CQL search, oldest change first:
//!
//! ```text
//! type=page [AND space in ("ENG","OPS")] [AND lastmodified >= "2026-11-20 10:15"]
//! ORDER BY lastmodified ASC
//! ```
//!
//! CQL compares `lastmodified` to the minute, so the cursor keeps the
//! newest minute handed out so far (`since`, from `version.when`, in UTC)
//! and the ids already handed out within it (`seen`). The next page asks
//! from that minute again, for `page-size + seen` results, and skips the
//! ids seen at that minute: a page boundary inside one minute neither loses
//! nor repeats pages. After the last page the same cursor continues as a
//! delta (no changes: no records, the cursor unchanged). No cursor is a
//! full sync.
//!
//! Confluence reads the time in a CQL query in the time zone of the
//! account's profile; `since` is UTC, so an account set to a time zone
//! behind UTC should be switched to UTC for syncing (ahead of UTC only
//! widens the query: some pages come again, the host upserts by id).
//!
//! The cursor is base64url (no padding) of
//! `{"v":1,"scope":"ENG,OPS","since":"2026-11-20 10:15","seen":["65601"]}`.
//! Deleted pages are not reported.

use airlock_sdk::types::PluginError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::cql_string;

/// Records per page when the host asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// Most records per page (pages carry their bodies).
pub const MAX_PAGE_SIZE: u32 = 50;
/// Most results one sync request asks for.
pub const MAX_REQUEST: usize = 200;

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
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// The spaces synced, joined with `,` (empty: all).
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default)]
    pub seen: Vec<String>,
}

impl Cursor {
    pub fn start(scope: &[String]) -> Cursor {
        Cursor {
            v: 1,
            scope: scope.join(","),
            since: None,
            seen: Vec::new(),
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
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor document"))?;
        if cursor.v != 1 {
            return Err(bad(&format!("version {}", cursor.v)));
        }
        if let Some(since) = &cursor.since
            && !is_minute(since)
        {
            return Err(bad("bad time"));
        }
        if cursor
            .seen
            .iter()
            .any(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("bad page id"));
        }
        let want = scope.join(",");
        if cursor.scope != want {
            return Err(PluginError::InvalidInput(format!(
                "the sync cursor belongs to spaces `{}`, but the connection syncs `{want}`; \
                 start a full sync without a cursor",
                cursor.scope
            )));
        }
        Ok(cursor)
    }

    /// The CQL of the page after this cursor.
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

    /// Already handed out at the floor minute.
    pub fn skips(&self, id: &str, minute: Option<&str>) -> bool {
        minute.is_some() && minute == self.since.as_deref() && self.seen.iter().any(|s| s == id)
    }

    /// Fold delivered `(id, minute)` pairs into the next cursor.
    pub fn advance(&self, records: &[(String, String)]) -> Cursor {
        let mut next = self.clone();
        for (id, minute) in records {
            match next.since.as_deref() {
                Some(since) if since == minute => {
                    if !next.seen.contains(id) {
                        next.seen.push(id.clone());
                    }
                }
                Some(since) if since > minute.as_str() => {}
                _ => {
                    next.since = Some(minute.clone());
                    next.seen = vec![id.clone()];
                }
            }
        }
        next
    }
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

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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

    #[test]
    fn cursors_round_trip_and_advance() {
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
        let next = start.advance(&[
            ("1".into(), "2026-11-20 10:15".into()),
            ("2".into(), "2026-11-20 10:16".into()),
            ("3".into(), "2026-11-20 10:16".into()),
        ]);
        assert_eq!(next.since.as_deref(), Some("2026-11-20 10:16"));
        assert_eq!(next.seen, ["2", "3"]);
        assert!(next.skips("2", Some("2026-11-20 10:16")));
        assert!(!next.skips("2", Some("2026-11-20 10:17")));
        assert!(
            next.cql()
                .ends_with("AND lastmodified >= \"2026-11-20 10:16\" ORDER BY lastmodified ASC")
        );
        assert_eq!(next.advance(&[]), next);
    }
}
