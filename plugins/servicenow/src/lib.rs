//! airlock connector for ServiceNow incidents, over the Table API
//! (`/api/now/table/{table}`).
//!
//! Runs as a sandboxed component (world `tickets`: exports `connector`,
//! `tickets` and `sync`). The host injects the credential (basic user +
//! password, a bearer token, or an OAuth 2.0 token it obtained from the
//! instance's `oauth_auth.do` / `oauth_token.do`); this plugin never sees a
//! secret and never sets `Authorization`.
//!
//! # Settings
//!
//! | setting    | required | meaning                                                   |
//! |------------|----------|-----------------------------------------------------------|
//! | `base-url` | yes      | the instance, e.g. `https://acme.service-now.com`         |
//! | `table`    | no       | the table tickets live in; `incident` when absent         |
//!
//! # Operations
//!
//! | operation           | request                                                                 |
//! |---------------------|-------------------------------------------------------------------------|
//! | `test-connection`   | `GET /api/now/table/sys_user?sysparm_query=sys_id=javascript:gs.getUserID()` (who the credential is), then `GET /api/now/table/{table}?sysparm_limit=1` (the table is readable) |
//! | `tickets.search`    | `GET /api/now/table/{table}?sysparm_query=...&sysparm_limit=...`        |
//! | `tickets.create`    | `POST /api/now/table/{table}` with a JSON body                          |
//! | `tickets.get`       | `GET /api/now/table/{table}/{sys_id}`, or by number `GET /api/now/table/{table}?sysparm_query=number=INC0010001&sysparm_limit=1` |
//! | `tickets.update`    | `PATCH /api/now/table/{table}/{sys_id}` (a number is looked up first)   |
//! | `sync.fetch-page`   | `GET /api/now/table/{table}?sysparm_query=[sys_updated_on>=T^sys_updated_on>T^ORsys_id>ID^]ORDERBYsys_updated_on^ORDERBYsys_id&sysparm_limit=...` |
//!
//! Every call asks for raw values with reference links excluded
//! (`sysparm_exclude_reference_link=true`), so each field of a record is a
//! plain string (a reference is the target's `sys_id`).
//!
//! Query parameters are percent-encoded as UTF-8 with only RFC 3986
//! unreserved characters left as they are, so `^`, `=`, `&`, `#`, `+`,
//! spaces and non-ASCII text reach the instance unchanged (see
//! `encode.rs`).
//!
//! ## Search
//!
//! `ticket-query.text` becomes `short_descriptionLIKE<text>` (a `^` in the
//! text is doubled, ServiceNow's escape, so it cannot start another
//! condition), newest first (`^ORDERBYDESCsys_updated_on`).
//! `native-query` is an encoded query passed through as written; with both,
//! the result is `<native-query>^short_descriptionLIKE<text>` (note that
//! `^NQ` in the native query makes the text apply to its last group only).
//! Neither lists the newest tickets. `limit` 0 means 10; at most 100 are
//! returned.
//!
//! ## Priority mapping (P1–P4)
//!
//! ServiceNow derives an incident's priority from urgency and impact
//! (default lookup: priority = urgency + impact − 1). The plugin sets
//! urgency and impact so that the computed priority equals the P number:
//!
//! | airlock | urgency    | impact     | ServiceNow priority |
//! |---------|------------|------------|---------------------|
//! | P1      | 1 (High)   | 1 (High)   | 1 – Critical        |
//! | P2      | 1 (High)   | 2 (Medium) | 2 – High            |
//! | P3      | 2 (Medium) | 2 (Medium) | 3 – Moderate        |
//! | P4      | 3 (Low)    | 2 (Medium) | 4 – Low             |
//!
//! Reading a record, `priority` 1–4 maps to P1–P4 and 5 (Planning) to P4;
//! without a `priority` field it is computed from urgency and impact.
//!
//! ## Create and update
//!
//! `title` → `short_description`, `description` → `description`,
//! `priority` → `urgency` + `impact` (table above), `state` → `state`
//! (a state value such as `2`, or on the incident table one of the labels
//! New, In Progress, On Hold, Resolved, Closed, Canceled), and `fields` (a
//! JSON object of field names to strings, numbers, booleans or null) is sent
//! as well. A `fields` entry that contradicts a typed value (`urgency` with
//! `priority`, `short_description` with `title`...) is refused rather than
//! silently overridden. `kind`, when given, must name the connection's table.
//!
//! Refused before anything is sent, as `invalid-input`:
//!
//! - an empty (or all-space) title;
//! - a title longer than **160** characters (ServiceNow's
//!   `short_description` limit, counted in UTF-16 units as the instance
//!   counts): a 100 KB title is refused, never truncated; put long text in
//!   the description;
//! - an id that is neither a `sys_id` (32 hex digits) nor a number made of
//!   letters, digits, `-` and `_` (so no id can inject query conditions);
//! - an update that changes nothing; malformed `fields`.
//!
//! ## Get and not found
//!
//! A 32-hex-digit id is a `sys_id`; anything else is a number, looked up
//! with `number=<id>`. No record is `not-found` naming the id.
//!
//! ## Sync
//!
//! A delta sync by `sys_updated_on`; see [`sync`] for the cursor. No cursor
//! reads the whole table from the start; pages continue after the last
//! record's `(sys_updated_on, sys_id)`, so any number of records sharing one
//! second are all read, and the last page's cursor continues as a delta
//! (records after the newest seen). A page is 50 records unless
//! asked otherwise, at most 100. Records are whole ServiceNow records (raw
//! values, `kind` = the table, `updated-at` in RFC 3339).
//!
//! ## Errors
//!
//! Non-2xx answers become the SDK's typed errors (400 → `invalid-input`, 401
//! → `unauthorized`, 403 → `forbidden`, 404 → `not-found`, 409 → `conflict`,
//! 429 → `rate-limited` with `Retry-After`, others → `upstream`), with
//! ServiceNow's `error.message` and `error.detail` as the message. A body
//! that is not JSON (often an HTML login or hibernation page) is `upstream`
//! with the status; a JSON body without `result` likewise.
//!
//! Tickets carry the record's `sys_id` as `id`, `number`,
//! `short_description` as `title`, `description`, the raw `state`, the
//! mapped priority, `kind` = the table, a link to the record's form,
//! `sys_created_on` / `sys_updated_on` as RFC 3339 (`2026-11-20T10:15:00Z`;
//! the Table API's raw times are UTC), and every other field in `fields`.

mod api;
mod encode;
mod model;
pub mod sync;

use airlock_sdk::http::Request;
use airlock_sdk::types::{
    ConnectionReport, NewTicket, PluginError, SyncPage, SyncRecord, SyncRequest, Ticket,
    TicketQuery, TicketUpdate,
};
use airlock_sdk::{Connector, SyncSource, Tickets, host};
use serde_json::Value;

use api::Instance;
use encode::{Query, query_value};
use model::{Record, RecordRef};

/// Tickets returned by a search when the caller asks for 0.
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;
/// Most tickets one search returns.
pub const MAX_SEARCH_LIMIT: u32 = 100;

struct ServiceNow;

/// Raw values, references as plain `sys_id`s.
fn plain(query: Query) -> Query {
    query.set("sysparm_exclude_reference_link", "true")
}

impl Connector for ServiceNow {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let instance = Instance::from_settings()?;
        let mut details = vec![
            ("instance".to_string(), instance.base.clone()),
            ("table".to_string(), instance.table.clone()),
        ];

        // Who the credential is. A 401 ends the test; a user record the
        // account may not read (403, 400 from a locked-down instance) only
        // leaves the account unknown: the table check below decides.
        let me_query = Query::new()
            .set("sysparm_query", "sys_id=javascript:gs.getUserID()")
            .set("sysparm_fields", "sys_id,user_name,name,email")
            .set("sysparm_limit", "1");
        let me = match api::records(Request::get(
            instance.url("/api/now/table/sys_user", &me_query),
        )) {
            Ok(mut users) if !users.is_empty() => Some(users.swap_remove(0)),
            Ok(_) => None,
            Err(PluginError::Forbidden(why) | PluginError::InvalidInput(why)) => {
                host::info(&format!("cannot read the current user record: {why}"));
                None
            }
            Err(other) => return Err(other),
        };
        let account = me.as_ref().and_then(|user| {
            model::text(user, "user_name")
                .or_else(|| model::text(user, "email"))
                .or_else(|| model::text(user, "name"))
        });
        if let Some(user) = &me {
            for key in ["user_name", "name", "email", "sys_id"] {
                if let Some(value) = model::text(user, key) {
                    details.push((key.to_string(), value));
                }
            }
        }

        // The table itself: one record, one field.
        let table_query = Query::new()
            .set("sysparm_fields", "sys_id")
            .set("sysparm_limit", "1");
        api::records(Request::get(instance.table_url(None, &table_query))).map_err(
            |e| match e {
                PluginError::Forbidden(why) => PluginError::Forbidden(format!(
                    "the account cannot read table `{}`: {why}",
                    instance.table
                )),
                PluginError::InvalidInput(why) => PluginError::InvalidInput(format!(
                    "table `{}` is not usable: {why}",
                    instance.table
                )),
                other => other,
            },
        )?;

        let who = match (&account, me.as_ref().and_then(|u| model::text(u, "name"))) {
            (Some(account), Some(name)) if *account != name => format!("{account} ({name})"),
            (Some(account), _) => account.clone(),
            (None, _) => "an account the instance did not name".to_string(),
        };
        Ok(ConnectionReport {
            message: format!(
                "connected to {} as {who}; table `{}` is readable",
                instance.base, instance.table
            ),
            account,
            details,
        })
    }
}

impl Tickets for ServiceNow {
    fn search(query: TicketQuery) -> Result<Vec<Ticket>, PluginError> {
        let instance = Instance::from_settings()?;
        let limit = match query.limit {
            0 => DEFAULT_SEARCH_LIMIT,
            n => n.min(MAX_SEARCH_LIMIT),
        };
        let native = query
            .native_query
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty());
        let text = query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let mut conditions = Vec::new();
        if let Some(native) = native {
            conditions.push(native.to_string());
        }
        if let Some(text) = text {
            conditions.push(format!("short_descriptionLIKE{}", query_value(text)));
        }
        if native.is_none() {
            conditions.push("ORDERBYDESCsys_updated_on".to_string());
        }
        let params = plain(
            Query::new()
                .set("sysparm_query", conditions.join("^"))
                .set("sysparm_limit", limit.to_string()),
        );
        let records = api::records(Request::get(instance.table_url(None, &params)))?;
        records
            .into_iter()
            .take(limit as usize)
            .map(|record| model::ticket(record, &instance.base, &instance.table))
            .collect()
    }

    fn create(ticket: NewTicket) -> Result<Ticket, PluginError> {
        let instance = Instance::from_settings()?;
        let title = model::title(&ticket.title)?;
        if let Some(kind) = ticket.kind.as_deref().map(str::trim)
            && !kind.is_empty()
            && !kind.eq_ignore_ascii_case(&instance.table)
        {
            return Err(PluginError::InvalidInput(format!(
                "kind `{}` is not this connection's table `{}`: ServiceNow tickets of another \
                 kind live in another table (set the connection's `table` setting)",
                model::shorten(kind, 80),
                instance.table
            )));
        }
        let mut body = model::fields(ticket.fields.as_deref())?;
        model::put(&mut body, "short_description", &title, "title")?;
        if let Some(description) = &ticket.description {
            model::put(&mut body, "description", description, "description")?;
        }
        if let Some(priority) = ticket.priority {
            let (urgency, impact) = model::urgency_impact(priority);
            model::put(&mut body, "urgency", urgency, "priority")?;
            model::put(&mut body, "impact", impact, "priority")?;
        }
        let request = Request::post(instance.table_url(None, &plain(Query::new())))
            .json(&Value::Object(body));
        let record = api::record(request)?;
        model::ticket(record, &instance.base, &instance.table)
    }

    fn get(id: String) -> Result<Ticket, PluginError> {
        let instance = Instance::from_settings()?;
        let reference = RecordRef::parse(&id)?;
        let record = fetch(&instance, &reference)?;
        model::ticket(record, &instance.base, &instance.table)
    }

    fn update(update: TicketUpdate) -> Result<Ticket, PluginError> {
        let instance = Instance::from_settings()?;
        let reference = RecordRef::parse(&update.id)?;
        // Everything is checked before the first request.
        let mut body = model::fields(update.fields.as_deref())?;
        if let Some(title) = &update.title {
            let title = model::title(title)?;
            model::put(&mut body, "short_description", &title, "title")?;
        }
        if let Some(description) = &update.description {
            model::put(&mut body, "description", description, "description")?;
        }
        if let Some(state) = &update.state {
            let state = model::state_value(&instance.table, state)?;
            model::put(&mut body, "state", &state, "state")?;
        }
        if let Some(priority) = update.priority {
            let (urgency, impact) = model::urgency_impact(priority);
            model::put(&mut body, "urgency", urgency, "priority")?;
            model::put(&mut body, "impact", impact, "priority")?;
        }
        if body.is_empty() {
            return Err(PluginError::InvalidInput(
                "the update changes nothing: give a title, description, state, priority or fields"
                    .to_string(),
            ));
        }
        let sys_id = match &reference {
            RecordRef::SysId(sys_id) => sys_id.clone(),
            RecordRef::Number(number) => resolve_number(&instance, number)?,
        };
        let request = Request::patch(instance.table_url(Some(&sys_id), &plain(Query::new())))
            .json(&Value::Object(body));
        let record = api::record(request)
            .map_err(|e| api::name_not_found(e, &describe(&instance, &reference)))?;
        model::ticket(record, &instance.base, &instance.table)
    }
}

/// `incident INC0010001` / `incident record 9d38...`, for messages.
fn describe(instance: &Instance, reference: &RecordRef) -> String {
    match reference {
        RecordRef::SysId(sys_id) => format!("{} record {sys_id}", instance.table),
        RecordRef::Number(number) => format!("{} {number}", instance.table),
    }
}

/// The whole record named by `reference`.
fn fetch(instance: &Instance, reference: &RecordRef) -> Result<Record, PluginError> {
    match reference {
        RecordRef::SysId(sys_id) => api::record(Request::get(
            instance.table_url(Some(sys_id), &plain(Query::new())),
        ))
        .map_err(|e| api::name_not_found(e, &describe(instance, reference))),
        RecordRef::Number(number) => {
            let mut found = by_number(instance, number, None)?;
            if found.is_empty() {
                return Err(not_found_number(instance, number));
            }
            Ok(found.swap_remove(0))
        }
    }
}

/// The `sys_id` of the record with `number`.
fn resolve_number(instance: &Instance, number: &str) -> Result<String, PluginError> {
    by_number(instance, number, Some("sys_id"))?
        .first()
        .and_then(|record| model::text(record, "sys_id"))
        .ok_or_else(|| not_found_number(instance, number))
}

fn by_number(
    instance: &Instance,
    number: &str,
    fields: Option<&str>,
) -> Result<Vec<Record>, PluginError> {
    let mut query = Query::new().set("sysparm_query", format!("number={}", query_value(number)));
    if let Some(fields) = fields {
        query = query.set("sysparm_fields", fields);
    }
    let query = plain(query.set("sysparm_limit", "1"));
    api::records(Request::get(instance.table_url(None, &query)))
}

fn not_found_number(instance: &Instance, number: &str) -> PluginError {
    PluginError::NotFound(format!(
        "{} {number} does not exist or the account cannot read it",
        instance.table
    ))
}

impl SyncSource for ServiceNow {
    fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
        let instance = Instance::from_settings()?;
        let cursor = request
            .cursor
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(|c| sync::Cursor::decode(c, &instance.table))
            .transpose()?;
        let page_size = sync::page_size(request.page_size);
        let rows = fetch_rows(&instance, &sync::query(cursor.as_ref()), page_size)?;
        let page = sync::settle(cursor.as_ref(), page_size, &instance.table, rows)?;
        let records = page
            .rows
            .into_iter()
            .map(|row| SyncRecord {
                id: row.id,
                kind: instance.table.clone(),
                updated_at: Some(model::rfc3339(&row.updated)),
                data: Value::Object(row.record).to_string(),
            })
            .collect();
        Ok(SyncPage {
            records,
            next_cursor: page.next.map(|c| c.encode()),
            has_more: page.has_more,
        })
    }
}

fn fetch_rows(
    instance: &Instance,
    sysparm_query: &str,
    limit: u32,
) -> Result<Vec<sync::Row>, PluginError> {
    let query = plain(
        Query::new()
            .set("sysparm_query", sysparm_query)
            // Always the first rows of the query: the cursor is in the query.
            .set("sysparm_offset", "0")
            .set("sysparm_limit", limit.to_string())
            .set("sysparm_no_count", "true"),
    );
    api::records(Request::get(instance.table_url(None, &query)))?
        .into_iter()
        .map(sync::Row::new)
        .collect()
}

airlock_sdk::export!(ServiceNow, world = tickets, manifest = "airlock.toml");
