//! The JSON contract of the operations: what `airlock call --input`, the
//! management API's invoke route and [`Runtime::invoke_json`] take and give.
//!
//! The WIT records are mirrored here instead of serialising the `bindgen!`
//! types, because generated types cannot carry serde attributes and their
//! derived JSON spelled enum cases as Rust names (`"P1"`, `"User"`). The
//! contract:
//!
//! * record fields are the WIT's field names in snake_case (`native_query`,
//!   `page_size`), the spelling the README has always documented;
//! * enum cases are the WIT's own names (`p1`, `markdown`, `user`); a test
//!   holds every mirrored enum to `wit/`, so the two cannot drift;
//! * `fields` (a WIT `string` holding a JSON object in `ticket`,
//!   `new-ticket` and `ticket-update`) is a JSON object both ways. A plugin
//!   that answers with something other than an object there (a plugin bug)
//!   has its string passed through unchanged as a JSON string, so nothing
//!   is lost and a client can tell by the type;
//! * other JSON-in-a-string fields (`sync-record.data`) stay strings, as
//!   the WIT declares them;
//! * optional fields may be absent or `null` on input and are `null` on
//!   output; unknown input fields are refused, and every input error names
//!   the field path (`messages[0].role: unknown variant ...`).
//!
//! Conversions to and from the generated types destructure every field, so
//! a field added to the WIT fails to compile here until it is mirrored.
//! [`operation_schemas`](super::operation_schemas) gives each operation's input and output as JSON
//! Schemas for API documents.
//!
//! [`Runtime::invoke_json`]: super::Runtime::invoke_json

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bindings::types;
use super::invoke::CallError;

/// One example input per operation, in [`OPERATIONS`](super::OPERATIONS)
/// order, for `airlock call --help` and README.md's table (tests hold the
/// three together and decode each example).
pub const EXAMPLES: &[(&str, &str)] = &[
    ("connector.test-connection", "{}"),
    ("documents.list-spaces", r#"{"limit": 25}"#),
    (
        "documents.search-pages",
        r#"{"cql": null, "text": "runbook", "space_key": "OPS", "limit": 10}"#,
    ),
    ("documents.get-page", r#"{"id": "65601"}"#),
    (
        "documents.publish-page",
        r#"{"space_key": "OPS", "title": "Runbook", "body": {"format": "markdown", "content": "*Restart* the gateway"}, "parent_id": null}"#,
    ),
    (
        "documents.update-page",
        r#"{"id": "65601", "title": null, "body": {"format": "storage", "content": "<p>Done</p>"}, "version": 3}"#,
    ),
    (
        "tickets.search",
        r#"{"text": "VPN", "native_query": null, "limit": 20}"#,
    ),
    (
        "tickets.create",
        r#"{"title": "VPN down", "description": "Since 9:00", "kind": null, "priority": "p1", "fields": {"category": "network"}}"#,
    ),
    ("tickets.get", r#"{"id": "INC0010001"}"#),
    (
        "tickets.update",
        r#"{"id": "INC0010001", "state": "2", "priority": "p2", "fields": {"work_notes": "Restarted the gateway"}}"#,
    ),
    ("sync.fetch-page", r#"{"cursor": null, "page_size": 100}"#),
    (
        "chat.complete",
        r#"{"model": null, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarise INC0010001"}], "max_tokens": 200}"#,
    ),
    ("chat.list-models", "{}"),
];

/// A generated type read from its JSON form.
pub(crate) trait FromJson: Sized {
    /// The mirror type the JSON is decoded into.
    type Json: DeserializeOwned + JsonSchema;
    /// The generated value.
    fn from_json(json: Self::Json) -> Self;
}

/// A generated type written in its JSON form.
pub(crate) trait ToJson {
    /// The mirror type the JSON is encoded from.
    type Json: Serialize + JsonSchema;
    /// The mirror value.
    fn to_json(self) -> Self::Json;
}

impl<T: ToJson> ToJson for Vec<T> {
    type Json = Vec<T::Json>;
    fn to_json(self) -> Self::Json {
        self.into_iter().map(ToJson::to_json).collect()
    }
}

/// Decode `operation`'s input as `T`, naming the field path on failure.
/// `null` stands for an empty object, so operations without arguments
/// accept both.
pub fn input<T: DeserializeOwned>(operation: &str, value: Value) -> Result<T, CallError> {
    let value = if value.is_null() {
        Value::Object(Map::new())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|e| CallError::BadInput {
        operation: operation.to_string(),
        message: e.to_string(),
    })
}

/// `value` in its JSON form.
pub(crate) fn output<T: ToJson>(value: T) -> Value {
    // Mirror types hold strings, integers, booleans and JSON maps only
    // (floats are input-only), so encoding cannot fail.
    serde_json::to_value(value.to_json()).expect("mirror types serialize to JSON")
}

/// An enum mirrored with the WIT's case names, both conversions and every
/// case (for the spelling test).
macro_rules! mirror_enum {
    (
        $(#[$doc:meta])*
        $name:ident { $($case:ident),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $(
                #[allow(missing_docs)]
                $case,
            )+
        }

        impl $name {
            /// Every case, in WIT order.
            pub const ALL: &[$name] = &[$($name::$case),+];
        }

        impl From<$name> for types::$name {
            fn from(v: $name) -> Self {
                match v { $($name::$case => Self::$case),+ }
            }
        }

        impl From<types::$name> for $name {
            fn from(v: types::$name) -> Self {
                match v { $(types::$name::$case => Self::$case),+ }
            }
        }
    };
}

/// The conversion between a mirror record and its generated type, field by
/// field: a bare field moves as is, `field: f` goes through `f`. Both
/// sides are written out in full, so a field missing on either side is a
/// compile error.
macro_rules! convert {
    (input $json:ident { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        impl FromJson for types::$json {
            type Json = $json;
            fn from_json(json: $json) -> Self {
                let $json { $($field),* } = json;
                Self { $($field: convert!(@field $field $(, $how)?)),* }
            }
        }
    };
    (output $json:ident { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        impl ToJson for types::$json {
            type Json = $json;
            fn to_json(self) -> $json {
                let Self { $($field),* } = self;
                $json { $($field: convert!(@field $field $(, $how)?)),* }
            }
        }
    };
    (@field $value:ident) => {
        $value
    };
    (@field $value:ident, $how:ident) => {
        $how($value)
    };
}

fn conv<A: Into<B>, B>(a: A) -> B {
    a.into()
}

fn opt<A: Into<B>, B>(a: Option<A>) -> Option<B> {
    a.map(Into::into)
}

fn list<A, B>(a: Vec<A>, f: impl Fn(A) -> B) -> Vec<B> {
    a.into_iter().map(f).collect()
}

fn wit_messages(m: Vec<ChatMessage>) -> Vec<types::ChatMessage> {
    list(m, types::ChatMessage::from_json)
}

fn json_records(r: Vec<types::SyncRecord>) -> Vec<SyncRecord> {
    list(r, ToJson::to_json)
}

fn json_usage(u: Option<types::TokenUsage>) -> Option<TokenUsage> {
    u.map(ToJson::to_json)
}

fn wit_page_body(b: PageBody) -> types::PageBody {
    types::PageBody::from_json(b)
}

/// Input `fields`: the object as the JSON text the WIT carries.
fn fields_in(fields: Option<Map<String, Value>>) -> Option<String> {
    fields.map(|f| Value::Object(f).to_string())
}

/// Output `fields`: the plugin's JSON text as an object when it is one.
fn fields_out(fields: String) -> Fields {
    match serde_json::from_str::<Map<String, Value>>(&fields) {
        Ok(object) => Fields::Object(object),
        Err(_) => Fields::Raw(fields),
    }
}

// ---- enums -----------------------------------------------------------------

mirror_enum! {
    /// How a page body supplied by the caller is written.
    BodyFormat { Storage, Markdown }
}

mirror_enum! {
    /// Ticket priority as the caller states it; each plugin maps it onto its
    /// service.
    Priority { P1, P2, P3, P4 }
}

mirror_enum! {
    /// Who wrote a chat message.
    Role { System, User, Assistant }
}

// ---- argument wrappers -------------------------------------------------------

/// The input of an operation without arguments: nothing, `null` or `{}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// The input of an operation whose one argument is an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Id {
    /// Stable id, or a human number where the service has one.
    pub id: String,
}

/// The input of an operation whose one argument is a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// At most this many results.
    pub limit: u32,
}

// ---- inputs ------------------------------------------------------------------

/// `documents.search-pages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// A CQL expression; when absent, `text` is searched.
    pub cql: Option<String>,
    /// Free text to search for.
    pub text: Option<String>,
    /// Restrict to one space.
    pub space_key: Option<String>,
    /// At most this many hits.
    pub limit: u32,
}
convert!(input PageQuery { cql, text, space_key, limit });

/// A page body and the format it is written in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageBody {
    /// `storage` (Confluence XHTML) or `markdown`.
    pub format: BodyFormat,
    /// The body.
    pub content: String,
}
convert!(input PageBody { format: conv, content });

/// `documents.publish-page`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPage {
    /// The space to create the page in.
    pub space_key: String,
    /// The page title.
    pub title: String,
    /// The page body.
    pub body: PageBody,
    /// The parent page, if any.
    pub parent_id: Option<String>,
}
convert!(input NewPage { space_key, title, body: wit_page_body, parent_id });

/// `documents.update-page`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageUpdate {
    /// The page id.
    pub id: String,
    /// New title; the current one is kept when absent.
    pub title: Option<String>,
    /// The new body.
    pub body: PageBody,
    /// The version being replaced; the plugin reads the current one when
    /// absent.
    pub version: Option<u32>,
}
convert!(input PageUpdate { id, title, body: wit_page_body, version });

/// `tickets.search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketQuery {
    /// Free text matched against the title.
    pub text: Option<String>,
    /// A query in the service's own language (encoded query, WIQL).
    pub native_query: Option<String>,
    /// At most this many tickets (the plugin picks a default for 0).
    pub limit: u32,
}
convert!(input TicketQuery { text, native_query, limit });

/// `tickets.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    /// The title (short description).
    pub title: String,
    /// The description.
    pub description: Option<String>,
    /// Service kind, e.g. `Bug`; the plugin's default when absent.
    pub kind: Option<String>,
    /// `p1` .. `p4`.
    pub priority: Option<Priority>,
    /// Extra service fields to set.
    pub fields: Option<Map<String, Value>>,
}
convert!(input NewTicket {
    title, description, kind, priority: opt, fields: fields_in,
});

/// `tickets.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketUpdate {
    /// Stable id or human number.
    pub id: String,
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New state, in the service's words.
    pub state: Option<String>,
    /// `p1` .. `p4`.
    pub priority: Option<Priority>,
    /// Service fields to set.
    pub fields: Option<Map<String, Value>>,
}
convert!(input TicketUpdate {
    id, title, description, state, priority: opt, fields: fields_in,
});

/// `sync.fetch-page`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The cursor of an earlier page; absent for a full sync.
    pub cursor: Option<String>,
    /// Records wanted in this page.
    pub page_size: u32,
}
convert!(input SyncRequest { cursor, page_size });

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// The text.
    pub content: String,
}
convert!(input ChatMessage { role: conv, content });

/// `chat.complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Model to use; the connection's configured model when absent.
    pub model: Option<String>,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// The host's conversation id.
    pub conversation_id: Option<String>,
}
convert!(input ChatRequest {
    model, messages: wit_messages, temperature, max_tokens, conversation_id,
});

// ---- outputs -----------------------------------------------------------------

/// `connector.test-connection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionReport {
    /// Who the credential authenticates as, when the service says.
    pub account: Option<String>,
    /// What was checked and what came back.
    pub message: String,
    /// Further facts, as `[name, value]` pairs.
    pub details: Vec<(String, String)>,
}
convert!(output ConnectionReport { account, message, details });

/// A space or equivalent container of documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Space {
    /// The space key.
    pub key: String,
    /// The space name.
    pub name: String,
    /// The service's id.
    pub id: Option<String>,
    /// Service-specific kind, e.g. `global` or `personal`.
    pub kind: Option<String>,
    /// Where a person sees it.
    pub url: Option<String>,
}
convert!(output Space { key, name, id, kind, url });

/// A search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PageSummary {
    /// The page id.
    pub id: String,
    /// The title.
    pub title: String,
    /// The page's space.
    pub space_key: Option<String>,
    /// The current version.
    pub version: Option<u32>,
    /// Where a person sees it.
    pub url: Option<String>,
    /// The matching text.
    pub excerpt: Option<String>,
}
convert!(output PageSummary { id, title, space_key, version, url, excerpt });

/// A whole page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Page {
    /// The page id.
    pub id: String,
    /// The title.
    pub title: String,
    /// The page's space.
    pub space_key: Option<String>,
    /// The current version.
    pub version: u32,
    /// The parent page.
    pub parent_id: Option<String>,
    /// Body in Confluence storage format (XHTML).
    pub body: String,
    /// Where a person sees it.
    pub url: Option<String>,
}
convert!(output Page { id, title, space_key, version, parent_id, body, url });

/// A ticket's remaining service fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Fields {
    /// The JSON object the plugin returned.
    Object(Map<String, Value>),
    /// The plugin's text, unchanged, when it is not a JSON object.
    Raw(String),
}

/// A ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// The service's stable id (`sys_id`, work item id).
    pub id: String,
    /// The human number when the service has one (`INC0010001`).
    pub number: Option<String>,
    /// The title.
    pub title: String,
    /// The description.
    pub description: Option<String>,
    /// Service kind: `incident`, `Bug`, `Task`...
    pub kind: Option<String>,
    /// State, in the service's words.
    pub state: Option<String>,
    /// `p1` .. `p4`.
    pub priority: Option<Priority>,
    /// Where a person sees it.
    pub url: Option<String>,
    /// When it was created, as the service writes it.
    pub created_at: Option<String>,
    /// When it last changed, as the service writes it.
    pub updated_at: Option<String>,
    /// The service's remaining fields.
    pub fields: Fields,
}
convert!(output Ticket {
    id, number, title, description, kind, state, priority: opt, url, created_at, updated_at,
    fields: fields_out,
});

/// One synced record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncRecord {
    /// The record's id.
    pub id: String,
    /// What kind of record (`page`, `incident`, `work-item`).
    pub kind: String,
    /// When it last changed.
    pub updated_at: Option<String>,
    /// The record as a JSON document, in a string (as the WIT carries it).
    pub data: String,
}
convert!(output SyncRecord { id, kind, updated_at, data });

/// `sync.fetch-page`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncPage {
    /// The records of this page.
    pub records: Vec<SyncRecord>,
    /// The cursor to pass back for the next page.
    pub next_cursor: Option<String>,
    /// True when another page is available now.
    pub has_more: bool,
}
convert!(output SyncPage { records: json_records, next_cursor, has_more });

/// Token counts of a chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenUsage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// Both.
    pub total_tokens: u32,
}
convert!(output TokenUsage { prompt_tokens, completion_tokens, total_tokens });

/// `chat.complete`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatResponse {
    /// The answer.
    pub content: String,
    /// The model that answered.
    pub model: Option<String>,
    /// Why the answer ended.
    pub finish_reason: Option<String>,
    /// Token counts, when the service says.
    pub usage: Option<TokenUsage>,
}
convert!(output ChatResponse {
    content, model, finish_reason, usage: json_usage,
});

/// A model the connection offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    /// The model id.
    pub id: String,
    /// Its owner, when the service says.
    pub owned_by: Option<String>,
}
convert!(output ModelInfo { id, owned_by });

// ---- schemas -----------------------------------------------------------------

/// One operation's JSON contract as JSON Schemas (draft 2020-12, the
/// dialect of OpenAPI 3.1). Each schema is self-contained (no `$ref`), so
/// it can be placed anywhere in an API document.
#[derive(Debug, Clone)]
pub struct OperationSchema {
    /// `interface.operation`, as in [`OPERATIONS`](super::OPERATIONS).
    pub operation: &'static str,
    /// What the operation takes.
    pub input: schemars::Schema,
    /// What it answers.
    pub output: schemars::Schema,
}

impl OperationSchema {
    /// The schemas of `I` (as decoded) and `O` (as encoded).
    pub(crate) fn of<I: JsonSchema, O: JsonSchema>(operation: &'static str) -> Self {
        let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
            s.inline_subschemas = true;
        });
        Self {
            operation,
            input: settings
                .clone()
                .for_deserialize()
                .into_generator()
                .into_root_schema_for::<I>(),
            output: settings
                .for_serialize()
                .into_generator()
                .into_root_schema_for::<O>(),
        }
    }
}

#[cfg(test)]
mod tests;
