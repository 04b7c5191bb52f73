//! The audit hook the egress path writes through: a record is appended before
//! a request leaves (or when it is denied) and completed after.
//!
//! If [`AuditSink::begin`] fails the request is not sent. [`MemoryAudit`]
//! keeps records in memory for tests and embedders that ship them elsewhere.

pub mod chain;
pub mod file;
pub mod query;
pub mod sqlite;

pub use chain::{Anchor, ChainProblem, GENESIS_HASH, VerifyReport, verify, verify_anchored};
pub use file::AUDIT_FILE;
pub use query::{AuditEntry, AuditFilter, AuditOutcome, DecisionKind, list};
pub use sqlite::{AuditDurability, SqliteAudit};

use std::sync::Mutex;

use futures::future::BoxFuture;
use std::time::{Duration, SystemTime};

/// What the host decided about an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied(String),
}

/// One outbound request as recorded before it leaves.
#[derive(Debug, Clone)]
pub struct EgressRecord {
    pub time: SystemTime,
    pub plugin_id: String,
    pub plugin_version: String,
    pub connection_id: String,
    pub project: Option<String>,
    pub method: String,
    /// URL with query values removed.
    pub url: String,
    pub request_bytes: u64,
    /// Hex SHA-256 of the request body.
    pub request_sha256: String,
    pub credential_used: bool,
    pub decision: Decision,
    /// What the call wants on record about this request, as a JSON object
    /// (e.g. how many values of each kind redaction replaced); never a
    /// secret or a redacted value.
    pub detail: Option<String>,
}

/// How a recorded request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressOutcome {
    pub status: Option<u16>,
    pub response_bytes: u64,
    pub duration: Duration,
    pub error: Option<String>,
}

/// Handle to a record awaiting its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId(pub u64);

#[derive(Debug, thiserror::Error)]
#[error("audit log write failed: {0}")]
pub struct AuditError(pub String);

/// Where egress records go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Append a record; it must be committed (durable against a crash of the
    /// process) when the future resolves.
    fn begin<'a>(&'a self, record: &'a EgressRecord)
    -> BoxFuture<'a, Result<RecordId, AuditError>>;
    /// Complete a record. Failures here are logged, not fatal: the request
    /// has already been recorded as sent.
    fn finish(&self, id: RecordId, outcome: &EgressOutcome);
}

/// Records kept in memory.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<(EgressRecord, Option<EgressOutcome>)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryAudit {
    pub fn new() -> Self {
        Self::default()
    }

    /// All records so far, with their outcomes when complete.
    pub fn records(&self) -> Vec<(EgressRecord, Option<EgressOutcome>)> {
        self.records.lock().unwrap().clone()
    }

    /// Make every further `begin` fail, as a full disk would.
    pub fn fail_writes(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AuditSink for MemoryAudit {
    fn begin<'a>(
        &'a self,
        record: &'a EgressRecord,
    ) -> BoxFuture<'a, Result<RecordId, AuditError>> {
        let result = if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(AuditError("memory audit is set to fail".into()))
        } else {
            let mut records = self.records.lock().unwrap();
            records.push((record.clone(), None));
            Ok(RecordId(records.len() as u64 - 1))
        };
        Box::pin(std::future::ready(result))
    }

    fn finish(&self, id: RecordId, outcome: &EgressOutcome) {
        if let Some(slot) = self.records.lock().unwrap().get_mut(id.0 as usize) {
            slot.1 = Some(outcome.clone());
        }
    }
}
