//! Work items ↔ airlock tickets, JSON Patch documents and input checks.

use airlock_sdk::types::{PluginError, Priority, Ticket};
use serde_json::{Map, Value, json};

/// `System.Title` holds at most this many characters.
pub const TITLE_LIMIT: usize = 255;

pub const TITLE: &str = "System.Title";
pub const DESCRIPTION: &str = "System.Description";
pub const STATE: &str = "System.State";
pub const PRIORITY: &str = "Microsoft.VSTS.Common.Priority";
pub const SEVERITY: &str = "Microsoft.VSTS.Common.Severity";
pub const WORK_ITEM_TYPE: &str = "System.WorkItemType";
pub const CHANGED_DATE: &str = "System.ChangedDate";
pub const CREATED_DATE: &str = "System.CreatedDate";

/// The work item types this plugin creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkItemType {
    Bug,
    Task,
    UserStory,
    Issue,
    Incident,
}

impl WorkItemType {
    pub const ALL: [WorkItemType; 5] = [
        WorkItemType::Bug,
        WorkItemType::Task,
        WorkItemType::UserStory,
        WorkItemType::Issue,
        WorkItemType::Incident,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkItemType::Bug => "Bug",
            WorkItemType::Task => "Task",
            WorkItemType::UserStory => "User Story",
            WorkItemType::Issue => "Issue",
            WorkItemType::Incident => "Incident",
        }
    }

    /// One of the five names, any case, surrounding spaces ignored.
    pub fn parse(input: &str) -> Result<WorkItemType, PluginError> {
        let wanted = input.trim();
        WorkItemType::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                PluginError::InvalidInput(format!(
                    "unknown work item type `{}`: use one of Bug, Task, User Story, Issue, Incident",
                    shorten(wanted, 80)
                ))
            })
    }
}

/// P1..P4 → `Microsoft.VSTS.Common.Priority` 1..4.
pub fn priority_value(priority: Priority) -> u8 {
    match priority {
        Priority::P1 => 1,
        Priority::P2 => 2,
        Priority::P3 => 3,
        Priority::P4 => 4,
    }
}

/// P1..P4 → `Microsoft.VSTS.Common.Severity` (Bugs only).
pub fn severity_value(priority: Priority) -> &'static str {
    match priority {
        Priority::P1 => "1 - Critical",
        Priority::P2 => "2 - High",
        Priority::P3 => "3 - Medium",
        Priority::P4 => "4 - Low",
    }
}

/// `Microsoft.VSTS.Common.Priority` → P1..P4 (anything above 4 is P4).
fn priority_of(value: &Value) -> Option<Priority> {
    let number = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some(match number {
        0 => return None,
        1 => Priority::P1,
        2 => Priority::P2,
        3 => Priority::P3,
        _ => Priority::P4,
    })
}

/// A trimmed, non-empty title within `System.Title`'s limit.
pub fn title(input: &str) -> Result<String, PluginError> {
    let title = input.trim();
    if title.is_empty() {
        return Err(PluginError::InvalidInput(
            "the title is empty: a work item needs a title".to_string(),
        ));
    }
    let length = title.chars().count();
    if length > TITLE_LIMIT {
        return Err(PluginError::InvalidInput(format!(
            "the title is {length} characters long; System.Title holds at most {TITLE_LIMIT} \
             characters (put long text in the description)"
        )));
    }
    Ok(title.to_string())
}

/// A numeric work item id; anything else is refused before sending.
pub fn parse_id(input: &str) -> Result<u64, PluginError> {
    let trimmed = input.trim();
    let trimmed = trimmed.strip_prefix('#').unwrap_or(trimmed);
    match trimmed.parse::<u64>() {
        Ok(id) if id > 0 && trimmed.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(PluginError::InvalidInput(format!(
            "`{}` is not a work item id: Azure DevOps ids are positive numbers such as 42",
            shorten(input, 80)
        ))),
    }
}

pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The id of a work item answer.
pub fn id_of(item: &Value) -> Option<u64> {
    item.get("id").and_then(Value::as_u64)
}

/// A field of a work item answer, when it is a non-empty string.
pub fn text_field(item: &Value, name: &str) -> Option<String> {
    item.get("fields")?
        .get(name)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A work item answer as a ticket. `web_url` gives the page of work item
/// `id` when the answer carries no `_links.html.href`; it is passed in because
/// that URL comes from the organisation's settings (`api::Org`), and `api`
/// builds on this module, not the other way round.
pub fn ticket(item: Value, web_url: impl FnOnce(u64) -> String) -> Result<Ticket, PluginError> {
    let id = id_of(&item).ok_or_else(|| {
        PluginError::Upstream(airlock_sdk::types::UpstreamFailure {
            status: 200,
            message: "the work item in the answer has no numeric `id`".to_string(),
        })
    })?;
    let url = item
        .pointer("/_links/html/href")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| web_url(id));
    let mut fields = match item.get("fields") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let take = |fields: &mut Map<String, Value>, name: &str| {
        fields
            .remove(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
    };
    let title = take(&mut fields, TITLE).unwrap_or_default();
    let description = take(&mut fields, DESCRIPTION);
    let kind = take(&mut fields, WORK_ITEM_TYPE);
    let state = take(&mut fields, STATE);
    let created_at = take(&mut fields, CREATED_DATE);
    let updated_at = take(&mut fields, CHANGED_DATE);
    let priority = fields.remove(PRIORITY).as_ref().and_then(priority_of);
    if let Some(rev) = item.get("rev") {
        fields.insert("rev".to_string(), rev.clone());
    }
    Ok(Ticket {
        id: id.to_string(),
        number: Some(id.to_string()),
        title,
        description,
        kind,
        state,
        priority,
        url: Some(url),
        created_at,
        updated_at,
        fields: Value::Object(fields).to_string(),
    })
}

/// A JSON Patch document under construction; refuses setting one field twice.
#[derive(Default)]
pub struct Patch {
    ops: Vec<Value>,
    fields: Vec<String>,
}

impl Patch {
    pub fn set(
        &mut self,
        op: &str,
        field: &str,
        value: Value,
        what: &str,
    ) -> Result<(), PluginError> {
        if self.fields.iter().any(|f| f.eq_ignore_ascii_case(field)) {
            return Err(PluginError::InvalidInput(format!(
                "field `{field}` is set twice: `fields` may not repeat what `{what}` sets"
            )));
        }
        self.fields.push(field.to_string());
        self.ops.push(json!({
            "op": op,
            "path": format!("/fields/{}", pointer_escape(field)),
            "value": value,
        }));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn into_value(self) -> Value {
        Value::Array(self.ops)
    }
}

/// RFC 6901: `~` → `~0`, `/` → `~1`.
fn pointer_escape(field: &str) -> String {
    field.replace('~', "~0").replace('/', "~1")
}

/// The caller's `fields` JSON object, checked: field reference names to
/// JSON values. `System.Title` in it obeys the title rules.
pub fn extra_fields(input: Option<&str>) -> Result<Vec<(String, Value)>, PluginError> {
    let Some(input) = input.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let parsed: Value = serde_json::from_str(input)
        .map_err(|e| PluginError::InvalidInput(format!("`fields` is not valid JSON: {e}")))?;
    let Value::Object(map) = parsed else {
        return Err(PluginError::InvalidInput(
            "`fields` must be a JSON object of field reference names to values, e.g. \
             {\"System.Tags\": \"outage\"}"
                .to_string(),
        ));
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().any(|c| c.is_control()) {
            return Err(PluginError::InvalidInput(format!(
                "`fields` has an invalid field name {name:?}"
            )));
        }
        if name.eq_ignore_ascii_case(TITLE) {
            let Some(text) = value.as_str() else {
                return Err(PluginError::InvalidInput(
                    "`fields`: System.Title must be a string".to_string(),
                ));
            };
            out.push((name, Value::String(title(text)?)));
            continue;
        }
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        assert_eq!(
            WorkItemType::parse(" user story ").unwrap(),
            WorkItemType::UserStory
        );
        let Err(PluginError::InvalidInput(why)) = WorkItemType::parse("Epic") else {
            panic!()
        };
        assert!(
            why.contains("Bug, Task, User Story, Issue, Incident"),
            "{why}"
        );
    }

    #[test]
    fn checks_titles_and_ids() {
        assert!(title("  ").is_err());
        assert!(title(&"x".repeat(255)).is_ok());
        assert!(title(&"x".repeat(256)).is_err());
        assert_eq!(parse_id("42").unwrap(), 42);
        assert_eq!(parse_id("#7").unwrap(), 7);
        for bad in ["", "0", "abc", "-1", "+4", "1 OR 1=1", "4.2"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_refuse_repeats() {
        let mut patch = Patch::default();
        patch.set("add", TITLE, json!("a"), "title").unwrap();
        assert!(
            patch
                .set("add", "system.title", json!("b"), "title")
                .is_err()
        );
        patch.set("add", "A/B~C", json!(1), "fields").unwrap();
        assert_eq!(patch.into_value()[1]["path"], "/fields/A~1B~0C");
    }
}
