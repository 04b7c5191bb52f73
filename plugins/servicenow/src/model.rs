//! ServiceNow records and the airlock ticket model: validation of what
//! callers send, priority mapping, record → ticket conversion. Pure logic,
//! unit tested natively.

use airlock_sdk::types::{PluginError, Priority, Ticket, UpstreamFailure};
use serde_json::{Map, Value};

/// Longest `short_description` ServiceNow stores (the field's max length on
/// the task table), counted like the instance counts: UTF-16 code units.
pub const SHORT_DESCRIPTION_MAX: usize = 160;

/// The table used when the connection sets none.
pub const DEFAULT_TABLE: &str = "incident";

/// A ServiceNow record: the `result` object of the Table API.
pub type Record = Map<String, Value>;

/// `(urgency, impact)` for a priority; see the crate docs for the table.
pub fn urgency_impact(priority: Priority) -> (&'static str, &'static str) {
    match priority {
        Priority::P1 => ("1", "1"),
        Priority::P2 => ("1", "2"),
        Priority::P3 => ("2", "2"),
        Priority::P4 => ("3", "2"),
    }
}

/// The airlock priority of a record: from its `priority` field (1 → P1 …
/// 4 → P4, 5 "Planning" → P4), else computed from urgency and impact with
/// ServiceNow's default lookup (priority = urgency + impact - 1).
pub fn priority_of(record: &Record) -> Option<Priority> {
    let number = |key: &str| text(record, key).and_then(|v| v.trim().parse::<u32>().ok());
    let level = number("priority").or_else(|| {
        let urgency = number("urgency")?;
        let impact = number("impact")?;
        (urgency + impact).checked_sub(1)
    })?;
    match level {
        1 => Some(Priority::P1),
        2 => Some(Priority::P2),
        3 => Some(Priority::P3),
        4 | 5 => Some(Priority::P4),
        _ => None,
    }
}

/// How a caller names a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRef {
    /// A 32-hex-digit `sys_id`, lower-cased.
    SysId(String),
    /// A human number such as `INC0010001`.
    Number(String),
}

impl RecordRef {
    /// Classify `id`. Anything that could change the meaning of the encoded
    /// query it ends up in (`^`, `=`, spaces...) is refused.
    pub fn parse(id: &str) -> Result<RecordRef, PluginError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(PluginError::InvalidInput(
                "the ticket id is empty: give a sys_id (32 hex characters) or a number like INC0010001"
                    .to_string(),
            ));
        }
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(RecordRef::SysId(id.to_ascii_lowercase()));
        }
        let number_like = id.len() <= 40
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if number_like {
            Ok(RecordRef::Number(id.to_string()))
        } else {
            Err(PluginError::InvalidInput(format!(
                "`{}` is neither a sys_id (32 hex characters) nor a record number like INC0010001",
                shorten(id, 80)
            )))
        }
    }
}

/// The title as sent: trimmed, not empty, at most [`SHORT_DESCRIPTION_MAX`].
pub fn title(title: &str) -> Result<String, PluginError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(PluginError::InvalidInput(
            "the title is empty: ServiceNow requires a short description".to_string(),
        ));
    }
    let length = title.encode_utf16().count();
    if length > SHORT_DESCRIPTION_MAX {
        return Err(PluginError::InvalidInput(format!(
            "the title is {length} characters long; ServiceNow's short_description holds at most \
             {SHORT_DESCRIPTION_MAX}: shorten it and put the rest in the description"
        )));
    }
    Ok(title.to_string())
}

/// A table name as the Table API takes it in its path.
pub fn table(name: Option<String>) -> Result<String, PluginError> {
    let name = name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_TABLE.to_string());
    let valid = name.len() <= 80
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(name)
    } else {
        Err(PluginError::InvalidInput(format!(
            "setting `table` is `{}`: a ServiceNow table name is lower-case letters, digits and `_` (e.g. incident)",
            shorten(&name, 80)
        )))
    }
}

/// The value to store in `state`: a number as is; on the incident table
/// also the out-of-box labels (`New`, `In Progress`, `On Hold`, `Resolved`,
/// `Closed`, `Canceled`), case-insensitively.
pub fn state_value(table: &str, state: &str) -> Result<String, PluginError> {
    let state = state.trim();
    if !state.is_empty() && state.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(state.to_string());
    }
    if table != DEFAULT_TABLE {
        if state.is_empty() {
            return Err(PluginError::InvalidInput("the state is empty".to_string()));
        }
        return Ok(state.to_string());
    }
    let label = state.to_ascii_lowercase().replace(['_', '-'], " ");
    let value = match label.as_str() {
        "new" => "1",
        "in progress" => "2",
        "on hold" => "3",
        "resolved" => "6",
        "closed" => "7",
        "canceled" | "cancelled" => "8",
        _ => {
            return Err(PluginError::InvalidInput(format!(
                "unknown incident state `{}`: use a state value (e.g. 2) or one of New, In Progress, \
                 On Hold, Resolved, Closed, Canceled",
                shorten(state, 80)
            )));
        }
    };
    Ok(value.to_string())
}

/// Parse the caller's `fields`: a JSON object of field names to plain
/// values (string, number, boolean or null).
pub fn fields(json: Option<&str>) -> Result<Record, PluginError> {
    let Some(json) = json.filter(|j| !j.trim().is_empty()) else {
        return Ok(Record::new());
    };
    let value: Value = serde_json::from_str(json)
        .map_err(|e| PluginError::InvalidInput(format!("`fields` is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(PluginError::InvalidInput(
            "`fields` must be a JSON object of field names to values".to_string(),
        ));
    };
    for (name, value) in &map {
        let valid_name = !name.is_empty()
            && name.len() <= 80
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_name {
            return Err(PluginError::InvalidInput(format!(
                "`fields` names `{}`, which is not a ServiceNow field name (letters, digits, `_`)",
                shorten(name, 80)
            )));
        }
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            return Err(PluginError::InvalidInput(format!(
                "field `{name}` in `fields` must be a string, number, boolean or null"
            )));
        }
    }
    Ok(map)
}

/// Set `name` in a request body built from the caller's `fields`, refusing
/// a `fields` entry that says something else for the same field.
pub fn put(body: &mut Record, name: &str, value: &str, from: &str) -> Result<(), PluginError> {
    if let Some(existing) = body.get(name) {
        let same = match existing {
            Value::String(s) => s == value,
            Value::Number(n) => n.to_string() == value,
            _ => false,
        };
        if !same {
            return Err(PluginError::InvalidInput(format!(
                "`fields` sets `{name}`, which `{from}` also sets: give it once"
            )));
        }
    }
    body.insert(name.to_string(), Value::String(value.to_string()));
    Ok(())
}

/// A string-ish field of a record; empty strings are absent.
pub fn text(record: &Record, key: &str) -> Option<String> {
    match record.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // A reference field when links were not excluded: {"value": ..., "link": ...}.
        Value::Object(o) => match o.get("value") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `2026-11-20 10:15:00` (ServiceNow's stored UTC form) →
/// `2026-11-20T10:15:00Z`; anything else unchanged.
pub fn rfc3339(value: &str) -> String {
    if is_glide_date_time(value) {
        format!("{}T{}Z", &value[..10], &value[11..])
    } else {
        value.to_string()
    }
}

/// `YYYY-MM-DD HH:MM:SS`: the only form accepted in a sync cursor.
pub fn is_glide_date_time(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b' ',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
}

/// The ticket for a record of `table` on the instance at `base`.
pub fn ticket(record: Record, base: &str, table: &str) -> Result<Ticket, PluginError> {
    let id = text(&record, "sys_id").ok_or_else(|| missing("sys_id"))?;
    let mut fields = record;
    let number = take(&mut fields, "number");
    let title = take(&mut fields, "short_description").unwrap_or_default();
    let description = take(&mut fields, "description");
    fields.remove("sys_id");
    Ok(Ticket {
        url: Some(format!("{base}/{table}.do?sys_id={id}")),
        state: text(&fields, "state"),
        priority: priority_of(&fields),
        created_at: text(&fields, "sys_created_on").map(|t| rfc3339(&t)),
        updated_at: text(&fields, "sys_updated_on").map(|t| rfc3339(&t)),
        kind: Some(table.to_string()),
        id,
        number,
        title,
        description,
        fields: Value::Object(fields).to_string(),
    })
}

fn take(record: &mut Record, key: &str) -> Option<String> {
    let value = text(record, key);
    record.remove(key);
    value
}

fn missing(field: &str) -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        status: 200,
        message: format!("unexpected answer from ServiceNow: a record without `{field}`"),
    })
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Record {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn invalid(result: Result<impl std::fmt::Debug, PluginError>) -> String {
        match result {
            Err(PluginError::InvalidInput(message)) => message,
            other => panic!("expected invalid-input, got {other:?}"),
        }
    }

    #[test]
    fn priorities_map_to_urgency_and_impact_and_back() {
        for (priority, expected) in [
            (Priority::P1, ("1", "1")),
            (Priority::P2, ("1", "2")),
            (Priority::P3, ("2", "2")),
            (Priority::P4, ("3", "2")),
        ] {
            assert_eq!(urgency_impact(priority), expected);
            // ServiceNow computes priority = urgency + impact - 1 by default.
            let (u, i) = expected;
            let back = priority_of(&record(json!({"urgency": u, "impact": i})));
            assert_eq!(back, Some(priority));
        }
        let p = |v: &str| {
            priority_of(&record(
                json!({"priority": v, "urgency": "1", "impact": "1"}),
            ))
        };
        assert_eq!(p("1"), Some(Priority::P1));
        assert_eq!(p("2"), Some(Priority::P2));
        assert_eq!(p("3"), Some(Priority::P3));
        assert_eq!(p("4"), Some(Priority::P4));
        assert_eq!(p("5"), Some(Priority::P4));
        assert_eq!(priority_of(&record(json!({"priority": ""}))), None);
        assert_eq!(
            priority_of(&record(json!({"urgency": "3", "impact": "3"}))),
            Some(Priority::P4)
        );
        assert_eq!(priority_of(&record(json!({}))), None);
    }

    #[test]
    fn classifies_ids() {
        assert_eq!(
            RecordRef::parse(" 9D385017C611228701D22104CC95C371 "),
            Ok(RecordRef::SysId("9d385017c611228701d22104cc95c371".into()))
        );
        assert_eq!(
            RecordRef::parse("INC0010001"),
            Ok(RecordRef::Number("INC0010001".into()))
        );
        // 31 hex digits is not a sys_id but is a plausible number.
        assert_eq!(
            RecordRef::parse("9d385017c611228701d22104cc95c37"),
            Ok(RecordRef::Number("9d385017c611228701d22104cc95c37".into()))
        );
        invalid(RecordRef::parse(""));
        for bad in [
            "INC001^ORactive=true",
            "INC 1",
            "number=INC1",
            "ÄÖ",
            &"x".repeat(41),
        ] {
            let message = invalid(RecordRef::parse(bad));
            assert!(message.contains("sys_id"), "{message}");
        }
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(title("  Email down  ").unwrap(), "Email down");
        assert!(invalid(title("   ")).contains("empty"));
        assert_eq!(title(&"é".repeat(160)).unwrap().chars().count(), 160);
        let message = invalid(title(&"a".repeat(161)));
        assert!(
            message.contains("161") && message.contains("160"),
            "{message}"
        );
        let message = invalid(title(&"x".repeat(100 * 1024)));
        assert!(
            message.contains("102400") && message.contains("at most 160"),
            "{message}"
        );
        // Counted as the instance counts: an emoji is two UTF-16 units.
        assert!(title(&"🔥".repeat(80)).is_ok());
        assert!(title(&"🔥".repeat(81)).is_err());
    }

    #[test]
    fn tables() {
        assert_eq!(table(None).unwrap(), "incident");
        assert_eq!(table(Some(" ".into())).unwrap(), "incident");
        assert_eq!(table(Some("u_ops_ticket".into())).unwrap(), "u_ops_ticket");
        for bad in [
            "Incident",
            "incident/../sys_user",
            "inc ident",
            "1abc",
            "a?b",
        ] {
            assert!(invalid(table(Some(bad.into()))).contains("table"));
        }
    }

    #[test]
    fn states() {
        assert_eq!(state_value("incident", "2").unwrap(), "2");
        assert_eq!(state_value("incident", "In Progress").unwrap(), "2");
        assert_eq!(state_value("incident", "on_hold").unwrap(), "3");
        assert_eq!(state_value("incident", "RESOLVED").unwrap(), "6");
        assert_eq!(state_value("incident", "cancelled").unwrap(), "8");
        assert!(invalid(state_value("incident", "done")).contains("New, In Progress"));
        assert_eq!(state_value("u_thing", "done").unwrap(), "done");
        invalid(state_value("u_thing", " "));
    }

    #[test]
    fn parses_fields() {
        assert!(fields(None).unwrap().is_empty());
        assert!(fields(Some(" ")).unwrap().is_empty());
        let parsed = fields(Some(
            r#"{"category":"network","u_count":3,"active":true,"x":null}"#,
        ))
        .unwrap();
        assert_eq!(parsed.len(), 4);
        assert!(invalid(fields(Some("[1]"))).contains("object"));
        assert!(invalid(fields(Some("{"))).contains("not valid JSON"));
        assert!(invalid(fields(Some(r#"{"a b":1}"#))).contains("`a b`"));
        assert!(invalid(fields(Some(r#"{"caller.name":1}"#))).contains("field name"));
        assert!(invalid(fields(Some(r#"{"a":{"b":1}}"#))).contains("`a`"));
    }

    #[test]
    fn typed_values_and_fields_must_agree() {
        let mut body = fields(Some(r#"{"urgency":"1","impact":2}"#)).unwrap();
        put(&mut body, "urgency", "1", "priority").unwrap();
        put(&mut body, "impact", "2", "priority").unwrap();
        put(&mut body, "short_description", "x", "title").unwrap();
        assert_eq!(body["impact"], "2");
        let message = invalid(put(&mut body, "urgency", "3", "priority"));
        assert!(
            message.contains("urgency") && message.contains("priority"),
            "{message}"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339("2026-11-20 10:15:00"), "2026-11-20T10:15:00Z");
        assert_eq!(rfc3339("2026-11-20"), "2026-11-20");
        assert!(is_glide_date_time("2026-11-20 10:15:00"));
        assert!(!is_glide_date_time("2026-11-20T10:15:00"));
        assert!(!is_glide_date_time("2026-11-20 10:15:0^"));
        assert!(!is_glide_date_time("2026-11-20 10:15:00^ORactive=true"));
    }

    #[test]
    fn records_become_tickets() {
        let rec = record(json!({
            "sys_id": "9d385017c611228701d22104cc95c371",
            "number": "INC0010001",
            "short_description": "Email is down",
            "description": "",
            "state": "2",
            "urgency": "1",
            "impact": "2",
            "priority": "2",
            "sys_created_on": "2026-11-20 09:00:00",
            "sys_updated_on": "2026-11-20 10:15:00",
            "caller_id": "681ccaf9c0a8016400b98a06818d57c7",
        }));
        let t = ticket(rec, "https://acme.service-now.com", "incident").unwrap();
        assert_eq!(t.id, "9d385017c611228701d22104cc95c371");
        assert_eq!(t.number.as_deref(), Some("INC0010001"));
        assert_eq!(t.title, "Email is down");
        assert_eq!(t.description, None);
        assert_eq!(t.kind.as_deref(), Some("incident"));
        assert_eq!(t.state.as_deref(), Some("2"));
        assert_eq!(t.priority, Some(Priority::P2));
        assert_eq!(
            t.url.as_deref(),
            Some(
                "https://acme.service-now.com/incident.do?sys_id=9d385017c611228701d22104cc95c371"
            )
        );
        assert_eq!(t.created_at.as_deref(), Some("2026-11-20T09:00:00Z"));
        assert_eq!(t.updated_at.as_deref(), Some("2026-11-20T10:15:00Z"));
        let fields: Value = serde_json::from_str(&t.fields).unwrap();
        assert_eq!(fields["caller_id"], "681ccaf9c0a8016400b98a06818d57c7");
        assert_eq!(fields["urgency"], "1");
        assert!(fields.get("short_description").is_none());
        assert!(fields.get("sys_id").is_none());

        assert!(matches!(
            ticket(record(json!({"number": "INC1"})), "https://x", "incident"),
            Err(PluginError::Upstream(UpstreamFailure { status: 200, .. }))
        ));
    }

    #[test]
    fn shortens() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("äbcdef", 3), "äbc…");
    }
}
