//! Calling a connection's plugin by operation name: the library call behind
//! `airlock call` and the API's invoke route. Every call through here is
//! counted in [`crate::metrics`].

use std::time::Instant;

use serde_json::Value;

use super::{Airlock, ServiceError};
use crate::metrics::CallOutcome;
use crate::store::connections::ConnectionRecord;

impl Airlock {
    /// Run `operation` (`interface.operation`, e.g. `tickets.create`) of the
    /// connection's plugin with a JSON input, for `project` when given.
    pub async fn call(
        &self,
        connection: &str,
        operation: &str,
        input: Value,
        project: Option<&str>,
    ) -> Result<Value, ServiceError> {
        let (record, installed) = self.call_records(connection)?;
        let started = Instant::now();
        let result = async {
            let (plugin, mut conn) = self.prepare_installed(&record, &installed, project)?;
            // Chat sends are redacted here too, like `Airlock::chat`.
            let input = if operation == "chat.complete" {
                let (input, detail) = self.redact_call_input(&record, input)?;
                conn.audit_detail = Some(detail);
                input
            } else {
                input
            };
            Ok::<_, ServiceError>(
                self.runtime
                    .invoke_json(&plugin, &conn, operation, input)
                    .await?,
            )
        }
        .await;
        self.record_call(&record, started, &result);
        result
    }

    /// Count a finished call of `record`'s plugin.
    pub(crate) fn record_call<T>(
        &self,
        record: &ConnectionRecord,
        started: Instant,
        result: &Result<T, ServiceError>,
    ) {
        let outcome = match result {
            Ok(_) => CallOutcome::Ok,
            Err(ServiceError::Call(crate::runtime::CallError::Plugin { denials, .. })) => {
                CallOutcome::Error {
                    egress_denials: denials.len(),
                }
            }
            Err(_) => CallOutcome::Error { egress_denials: 0 },
        };
        self.metrics
            .record_call(&record.plugin_id, &record.name, started.elapsed(), outcome);
    }
}
