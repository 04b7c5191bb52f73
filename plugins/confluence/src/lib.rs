//! airlock connector for Confluence pages, over the REST API (v1).
//!
//! Runs as a sandboxed component (world `documents`: exports `connector`,
//! `documents` and `sync`). The host injects the credential (Basic email +
//! API token, a Data Center personal access token as bearer, or an Atlassian
//! OAuth 2.0 (3LO) token it obtained itself); this plugin never sees a
//! secret and never sets `Authorization`.
//!
//! # Settings
//!
//! | setting      | default | meaning                                                         |
//! |--------------|---------|-----------------------------------------------------------------|
//! | `base-url`   | —       | the site, e.g. `https://acme.atlassian.net`                     |
//! | `deployment` | `cloud` | `cloud`: API at `{base-url}/wiki/rest/api`; `data-center`: `{base-url}/rest/api` |
//! | `auth-mode`  | `basic` | `oauth` (Cloud): API at `https://api.atlassian.com/ex/confluence/{cloudId}/wiki/rest/api`, the cloud id found with `GET https://api.atlassian.com/oauth/token/accessible-resources` (the resource whose `url` is `base-url`) and cached in the connection's state (`cloud-id`) |
//! | `oauth-server` | `https://auth.atlassian.com` | the OAuth 2.0 authorisation server (the manifest's authorize and token URLs hang off it) |
//! | `api-gateway` | `https://api.atlassian.com` | the gateway `oauth` mode calls; the manifest's egress entry for it carries `credential = ["oauth2"]`, so the host injects the OAuth token there and nowhere else but `base-url` |
//! | `spaces`     | empty   | space keys to sync, comma-separated; all visible spaces when empty |
//!
//! # Operations
//!
//! | operation         | request                                                                  |
//! |-------------------|--------------------------------------------------------------------------|
//! | `test-connection` | `GET {api}/user/current` (an `anonymous` answer is `unauthorized`)       |
//! | `list-spaces`     | `GET {api}/space?limit=&start=0`, then `_links.next`                     |
//! | `search-pages`    | `GET {api}/content/search?cql=&limit=&start=0&expand=space,version`, then `_links.next` |
//! | `get-page`        | `GET {api}/content/{id}?expand=body.storage,version,space,ancestors`     |
//! | `publish-page`    | `POST {api}/content`                                                     |
//! | `update-page`     | [`GET {api}/content/{id}?expand=version`], `PUT {api}/content/{id}`      |
//! | `sync.fetch-page` | CQL by `lastmodified`, then `_links.next` (see [`sync`])                 |
//!
//! `limit` 0 means 25; pagination follows `_links.next` (relative to the
//! context root, never to another origin) until the limit, at most 20 pages.
//!
//! ## Search
//!
//! `page-query.cql` is sent as written (with a `space-key` as well it is
//! `invalid-input`: put the space in the CQL). Otherwise `text` becomes
//! `type=page AND text ~ "<text>"` and `space-key` `AND space = "<KEY>"`, with
//! `"` and `\` escaped by `\`; neither gives `type=page`.
//!
//! ## Bodies
//!
//! `storage` bodies are sent as is; `markdown` is converted by
//! [`markdown::to_storage`], which escapes raw HTML.
//!
//! ## Publish and update
//!
//! Refused before anything is sent, as `invalid-input`: an empty title, a
//! title over 255 characters (Confluence's limit, never truncated), an
//! empty space key, a page or parent id that is not numeric.
//!
//! An update sends `version.number = current + 1`. Without a version (or a
//! title) in the request the plugin reads the page first; a given version
//! that is not the current one is `conflict` naming both, and so is an
//! HTTP 409 (someone saved in between).
//!
//! ## Errors
//!
//! Non-2xx answers become the SDK's typed errors with Confluence's
//! `message`: 400 → `invalid-input`, 401 → `unauthorized`, 403 →
//! `forbidden`, 404 → `not-found`, 409 → `conflict`, 429 → `rate-limited`
//! with `Retry-After`, others → `upstream`; a 2xx body that is not JSON is
//! `upstream` ("malformed JSON").

use airlock_sdk::types::{
    ConnectionReport, NewPage, Page, PageQuery, PageSummary, PageUpdate, PluginError, Space,
    SyncPage, SyncRecord, SyncRequest,
};
use airlock_sdk::{Connector, Documents, SyncSource};
use serde_json::Value;

pub mod api;
pub mod markdown;
pub mod model;
pub mod sync;

use api::{AuthMode, Deployment, Site};

/// Results when the caller asks for 0.
pub const DEFAULT_LIMIT: u32 = 25;
/// Most results one call returns.
pub const MAX_LIMIT: u32 = 500;
/// Results asked for per request.
pub const PAGE_LIMIT: usize = 100;

struct Confluence;

fn limit_of(requested: u32) -> usize {
    (match requested {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }) as usize
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Connector for Confluence {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let site = Site::from_settings()?;
        let me = api::get_json(site.api("user/current", &[]))?;
        if text(&me, "type").as_deref() == Some("anonymous") {
            return Err(PluginError::Unauthorized(format!(
                "{} answered as an anonymous user: the credential was not accepted",
                site.base
            )));
        }
        let account = text(&me, "displayName")
            .or_else(|| text(&me, "publicName"))
            .or_else(|| text(&me, "username"))
            .or_else(|| text(&me, "email"));
        let mut details = vec![
            ("site".to_string(), site.base.clone()),
            (
                "deployment".to_string(),
                match site.deployment {
                    Deployment::Cloud => "cloud",
                    Deployment::DataCenter => "data-center",
                }
                .to_string(),
            ),
            (
                "api".to_string(),
                site.api("", &[]).trim_end_matches('/').to_string(),
            ),
        ];
        for (key, label) in [
            ("accountId", "account-id"),
            ("username", "username"),
            ("email", "email"),
        ] {
            if let Some(value) = text(&me, key) {
                details.push((label.to_string(), value));
            }
        }
        if site.auth_mode == AuthMode::OAuth {
            details.push(("auth-mode".to_string(), "oauth".to_string()));
        }
        let who = account
            .clone()
            .unwrap_or_else(|| "a known user".to_string());
        Ok(ConnectionReport {
            account,
            message: format!("connected to {} as {who}", site.base),
            details,
        })
    }
}

impl Documents for Confluence {
    fn list_spaces(limit: u32) -> Result<Vec<Space>, PluginError> {
        let site = Site::from_settings()?;
        let limit = limit_of(limit);
        let per = limit.min(PAGE_LIMIT).to_string();
        let first = site.api("space", &[("limit", &per), ("start", "0")]);
        api::collect(&site, first, limit)?
            .iter()
            .map(|s| model::space(&site, s))
            .collect()
    }

    fn search_pages(query: PageQuery) -> Result<Vec<PageSummary>, PluginError> {
        let site = Site::from_settings()?;
        let limit = limit_of(query.limit);
        let trimmed = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let space = match trimmed(&query.space_key) {
            Some(key) => Some(model::space_key(&key)?),
            None => None,
        };
        let cql = match (trimmed(&query.cql), space) {
            (Some(_), Some(_)) => {
                return Err(PluginError::InvalidInput(
                    "give either `cql` or `space-key`, not both: add `space = \"KEY\"` to the \
                     CQL instead"
                        .to_string(),
                ));
            }
            (Some(cql), None) => cql,
            (None, space) => model::search_cql(trimmed(&query.text).as_deref(), space.as_deref()),
        };
        let per = limit.min(PAGE_LIMIT).to_string();
        let first = site.api(
            "content/search",
            &[
                ("cql", &cql),
                ("limit", &per),
                ("start", "0"),
                ("expand", "space,version"),
            ],
        );
        api::collect(&site, first, limit)?
            .iter()
            .map(|c| model::summary(&site, c))
            .collect()
    }

    fn get_page(id: String) -> Result<Page, PluginError> {
        let id = model::page_id(&id)?;
        let site = Site::from_settings()?;
        let content = api::get_json(site.api(
            &format!("content/{id}"),
            &[("expand", "body.storage,version,space,ancestors")],
        ))?;
        model::page(&site, &content, None)
    }

    fn publish_page(page: NewPage) -> Result<Page, PluginError> {
        let title = model::title(&page.title)?;
        let space = model::space_key(&page.space_key)?;
        let parent = match page.parent_id.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => Some(model::page_id(p).map_err(|_| {
                PluginError::InvalidInput(format!(
                    "parent page id {p:?} is not a Confluence content id (digits only)"
                ))
            })?),
            _ => None,
        };
        let storage = model::storage(&page.body);
        let site = Site::from_settings()?;
        let body = model::create_body(&space, &title, &storage, parent.as_deref());
        let created = api::post_json(site.api("content", &[]), &body)?;
        model::page(&site, &created, Some(&storage))
    }

    fn update_page(update: PageUpdate) -> Result<Page, PluginError> {
        let id = model::page_id(&update.id)?;
        let new_title = match &update.title {
            Some(t) => Some(model::title(t)?),
            None => None,
        };
        let storage = model::storage(&update.body);
        let site = Site::from_settings()?;
        let (base, title) = match (update.version, new_title) {
            (Some(version), Some(title)) => (version, title),
            (given, new_title) => {
                let current =
                    api::get_json(site.api(&format!("content/{id}"), &[("expand", "version")]))?;
                let version = model::version_of(&current).ok_or_else(|| {
                    PluginError::Upstream(airlock_sdk::types::UpstreamFailure {
                        status: 200,
                        message: format!("page {id} has no `version.number` in the answer"),
                    })
                })?;
                if let Some(given) = given
                    && given != version
                {
                    return Err(PluginError::Conflict(format!(
                        "page {id} is at version {version}, not version {given}: it changed \
                         since it was read; read it again and reapply the change"
                    )));
                }
                let title = match new_title {
                    Some(t) => t,
                    None => text(&current, "title").unwrap_or_default(),
                };
                (version, title)
            }
        };
        let next = base.checked_add(1).ok_or_else(|| {
            PluginError::InvalidInput(format!("version {base} cannot be incremented"))
        })?;
        let body = model::update_body(&id, &title, &storage, next);
        let saved =
            api::put_json(site.api(&format!("content/{id}"), &[]), &body).map_err(|e| match e {
                PluginError::Conflict(why) => PluginError::Conflict(format!(
                    "page {id} changed since version {base}: saving version {next} was \
                     refused ({why})"
                )),
                other => other,
            })?;
        model::page(&site, &saved, Some(&storage))
    }
}

impl SyncSource for Confluence {
    fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
        let scope = sync::spaces(airlock_sdk::host::setting("spaces").as_deref());
        let cursor = match request.cursor.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => sync::Cursor::decode(text, &scope)?,
            _ => sync::Cursor::start(&scope),
        };
        let site = Site::from_settings()?;
        let page_size = sync::page_size(request.page_size);
        let (from, page) = read_page(&site, &cursor, page_size)?;
        let returned = page.results.len();
        let mut records = Vec::with_capacity(returned);
        let mut delivered = Vec::with_capacity(returned);
        for content in page.results.iter() {
            let id = model::id_of(content).ok_or_else(|| {
                PluginError::Upstream(airlock_sdk::types::UpstreamFailure {
                    status: 200,
                    message: "a search result without `id`; the sync cannot account for it"
                        .to_string(),
                })
            })?;
            let when = model::modified_of(content);
            delivered.push((id.clone(), when.as_deref().and_then(sync::utc_minute)));
            records.push(SyncRecord {
                id,
                kind: "page".to_string(),
                updated_at: when,
                data: content.to_string(),
            });
        }
        sync::check_complete(page.start, returned, page.total_size, page.next().is_some())?;
        let next = from.advance(&delivered, page.next());
        Ok(SyncPage {
            records,
            next_cursor: Some(next.encode()),
            has_more: page.next().is_some(),
        })
    }
}

/// The next page of the search `cursor` is in, with the cursor it was read
/// after (the anchor of an offset link removed). A link whose anchor moved
/// starts the search again from the cursor's minute.
fn read_page(
    site: &Site,
    cursor: &sync::Cursor,
    page_size: usize,
) -> Result<(sync::Cursor, api::SearchPage), PluginError> {
    let Some(link) = cursor.next.as_deref() else {
        return Ok((cursor.clone(), first_page(site, cursor, page_size)?));
    };
    let anchored = cursor.last.as_deref().and(sync::overlapped(link));
    let url = site.next_url(anchored.as_deref().unwrap_or(link))?;
    let mut page = api::search_page(url).map_err(refused)?;
    let (Some(_), Some(last)) = (&anchored, cursor.last.as_deref()) else {
        return Ok((cursor.clone(), page));
    };
    if page.results.first().and_then(model::id_of).as_deref() == Some(last) {
        page.results.remove(0);
        page.start = page.start.map(|s| s + 1);
        return Ok((cursor.clone(), page));
    }
    airlock_sdk::host::warn(&format!(
        "pages changed while syncing (page {last} is no longer where it was); reading again \
         from {}",
        cursor.since.as_deref().unwrap_or("the beginning")
    ));
    let fresh = cursor.restarted();
    let page = first_page(site, &fresh, page_size)?;
    Ok((fresh, page))
}

/// The first page of the search from the cursor's minute.
fn first_page(
    site: &Site,
    cursor: &sync::Cursor,
    page_size: usize,
) -> Result<api::SearchPage, PluginError> {
    let (cql, limit) = (cursor.cql(), page_size.to_string());
    api::search_page(site.api(
        "content/search",
        &[
            ("cql", &cql),
            ("limit", &limit),
            ("start", "0"),
            ("expand", "version,space,ancestors,body.storage"),
        ],
    ))
}

/// Confluence refusing a next page it linked to: the search cannot be read
/// to its end.
fn refused(error: PluginError) -> PluginError {
    let why = |message: String| {
        format!(
            "Confluence refused the next page of the sync's search ({message}); the sync \
             cannot prove it is complete: run it again, and if it repeats narrow the \
             `spaces` setting or ask the site administrator about search limits"
        )
    };
    match error {
        PluginError::InvalidInput(message) => PluginError::InvalidInput(why(message)),
        PluginError::Upstream(failure) => {
            PluginError::Upstream(airlock_sdk::types::UpstreamFailure {
                status: failure.status,
                message: why(failure.message),
            })
        }
        other => other,
    }
}

airlock_sdk::export!(Confluence, world = documents, manifest = "airlock.toml");
