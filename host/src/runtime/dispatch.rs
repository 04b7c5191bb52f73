//! Calling any exported operation by name with JSON in and out: what
//! `airlock call` and the management API's invoke route use.
//!
//! Inputs are the WIT records as JSON with snake_case field names (absent
//! optional fields are `null`); single-argument operations take an object
//! naming the argument, e.g. `{"id": "INC0010001"}` for `tickets.get`.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Runtime;
use super::invoke::CallError;
use super::plugin::Plugin;
use crate::connection::Connection;

/// Every operation `invoke_json` knows, as `interface.operation`.
pub const OPERATIONS: &[&str] = &[
    "connector.test-connection",
    "documents.list-spaces",
    "documents.search-pages",
    "documents.get-page",
    "documents.publish-page",
    "documents.update-page",
    "tickets.search",
    "tickets.create",
    "tickets.get",
    "tickets.update",
    "sync.fetch-page",
    "chat.complete",
    "chat.list-models",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: u32,
}

fn input<T: DeserializeOwned>(operation: &str, value: Value) -> Result<T, CallError> {
    // `null` stands for "no input" where the operation takes a record with
    // only optional fields.
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    };
    serde_json::from_value(value).map_err(|e| CallError::BadInput {
        operation: operation.to_string(),
        message: e.to_string(),
    })
}

fn output<T: serde::Serialize>(value: T) -> Result<Value, CallError> {
    Ok(serde_json::to_value(value).expect("WIT records serialize to JSON"))
}

impl Runtime {
    /// Run `operation` (`interface.operation`, as in [`OPERATIONS`]) with a
    /// JSON input and return its result as JSON.
    pub async fn invoke_json(
        &self,
        plugin: &Plugin,
        connection: &Connection,
        operation: &str,
        value: Value,
    ) -> Result<Value, CallError> {
        let (p, c) = (plugin, connection);
        match operation {
            "connector.test-connection" => output(self.test_connection(p, c).await?),
            "documents.list-spaces" => {
                let Limit { limit } = input(operation, value)?;
                output(self.list_spaces(p, c, limit).await?)
            }
            "documents.search-pages" => {
                output(self.search_pages(p, c, input(operation, value)?).await?)
            }
            "documents.get-page" => {
                let Id { id } = input(operation, value)?;
                output(self.get_page(p, c, id).await?)
            }
            "documents.publish-page" => {
                output(self.publish_page(p, c, input(operation, value)?).await?)
            }
            "documents.update-page" => {
                output(self.update_page(p, c, input(operation, value)?).await?)
            }
            "tickets.search" => output(self.search_tickets(p, c, input(operation, value)?).await?),
            "tickets.create" => output(self.create_ticket(p, c, input(operation, value)?).await?),
            "tickets.get" => {
                let Id { id } = input(operation, value)?;
                output(self.get_ticket(p, c, id).await?)
            }
            "tickets.update" => output(self.update_ticket(p, c, input(operation, value)?).await?),
            "sync.fetch-page" => output(self.fetch_page(p, c, input(operation, value)?).await?),
            "chat.complete" => output(self.complete(p, c, input(operation, value)?).await?),
            "chat.list-models" => output(self.list_models(p, c).await?),
            other => Err(CallError::UnknownOperation {
                operation: other.to_string(),
                known: OPERATIONS.join(", "),
            }),
        }
    }
}
