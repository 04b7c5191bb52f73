//! Calling a connection's plugin by operation name: the library call behind
//! `airlock call` and the API's invoke route.

use serde_json::Value;

use super::{Airlock, ServiceError};

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
        let record = self.connection(connection)?;
        let (plugin, mut conn) = self.prepare_call(&record, project)?;
        // Chat sends are redacted here too, like `Airlock::chat`.
        let input = if operation == "chat.complete" {
            let (input, detail) = self.redact_call_input(&record, input)?;
            conn.audit_detail = Some(detail);
            input
        } else {
            input
        };
        Ok(self
            .runtime
            .invoke_json(&plugin, &conn, operation, input)
            .await?)
    }
}
