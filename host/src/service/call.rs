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
        let (plugin, conn) = self.prepare_call(&record, project)?;
        Ok(self
            .runtime
            .invoke_json(&plugin, &conn, operation, input)
            .await?)
    }
}
