//! Delta sync by `System.ChangedDate`.
//!
//! Each page runs one WIQL query (`timePrecision=true`, so times count, not
//! just dates) for at most `page-size` ids:
//!
//! ```text
//! SELECT [System.Id] FROM WorkItems
//! WHERE [System.TeamProject] = @project
//!   [AND [System.ChangedDate] >= '<since>'
//!     [AND ([System.ChangedDate] >= '<since + 1 ms>' OR [System.Id] > <last>)]]
//! ORDER BY [System.ChangedDate] ASC, [System.Id] ASC
//! ```
//!
//! then reads the matched work items with the batch endpoint, as of the
//! time the query ran (the WIQL answer's `asOf`), so a work item edited in
//! between does not jump ahead of the page.
//!
//! Within a run the cursor is the key of the last work item delivered, its
//! `System.ChangedDate` cut to milliseconds (`since`) and its id (`last`),
//! and each query asks for what comes after that key (keyset paging): any
//! number of work items changed in one millisecond are read page by page,
//! and the cursor stays a few bytes. Every answer is checked to be in that
//! order and after the cursor, or the page fails (paging on would skip work
//! items). A page that fills up says `has-more`. The last page of a run
//! leaves `since` without `last`, so the delta it starts reads that
//! millisecond again from its start: a work item saved later with the same
//! time cannot be missed (those of that millisecond come again; the host
//! upserts by id). No cursor is a full sync.
//!
//! The cursor is base64url (no padding) of a JSON object:
//! `{"v":2,"project":"...","since":"2026-11-20T10:15:00.123Z","last":42}`.
//! A version 1 cursor (`seen`: ids handed out at `since`) is read as
//! version 2 without `last`.
//!
//! Deleted work items are not reported (WIQL does not return them).

use airlock_sdk::time::{civil_from_days, days_from_civil};
use airlock_sdk::types::{PluginError, UpstreamFailure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Records per page when the host asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most records per page (one batch call).
pub const MAX_PAGE_SIZE: u32 = 200;

const CURSOR_VERSION: u32 = 2;

pub fn page_size(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE as usize,
        n => n.min(MAX_PAGE_SIZE) as usize,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub v: u32,
    pub project: String,
    /// `System.ChangedDate` of the last work item delivered, normalised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Its id; `None` reads the millisecond `since` from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
}

/// A cursor as stored by either version.
#[derive(Deserialize)]
struct Stored {
    v: u32,
    project: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    last: Option<u64>,
    /// Version 1 only.
    #[serde(default)]
    seen: Option<Vec<u64>>,
}

impl Cursor {
    pub fn start(project: &str) -> Cursor {
        Cursor {
            v: CURSOR_VERSION,
            project: project.to_string(),
            since: None,
            last: None,
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(text: &str, project: &str) -> Result<Cursor, PluginError> {
        let bad = |why: &str| {
            PluginError::InvalidInput(format!(
                "the sync cursor is not one this plugin issued ({why}); start a full sync \
                 without a cursor"
            ))
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| bad("not base64"))?;
        let stored: Stored = serde_json::from_slice(&bytes).map_err(|_| bad("not its JSON"))?;
        let last = match (stored.v, stored.seen, stored.last) {
            // Version 1 skipped the ids in `seen`; reading its millisecond
            // again from the start loses nothing.
            (1, _, None) => None,
            (CURSOR_VERSION, None, last) => last,
            _ => return Err(bad("unknown version")),
        };
        if stored.project != project {
            return Err(PluginError::InvalidInput(format!(
                "the sync cursor belongs to project `{}`, not `{project}`; start a full sync \
                 without a cursor",
                stored.project
            )));
        }
        if let Some(since) = &stored.since
            && normalize(since).as_deref() != Some(since.as_str())
        {
            return Err(bad("bad date"));
        }
        if last.is_some() && stored.since.is_none() {
            return Err(bad("an id without a date"));
        }
        Ok(Cursor {
            v: CURSOR_VERSION,
            project: stored.project,
            since: stored.since,
            last,
        })
    }

    /// The WIQL for the page after this cursor.
    pub fn wiql(&self) -> String {
        let mut wiql =
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project".to_string();
        if let Some(since) = &self.since {
            wiql.push_str(&format!(" AND [System.ChangedDate] >= '{since}'"));
            if let (Some(last), Some(after)) = (self.last, next_millisecond(since)) {
                wiql.push_str(&format!(
                    " AND ([System.ChangedDate] >= '{after}' OR [System.Id] > {last})"
                ));
            }
        }
        wiql.push_str(" ORDER BY [System.ChangedDate] ASC, [System.Id] ASC");
        wiql
    }

    /// The order key of the work item the cursor names, if it names one.
    fn key(&self) -> Option<(&str, u64)> {
        Some((self.since.as_deref()?, self.last?))
    }
}

/// Check a page's work items (ids with their normalised dates, in the
/// order delivered) against `cursor` and work out the next cursor. Each
/// must come after the one before it, and after the cursor, in
/// `(ChangedDate, Id)` order: otherwise the service did not apply the
/// query's condition or order, and paging on would skip work items.
pub fn advance(
    cursor: &Cursor,
    items: &[(u64, String)],
    has_more: bool,
) -> Result<Cursor, PluginError> {
    let floor = cursor.since.as_deref().unwrap_or("");
    let mut previous = cursor.key();
    for (id, changed) in items {
        let key = (changed.as_str(), *id);
        if key.0 < floor || previous.is_some_and(|before| key <= before) {
            return Err(PluginError::Upstream(UpstreamFailure {
                status: 200,
                message: format!(
                    "work item {id} (changed {changed}) came out of order, after {} although \
                     the sync asked for ChangedDate, Id order after its cursor; the sync \
                     stopped so as not to skip work items: run it again, and if it repeats, \
                     report the WIQL in the plugin's docs to Azure DevOps support",
                    previous.map_or(format!("the cursor's {floor}"), |(t, i)| format!(
                        "work item {i} (changed {t})"
                    ))
                ),
            }));
        }
        previous = Some(key);
    }
    let mut next = cursor.clone();
    if let Some((id, changed)) = items.last() {
        next.since = Some(changed.clone());
        next.last = Some(*id);
    }
    if !has_more {
        // The run ends: the delta reads the newest millisecond again.
        next.last = None;
    }
    Ok(next)
}

/// The millisecond after a normalised time (`...:59.999Z` carries into the
/// next second, minute, day...), or `None` when it is not normalised.
pub fn next_millisecond(normalized: &str) -> Option<String> {
    if normalize(normalized).as_deref() != Some(normalized) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| normalized[r].parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let ms = (((days * 24 + num(11..13)?) * 60 + num(14..16)?) * 60 + num(17..19)?) * 1000
        + num(20..23)?
        + 1;
    let (y, mo, d) = civil_from_days(ms.div_euclid(86_400_000));
    let rest = ms.rem_euclid(86_400_000);
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    ))
}

/// An ISO 8601 UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (fraction cut to
/// milliseconds, so strings compare in time order), or `None` when it is
/// not one.
pub fn normalize(time: &str) -> Option<String> {
    let time = time.trim();
    let body = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (body, ""),
    };
    let bytes = whole.as_bytes();
    let shape_ok = bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut millis: String = fraction.chars().take(3).collect();
    while millis.len() < 3 {
        millis.push('0');
    }
    Some(format!("{whole}.{millis}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_times() {
        assert_eq!(
            normalize("2026-11-20T10:15:00.123Z").as_deref(),
            Some("2026-11-20T10:15:00.123Z")
        );
        assert_eq!(
            normalize("2026-11-20T10:15:00Z").as_deref(),
            Some("2026-11-20T10:15:00.000Z")
        );
        assert_eq!(
            normalize("2026-11-20T10:15:00.1234567Z").as_deref(),
            Some("2026-11-20T10:15:00.123Z")
        );
        assert_eq!(normalize("2026-11-20 10:15:00"), None);
        assert_eq!(normalize("x' OR 1=1"), None);
    }

    #[test]
    fn the_next_millisecond_carries() {
        let next = |t: &str| next_millisecond(t).unwrap();
        assert_eq!(next("2026-11-20T10:15:00.123Z"), "2026-11-20T10:15:00.124Z");
        assert_eq!(next("2026-12-31T23:59:59.999Z"), "2027-01-01T00:00:00.000Z");
        assert_eq!(next("2028-02-28T23:59:59.999Z"), "2028-02-29T00:00:00.000Z");
        assert_eq!(next_millisecond("2026-11-20T10:15:00Z"), None);
    }

    const T1: &str = "2026-11-20T10:15:00.123Z";
    const T2: &str = "2026-11-20T10:16:00.000Z";

    #[test]
    fn cursors_round_trip_and_page_after_the_last_key() {
        let start = Cursor::start("Fabrikam Fiber");
        assert_eq!(
            Cursor::decode(&start.encode(), "Fabrikam Fiber").unwrap(),
            start
        );
        assert!(Cursor::decode(&start.encode(), "Other").is_err());
        assert!(Cursor::decode("%%%", "Fabrikam Fiber").is_err());
        let items = [
            (1, T1.to_string()),
            (2, T2.to_string()),
            (3, T2.to_string()),
        ];
        let next = advance(&start, &items, true).unwrap();
        assert_eq!((next.since.as_deref(), next.last), (Some(T2), Some(3)));
        assert_eq!(
            Cursor::decode(&next.encode(), "Fabrikam Fiber").unwrap(),
            next
        );
        assert!(next.wiql().contains(
            "AND [System.ChangedDate] >= '2026-11-20T10:16:00.000Z' AND \
             ([System.ChangedDate] >= '2026-11-20T10:16:00.001Z' OR [System.Id] > 3) ORDER BY"
        ));
        // The last page of a run: the delta reads T2 again from its start.
        let done = advance(&next, &[(4, T2.to_string())], false).unwrap();
        assert_eq!((done.since.as_deref(), done.last), (Some(T2), None));
        assert!(done.wiql().ends_with(
            "= @project AND [System.ChangedDate] >= '2026-11-20T10:16:00.000Z' \
                     ORDER BY [System.ChangedDate] ASC, [System.Id] ASC"
        ));
        // An empty page keeps the position.
        assert_eq!(advance(&next, &[], true).unwrap(), next);
    }

    #[test]
    fn a_version_1_cursor_reads_its_millisecond_again() {
        let v1 = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"v":1,"project":"P","since":"{T2}","seen":[41,42]}}"#
        ));
        let upgraded = Cursor::decode(&v1, "P").unwrap();
        assert_eq!(
            upgraded,
            Cursor {
                v: 2,
                project: "P".into(),
                since: Some(T2.into()),
                last: None
            }
        );
        let v1_start = URL_SAFE_NO_PAD.encode(r#"{"v":1,"project":"P","seen":[]}"#);
        assert_eq!(Cursor::decode(&v1_start, "P").unwrap(), Cursor::start("P"));
        for bad in [
            r#"{"v":2,"project":"P","since":"x","last":1}"#.to_string(),
            r#"{"v":2,"project":"P","last":1}"#.to_string(),
            format!(r#"{{"v":2,"project":"P","since":"{T2}","seen":[1]}}"#),
            format!(r#"{{"v":3,"project":"P","since":"{T2}"}}"#),
        ] {
            assert!(
                Cursor::decode(&URL_SAFE_NO_PAD.encode(&bad), "P").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_out_of_order_or_before_the_cursor_are_refused() {
        let at = |id: u64, t: &str| (id, t.to_string());
        let start = Cursor::start("P");
        assert!(advance(&start, &[at(2, T1), at(1, T1)], true).is_err());
        assert!(advance(&start, &[at(1, T2), at(2, T1)], true).is_err());
        let c = advance(&start, &[at(5, T1)], true).unwrap();
        assert!(advance(&c, &[at(5, T1)], true).is_err());
        assert!(advance(&c, &[at(4, T1)], true).is_err());
        assert!(advance(&c, &[at(6, T1), at(1, T2)], true).is_ok());
        let rewound = advance(&c, &[], false).unwrap();
        assert!(advance(&rewound, &[at(1, T1)], true).is_ok());
        let err = advance(&rewound, &[at(1, "2026-11-20T10:14:00.000Z")], true).unwrap_err();
        assert!(matches!(err, PluginError::Upstream(_)));
    }

    #[test]
    fn many_items_in_one_millisecond_page_through_by_id() {
        let all: Vec<u64> = (0..1000).map(|n| (n * 7919) % 100_003).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        let mut cursor = Cursor::start("P");
        let mut got = Vec::new();
        loop {
            let page: Vec<(u64, String)> = sorted
                .iter()
                .filter(|id| cursor.last.is_none_or(|last| **id > last))
                .take(100)
                .map(|id| (*id, T1.to_string()))
                .collect();
            let more = page.len() == 100;
            got.extend(page.iter().map(|p| p.0));
            cursor = advance(&cursor, &page, more).unwrap();
            if !more {
                break;
            }
        }
        assert_eq!(got, sorted);
    }
}
