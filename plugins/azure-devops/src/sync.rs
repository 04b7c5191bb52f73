//! Delta sync by `System.ChangedDate`.
//!
//! Each page runs one WIQL query (`timePrecision=true`, so times count, not
//! just dates):
//!
//! ```text
//! SELECT [System.Id] FROM WorkItems
//! WHERE [System.TeamProject] = @project [AND [System.ChangedDate] >= '<since>']
//! ORDER BY [System.ChangedDate] ASC, [System.Id] ASC
//! ```
//!
//! then reads the matched work items with the batch endpoint, as of the
//! time the query ran (the WIQL answer's `asOf`), so a work item edited in
//! between does not jump ahead of the page.
//!
//! The cursor is base64url (no padding) of a JSON object:
//! `{"v":1,"project":"...","since":"2026-11-20T10:15:00.123Z","seen":[41,42]}`:
//! `since` is the newest `System.ChangedDate` handed out so far (cut to
//! milliseconds, which only widens the next query) and `seen` the ids
//! already handed out at exactly that millisecond; those are skipped, so a
//! page boundary inside one millisecond neither loses nor repeats records,
//! and the query asks for `page-size + seen` ids. A page that fills up says
//! `has-more`; after the last one the same cursor continues as a delta (no
//! records: the cursor is unchanged). No cursor is a full sync.
//!
//! Deleted work items are not reported (WIQL does not return them).

use airlock_sdk::types::PluginError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Records per page when the host asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most records per page (one batch call).
pub const MAX_PAGE_SIZE: u32 = 200;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default)]
    pub seen: Vec<u64>,
}

impl Cursor {
    pub fn start(project: &str) -> Cursor {
        Cursor {
            v: 1,
            project: project.to_string(),
            since: None,
            seen: Vec::new(),
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
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad("not its JSON"))?;
        if cursor.v != 1 {
            return Err(bad("unknown version"));
        }
        if cursor.project != project {
            return Err(PluginError::InvalidInput(format!(
                "the sync cursor belongs to project `{}`, not `{project}`; start a full sync \
                 without a cursor",
                cursor.project
            )));
        }
        if let Some(since) = &cursor.since
            && normalize(since).as_deref() != Some(since.as_str())
        {
            return Err(bad("bad date"));
        }
        Ok(cursor)
    }

    /// The WIQL for the page after this cursor.
    pub fn wiql(&self) -> String {
        let mut wiql =
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project".to_string();
        if let Some(since) = &self.since {
            wiql.push_str(&format!(" AND [System.ChangedDate] >= '{since}'"));
        }
        wiql.push_str(" ORDER BY [System.ChangedDate] ASC, [System.Id] ASC");
        wiql
    }

    /// Fold the records of a page (ids with their normalised dates, in
    /// order) into the next cursor.
    pub fn advance(&self, records: &[(u64, String)]) -> Cursor {
        let mut next = self.clone();
        for (id, changed) in records {
            match next.since.as_deref() {
                Some(since) if since == changed.as_str() => {
                    if !next.seen.contains(id) {
                        next.seen.push(*id);
                    }
                }
                Some(since) if since > changed.as_str() => {}
                _ => {
                    next.since = Some(changed.clone());
                    next.seen = vec![*id];
                }
            }
        }
        next
    }
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
    fn cursors_round_trip_and_advance() {
        let start = Cursor::start("Fabrikam Fiber");
        assert_eq!(
            Cursor::decode(&start.encode(), "Fabrikam Fiber").unwrap(),
            start
        );
        assert!(Cursor::decode(&start.encode(), "Other").is_err());
        assert!(Cursor::decode("%%%", "Fabrikam Fiber").is_err());
        let t1 = "2026-11-20T10:15:00.123Z".to_string();
        let t2 = "2026-11-20T10:16:00.000Z".to_string();
        let next = start.advance(&[(1, t1.clone()), (2, t2.clone()), (3, t2.clone())]);
        assert_eq!(next.since.as_deref(), Some(t2.as_str()));
        assert_eq!(next.seen, vec![2, 3]);
        assert!(next.wiql().contains(">= '2026-11-20T10:16:00.000Z'"));
        assert_eq!(next.advance(&[]), next);
    }
}
