//! The audit hook the egress path writes through: a record is appended before
//! a request leaves (or when it is denied) and completed after.
//!
//! If [`AuditSink::begin`] fails the request is not sent. [`MemoryAudit`]
//! keeps records in memory for tests and embedders that ship them elsewhere.

pub mod chain;
pub mod file;
pub mod query;
pub mod writer;

pub use chain::{Anchor, ChainProblem, GENESIS_HASH, VerifyReport, verify, verify_anchored};
pub use file::AUDIT_FILE;
pub use query::{AuditEntry, AuditFilter, AuditOutcome, DecisionKind, EventEntry, events, list};
pub use writer::{AUDIT_LOCK, AuditDurability, AuditLog};

use std::sync::Mutex;

use futures::future::BoxFuture;
use std::time::{Duration, SystemTime};

/// What the host decided about an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request passed every check and is sent.
    Allowed,
    /// The host refused the request and nothing was sent; the text says why
    /// (stored as the row's `reason`).
    Denied(String),
}

/// One outbound request as recorded before it leaves.
#[derive(Debug, Clone)]
pub struct EgressRecord {
    /// When the request was decided (stored as RFC 3339 UTC, microseconds).
    pub time: SystemTime,
    /// The plugin that made the request (its manifest `id`).
    pub plugin_id: String,
    /// The plugin's version (manifest `version`) at the time.
    pub plugin_version: String,
    /// The connection the call ran on: its stable id, not its name.
    pub connection_id: String,
    /// The project the call was resolved for, if any.
    pub project: Option<String>,
    /// The HTTP method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// URL with query values removed.
    pub url: String,
    /// Size of the request body as sent, in bytes; 0 for a denied request.
    pub request_bytes: u64,
    /// Hex SHA-256 of the request body; empty for a denied request.
    pub request_sha256: String,
    /// Whether the host added the connection's credential to the request.
    pub credential_used: bool,
    /// Whether the request is sent or was refused (and why).
    pub decision: Decision,
    /// What the call wants on record about this request, as a JSON object
    /// (e.g. how many values of each kind redaction replaced); never a
    /// secret or a redacted value.
    pub detail: Option<String>,
}

/// A change an operator made that the log keeps in its chain beside the
/// requests (stored as an `event` row): today, a connection's credential
/// replaced in place. Never carries a secret.
#[derive(Debug, Clone)]
pub struct OperatorEvent {
    /// When it happened.
    pub time: SystemTime,
    /// Who did it, as the surface knows them (`cli:<user>`, `token:<name>`).
    pub actor: String,
    /// The plugin of the connection concerned.
    pub plugin_id: String,
    /// The connection concerned: its stable id.
    pub connection_id: String,
    /// What was done, kebab-case (`credential-replaced`).
    pub action: &'static str,
    /// Non-secret facts, as a JSON object (e.g. the vault fields replaced).
    pub detail: serde_json::Value,
}

/// How a recorded request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressOutcome {
    /// HTTP status of the answer; `None` when none came (refused, connect
    /// failure, timeout).
    pub status: Option<u16>,
    /// Response body bytes the plugin read; 0 when the body was not read to
    /// the end.
    pub response_bytes: u64,
    /// From the commit of the request's record until its answer ended
    /// (read, failed or dropped); zero for a denied request.
    pub duration: Duration,
    /// Why the request failed, was refused or was cut short; `None` when it
    /// completed.
    pub error: Option<String>,
}

/// Handle to a record awaiting its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId(pub u64);

/// The audit log could not be written or read, or a filter value did not
/// parse; the text says why. When [`AuditSink::begin`] fails this way the
/// request is not sent.
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
    /// An empty log whose writes succeed.
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
