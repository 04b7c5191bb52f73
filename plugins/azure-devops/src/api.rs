//! The connection's settings, URL building and the REST calls.

use airlock_sdk::http::Request;
use airlock_sdk::setting_required;
use airlock_sdk::types::PluginError;
use serde::Deserialize;
use serde_json::Value;

use crate::model::{self, WorkItemType};

/// REST API version sent on every call.
pub const API_VERSION: &str = "7.1";
/// The JSON Patch content type work item create and update require.
pub const JSON_PATCH: &str = "application/json-patch+json";
/// Most ids the batch endpoint takes in one call.
pub const BATCH_LIMIT: usize = 200;

/// The settings every operation needs.
#[derive(Debug, Clone)]
pub struct Org {
    /// `base-url` without a trailing `/`, e.g. `https://dev.azure.com/acme`.
    pub base: String,
    /// The project name as configured (not encoded).
    pub project: String,
    /// Type created when a ticket names none.
    pub default_type: WorkItemType,
}

impl Org {
    pub fn from_settings() -> Result<Org, PluginError> {
        let base = setting_required("base-url")?
            .trim()
            .trim_end_matches('/')
            .to_string();
        let project = setting_required("project")?.trim().to_string();
        let default_type = match airlock_sdk::host::setting("work-item-type") {
            Some(value) if !value.trim().is_empty() => {
                WorkItemType::parse(&value).map_err(|e| match e {
                    PluginError::InvalidInput(why) => {
                        PluginError::InvalidInput(format!("setting `work-item-type`: {why}"))
                    }
                    other => other,
                })?
            }
            _ => WorkItemType::Task,
        };
        Ok(Org {
            base,
            project,
            default_type,
        })
    }

    /// `{base}/{path}?{query}&api-version=7.1`; `path` must already be
    /// encoded, `query` pairs are encoded here.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/{}?", self.base, path.trim_start_matches('/'));
        for (name, value) in query {
            url.push_str(name);
            url.push('=');
            url.push_str(&encode_query(value));
            url.push('&');
        }
        url.push_str("api-version=");
        url.push_str(API_VERSION);
        url
    }

    /// `{base}/{project}/{path}...`: a project-scoped route.
    pub fn project_url(&self, path: &str, query: &[(&str, &str)]) -> String {
        self.url(
            &format!(
                "{}/{}",
                encode_segment(&self.project),
                path.trim_start_matches('/')
            ),
            query,
        )
    }

    /// `{base}/_apis/wit/workitems/{id}`.
    pub fn work_item_url(&self, id: u64) -> String {
        self.url(&format!("_apis/wit/workitems/{id}"), &[])
    }

    /// The web page of a work item, when the answer carries no link.
    pub fn web_url(&self, id: u64) -> String {
        format!(
            "{}/{}/_workitems/edit/{id}",
            self.base,
            encode_segment(&self.project)
        )
    }
}

/// Percent-encoding of one path segment or query value (the SDK's): UTF-8,
/// only RFC 3986 unreserved characters left as they are. `User Story` →
/// `User%20Story`.
pub use airlock_sdk::http::encode_component as encode_segment;

/// Percent-encode a query value; `,` stays (the `ids` list).
fn encode_query(value: &str) -> String {
    encode_segment(value).replace("%2C", ",")
}

fn get_json(url: String) -> Result<Value, PluginError> {
    Request::get(url)
        .header("accept", "application/json")
        .send_json()
}

/// `GET {base}/_apis/projects/{project}`.
pub fn project(org: &Org) -> Result<Value, PluginError> {
    get_json(org.url(
        &format!("_apis/projects/{}", encode_segment(&org.project)),
        &[],
    ))
}

#[derive(Deserialize)]
struct WiqlAnswer {
    #[serde(default, rename = "workItems")]
    work_items: Option<Vec<IdRef>>,
    #[serde(default, rename = "workItemRelations")]
    relations: Option<Vec<Relation>>,
    #[serde(default, rename = "asOf")]
    as_of: Option<String>,
}

#[derive(Deserialize)]
struct IdRef {
    id: u64,
}

#[derive(Deserialize)]
struct Relation {
    #[serde(default)]
    source: Option<IdRef>,
    #[serde(default)]
    target: Option<IdRef>,
}

/// The ids a WIQL query matched, in its order, and the time it ran at.
pub struct WiqlResult {
    pub ids: Vec<u64>,
    pub as_of: Option<String>,
}

/// `POST {base}/{project}/_apis/wit/wiql?$top=...` with `{"query": wiql}`.
/// A flat query's `workItems`, or for tree and one-hop queries every work
/// item its links name (each id once).
pub fn wiql(
    org: &Org,
    wiql: &str,
    top: usize,
    time_precision: bool,
) -> Result<WiqlResult, PluginError> {
    let top = top.to_string();
    let mut query = vec![("$top", top.as_str())];
    if time_precision {
        query.push(("timePrecision", "true"));
    }
    let answer: WiqlAnswer = Request::post(org.project_url("_apis/wit/wiql", &query))
        .header("accept", "application/json")
        .json(&serde_json::json!({ "query": wiql }))
        .send_json()?;
    let mut ids = Vec::new();
    if let Some(items) = answer.work_items {
        ids.extend(items.into_iter().map(|item| item.id));
    } else if let Some(relations) = answer.relations {
        for relation in relations {
            for end in [relation.source, relation.target].into_iter().flatten() {
                if !ids.contains(&end.id) {
                    ids.push(end.id);
                }
            }
        }
    }
    Ok(WiqlResult {
        ids,
        as_of: answer.as_of,
    })
}

#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    value: Vec<Value>,
}

/// `GET {base}/_apis/wit/workitems?ids=1,2,3` in batches of at most 200,
/// returned in the order of `ids` (items the service no longer returns,
/// e.g. deleted meanwhile, are left out).
pub fn work_items(org: &Org, ids: &[u64], as_of: Option<&str>) -> Result<Vec<Value>, PluginError> {
    let mut found: Vec<Value> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BATCH_LIMIT) {
        let list = chunk
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut query = vec![("ids", list.as_str()), ("errorPolicy", "omit")];
        if let Some(as_of) = as_of {
            query.push(("asOf", as_of));
        }
        let batch: Batch = Request::get(org.url("_apis/wit/workitems", &query))
            .header("accept", "application/json")
            .send_json()?;
        found.extend(batch.value.into_iter().filter(|item| item.is_object()));
    }
    let position = |item: &Value| {
        model::id_of(item)
            .and_then(|id| ids.iter().position(|wanted| *wanted == id))
            .unwrap_or(usize::MAX)
    };
    found.sort_by_key(position);
    Ok(found)
}

/// `GET {base}/_apis/wit/workitems/{id}`.
pub fn work_item(org: &Org, id: u64) -> Result<Value, PluginError> {
    get_json(org.work_item_url(id)).map_err(|e| name_work_item(e, id))
}

/// `POST {base}/{project}/_apis/wit/workitems/${type}` with a JSON Patch.
pub fn create(org: &Org, kind: WorkItemType, patch: &Value) -> Result<Value, PluginError> {
    let segment = format!("${}", encode_segment(kind.name()));
    Request::post(org.project_url(&format!("_apis/wit/workitems/{segment}"), &[]))
        .header("accept", "application/json")
        .body(patch.to_string(), JSON_PATCH)
        .send_json()
}

/// `PATCH {base}/_apis/wit/workitems/{id}` with a JSON Patch.
pub fn update(org: &Org, id: u64, patch: &Value) -> Result<Value, PluginError> {
    Request::patch(org.work_item_url(id))
        .header("accept", "application/json")
        .body(patch.to_string(), JSON_PATCH)
        .send_json()
        .map_err(|e| name_work_item(e, id))
}

/// A 404 names the work item the caller asked for.
fn name_work_item(error: PluginError, id: u64) -> PluginError {
    match error {
        PluginError::NotFound(why) => {
            PluginError::NotFound(format!("work item {id} not found: {why}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("User Story"), "User%20Story");
        assert_eq!(encode_segment("Fabrikam"), "Fabrikam");
        assert_eq!(
            encode_segment("Ünïcode Team/x"),
            "%C3%9Cn%C3%AFcode%20Team%2Fx"
        );
        assert_eq!(encode_query("1,2,3"), "1,2,3");
    }

    #[test]
    fn builds_urls() {
        let org = Org {
            base: "https://dev.azure.com/acme".into(),
            project: "Mobile App".into(),
            default_type: WorkItemType::Task,
        };
        assert_eq!(
            org.project_url("_apis/wit/wiql", &[("$top", "10")]),
            "https://dev.azure.com/acme/Mobile%20App/_apis/wit/wiql?$top=10&api-version=7.1"
        );
        assert_eq!(
            org.work_item_url(42),
            "https://dev.azure.com/acme/_apis/wit/workitems/42?api-version=7.1"
        );
    }
}
