//! airlock connector for Azure DevOps work items, over the REST API 7.1.
//!
//! Runs as a sandboxed component (world `tickets`: exports `connector`,
//! `tickets` and `sync`). The host injects the credential: a personal access
//! token as HTTP Basic with an **empty** user name (`Basic base64(":" + PAT)`),
//! a bearer token, or a Microsoft Entra ID OAuth 2.0 token the host obtained
//! itself (`login.microsoftonline.com/{tenant}/oauth2/v2.0/...`, scopes
//! `499b84ac-1321-427f-aa17-267ca6975798/.default offline_access`). This
//! plugin never sees a secret and never sets `Authorization`.
//!
//! # Settings
//!
//! | setting          | required | meaning                                                        |
//! |------------------|----------|----------------------------------------------------------------|
//! | `base-url`       | yes      | the organization, e.g. `https://dev.azure.com/{organization}`  |
//! | `project`        | yes      | the project name; spaces and Unicode are percent-encoded       |
//! | `work-item-type` | no       | type created when a ticket names none; `Task` when absent      |
//! | `tenant`         | no       | Entra tenant for OAuth 2.0 (`organizations` when absent)       |
//!
//! # Operations
//!
//! Every call carries `api-version=7.1`.
//!
//! | operation         | request                                                                   |
//! |-------------------|---------------------------------------------------------------------------|
//! | `test-connection` | `GET {base}/_apis/projects/{project}`                                     |
//! | `tickets.search`  | `POST {base}/{project}/_apis/wit/wiql?$top={limit}`, then `GET {base}/_apis/wit/workitems?ids=1,2,3&errorPolicy=omit` (≤ 200 ids a call) |
//! | `tickets.create`  | `POST {base}/{project}/_apis/wit/workitems/${type}` (JSON Patch)          |
//! | `tickets.get`     | `GET {base}/_apis/wit/workitems/{id}`                                     |
//! | `tickets.update`  | `PATCH {base}/_apis/wit/workitems/{id}` (JSON Patch)                      |
//! | `sync.fetch-page` | WIQL by `System.ChangedDate`, then the batch endpoint (see [`sync`])      |
//!
//! Path segments (project, work item type) are percent-encoded as UTF-8:
//! project `Équipe Mobile` → `%C3%89quipe%20Mobile`, type `User Story` →
//! `$User%20Story`. Create and update send
//! `content-type: application/json-patch+json`.
//!
//! ## Search
//!
//! `ticket-query.text` becomes
//!
//! ```text
//! SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project
//! AND [System.Title] CONTAINS '<text>' ORDER BY [System.ChangedDate] DESC
//! ```
//!
//! with every `'` in the text doubled (WIQL's escape), so the text cannot end
//! the string. `native-query` is WIQL sent as written (flat queries return
//! their work items; tree and one-hop queries every work item their links
//! name); giving both is `invalid-input`. Neither lists the project's most
//! recently changed work items. `limit` 0 means 10; at most 200.
//!
//! ## Work item types
//!
//! `new-ticket.kind` (or the `work-item-type` setting) must be one of
//! `Bug`, `Task`, `User Story`, `Issue`, `Incident` (any case); anything
//! else is `invalid-input` listing the five.
//!
//! ## Priority mapping (P1–P4)
//!
//! | airlock | `Microsoft.VSTS.Common.Priority` | `Microsoft.VSTS.Common.Severity` (Bugs only) |
//! |---------|----------------------------------|----------------------------------------------|
//! | P1      | 1                                | `1 - Critical`                               |
//! | P2      | 2                                | `2 - High`                                   |
//! | P3      | 3                                | `3 - Medium`                                 |
//! | P4      | 4                                | `4 - Low`                                    |
//!
//! Creating a Bug with a priority sets both fields; other types get the
//! priority only. An update sets the priority only (the type is not read
//! first): set `Microsoft.VSTS.Common.Severity` through `fields` if needed.
//! Reading, priority 1–4 maps to P1–P4 (higher numbers to P4).
//!
//! ## Create and update
//!
//! The body is a JSON Patch array. Create uses `add` for every field; update
//! uses `replace` for `System.Title` and `System.State` (always present on a
//! work item) and `add` (set or overwrite) for the rest:
//!
//! | ticket field  | work item field                       |
//! |---------------|---------------------------------------|
//! | `title`       | `System.Title`                        |
//! | `description` | `System.Description` (HTML)           |
//! | `state`       | `System.State` (update only)          |
//! | `priority`    | table above                           |
//! | `fields`      | each entry `"<name>": value` → `/fields/<name>` |
//!
//! Refused before anything is sent, as `invalid-input`: an empty (or
//! all-space) title; a title over **255** characters (`System.Title`'s
//! limit; never truncated); an unknown work item type; a non-numeric id;
//! `fields` that is not a JSON object or repeats a field set otherwise; an
//! update that changes nothing.
//!
//! ## Errors
//!
//! Non-2xx answers become the SDK's typed errors with Azure DevOps's
//! `message` (e.g. `TF401232: Work item 999 does not exist...`): 400 →
//! `invalid-input`, 401 → `unauthorized`, 403 → `forbidden`, 404 →
//! `not-found`, 409 → `conflict`, 429 → `rate-limited` with `Retry-After`,
//! others → `upstream`. A body that is not JSON (an HTML sign-in page) is
//! `upstream` with the status; a slow service is `timeout`.
//!
//! Tickets carry the work item id as `id` and `number`, `System.Title`,
//! `System.Description`, `System.WorkItemType` as `kind`, `System.State`,
//! the mapped priority, the `_links.html` URL (or the web URL built from the
//! settings), `System.CreatedDate` / `System.ChangedDate`, and every other
//! field (plus `rev`) in `fields`.

mod api;
mod model;
pub mod sync;

use airlock_sdk::types::{
    ConnectionReport, NewTicket, PluginError, SyncPage, SyncRecord, SyncRequest, Ticket,
    TicketQuery, TicketUpdate, UpstreamFailure,
};
use airlock_sdk::{Connector, SyncSource, Tickets};
use serde_json::{Value, json};

use api::Org;
use model::{Patch, WorkItemType};

/// Tickets returned by a search when the caller asks for 0.
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;
/// Most tickets one search returns (one batch call).
pub const MAX_SEARCH_LIMIT: u32 = 200;

struct AzureDevOps;

/// A WIQL string literal: `'` doubled.
fn wiql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The WIQL `tickets.search` sends for free text (or none).
pub fn search_wiql(text: Option<&str>) -> String {
    let mut wiql =
        "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project".to_string();
    if let Some(text) = text {
        wiql.push_str(" AND [System.Title] CONTAINS ");
        wiql.push_str(&wiql_literal(text));
    }
    wiql.push_str(" ORDER BY [System.ChangedDate] DESC");
    wiql
}

impl Connector for AzureDevOps {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let org = Org::from_settings()?;
        let project = api::project(&org).map_err(|e| match e {
            PluginError::NotFound(why) => PluginError::NotFound(format!(
                "project `{}` not found in {}: {why}",
                org.project, org.base
            )),
            other => other,
        })?;
        let get = |key: &str| {
            project
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let name = get("name").unwrap_or_else(|| org.project.clone());
        let mut details = vec![
            ("organization".to_string(), org.base.clone()),
            ("project".to_string(), name.clone()),
        ];
        for (key, label) in [
            ("id", "project-id"),
            ("state", "state"),
            ("visibility", "visibility"),
        ] {
            if let Some(value) = get(key) {
                details.push((label.to_string(), value));
            }
        }
        let state = get("state").unwrap_or_else(|| "unknown".to_string());
        let id = get("id").unwrap_or_else(|| "?".to_string());
        Ok(ConnectionReport {
            account: None,
            message: format!(
                "connected to {}: project `{name}` (id {id}) is {state}",
                org.base
            ),
            details,
        })
    }
}

impl Tickets for AzureDevOps {
    fn search(query: TicketQuery) -> Result<Vec<Ticket>, PluginError> {
        let org = Org::from_settings()?;
        let limit = match query.limit {
            0 => DEFAULT_SEARCH_LIMIT,
            n => n.min(MAX_SEARCH_LIMIT),
        } as usize;
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
        let wiql = match (native, text) {
            (Some(_), Some(_)) => {
                return Err(PluginError::InvalidInput(
                    "give either `text` or `native-query` (WIQL), not both: add the title \
                     condition to the WIQL instead"
                        .to_string(),
                ));
            }
            (Some(native), None) => native.to_string(),
            (None, text) => search_wiql(text),
        };
        let found = api::wiql(&org, &wiql, limit, false)?;
        let ids: Vec<u64> = found.ids.into_iter().take(limit).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        api::work_items(&org, &ids, None)?
            .into_iter()
            .map(|item| model::ticket(item, |id| org.web_url(id)))
            .collect()
    }

    fn create(ticket: NewTicket) -> Result<Ticket, PluginError> {
        let org = Org::from_settings()?;
        let title = model::title(&ticket.title)?;
        let kind = match ticket.kind.as_deref().map(str::trim) {
            Some(kind) if !kind.is_empty() => WorkItemType::parse(kind)?,
            _ => org.default_type,
        };
        let extra = model::extra_fields(ticket.fields.as_deref())?;
        let mut patch = Patch::default();
        patch.set("add", model::TITLE, json!(title), "title")?;
        if let Some(description) = &ticket.description {
            patch.set("add", model::DESCRIPTION, json!(description), "description")?;
        }
        if let Some(priority) = ticket.priority {
            patch.set(
                "add",
                model::PRIORITY,
                json!(model::priority_value(priority)),
                "priority",
            )?;
            if kind == WorkItemType::Bug {
                patch.set(
                    "add",
                    model::SEVERITY,
                    json!(model::severity_value(priority)),
                    "priority",
                )?;
            }
        }
        for (name, value) in extra {
            if name.eq_ignore_ascii_case(model::TITLE) {
                return Err(PluginError::InvalidInput(
                    "field `System.Title` is set twice: use `title`".to_string(),
                ));
            }
            patch.set("add", &name, value, "fields")?;
        }
        let item = api::create(&org, kind, &patch.into_value())?;
        model::ticket(item, |id| org.web_url(id))
    }

    fn get(id: String) -> Result<Ticket, PluginError> {
        let org = Org::from_settings()?;
        let id = model::parse_id(&id)?;
        model::ticket(api::work_item(&org, id)?, |id| org.web_url(id))
    }

    fn update(update: TicketUpdate) -> Result<Ticket, PluginError> {
        let org = Org::from_settings()?;
        let id = model::parse_id(&update.id)?;
        let mut patch = Patch::default();
        if let Some(title) = &update.title {
            patch.set(
                "replace",
                model::TITLE,
                json!(model::title(title)?),
                "title",
            )?;
        }
        if let Some(description) = &update.description {
            patch.set("add", model::DESCRIPTION, json!(description), "description")?;
        }
        if let Some(state) = update.state.as_deref().map(str::trim) {
            if state.is_empty() {
                return Err(PluginError::InvalidInput(
                    "the state is empty: name a state such as Active or Closed".to_string(),
                ));
            }
            patch.set("replace", model::STATE, json!(state), "state")?;
        }
        if let Some(priority) = update.priority {
            patch.set(
                "add",
                model::PRIORITY,
                json!(model::priority_value(priority)),
                "priority",
            )?;
        }
        for (name, value) in model::extra_fields(update.fields.as_deref())? {
            patch.set("add", &name, value, "fields")?;
        }
        if patch.is_empty() {
            return Err(PluginError::InvalidInput(
                "the update changes nothing: give a title, description, state, priority or fields"
                    .to_string(),
            ));
        }
        let item = api::update(&org, id, &patch.into_value())?;
        model::ticket(item, |id| org.web_url(id))
    }
}

impl SyncSource for AzureDevOps {
    fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
        let org = Org::from_settings()?;
        let cursor = match request.cursor.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => sync::Cursor::decode(text, &org.project)?,
            _ => sync::Cursor::start(&org.project),
        };
        let page_size = sync::page_size(request.page_size);
        let found = api::wiql(&org, &cursor.wiql(), page_size, true)?;
        let has_more = found.ids.len() >= page_size;
        let ids: Vec<u64> = found.ids.into_iter().take(page_size).collect();
        let items = if ids.is_empty() {
            Vec::new()
        } else {
            api::work_items(&org, &ids, found.as_of.as_deref())?
        };
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for item in items {
            let Some(id) = model::id_of(&item) else {
                continue;
            };
            let changed = model::text_field(&item, model::CHANGED_DATE);
            let Some(normalized) = changed.as_deref().and_then(sync::normalize) else {
                return Err(PluginError::Upstream(UpstreamFailure {
                    status: 200,
                    message: format!(
                        "work item {id} has no UTC `{}` ({changed:?}); the sync cannot page \
                         past it",
                        model::CHANGED_DATE
                    ),
                }));
            };
            keys.push((id, normalized));
            records.push(SyncRecord {
                id: id.to_string(),
                kind: "work-item".to_string(),
                updated_at: changed,
                data: item.to_string(),
            });
        }
        let next = sync::advance(&cursor, &keys, has_more)?;
        Ok(SyncPage {
            records,
            next_cursor: Some(next.encode()),
            has_more,
        })
    }
}

airlock_sdk::export!(AzureDevOps, world = tickets, manifest = "airlock.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_wiql_escapes_quotes() {
        assert_eq!(
            search_wiql(Some("can't log in")),
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project AND \
             [System.Title] CONTAINS 'can''t log in' ORDER BY [System.ChangedDate] DESC"
        );
        assert_eq!(
            search_wiql(None),
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project \
             ORDER BY [System.ChangedDate] DESC"
        );
    }
}
