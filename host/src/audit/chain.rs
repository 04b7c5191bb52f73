//! The hash chain over `audit_log` and its verifier.
//!
//! Every row carries `prev_hash` (the `hash` of the row before it, or
//! [`GENESIS_HASH`] for the first row, seq 1) and
//!
//! ```text
//! hash = hex(SHA-256(enc(prev_hash) || enc(seq) || enc(kind) || … || enc(detail)))
//! ```
//!
//! over the columns of [`CONTENT_COLUMNS`] in that order, where each value is
//! encoded by its SQLite storage class, so the encoding is unambiguous (NULL
//! is distinct from the empty string, `1` from `'1'`, and no two field lists
//! concatenate to the same bytes):
//!
//! | value   | bytes                                           |
//! |---------|-------------------------------------------------|
//! | NULL    | `0x00`                                          |
//! | INTEGER | `0x01`, the value as 8 bytes big-endian (i64)   |
//! | TEXT    | `0x02`, length as 8 bytes big-endian, UTF-8     |
//! | REAL    | `0x03`, IEEE-754 bits as 8 bytes big-endian     |
//! | BLOB    | `0x04`, length as 8 bytes big-endian, the bytes |
//!
//! # What the chain detects, and what it does not
//!
//! [`verify`] finds a row whose content was edited, a row removed from the
//! middle (a gap in `seq`, or a `prev_hash` that no longer links), and rows
//! reordered or swapped. It cannot, on its own, detect
//!
//! * rows deleted from the **end** of the log: what is left is still a valid
//!   chain;
//! * a log rewritten from some row on with every later hash recomputed: the
//!   chain is unkeyed, so anyone who can write the file can rebuild it.
//!
//! Both are caught by anchoring the head outside the database: record the
//! `last_seq`/`last_hash` of a [`VerifyReport`] somewhere the host cannot
//! rewrite (a ticket, a WORM bucket, another machine's log) and check it
//! later with [`verify_anchored`].

pub(crate) use crate::store::sql::Value;
use crate::store::sql::{Db, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AuditError;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The columns covered by `hash`, in encoding order: every column of
/// `audit_log` except `prev_hash` (encoded first) and `hash` itself.
pub const CONTENT_COLUMNS: [&str; 21] = [
    "seq",
    "kind",
    "time",
    "actor",
    "project",
    "plugin_id",
    "plugin_version",
    "connection_id",
    "method",
    "url",
    "decision",
    "reason",
    "credential_used",
    "request_bytes",
    "request_sha256",
    "request_seq",
    "status",
    "response_bytes",
    "duration_ms",
    "error",
    "detail",
];

/// Index of a column in [`CONTENT_COLUMNS`].
pub(crate) mod col {
    pub const SEQ: usize = 0;
    pub const KIND: usize = 1;
    pub const TIME: usize = 2;
    pub const ACTOR: usize = 3;
    pub const PROJECT: usize = 4;
    pub const PLUGIN_ID: usize = 5;
    pub const PLUGIN_VERSION: usize = 6;
    pub const CONNECTION_ID: usize = 7;
    pub const METHOD: usize = 8;
    pub const URL: usize = 9;
    pub const DECISION: usize = 10;
    pub const REASON: usize = 11;
    pub const CREDENTIAL_USED: usize = 12;
    pub const REQUEST_BYTES: usize = 13;
    pub const REQUEST_SHA256: usize = 14;
    pub const REQUEST_SEQ: usize = 15;
    pub const STATUS: usize = 16;
    pub const RESPONSE_BYTES: usize = 17;
    pub const DURATION_MS: usize = 18;
    pub const ERROR: usize = 19;
    pub const DETAIL: usize = 20;
}

/// The values of one row's [`CONTENT_COLUMNS`].
pub(crate) type Content = [Value; CONTENT_COLUMNS.len()];

/// An empty row: every column NULL.
pub(crate) fn empty_content() -> Content {
    std::array::from_fn(|_| Value::Null)
}

fn encode(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hasher.update([0x00]),
        Value::Int(i) => {
            hasher.update([0x01]);
            hasher.update(i.to_be_bytes());
        }
        Value::Text(s) => {
            hasher.update([0x02]);
            hasher.update((s.len() as u64).to_be_bytes());
            hasher.update(s.as_bytes());
        }
        Value::Real(f) => {
            hasher.update([0x03]);
            hasher.update(f.to_bits().to_be_bytes());
        }
        Value::Blob(b) => {
            hasher.update([0x04]);
            hasher.update((b.len() as u64).to_be_bytes());
            hasher.update(b);
        }
    }
}

/// `hash` of a row with this `prev_hash` and content.
pub fn row_hash(prev_hash: &Value, content: &[Value]) -> String {
    let mut hasher = Sha256::new();
    encode(&mut hasher, prev_hash);
    for value in content {
        encode(&mut hasher, value);
    }
    hex::encode(hasher.finalize())
}

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ChainProblem {
    /// The row's content no longer matches its `hash`: it was edited (or
    /// another row's content was swapped into it).
    Altered {
        /// The altered row.
        seq: i64,
    },
    /// Rows `expected_seq..seq` are missing: removed from the middle.
    Missing {
        /// The row found where `expected_seq` should have been.
        seq: i64,
        /// The first missing row.
        expected_seq: i64,
    },
    /// The row's `prev_hash` is not the previous row's `hash`: a row before
    /// it was removed, replaced or moved (or edited and re-hashed).
    BrokenLink {
        /// The row whose `prev_hash` does not link.
        seq: i64,
    },
    /// The anchor given to [`verify_anchored`] does not match: the log was
    /// truncated (`found_hash` is `None`) or rewritten up to that row.
    AnchorMismatch {
        /// The anchored row.
        seq: i64,
        /// The hash the anchor recorded for it.
        expected_hash: String,
        /// The row's hash now, or `None` when the row is gone.
        found_hash: Option<String>,
    },
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "audit log OK: {} rows, head seq {} hash {} (keep these outside the database \
                 to detect truncation later)",
                self.rows,
                self.last_seq.map_or("-".to_string(), |s| s.to_string()),
                self.last_hash
            ),
            Some(p) => write!(
                f,
                "audit log TAMPERED at row {}: {p:?} ({} rows before it are intact)",
                p.seq(),
                self.rows
            ),
        }
    }
}

impl ChainProblem {
    /// The row the problem was found at.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Altered { seq }
            | Self::Missing { seq, .. }
            | Self::BrokenLink { seq }
            | Self::AnchorMismatch { seq, .. } => *seq,
        }
    }
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Altered { seq } => write!(
                f,
                "row {seq} does not match its hash: its content was altered"
            ),
            Self::Missing { seq, expected_seq } if seq - 1 == *expected_seq => write!(
                f,
                "row {expected_seq} is missing (found row {seq} next): it was removed"
            ),
            Self::Missing { seq, expected_seq } => write!(
                f,
                "rows {expected_seq} to {} are missing (found row {seq} next): they were removed",
                seq - 1
            ),
            Self::BrokenLink { seq } => write!(
                f,
                "row {seq} does not link to the row before it: rows were removed, replaced or \
                 reordered before it"
            ),
            Self::AnchorMismatch {
                seq,
                expected_hash,
                found_hash: None,
            } => write!(
                f,
                "anchored row {seq} (hash {expected_hash}) is no longer in the log: it was \
                 truncated"
            ),
            Self::AnchorMismatch {
                seq,
                expected_hash,
                found_hash: Some(found),
            } => write!(
                f,
                "anchored row {seq} has hash {found}, not the anchored {expected_hash}: the log \
                 was rewritten up to it"
            ),
        }
    }
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct VerifyReport {
    /// Rows checked and found good (all of them when `problem` is `None`).
    pub rows: u64,
    /// Seq of the last good row (`None` if there is none). When the chain is
    /// intact this is the head: keep it, with `last_hash`, outside the
    /// database to detect later truncation (see the module docs).
    pub last_seq: Option<i64>,
    /// Hash of the last good row, or [`GENESIS_HASH`].
    pub last_hash: String,
    /// The first problem found, if any.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    /// Whether the chain (and the anchor, when one was given) checked out.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A head recorded earlier from a [`VerifyReport`], kept outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Anchor {
    /// The anchored row: a report's `last_seq`.
    pub seq: i64,
    /// That row's hash: the report's `last_hash`.
    pub hash: String,
}

/// Rows read per query while verifying: memory stays bounded however long
/// the log is.
const VERIFY_PAGE: i64 = 5000;

fn select_page() -> String {
    format!(
        "SELECT {}, prev_hash, hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        CONTENT_COLUMNS.join(", ")
    )
}

/// Walk every row of `audit_log` in seq order and report the first problem.
///
/// Rows removed from the end cannot be detected this way; see the module docs
/// and [`verify_anchored`].
pub fn verify(conn: &dyn Db) -> Result<VerifyReport, AuditError> {
    verify_inner(conn, None)
}

/// [`verify`], and check that the row at `anchor.seq` still has
/// `anchor.hash`: detects truncation and rewriting up to the anchor.
pub fn verify_anchored(conn: &dyn Db, anchor: &Anchor) -> Result<VerifyReport, AuditError> {
    verify_inner(conn, Some(anchor))
}

/// The rows after `after`, one page, as (content, prev_hash, hash).
fn read_page(conn: &dyn Db, after: i64) -> Result<Vec<(Content, Value, Value)>, AuditError> {
    let err = |e: crate::store::StoreError| AuditError(format!("reading the audit log: {e}"));
    let rows = conn
        .query(&select_page(), params![after, VERIFY_PAGE])
        .map_err(err)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut values = row.0.into_iter();
            let content: Content = std::array::from_fn(|_| values.next().unwrap_or(Value::Null));
            let prev_hash = values.next().unwrap_or(Value::Null);
            let hash = values.next().unwrap_or(Value::Null);
            (content, prev_hash, hash)
        })
        .collect())
}

fn verify_inner(conn: &dyn Db, anchor: Option<&Anchor>) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport {
        rows: 0,
        last_seq: None,
        last_hash: GENESIS_HASH.to_string(),
        problem: None,
    };
    let mut anchor_seen = false;
    let mut after = 0;
    loop {
        let page = read_page(conn, after)?;
        let Some(last) = page.last() else { break };
        if let Value::Int(seq) = last.0[col::SEQ] {
            after = seq;
        }
        for (content, prev_hash, hash) in page {
            if let Some(problem) = check_row(
                &mut report,
                anchor,
                &mut anchor_seen,
                content,
                prev_hash,
                hash,
            )? {
                report.problem = Some(problem);
                return Ok(report);
            }
        }
    }
    if let Some(anchor) = anchor
        && !anchor_seen
    {
        report.problem = Some(ChainProblem::AnchorMismatch {
            seq: anchor.seq,
            expected_hash: anchor.hash.clone(),
            found_hash: None,
        });
    }
    Ok(report)
}

/// Check one row against the report so far; advance the report when the
/// row is sound.
fn check_row(
    report: &mut VerifyReport,
    anchor: Option<&Anchor>,
    anchor_seen: &mut bool,
    content: Content,
    prev_hash: Value,
    hash: Value,
) -> Result<Option<ChainProblem>, AuditError> {
    // `seq` is the primary key, so always an integer.
    let Value::Int(seq) = content[col::SEQ] else {
        return Err(AuditError("audit_log.seq is not an integer".into()));
    };

    let expected_seq = report.last_seq.map_or(1, |s| s + 1);
    let problem = if seq != expected_seq {
        Some(ChainProblem::Missing { seq, expected_seq })
    } else if !matches!(&prev_hash, Value::Text(p) if *p == report.last_hash) {
        Some(ChainProblem::BrokenLink { seq })
    } else {
        match &hash {
            Value::Text(h) if *h == row_hash(&prev_hash, &content) => None,
            _ => Some(ChainProblem::Altered { seq }),
        }
    };
    if problem.is_some() {
        return Ok(problem);
    }
    let Value::Text(hash) = hash else {
        unreachable!("checked above")
    };
    if let Some(anchor) = anchor
        && anchor.seq == seq
    {
        *anchor_seen = true;
        if anchor.hash != hash {
            return Ok(Some(ChainProblem::AnchorMismatch {
                seq,
                expected_hash: anchor.hash.clone(),
                found_hash: Some(hash),
            }));
        }
    }
    report.rows += 1;
    report.last_seq = Some(seq);
    report.last_hash = hash;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::writer::test_support::{connection, database, write_log};
    use rusqlite::Connection;

    /// A log of 10 rows (5 requests, each followed by its outcome) and a
    /// connection to tamper with it.
    async fn log() -> (tempfile::TempDir, Connection) {
        let (dir, path) = database();
        write_log(&path, 5).await;
        let conn = connection(&path);
        let report = verify(&conn).unwrap();
        assert_eq!(report.problem, None);
        assert_eq!(report.rows, 10);
        (dir, conn)
    }

    fn read_row(conn: &Connection, seq: i64, columns: &[&str]) -> Vec<Value> {
        let sql = format!(
            "SELECT {} FROM audit_log WHERE seq = ?1",
            columns.join(", ")
        );
        Db::query(conn, &sql, params![seq]).unwrap().remove(0).0
    }

    fn write_row(conn: &Connection, seq: i64, columns: &[&str], values: &[Value]) {
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ?{}", i + 2))
            .collect();
        let mut values_with_seq = vec![Value::Int(seq)];
        values_with_seq.extend_from_slice(values);
        let bound: Vec<&dyn crate::store::sql::ToSql> = values_with_seq
            .iter()
            .map(|v| v as &dyn crate::store::sql::ToSql)
            .collect();
        Db::execute(
            conn,
            &format!("UPDATE audit_log SET {} WHERE seq = ?1", sets.join(", ")),
            &bound,
        )
        .unwrap();
    }

    fn swap(conn: &Connection, a: i64, b: i64, columns: &[&str]) {
        let row_a = read_row(conn, a, columns);
        let row_b = read_row(conn, b, columns);
        write_row(conn, a, columns, &row_b);
        write_row(conn, b, columns, &row_a);
    }

    /// Recompute `hash` (and the following `prev_hash`es) from `from` on, as
    /// someone rewriting the file would.
    fn rehash(conn: &Connection, from: i64, to: i64) {
        let mut prev: Value = if from == 1 {
            Value::Text(GENESIS_HASH.into())
        } else {
            read_row(conn, from - 1, &["hash"]).remove(0)
        };
        for seq in from..=to {
            let content = read_row(conn, seq, &CONTENT_COLUMNS);
            let hash = Value::Text(row_hash(&prev, &content));
            write_row(conn, seq, &["prev_hash", "hash"], &[prev, hash.clone()]);
            prev = hash;
        }
    }

    fn problem(conn: &Connection) -> ChainProblem {
        verify(conn).unwrap().problem.expect("a problem")
    }

    #[test]
    fn empty_log_is_ok() {
        let (_dir, path) = database();
        let report = verify(&connection(&path)).unwrap();
        assert_eq!(
            report,
            VerifyReport {
                rows: 0,
                last_seq: None,
                last_hash: GENESIS_HASH.into(),
                problem: None
            }
        );
    }

    #[test]
    fn encoding_is_unambiguous() {
        let prev = Value::Text(GENESIS_HASH.into());
        let h = |c: &[Value]| row_hash(&prev, c);
        assert_ne!(h(&[Value::Null]), h(&[Value::Text(String::new())]));
        assert_ne!(h(&[Value::Int(1)]), h(&[Value::Text("1".into())]));
        assert_ne!(
            h(&[Value::Text("ab".into()), Value::Text("c".into())]),
            h(&[Value::Text("a".into()), Value::Text("bc".into())])
        );
        assert_ne!(
            h(&[Value::Null, Value::Text(String::new())]),
            h(&[Value::Text(String::new()), Value::Null])
        );
    }

    #[tokio::test]
    async fn detects_an_edited_row() {
        let (_dir, conn) = log().await;
        conn.execute(
            "UPDATE audit_log SET url = 'https://attacker.example/' WHERE seq = 5",
            [],
        )
        .unwrap();
        let report = verify(&conn).unwrap();
        assert_eq!(report.problem, Some(ChainProblem::Altered { seq: 5 }));
        assert_eq!((report.rows, report.last_seq), (4, Some(4)));
        assert!(report.problem.unwrap().to_string().contains("row 5"));
    }

    #[tokio::test]
    async fn detects_an_edited_outcome_column() {
        let (_dir, conn) = log().await;
        // NULL to empty string is an edit too.
        conn.execute("UPDATE audit_log SET error = '' WHERE seq = 8", [])
            .unwrap();
        assert_eq!(problem(&conn), ChainProblem::Altered { seq: 8 });
    }

    #[tokio::test]
    async fn detects_a_row_deleted_in_the_middle() {
        let (_dir, conn) = log().await;
        conn.execute("DELETE FROM audit_log WHERE seq = 6", [])
            .unwrap();
        let p = problem(&conn);
        assert_eq!(
            p,
            ChainProblem::Missing {
                seq: 7,
                expected_seq: 6
            }
        );
        assert!(p.to_string().contains("row 6 is missing"), "{p}");
    }

    #[tokio::test]
    async fn detects_a_deleted_row_with_renumbered_successors() {
        let (_dir, conn) = log().await;
        conn.execute_batch(
            "DELETE FROM audit_log WHERE seq = 6;
             UPDATE audit_log SET seq = -seq WHERE seq > 6;
             UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0;",
        )
        .unwrap();
        assert_eq!(problem(&conn), ChainProblem::BrokenLink { seq: 6 });
    }

    #[tokio::test]
    async fn detects_swapped_row_content() {
        let (_dir, conn) = log().await;
        let content: Vec<&str> = CONTENT_COLUMNS[1..].to_vec();
        swap(&conn, 3, 7, &content);
        assert_eq!(problem(&conn), ChainProblem::Altered { seq: 3 });
    }

    #[tokio::test]
    async fn detects_swapped_rows_with_their_hashes() {
        let (_dir, conn) = log().await;
        let mut all: Vec<&str> = CONTENT_COLUMNS[1..].to_vec();
        all.extend(["prev_hash", "hash"]);
        swap(&conn, 3, 7, &all);
        assert_eq!(problem(&conn), ChainProblem::BrokenLink { seq: 3 });
    }

    #[tokio::test]
    async fn detects_an_edited_and_rehashed_row_at_the_next_row() {
        let (_dir, conn) = log().await;
        conn.execute("UPDATE audit_log SET method = 'DELETE' WHERE seq = 5", [])
            .unwrap();
        let hash = row_hash(
            &read_row(&conn, 5, &["prev_hash"]).remove(0),
            &read_row(&conn, 5, &CONTENT_COLUMNS),
        );
        conn.execute("UPDATE audit_log SET hash = ?1 WHERE seq = 5", [hash])
            .unwrap();
        assert_eq!(problem(&conn), ChainProblem::BrokenLink { seq: 6 });
    }

    #[tokio::test]
    async fn truncation_and_full_rewrites_need_an_anchor() {
        let (_dir, conn) = log().await;
        let head = verify(&conn).unwrap();
        let anchor = Anchor {
            seq: head.last_seq.unwrap(),
            hash: head.last_hash.clone(),
        };
        assert!(verify_anchored(&conn, &anchor).unwrap().is_ok());

        // Rewriting from row 5 on, hashes recomputed: the chain alone is fine.
        conn.execute(
            "UPDATE audit_log SET url = 'https://x.example/' WHERE seq = 5",
            [],
        )
        .unwrap();
        rehash(&conn, 5, 10);
        assert!(verify(&conn).unwrap().is_ok());
        assert!(matches!(
            verify_anchored(&conn, &anchor).unwrap().problem,
            Some(ChainProblem::AnchorMismatch {
                seq: 10,
                found_hash: Some(_),
                ..
            })
        ));

        // Deleting the last rows: the rest is still a valid chain.
        conn.execute("DELETE FROM audit_log WHERE seq > 8", [])
            .unwrap();
        let report = verify(&conn).unwrap();
        assert!(report.is_ok());
        assert_eq!(report.last_seq, Some(8));
        let p = verify_anchored(&conn, &anchor).unwrap().problem.unwrap();
        assert_eq!(
            p,
            ChainProblem::AnchorMismatch {
                seq: 10,
                expected_hash: anchor.hash.clone(),
                found_hash: None
            }
        );
        assert!(p.to_string().contains("truncated"), "{p}");
    }

    #[tokio::test]
    async fn detects_rows_removed_from_the_start() {
        let (_dir, conn) = log().await;
        conn.execute("DELETE FROM audit_log WHERE seq <= 2", [])
            .unwrap();
        assert_eq!(
            problem(&conn),
            ChainProblem::Missing {
                seq: 3,
                expected_seq: 1
            }
        );
    }
}
