//! The per-call context every stage shares: the call's connection, grants,
//! limits and tracker, how a refusal is recorded, and the types the stages
//! pass between them. The stages (`admit`, `wire`, `response`) and the hook
//! that runs them (`send`) all build on this; it imports none of them.

use std::future::Future;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderName, Response};
use wasmtime_wasi_http::WasiBody;

use crate::audit::{AuditSink, Decision, EgressOutcome, EgressRecord};
use crate::connection::Connection;
use crate::limits::Limits;
use crate::net::{EgressRule, HttpClient, Origin};

pub(super) type HttpError = wasmtime_wasi_http::Error;
pub(super) type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
pub(super) type SendResult = Result<(Response<WasiBody>, IoFuture), HttpError>;

/// Shared by every call: the pooled client, the audit sink, and the origins
/// the operator lets receive a credential over plain http.
#[derive(Debug, Clone)]
pub struct EgressShared {
    pub client: HttpClient,
    pub audit: Arc<dyn AuditSink>,
    pub cleartext_origins: Arc<Vec<Origin>>,
}

/// What happened on the wire during one call, for the caller's error message.
#[derive(Debug, Default)]
pub struct CallTracker {
    /// Outbound requests attempted so far, allowed or not: the request budget.
    pub(super) sent: AtomicU32,
    denials: Mutex<Vec<String>>,
}

impl CallTracker {
    /// Why requests of this call were refused, in order.
    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().unwrap().clone()
    }

    pub(super) fn deny(&self, reason: String) {
        tracing::warn!(target: "airlock::egress", "{reason}");
        self.denials.lock().unwrap().push(reason);
    }
}

#[derive(Debug)]
pub(super) struct CallInner {
    pub(super) shared: EgressShared,
    pub(super) plugin_id: String,
    pub(super) plugin_version: String,
    pub(super) connection: Arc<Connection>,
    pub(super) grants: Vec<EgressRule>,
    pub(super) limits: Limits,
    pub(super) tracker: Arc<CallTracker>,
    /// Headers the guest may not set: wasi-http's own list, every credential
    /// header, and the connection's custom credential header.
    pub(super) forbidden: Vec<HeaderName>,
    /// When the call's wall-clock deadline passes: a retry must fit before it.
    pub(super) deadline: Instant,
}

/// Why a request was refused before it left, and the error the guest gets.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) reason: String,
    pub(super) code: HttpError,
}

/// Bytes of a header section as both caps count them: names plus values.
pub(super) fn header_section_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

impl CallInner {
    pub(super) fn who(&self) -> String {
        format!(
            "plugin `{}` (connection `{}`)",
            self.plugin_id, self.connection.name
        )
    }

    pub(super) fn record(
        &self,
        method: &http::Method,
        url: String,
        decision: Decision,
    ) -> EgressRecord {
        EgressRecord {
            time: SystemTime::now(),
            plugin_id: self.plugin_id.clone(),
            plugin_version: self.plugin_version.clone(),
            connection_id: self.connection.id.clone(),
            project: self.connection.project.clone(),
            method: method.to_string(),
            url,
            request_bytes: 0,
            request_sha256: String::new(),
            credential_used: false,
            decision,
            detail: self.connection.audit_detail.clone(),
        }
    }

    /// Refuse a request: record it in the audit log and the call tracker.
    /// The refusal stands even when the audit write fails: nothing is sent.
    pub(super) async fn deny(
        &self,
        method: &http::Method,
        url: String,
        refusal: Refusal,
    ) -> HttpError {
        let Refusal { reason, code } = refusal;
        let record = self.record(method, url, Decision::Denied(reason.clone()));
        if let Ok(id) = self.shared.audit.begin(&record).await {
            self.shared.audit.finish(
                id,
                &EgressOutcome {
                    status: None,
                    response_bytes: 0,
                    duration: Default::default(),
                    error: Some(reason.clone()),
                },
            );
        }
        self.tracker.deny(reason);
        code
    }

    /// Whether the guest may not set `name`; every attempt is denied in the
    /// audit log (written in the background: the hook that asks is
    /// synchronous) and in the call's tracker. Answers have had these names
    /// stripped before wasi-http looks at them, so only the guest's own
    /// attempts get here.
    pub(super) fn refuse_header(self: &Arc<Self>, name: &HeaderName) -> bool {
        if !self.forbidden.contains(name) {
            return false;
        }
        let reason = format!("{} tried to set the forbidden header `{name}`", self.who());
        self.tracker.deny(reason.clone());
        // No request exists yet: the row names what was refused instead.
        let mut record = self.record(
            &http::Method::GET,
            format!("(header `{name}`)"),
            Decision::Denied(reason.clone()),
        );
        record.method = "-".into();
        let audit = self.shared.audit.clone();
        let write = async move {
            if let Ok(id) = audit.begin(&record).await {
                let outcome = EgressOutcome {
                    status: None,
                    response_bytes: 0,
                    duration: Default::default(),
                    error: Some(reason),
                };
                audit.finish(id, &outcome);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(write)),
            Err(_) => {
                tracing::warn!(target: "airlock::egress", "no runtime to record a refused header")
            }
        }
        true
    }

    /// A failure of the host's own machinery (audit log, credential store):
    /// the caller hears why; there is no request to record as denied.
    pub(super) fn internal_failure(&self, reason: String) -> HttpError {
        self.tracker.deny(reason.clone());
        HttpError::InternalError(Some(reason))
    }
}
