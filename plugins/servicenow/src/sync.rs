//! Delta sync by `sys_updated_on`: the cursor and the paging rules.
//!
//! Records are read in `(sys_updated_on, sys_id)` order. Within a run the
//! cursor is the key of the last record delivered: its `sys_updated_on`
//! (`since`) and `sys_id` (`last`), and the next page asks for the records
//! strictly after that key (keyset paging, no offsets):
//!
//! ```text
//! sys_updated_on>=<since>^sys_updated_on><since>^ORsys_id><last>
//!     ^ORDERBYsys_updated_on^ORDERBYsys_id
//! ```
//!
//! (`^OR` binds to the condition before it: `since <= t AND (since < t OR
//! last < id)`.) However many records share one second (a bulk import, a
//! mass update), each page continues exactly after the previous one; a
//! record updated meanwhile moves to a later second and comes again, none
//! is skipped. Every answer is checked to be in that order and after the
//! cursor: an instance that ignored part of the query would otherwise lose
//! records silently, so it fails the sync instead.
//!
//! With no cursor the sync starts from the beginning (`ORDERBYsys_updated_on
//! ^ORDERBYsys_id`). The last page of a run (not full, so `has-more` is
//! false) leaves a cursor without `last`: the delta it starts reads the
//! newest second again from its beginning (`sys_updated_on>=<since>`),
//! because a record saved with that second's timestamp after the run read
//! it (a late commit, an import still running) may sort before `last`.
//! Those records of the newest second come again; the host upserts by id.
//!
//! The cursor travels as base64url (no padding) of a small JSON document,
//! `{"v":2,"table":"incident","since":"2026-11-20 10:15:00","last":"<sys_id>"}`
//! (`last` absent after a run's last page); callers must treat it as opaque.
//! A version 1 cursor (offset paging, with a `skip` count) is read as
//! version 2 without `last`: its second is read again.

use airlock_sdk::types::{PluginError, UpstreamFailure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::{Record, is_glide_date_time, text};

/// Records per page when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most records per page: whole incident records are a few KB each and the
/// page must fit the host's result-size limit.
pub const MAX_PAGE_SIZE: u32 = 100;

const CURSOR_VERSION: u32 = 2;

/// Where a sync continues: after the record `(since, last)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// The table the cursor belongs to.
    pub table: String,
    /// `sys_updated_on` of the last record delivered (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub since: String,
    /// `sys_id` of the last record delivered; `None` reads the second
    /// `since` from its start (a delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// A cursor as stored by either version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    v: u32,
    table: String,
    since: String,
    #[serde(default)]
    last: Option<String>,
    /// Version 1 only: records at `since` delivered so far.
    #[serde(default)]
    skip: Option<u32>,
}

impl Cursor {
    pub fn new(table: &str, since: &str, last: Option<&str>) -> Cursor {
        Cursor {
            v: CURSOR_VERSION,
            table: table.to_string(),
            since: since.to_string(),
            last: last.map(str::to_string),
        }
    }

    /// The same second, read again from its start.
    pub fn rewound(&self) -> Cursor {
        Cursor {
            last: None,
            ..self.clone()
        }
    }

    pub fn encode(&self) -> String {
        // Serializing a struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decode a cursor given back by the host, for a sync of `table`.
    pub fn decode(text: &str, table: &str) -> Result<Cursor, PluginError> {
        let invalid = |why: &str| {
            PluginError::InvalidInput(format!(
                "the sync cursor is not one this plugin issued ({why}); start a full sync without a cursor"
            ))
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| invalid("not base64url"))?;
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|_| invalid("not a cursor document"))?;
        let last = match (stored.v, stored.skip, stored.last) {
            // Version 1 counted an offset into the second `since`; reading
            // that second again from its start loses nothing.
            (1, Some(skip), Some(_)) if skip > 0 => None,
            (1, _, _) => return Err(invalid("bad position")),
            (CURSOR_VERSION, None, last) => last,
            (v, _, _) => return Err(invalid(&format!("version {v}"))),
        };
        if !is_glide_date_time(&stored.since) {
            return Err(invalid("bad timestamp"));
        }
        if let Some(last) = &last
            && (last.is_empty() || !last.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(invalid("bad record id"));
        }
        if stored.table != table {
            return Err(PluginError::InvalidInput(format!(
                "the sync cursor belongs to table `{}` but the connection syncs `{table}`; \
                 start a full sync without a cursor",
                stored.table
            )));
        }
        Ok(Cursor::new(table, &stored.since, last.as_deref()))
    }

    /// The order key of the record the cursor names, if it names one.
    fn key(&self) -> Option<(&str, &str)> {
        Some((&self.since, self.last.as_deref()?))
    }
}

/// The page size actually used for a request.
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// `sysparm_query` of the page after `cursor` (from the start without one).
pub fn query(cursor: Option<&Cursor>) -> String {
    const ORDER: &str = "ORDERBYsys_updated_on^ORDERBYsys_id";
    match cursor {
        None => ORDER.to_string(),
        Some(Cursor {
            since, last: None, ..
        }) => format!("sys_updated_on>={since}^{ORDER}"),
        Some(Cursor {
            since,
            last: Some(last),
            ..
        }) => format!("sys_updated_on>={since}^sys_updated_on>{since}^ORsys_id>{last}^{ORDER}"),
    }
}

/// A record with the two fields paging needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub updated: String,
    pub record: Record,
}

fn unexpected(message: String) -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        status: 200,
        message: format!("unexpected answer from ServiceNow: {message}"),
    })
}

impl Row {
    pub fn new(record: Record) -> Result<Row, PluginError> {
        let id = text(&record, "sys_id")
            .ok_or_else(|| unexpected("a record without `sys_id`".into()))?;
        let updated = text(&record, "sys_updated_on")
            .ok_or_else(|| unexpected(format!("record {id} has no `sys_updated_on`")))?;
        if !is_glide_date_time(&updated) {
            return Err(unexpected(format!(
                "record {id} has sys_updated_on `{updated}`, not YYYY-MM-DD HH:MM:SS"
            )));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(unexpected(format!(
                "record sys_id `{id}` is not alphanumeric"
            )));
        }
        Ok(Row {
            id,
            updated,
            record,
        })
    }

    fn key(&self) -> (&str, &str) {
        (&self.updated, &self.id)
    }
}

/// One page of a sync, ready to hand to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub rows: Vec<Row>,
    /// The cursor after the page (the given one when the page is empty).
    pub next: Option<Cursor>,
    pub has_more: bool,
}

/// Check the rows fetched after `cursor` and work out the next cursor.
///
/// Each row must come strictly after the one before it (and the first after
/// the cursor) in `(sys_updated_on, sys_id)` order: otherwise the instance
/// did not apply the order or the keyset condition, and paging on would
/// skip records, so the page is refused.
pub fn settle(
    cursor: Option<&Cursor>,
    page_size: u32,
    table: &str,
    mut rows: Vec<Row>,
) -> Result<Settled, PluginError> {
    let floor = cursor.map(|c| c.since.as_str()).unwrap_or("");
    let mut previous = cursor.and_then(Cursor::key);
    for row in &rows {
        if row.updated.as_str() < floor {
            return Err(unexpected(format!(
                "record {} (sys_updated_on {}) is older than the cursor's {floor}; the sync \
                 stopped so as not to skip records: check that the instance applies \
                 `sysparm_query` to table `{table}`",
                row.id, row.updated
            )));
        }
        if let Some(before) = previous
            && row.key() <= before
        {
            return Err(unexpected(format!(
                "record {} (sys_updated_on {}) came after record {} ({}) although the sync \
                 asked for (sys_updated_on, sys_id) order after its cursor; the sync stopped \
                 so as not to skip records: check that the instance applies `sysparm_query` \
                 to table `{table}` (a query business rule or ACL rewriting it)",
                row.id, row.updated, before.1, before.0
            )));
        }
        previous = Some(row.key());
    }
    let has_more = rows.len() >= page_size as usize;
    rows.truncate(page_size as usize);
    let next = match rows.last() {
        Some(last) => Some(Cursor::new(table, &last.updated, Some(&last.id))),
        None => cursor.cloned(),
    };
    // The run ends here: the delta reads the newest second again.
    let next = if has_more {
        next
    } else {
        next.map(|c| c.rewound())
    };
    Ok(Settled {
        rows,
        next,
        has_more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, updated: &str) -> Row {
        let Ok(row) = Row::new(match json!({"sys_id": id, "sys_updated_on": updated}) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        }) else {
            panic!("bad row")
        };
        row
    }

    fn cursor(since: &str, last: &str) -> Cursor {
        Cursor::new("incident", since, Some(last))
    }

    fn rewound(since: &str) -> Cursor {
        Cursor::new("incident", since, None)
    }

    fn page(settled: Settled) -> (Vec<String>, Option<Cursor>, bool) {
        (
            settled.rows.into_iter().map(|r| r.id).collect(),
            settled.next,
            settled.has_more,
        )
    }

    const T1: &str = "2026-11-20 10:00:00";
    const T2: &str = "2026-11-20 10:15:00";
    const T3: &str = "2026-11-20 11:00:00";

    #[test]
    fn cursors_round_trip_and_are_opaque() {
        let c = cursor(T2, "abc123");
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&text, "incident").unwrap(), c);
    }

    #[test]
    fn a_version_1_cursor_reads_its_second_again() {
        let v1 = URL_SAFE_NO_PAD.encode(
            json!({"v": 1, "table": "incident", "since": T2, "skip": 7, "last": "abc123"})
                .to_string(),
        );
        let upgraded = Cursor::decode(&v1, "incident").unwrap();
        assert_eq!(upgraded, rewound(T2));
        assert_eq!(upgraded.v, 2);
        assert_eq!(
            query(Some(&upgraded)),
            format!("sys_updated_on>={T2}^ORDERBYsys_updated_on^ORDERBYsys_id")
        );
        assert_eq!(
            Cursor::decode(&upgraded.encode(), "incident").unwrap(),
            upgraded
        );
        // A version 1 cursor always had a position of at least 1.
        let bad = URL_SAFE_NO_PAD.encode(
            json!({"v": 1, "table": "incident", "since": T2, "skip": 0, "last": "a"}).to_string(),
        );
        assert!(Cursor::decode(&bad, "incident").is_err());
    }

    #[test]
    fn refuses_foreign_or_tampered_cursors() {
        let reject = |text: &str| match Cursor::decode(text, "incident") {
            Err(PluginError::InvalidInput(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(reject("not a cursor!").contains("full sync"));
        assert!(reject(&URL_SAFE_NO_PAD.encode(b"{\"x\":1}")).contains("full sync"));
        let with_skip = URL_SAFE_NO_PAD.encode(
            json!({"v": 2, "table": "incident", "since": T2, "skip": 1, "last": "a"}).to_string(),
        );
        reject(&with_skip);
        for bad in [
            cursor("2026-11-20 10:15:00^ORactive=true", "a"),
            cursor(T2, "a^b"),
            cursor(T2, ""),
            Cursor {
                v: 1,
                ..cursor(T2, "a")
            },
            Cursor {
                v: 3,
                ..cursor(T2, "a")
            },
        ] {
            reject(&bad.encode());
        }
        let other = Cursor {
            table: "problem".into(),
            ..cursor(T2, "a")
        };
        assert!(reject(&other.encode()).contains("`problem`"));
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), 50);
        assert_eq!(page_size(2), 2);
        assert_eq!(page_size(5000), 100);
    }

    #[test]
    fn queries_continue_after_the_cursor_key() {
        assert_eq!(query(None), "ORDERBYsys_updated_on^ORDERBYsys_id");
        assert_eq!(
            query(Some(&cursor(T2, "c"))),
            format!(
                "sys_updated_on>={T2}^sys_updated_on>{T2}^ORsys_id>c\
                 ^ORDERBYsys_updated_on^ORDERBYsys_id"
            )
        );
    }

    #[test]
    fn full_sync_then_delta() {
        let (ids, next, more) =
            page(settle(None, 2, "incident", vec![row("a", T1), row("b", T2)]).unwrap());
        assert_eq!(ids, ["a", "b"]);
        assert!(more);
        let next = next.unwrap();
        assert_eq!(next, cursor(T2, "b"));

        // The rest of the second T2: the last page, so the cursor rewinds
        // to the start of T2 for the delta.
        let (ids, next2, more) =
            page(settle(Some(&next), 2, "incident", vec![row("c", T2)]).unwrap());
        assert_eq!(ids, ["c"]);
        assert!(!more);
        let next2 = next2.unwrap();
        assert_eq!(next2, rewound(T2));

        // A delta reads T2 again (b, c, and 0 saved late at T2), then a
        // record of T3.
        let rows = vec![row("0", T2), row("b", T2)];
        let (ids, next3, more) = page(settle(Some(&next2), 2, "incident", rows).unwrap());
        assert_eq!(ids, ["0", "b"]);
        assert!(more);
        assert_eq!(next3.clone().unwrap(), cursor(T2, "b"));
        let rows = vec![row("c", T2), row("a", T3)];
        let (ids, next4, more) = page(settle(next3.as_ref(), 2, "incident", rows).unwrap());
        assert_eq!(ids, ["c", "a"]);
        assert!(more);
        let (ids, next5, more) = page(settle(next4.as_ref(), 2, "incident", vec![]).unwrap());
        assert!(ids.is_empty() && !more);
        assert_eq!(next5.unwrap(), rewound(T3));
    }

    #[test]
    fn many_records_in_one_second_page_through_by_sys_id() {
        // 1,000 records at T2: every page continues after the last sys_id.
        let all: Vec<String> = (0..1000).map(|n| format!("{n:032x}")).collect();
        let mut at: Option<Cursor> = None;
        let mut got = Vec::new();
        loop {
            let rest: Vec<Row> = all
                .iter()
                .filter(|id| {
                    at.as_ref()
                        .is_none_or(|c: &Cursor| Some(id.as_str()) > c.last.as_deref())
                })
                .take(100)
                .map(|id| row(id, T2))
                .collect();
            let (ids, next, more) = page(settle(at.as_ref(), 100, "incident", rest).unwrap());
            got.extend(ids);
            at = next;
            if !more {
                break;
            }
        }
        assert_eq!(got, all);
    }

    #[test]
    fn answers_out_of_order_or_before_the_cursor_are_refused() {
        let refused = |cursor: Option<&Cursor>, rows| match settle(cursor, 2, "incident", rows) {
            Err(PluginError::Upstream(failure)) => failure.message,
            other => panic!("{other:?}"),
        };
        assert!(refused(None, vec![row("a", T2), row("b", T1)]).contains("sysparm_query"));
        // Same second, sys_id going backwards: the tiebreak was not applied.
        refused(None, vec![row("b", T2), row("a", T2)]);
        // The keyset condition was ignored: the cursor's record again.
        let c = cursor(T2, "b");
        refused(Some(&c), vec![row("b", T2)]);
        refused(Some(&c), vec![row("a", T2)]);
        refused(Some(&c), vec![row("z", T1)]);
        assert!(settle(Some(&c), 2, "incident", vec![row("a", T3)]).is_ok());
        // A rewound cursor takes its whole second, nothing older.
        assert!(settle(Some(&rewound(T2)), 2, "incident", vec![row("a", T2)]).is_ok());
        refused(Some(&rewound(T2)), vec![row("z", T1)]);
    }

    #[test]
    fn an_empty_full_sync_keeps_no_cursor() {
        let (ids, next, more) = page(settle(None, 2, "incident", vec![]).unwrap());
        assert!(ids.is_empty() && next.is_none() && !more);
    }

    #[test]
    fn rows_need_ids_and_timestamps() {
        let rec = |v: serde_json::Value| match v {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        assert!(Row::new(rec(json!({"sys_updated_on": T1}))).is_err());
        assert!(Row::new(rec(json!({"sys_id": "a"}))).is_err());
        assert!(Row::new(rec(json!({"sys_id": "a", "sys_updated_on": "yesterday"}))).is_err());
        assert!(Row::new(rec(json!({"sys_id": "a", "sys_updated_on": T1}))).is_ok());
    }
}
