//! Delta sync by `sys_updated_on`: the cursor and the paging rules.
//!
//! Records are read in `sys_updated_on`, then `sys_id` order. The cursor
//! remembers the last record delivered (`last`), its `sys_updated_on`
//! (`since`) and how many records with exactly that timestamp have been
//! delivered (`skip`). The next page asks for
//! `sys_updated_on>=<since>^ORDERBYsys_updated_on^ORDERBYsys_id` from offset
//! `skip - 1`, so its first record should be `last` again (the anchor): when
//! it is, it is dropped and the rest is new. When it is not (a record of that
//! second changed or vanished meanwhile, so offsets moved), the page is read
//! again from offset 0 of that second: some records are delivered twice
//! (the host upserts by id), none is skipped.
//!
//! With no cursor the sync starts from the beginning (`ORDERBYsys_updated_on
//! ^ORDERBYsys_id`, offset 0). After the last page the cursor still points at
//! the newest record seen, so passing it back is a delta sync: only records
//! updated at or after that second come back.
//!
//! The cursor travels as base64url (no padding) of a small JSON document;
//! callers must treat it as opaque.

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

const CURSOR_VERSION: u32 = 1;

/// Where a sync continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// The table the cursor belongs to.
    pub table: String,
    /// `sys_updated_on` of the last record delivered (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub since: String,
    /// Records with exactly `since` delivered so far (at least 1).
    pub skip: u32,
    /// `sys_id` of the last record delivered.
    pub last: String,
}

impl Cursor {
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
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|_| invalid("not a cursor document"))?;
        if cursor.v != CURSOR_VERSION {
            return Err(invalid(&format!("version {}", cursor.v)));
        }
        if !is_glide_date_time(&cursor.since) {
            return Err(invalid("bad timestamp"));
        }
        if cursor.skip == 0 {
            return Err(invalid("bad position"));
        }
        if cursor.last.is_empty() || !cursor.last.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("bad record id"));
        }
        if cursor.table != table {
            return Err(PluginError::InvalidInput(format!(
                "the sync cursor belongs to table `{}` but the connection syncs `{table}`; \
                 start a full sync without a cursor",
                cursor.table
            )));
        }
        Ok(cursor)
    }
}

/// The page size actually used for a request.
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// One Table API request of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `sysparm_query`.
    pub query: String,
    pub offset: u32,
    pub limit: u32,
    /// The first record should be the cursor's `last`.
    pub anchored: bool,
}

/// The first request for a page after `cursor`.
pub fn plan(cursor: Option<&Cursor>, page_size: u32) -> Plan {
    match cursor {
        None => Plan {
            query: "ORDERBYsys_updated_on^ORDERBYsys_id".to_string(),
            offset: 0,
            limit: page_size,
            anchored: false,
        },
        Some(cursor) => Plan {
            query: since_query(cursor),
            offset: cursor.skip - 1,
            limit: page_size + 1,
            anchored: true,
        },
    }
}

/// The request when the anchor was not where the cursor said: the whole
/// second `since` again.
pub fn restart(cursor: &Cursor, page_size: u32) -> Plan {
    Plan {
        query: since_query(cursor),
        offset: 0,
        limit: page_size,
        anchored: false,
    }
}

fn since_query(cursor: &Cursor) -> String {
    format!(
        "sys_updated_on>={}^ORDERBYsys_updated_on^ORDERBYsys_id",
        cursor.since
    )
}

/// A record with the two fields paging needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub updated: String,
    pub record: Record,
}

impl Row {
    pub fn new(record: Record) -> Result<Row, PluginError> {
        let bad = |what: String| {
            PluginError::Upstream(UpstreamFailure {
                status: 200,
                message: format!("unexpected answer from ServiceNow: {what}"),
            })
        };
        let id = text(&record, "sys_id").ok_or_else(|| bad("a record without `sys_id`".into()))?;
        let updated = text(&record, "sys_updated_on")
            .ok_or_else(|| bad(format!("record {id} has no `sys_updated_on`")))?;
        if !is_glide_date_time(&updated) {
            return Err(bad(format!(
                "record {id} has sys_updated_on `{updated}`, not YYYY-MM-DD HH:MM:SS"
            )));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(format!("record sys_id `{id}` is not alphanumeric")));
        }
        Ok(Row {
            id,
            updated,
            record,
        })
    }
}

/// What a fetched page means.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The anchor moved: fetch [`restart`] instead.
    Restart,
    Page {
        rows: Vec<Row>,
        next: Option<Cursor>,
        has_more: bool,
    },
}

/// Interpret the rows fetched for `plan` after `cursor`.
pub fn settle(
    cursor: Option<&Cursor>,
    plan: &Plan,
    page_size: u32,
    table: &str,
    mut rows: Vec<Row>,
) -> Result<Settled, PluginError> {
    let floor = cursor.map(|c| c.since.as_str()).unwrap_or("");
    let mut previous = floor;
    for row in &rows {
        if row.updated.as_str() < previous {
            return Err(PluginError::Upstream(UpstreamFailure {
                status: 200,
                message: format!(
                    "ServiceNow returned records out of sys_updated_on order (record {} at {} after {previous}); \
                     the sync cannot continue safely",
                    row.id, row.updated
                ),
            }));
        }
        previous = &row.updated;
    }

    let mut delivered_at_since = 0;
    if plan.anchored {
        let cursor = cursor.expect("an anchored plan has a cursor");
        match rows.first() {
            Some(first) if first.id == cursor.last && first.updated == cursor.since => {
                rows.remove(0);
                delivered_at_since = cursor.skip;
            }
            // Read from the start of the second already: these rows are
            // what a restart would fetch.
            _ if plan.offset == 0 => {}
            _ => return Ok(Settled::Restart),
        }
    }
    let has_more = rows.len() >= page_size as usize;
    rows.truncate(page_size as usize);

    let Some(last) = rows.last() else {
        return Ok(Settled::Page {
            rows,
            next: cursor.cloned(),
            has_more: false,
        });
    };
    let at_last = rows
        .iter()
        .rev()
        .take_while(|row| row.updated == last.updated)
        .count();
    let continues_second = cursor.is_some_and(|c| c.since == last.updated) && at_last == rows.len();
    let skip = if continues_second {
        delivered_at_since + at_last as u32
    } else {
        at_last as u32
    };
    let next = Cursor {
        v: CURSOR_VERSION,
        table: table.to_string(),
        since: last.updated.clone(),
        skip,
        last: last.id.clone(),
    };
    Ok(Settled::Page {
        rows,
        next: Some(next),
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

    fn cursor(since: &str, skip: u32, last: &str) -> Cursor {
        Cursor {
            v: 1,
            table: "incident".into(),
            since: since.into(),
            skip,
            last: last.into(),
        }
    }

    fn page(settled: Settled) -> (Vec<String>, Option<Cursor>, bool) {
        match settled {
            Settled::Page {
                rows,
                next,
                has_more,
            } => (rows.into_iter().map(|r| r.id).collect(), next, has_more),
            Settled::Restart => panic!("unexpected restart"),
        }
    }

    const T1: &str = "2026-11-20 10:00:00";
    const T2: &str = "2026-11-20 10:15:00";
    const T3: &str = "2026-11-20 11:00:00";

    #[test]
    fn cursors_round_trip_and_are_opaque() {
        let c = cursor(T2, 2, "abc123");
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&text, "incident").unwrap(), c);
    }

    #[test]
    fn refuses_foreign_or_tampered_cursors() {
        let reject = |text: &str| match Cursor::decode(text, "incident") {
            Err(PluginError::InvalidInput(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(reject("not a cursor!").contains("full sync"));
        assert!(reject(&URL_SAFE_NO_PAD.encode(b"{\"x\":1}")).contains("full sync"));
        for bad in [
            cursor("2026-11-20 10:15:00^ORactive=true", 1, "a"),
            cursor(T2, 0, "a"),
            cursor(T2, 1, "a^b"),
            Cursor {
                v: 2,
                ..cursor(T2, 1, "a")
            },
        ] {
            reject(&bad.encode());
        }
        let other = Cursor {
            table: "problem".into(),
            ..cursor(T2, 1, "a")
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
    fn plans() {
        assert_eq!(
            plan(None, 2),
            Plan {
                query: "ORDERBYsys_updated_on^ORDERBYsys_id".into(),
                offset: 0,
                limit: 2,
                anchored: false
            }
        );
        let c = cursor(T2, 3, "c");
        assert_eq!(
            plan(Some(&c), 2),
            Plan {
                query: format!("sys_updated_on>={T2}^ORDERBYsys_updated_on^ORDERBYsys_id"),
                offset: 2,
                limit: 3,
                anchored: true
            }
        );
        assert_eq!(restart(&c, 2).offset, 0);
        assert!(!restart(&c, 2).anchored);
    }

    #[test]
    fn full_sync_then_delta() {
        // Page 1 of a full sync: a full page, more may follow.
        let p = plan(None, 2);
        let (ids, next, more) =
            page(settle(None, &p, 2, "incident", vec![row("a", T1), row("b", T2)]).unwrap());
        assert_eq!(ids, ["a", "b"]);
        assert!(more);
        let next = next.unwrap();
        assert_eq!(next, cursor(T2, 1, "b"));

        // Page 2: the anchor b, then one new record: the last page.
        let p = plan(Some(&next), 2);
        let (ids, next2, more) = page(
            settle(
                Some(&next),
                &p,
                2,
                "incident",
                vec![row("b", T2), row("c", T2)],
            )
            .unwrap(),
        );
        assert_eq!(ids, ["c"]);
        assert!(!more);
        let next2 = next2.unwrap();
        assert_eq!(next2, cursor(T2, 2, "c"));

        // Delta with nothing new: only the anchor comes back.
        let p = plan(Some(&next2), 2);
        assert_eq!(p.offset, 1);
        let (ids, same, more) =
            page(settle(Some(&next2), &p, 2, "incident", vec![row("c", T2)]).unwrap());
        assert!(ids.is_empty());
        assert!(!more);
        assert_eq!(same.as_ref(), Some(&next2));

        // Delta with a change.
        let (ids, next3, _) = page(
            settle(
                Some(&next2),
                &p,
                2,
                "incident",
                vec![row("c", T2), row("a", T3)],
            )
            .unwrap(),
        );
        assert_eq!(ids, ["a"]);
        assert_eq!(next3.unwrap(), cursor(T3, 1, "a"));
    }

    #[test]
    fn a_moved_anchor_restarts_the_second() {
        let c = cursor(T2, 2, "c");
        let p = plan(Some(&c), 2);
        // b (delivered at T2) was updated and moved on: offset 1 now shows d.
        let settled = settle(
            Some(&c),
            &p,
            2,
            "incident",
            vec![row("d", T2), row("b", T3)],
        );
        assert_eq!(settled.unwrap(), Settled::Restart);
        let r = restart(&c, 2);
        let (ids, next, more) = page(
            settle(
                Some(&c),
                &r,
                2,
                "incident",
                vec![row("c", T2), row("d", T2)],
            )
            .unwrap(),
        );
        assert_eq!(ids, ["c", "d"]);
        assert!(more);
        assert_eq!(next.unwrap(), cursor(T2, 2, "d"));
        // With the anchor at offset 0 the answer already starts the second.
        let c1 = cursor(T2, 1, "b");
        let p1 = plan(Some(&c1), 2);
        let (ids, next, more) = page(
            settle(
                Some(&c1),
                &p1,
                2,
                "incident",
                vec![row("c", T2), row("d", T2), row("e", T3)],
            )
            .unwrap(),
        );
        assert_eq!(ids, ["c", "d"]);
        assert!(more);
        assert_eq!(next.unwrap(), cursor(T2, 2, "d"));
        // An empty answer where the anchor should be is a restart too.
        assert_eq!(
            settle(Some(&c), &p, 2, "incident", vec![]).unwrap(),
            Settled::Restart
        );
    }

    #[test]
    fn a_page_within_one_second_accumulates_the_skip() {
        let c = cursor(T2, 5, "e");
        let p = plan(Some(&c), 2);
        let (ids, next, more) = page(
            settle(
                Some(&c),
                &p,
                2,
                "incident",
                vec![row("e", T2), row("f", T2), row("g", T2)],
            )
            .unwrap(),
        );
        assert_eq!(ids, ["f", "g"]);
        assert!(more);
        assert_eq!(next.unwrap(), cursor(T2, 7, "g"));
    }

    #[test]
    fn an_empty_full_sync_keeps_no_cursor() {
        let (ids, next, more) = page(settle(None, &plan(None, 2), 2, "incident", vec![]).unwrap());
        assert!(ids.is_empty() && next.is_none() && !more);
    }

    #[test]
    fn out_of_order_answers_are_refused() {
        let err = settle(
            None,
            &plan(None, 2),
            2,
            "incident",
            vec![row("a", T2), row("b", T1)],
        )
        .unwrap_err();
        assert!(matches!(err, PluginError::Upstream(_)));
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
