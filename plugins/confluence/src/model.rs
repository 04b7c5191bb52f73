//! Checking the caller's input and reading Confluence's answers.

use airlock_sdk::types::{
    BodyFormat, Page, PageBody, PageSummary, PluginError, Space, UpstreamFailure,
};
use serde_json::{Value, json};

use crate::api::Site;
use crate::markdown;

/// Confluence's limit on page titles, in characters.
pub const TITLE_LIMIT: usize = 255;

/// A trimmed, non-empty title of at most 255 characters.
pub fn title(text: &str) -> Result<String, PluginError> {
    let title = text.trim();
    if title.is_empty() {
        return Err(PluginError::InvalidInput(
            "the page title is empty".to_string(),
        ));
    }
    let count = title.chars().count();
    if count > TITLE_LIMIT {
        return Err(PluginError::InvalidInput(format!(
            "the page title is {count} characters long; Confluence allows at most {TITLE_LIMIT}"
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(PluginError::InvalidInput(
            "the page title contains control characters".to_string(),
        ));
    }
    Ok(title.to_string())
}

/// A page id: digits only (Confluence content ids are numeric).
pub fn page_id(id: &str) -> Result<String, PluginError> {
    let id = id.trim();
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PluginError::InvalidInput(format!(
            "page id {id:?} is not a Confluence content id (digits only)"
        )));
    }
    Ok(id.to_string())
}

/// A space key as given (trimmed): any text but empty or with control
/// characters; it is quoted in CQL and JSON-encoded in bodies.
pub fn space_key(key: &str) -> Result<String, PluginError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(PluginError::InvalidInput(
            "the space key is empty".to_string(),
        ));
    }
    if key.chars().any(char::is_control) || key.chars().count() > 255 {
        return Err(PluginError::InvalidInput(format!(
            "space key {key:?} is not a valid space key"
        )));
    }
    Ok(key.to_string())
}

/// The body in storage format.
pub fn storage(body: &PageBody) -> String {
    match body.format {
        BodyFormat::Storage => body.content.clone(),
        BodyFormat::Markdown => markdown::to_storage(&body.content),
    }
}

/// A CQL string literal: `"` and `\` escaped with `\`.
pub fn cql_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The CQL `search-pages` sends for text and a space (neither raw CQL).
pub fn search_cql(text: Option<&str>, space: Option<&str>) -> String {
    let mut cql = "type=page".to_string();
    if let Some(text) = text {
        cql.push_str(" AND text ~ ");
        cql.push_str(&cql_string(text));
    }
    if let Some(space) = space {
        cql.push_str(" AND space = ");
        cql.push_str(&cql_string(space));
    }
    cql
}

fn bad_answer(what: &str) -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        status: 200,
        message: format!("unexpected answer from Confluence: {what}"),
    })
}

fn text_at(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn id_of(content: &Value) -> Option<String> {
    text_at(content, "/id")
}

pub fn version_of(content: &Value) -> Option<u32> {
    content
        .pointer("/version/number")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// `version.when` of a content answer.
pub fn modified_of(content: &Value) -> Option<String> {
    text_at(content, "/version/when")
}

fn url_of(site: &Site, content: &Value) -> Option<String> {
    text_at(content, "/_links/webui").map(|w| site.web(&w))
}

pub fn space(site: &Site, value: &Value) -> Result<Space, PluginError> {
    let key = text_at(value, "/key").ok_or_else(|| bad_answer("a space without `key`"))?;
    Ok(Space {
        name: text_at(value, "/name").unwrap_or_else(|| key.clone()),
        key,
        id: text_at(value, "/id"),
        kind: text_at(value, "/type"),
        url: url_of(site, value),
    })
}

pub fn summary(site: &Site, content: &Value) -> Result<PageSummary, PluginError> {
    let id = id_of(content).ok_or_else(|| bad_answer("a search result without `id`"))?;
    Ok(PageSummary {
        title: text_at(content, "/title").unwrap_or_default(),
        space_key: text_at(content, "/space/key"),
        version: version_of(content),
        url: url_of(site, content),
        excerpt: text_at(content, "/excerpt"),
        id,
    })
}

/// A content answer as a page; `sent_body` stands in when the answer has no
/// `body.storage` (a create or update without the expansion).
pub fn page(site: &Site, content: &Value, sent_body: Option<&str>) -> Result<Page, PluginError> {
    let id = id_of(content).ok_or_else(|| bad_answer("a page without `id`"))?;
    let version = version_of(content)
        .ok_or_else(|| bad_answer(&format!("page {id} has no `version.number`")))?;
    let body = text_at(content, "/body/storage/value")
        .or_else(|| sent_body.map(str::to_string))
        .unwrap_or_default();
    let parent_id = content
        .get("ancestors")
        .and_then(Value::as_array)
        .and_then(|a| a.last())
        .and_then(id_of);
    Ok(Page {
        title: text_at(content, "/title").unwrap_or_default(),
        space_key: text_at(content, "/space/key"),
        version,
        parent_id,
        body,
        url: url_of(site, content),
        id,
    })
}

/// The `POST /content` body.
pub fn create_body(space: &str, title: &str, storage: &str, parent: Option<&str>) -> Value {
    let mut body = json!({
        "type": "page",
        "title": title,
        "space": {"key": space},
        "body": {"storage": {"value": storage, "representation": "storage"}}
    });
    if let Some(parent) = parent {
        body["ancestors"] = json!([{"id": parent}]);
    }
    body
}

/// The `PUT /content/{id}` body.
pub fn update_body(id: &str, title: &str, storage: &str, version: u32) -> Value {
    json!({
        "id": id,
        "type": "page",
        "title": title,
        "version": {"number": version},
        "body": {"storage": {"value": storage, "representation": "storage"}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_titles() {
        assert!(title(" ").is_err());
        assert_eq!(title(" Runbook ").unwrap(), "Runbook");
        assert!(title(&"é".repeat(255)).is_ok());
        let Err(PluginError::InvalidInput(why)) = title(&"x".repeat(100 * 1024)) else {
            panic!()
        };
        assert!(why.contains("255"), "{why}");
    }

    #[test]
    fn checks_ids() {
        assert_eq!(page_id(" 65601 ").unwrap(), "65601");
        for bad in ["", "abc", "12a", "-1", "1 OR 1=1", "../1", "１２"] {
            assert!(page_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_cql() {
        assert_eq!(
            search_cql(Some(r#"say "hi" \o/"#), Some("Team \"Ü\"")),
            r#"type=page AND text ~ "say \"hi\" \\o/" AND space = "Team \"Ü\"""#
        );
        assert_eq!(search_cql(None, None), "type=page");
    }
}
