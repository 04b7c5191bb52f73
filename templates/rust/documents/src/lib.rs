//! {{name}}: an airlock documents plugin. The host runs it in a sandbox,
//! adds the connection's credential to its requests and records each one;
//! the plugin only ever sees its settings and the answers.
//!
//! The service here is a plain REST shape (`GET /api/me`, `GET /api/spaces`,
//! `GET /api/pages?q=`); replace the paths and mappings with your service's.
//! Operations left out answer `unsupported` (the SDK's defaults).

use airlock_sdk::http::{Request, encode_component, join_url};
use airlock_sdk::types::{ConnectionReport, PageQuery, PageSummary, PluginError, Space};
use airlock_sdk::{Connector, Documents, SyncSource, setting_required};
use serde::Deserialize;

struct Plugin;

impl Connector for Plugin {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        #[derive(Deserialize)]
        struct Me {
            name: String,
        }
        let base = setting_required("base-url")?;
        let me: Me = Request::get(join_url(&base, "/api/me")).send_json()?;
        Ok(ConnectionReport {
            account: Some(me.name.clone()),
            message: format!("connected to {base} as {}", me.name),
            details: vec![],
        })
    }
}

impl Documents for Plugin {
    fn list_spaces(limit: u32) -> Result<Vec<Space>, PluginError> {
        #[derive(Deserialize)]
        struct Wire {
            key: String,
            name: String,
        }
        let base = setting_required("base-url")?;
        let limit = if limit == 0 { 25 } else { limit.min(100) };
        let url = join_url(&base, &format!("/api/spaces?limit={limit}"));
        let spaces: Vec<Wire> = Request::get(url).send_json()?;
        Ok(spaces
            .into_iter()
            .map(|s| Space { key: s.key, name: s.name, id: None, kind: None, url: None })
            .collect())
    }

    fn search_pages(query: PageQuery) -> Result<Vec<PageSummary>, PluginError> {
        #[derive(Deserialize)]
        struct Wire {
            id: String,
            title: String,
            space: Option<String>,
        }
        let base = setting_required("base-url")?;
        let text = query.text.unwrap_or_default();
        let limit = if query.limit == 0 { 10 } else { query.limit.min(100) };
        let url = join_url(
            &base,
            &format!("/api/pages?q={}&limit={limit}", encode_component(&text)),
        );
        let hits: Vec<Wire> = Request::get(url).send_json()?;
        Ok(hits
            .into_iter()
            .map(|p| PageSummary {
                id: p.id,
                title: p.title,
                space_key: p.space,
                version: None,
                url: None,
                excerpt: None,
            })
            .collect())
    }
}

/// Not syncing: the SDK's default answers `unsupported`.
impl SyncSource for Plugin {}

airlock_sdk::export!(Plugin, world = documents, manifest = "airlock.toml");
