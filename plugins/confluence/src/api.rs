//! The connection's settings, URL building, pagination and the REST calls.

use airlock_sdk::http::Request;
use airlock_sdk::types::{PluginError, UpstreamFailure};
use airlock_sdk::{host, setting_required};
use serde::Deserialize;
use serde_json::Value;

/// The Atlassian API gateway OAuth 2.0 (3LO) calls go through.
pub const GATEWAY: &str = "https://api.atlassian.com";
/// Setting that overrides [`GATEWAY`] (a proxy in front of it, or a test
/// server); the host only lets calls through to granted origins.
pub const GATEWAY_SETTING: &str = "api-gateway";
/// State key of the cached cloud id.
pub const CLOUD_ID_KEY: &str = "cloud-id";
/// State key of the site the cached cloud id belongs to.
pub const CLOUD_SITE_KEY: &str = "cloud-id-site";
/// Most pages of results one operation follows (each is one request).
pub const MAX_PAGES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Cloud,
    DataCenter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Basic,
    OAuth,
}

/// Where the connection's Confluence lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `base-url` without a trailing `/`.
    pub base: String,
    pub deployment: Deployment,
    pub auth_mode: AuthMode,
    /// The context root the API and `_links` paths hang off:
    /// `{base}/wiki`, `{base}` or `https://api.atlassian.com/ex/confluence/{cloudId}/wiki`.
    pub root: String,
}

fn enum_setting(name: &str, default: &str, values: &[&str]) -> Result<String, PluginError> {
    let value = host::setting(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string());
    if values.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(PluginError::InvalidInput(format!(
            "setting `{name}` is `{value}`; expected one of: {}",
            values.join(", ")
        )))
    }
}

impl Site {
    pub fn from_settings() -> Result<Site, PluginError> {
        let base = setting_required("base-url")?
            .trim()
            .trim_end_matches('/')
            .to_string();
        let deployment =
            match enum_setting("deployment", "cloud", &["cloud", "data-center"])?.as_str() {
                "data-center" => Deployment::DataCenter,
                _ => Deployment::Cloud,
            };
        let auth_mode = match enum_setting("auth-mode", "basic", &["basic", "oauth"])?.as_str() {
            "oauth" => AuthMode::OAuth,
            _ => AuthMode::Basic,
        };
        let root = match (deployment, auth_mode) {
            (Deployment::DataCenter, AuthMode::OAuth) => {
                return Err(PluginError::InvalidInput(
                    "setting `auth-mode = oauth` needs `deployment = cloud`: Atlassian OAuth 2.0 \
                     (3LO) only reaches Confluence Cloud; use a personal access token (bearer) \
                     for Data Center"
                        .to_string(),
                ));
            }
            (Deployment::DataCenter, AuthMode::Basic) => base.clone(),
            (Deployment::Cloud, AuthMode::Basic) => site_root(&base, deployment),
            (Deployment::Cloud, AuthMode::OAuth) => {
                let gateway = gateway();
                format!(
                    "{gateway}/ex/confluence/{}/wiki",
                    cloud_id(&gateway, &base)?
                )
            }
        };
        Ok(Site {
            base,
            deployment,
            auth_mode,
            root,
        })
    }

    /// `{root}/rest/api/{path}?{query}`; `path` must already be encoded,
    /// query pairs are encoded here.
    pub fn api(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/rest/api/{}", self.root, path.trim_start_matches('/'));
        for (index, (name, value)) in query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.push_str(&component(name));
            url.push('=');
            url.push_str(&component(value));
        }
        url
    }

    /// A `_links.webui` path as a link for people (on the site, never the
    /// API gateway).
    pub fn web(&self, webui: &str) -> String {
        format!(
            "{}/{}",
            site_root(&self.base, self.deployment),
            webui.trim_start_matches('/')
        )
    }

    /// The absolute URL of a `_links.next` path. It is relative to the
    /// context root; an absolute link must stay under the root.
    pub fn next_url(&self, next: &str) -> Result<String, PluginError> {
        let next = next.trim();
        if next.starts_with('/') && !next.starts_with("//") {
            return Ok(format!("{}{next}", self.root));
        }
        if next.starts_with(&format!("{}/", self.root)) {
            return Ok(next.to_string());
        }
        Err(PluginError::Upstream(UpstreamFailure {
            status: 200,
            message: format!(
                "Confluence's pagination link `{next}` points outside {}; not followed",
                self.root
            ),
        }))
    }
}

/// `{base}/wiki` on Cloud, `{base}` on Data Center.
pub fn site_root(base: &str, deployment: Deployment) -> String {
    match deployment {
        Deployment::Cloud => format!("{base}/wiki"),
        Deployment::DataCenter => base.to_string(),
    }
}

/// Percent-encoding of one URL component (the SDK's, shared by every plugin).
pub use airlock_sdk::http::encode_component as component;

#[derive(Debug, Deserialize)]
pub struct Resource {
    pub id: String,
    #[serde(default)]
    pub url: String,
}

/// The accessible resource whose URL is the site `base`.
pub fn match_resource<'a>(resources: &'a [Resource], base: &str) -> Option<&'a Resource> {
    let want = base.trim_end_matches('/').to_ascii_lowercase();
    resources
        .iter()
        .find(|r| r.url.trim_end_matches('/').to_ascii_lowercase() == want && !r.id.is_empty())
}

/// The Atlassian API gateway OAuth calls go through.
fn gateway() -> String {
    host::setting(GATEWAY_SETTING)
        .map(|g| g.trim().trim_end_matches('/').to_string())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| GATEWAY.to_string())
}

/// The cloud id of the site `base`, cached in the connection's state.
fn cloud_id(gateway: &str, base: &str) -> Result<String, PluginError> {
    if let (Some(id), Some(site)) = (
        host::state_get(CLOUD_ID_KEY),
        host::state_get(CLOUD_SITE_KEY),
    ) && site == base
        && !id.is_empty()
    {
        return Ok(id);
    }
    let resources: Vec<Resource> =
        Request::get(format!("{gateway}/oauth/token/accessible-resources"))
            .header("accept", "application/json")
            .send_json()?;
    let Some(found) = match_resource(&resources, base) else {
        let sites: Vec<&str> = resources.iter().map(|r| r.url.as_str()).collect();
        return Err(PluginError::NotFound(format!(
            "the OAuth token does not grant access to {base}; it reaches: {}",
            if sites.is_empty() {
                "no site".to_string()
            } else {
                sites.join(", ")
            }
        )));
    };
    if !found
        .id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(PluginError::Upstream(UpstreamFailure {
            status: 200,
            message: format!("the cloud id `{}` of {base} is not a UUID", found.id),
        }));
    }
    host::state_set(CLOUD_ID_KEY, &found.id)?;
    host::state_set(CLOUD_SITE_KEY, base)?;
    Ok(found.id.clone())
}

pub fn get_json(url: String) -> Result<Value, PluginError> {
    Request::get(url)
        .header("accept", "application/json")
        .send_json()
}

/// One page of a paginated answer.
#[derive(Debug, Deserialize)]
struct Paged {
    #[serde(default)]
    results: Vec<Value>,
    #[serde(default, rename = "_links")]
    links: Option<Links>,
}

#[derive(Debug, Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

/// Results of `first` and the pages its `_links.next` lead to, until
/// `limit` results, no next link, or an empty page.
pub fn collect(site: &Site, first: String, limit: usize) -> Result<Vec<Value>, PluginError> {
    let mut out = Vec::new();
    let mut url = first;
    for _ in 0..MAX_PAGES {
        let page: Paged = Request::get(url)
            .header("accept", "application/json")
            .send_json()?;
        let empty = page.results.is_empty();
        out.extend(page.results);
        if out.len() >= limit || empty {
            break;
        }
        match page.links.and_then(|l| l.next).filter(|n| !n.is_empty()) {
            Some(next) => url = site.next_url(&next)?,
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// One page of a search: its results, `_links.next`, and where it stands
/// (`start`, and `totalSize` when Confluence reports it).
#[derive(Debug, Deserialize)]
pub struct SearchPage {
    #[serde(default)]
    pub results: Vec<Value>,
    #[serde(default)]
    pub start: Option<u64>,
    #[serde(default, rename = "totalSize")]
    pub total_size: Option<u64>,
    #[serde(default, rename = "_links")]
    links: Option<Links>,
}

impl SearchPage {
    /// `_links.next`, if not empty.
    pub fn next(&self) -> Option<&str> {
        self.links
            .as_ref()
            .and_then(|l| l.next.as_deref())
            .filter(|n| !n.trim().is_empty())
    }
}

/// `GET` one page of a search.
pub fn search_page(url: String) -> Result<SearchPage, PluginError> {
    Request::get(url)
        .header("accept", "application/json")
        .send_json()
}

pub fn post_json(url: String, body: &Value) -> Result<Value, PluginError> {
    Request::post(url)
        .header("accept", "application/json")
        .json(body)
        .send_json()
}

pub fn put_json(url: String, body: &Value) -> Result<Value, PluginError> {
    Request::put(url)
        .header("accept", "application/json")
        .json(body)
        .send_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(deployment: Deployment) -> Site {
        let base = "https://acme.atlassian.net".to_string();
        Site {
            root: site_root(&base, deployment),
            base,
            deployment,
            auth_mode: AuthMode::Basic,
        }
    }

    #[test]
    fn builds_api_urls() {
        let cloud = site(Deployment::Cloud);
        assert_eq!(
            cloud.api("space", &[("limit", "25"), ("start", "0")]),
            "https://acme.atlassian.net/wiki/rest/api/space?limit=25&start=0"
        );
        let dc = site(Deployment::DataCenter);
        assert_eq!(
            dc.api("content/search", &[("cql", "space = \"É T\"")]),
            "https://acme.atlassian.net/rest/api/content/search?cql=space%20%3D%20%22%C3%89%20T%22"
        );
        assert_eq!(
            cloud.web("/spaces/ENG/pages/1"),
            "https://acme.atlassian.net/wiki/spaces/ENG/pages/1"
        );
    }

    #[test]
    fn follows_only_links_under_the_root() {
        let cloud = site(Deployment::Cloud);
        assert_eq!(
            cloud.next_url("/rest/api/space?limit=2&start=2").unwrap(),
            "https://acme.atlassian.net/wiki/rest/api/space?limit=2&start=2"
        );
        assert!(cloud.next_url("https://evil.example/rest/api").is_err());
        assert!(cloud.next_url("//evil.example/rest/api").is_err());
        assert!(
            cloud
                .next_url("https://acme.atlassian.net/wiki/rest/api/space?start=4")
                .is_ok()
        );
    }

    #[test]
    fn matches_the_site_among_accessible_resources() {
        let resources = vec![
            Resource {
                id: "a".into(),
                url: "https://other.atlassian.net".into(),
            },
            Resource {
                id: "1324a887-45db-1bf4-1e99-ef0ff456d421".into(),
                url: "https://ACME.atlassian.net/".into(),
            },
        ];
        assert_eq!(
            match_resource(&resources, "https://acme.atlassian.net")
                .unwrap()
                .id,
            "1324a887-45db-1bf4-1e99-ef0ff456d421"
        );
        assert!(match_resource(&resources, "https://nope.atlassian.net").is_none());
    }
}
