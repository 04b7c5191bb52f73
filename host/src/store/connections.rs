//! Connections: a configured use of a plugin (settings, auth kind, scope),
//! stored in `connections` and `connection_projects`. Secrets are the
//! vault's, in `secrets`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, new_id, now};
use crate::manifest::AuthKind;

/// Whether a connection may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionStatus {
    /// Calls go through.
    Active,
    /// Calls are refused until the operator resumes it.
    Paused,
    /// The credential was refused or expired; the operator must re-authorise.
    NeedsReauth,
}

impl ConnectionStatus {
    /// Every status, in declaration order.
    pub const ALL: [ConnectionStatus; 3] = [Self::Active, Self::Paused, Self::NeedsReauth];

    /// The stored (and serialized) form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::NeedsReauth => "needs-reauth",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("unknown connection status `{s}`: expected active, paused or needs-reauth")
            })
    }
}

/// Where a connection applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every project.
    Global,
    /// Only these projects (stored sorted and without duplicates).
    Projects(Vec<String>),
}

impl Scope {
    /// Whether the connection applies to `project`.
    pub fn includes(&self, project: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Projects(projects) => projects.iter().any(|p| p == project),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Projects(projects) => write!(f, "projects: {}", projects.join(", ")),
        }
    }
}

/// Non-secret authentication settings, stored as JSON in `auth_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct AuthConfig {
    /// User name for basic auth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Header carrying an API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Prefix put before the key or token in that header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A configured connection.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ConnectionRecord {
    /// Random hex id; the vault keys the connection's secrets by it.
    pub id: String,
    /// Unique name the operator calls it by.
    pub name: String,
    /// The installed plugin it runs.
    pub plugin_id: String,
    /// Non-secret settings, by setting name.
    pub settings: BTreeMap<String, String>,
    /// How the host authenticates its requests.
    pub auth_kind: AuthKind,
    /// The non-secret part of that authentication.
    pub auth_config: AuthConfig,
    /// Where it may be used: everywhere, or in named projects only.
    pub scope: Scope,
    /// Whether it may be used now.
    pub status: ConnectionStatus,
    /// RFC 3339 UTC, as the store writes it.
    pub created_at: String,
    /// RFC 3339 UTC, as the store writes it.
    pub updated_at: String,
}

impl ConnectionRecord {
    /// A new active, global connection with a fresh id and no settings.
    pub fn new(name: impl Into<String>, plugin_id: impl Into<String>, auth_kind: AuthKind) -> Self {
        let now = now();
        Self {
            id: new_id(),
            name: name.into(),
            plugin_id: plugin_id.into(),
            settings: BTreeMap::new(),
            auth_kind,
            auth_config: AuthConfig::default(),
            scope: Scope::Global,
            status: ConnectionStatus::Active,
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

/// Which connections a listing returns ([`crate::Airlock::connections`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    /// Only connections of this plugin.
    pub plugin_id: Option<String>,
    /// Only connections usable in this project: global ones and those scoped to it.
    pub project: Option<String>,
}

const COLUMNS: &str = "id, name, plugin_id, settings, auth_kind, auth_config, is_global, status, \
                       created_at, updated_at";

/// Insert `record` with its project scope.
///
/// The record's id is used as given (so the caller can write its secrets in
/// the same transaction); its timestamps are set to now. A project scope is
/// stored sorted and without duplicates. Returns the record as stored.
pub fn insert_connection(
    tx: &Tx<'_>,
    record: &ConnectionRecord,
) -> Result<ConnectionRecord, StoreError> {
    let plugin_installed = tx.exists(
        "SELECT 1 FROM plugins WHERE id = ?1",
        params![record.plugin_id],
    )?;
    if !plugin_installed {
        return Err(StoreError::NotFound(format!(
            "plugin `{}`",
            record.plugin_id
        )));
    }
    let name_taken = tx.exists(
        "SELECT 1 FROM connections WHERE name = ?1",
        params![record.name],
    )?;
    if name_taken {
        return Err(StoreError::Conflict(format!(
            "a connection named `{}` already exists",
            record.name
        )));
    }
    let scope = match &record.scope {
        Scope::Global => Scope::Global,
        Scope::Projects(projects) => {
            let unique: BTreeSet<&String> = projects.iter().collect();
            if unique.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "connection `{}` must be global or scoped to at least one project",
                    record.name
                )));
            }
            Scope::Projects(unique.into_iter().cloned().collect())
        }
    };
    let now = now();
    tx.execute(
        &format!(
            "INSERT INTO connections ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)"
        ),
        params![
            record.id,
            record.name,
            record.plugin_id,
            to_json(&record.settings)?,
            record.auth_kind.as_str(),
            to_json(&record.auth_config)?,
            matches!(scope, Scope::Global),
            record.status.as_str(),
            now,
        ],
    )
    .map_err(|e| {
        if is_constraint_violation(&e) {
            StoreError::Conflict(format!(
                "connection `{}` (id {}) cannot be stored: {e}",
                record.name, record.id
            ))
        } else {
            e
        }
    })?;
    if let Scope::Projects(projects) = &scope {
        for project in projects {
            tx.execute(
                "INSERT INTO connection_projects (connection_id, project) VALUES (?1, ?2)",
                params![record.id, project],
            )?;
        }
    }
    Ok(ConnectionRecord {
        scope,
        created_at: now.clone(),
        updated_at: now,
        ..record.clone()
    })
}

/// The connection whose id, or else whose name, is `id_or_name`.
pub fn get_connection(conn: &dyn Db, id_or_name: &str) -> Result<ConnectionRecord, StoreError> {
    // Both engines cache the prepared statement: this runs on every call.
    let raw = conn
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM connections WHERE id = ?1 OR name = ?1
                 ORDER BY id = ?1 DESC LIMIT 1"
            ),
            params![id_or_name],
            RawConnection::from_row,
        )?
        .ok_or_else(|| StoreError::NotFound(format!("connection `{id_or_name}`")))?;
    raw.decode(conn)
}

/// Connections matching `filter`, ordered by name.
pub fn list_connections(
    conn: &dyn Db,
    filter: &ConnectionFilter,
) -> Result<Vec<ConnectionRecord>, StoreError> {
    let raw = conn.query_map(
        &format!(
            "SELECT {COLUMNS} FROM connections c
             WHERE (CAST(?1 AS TEXT) IS NULL OR c.plugin_id = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR c.is_global = 1 OR EXISTS (
                    SELECT 1 FROM connection_projects p
                    WHERE p.connection_id = c.id AND p.project = ?2))
             ORDER BY c.name"
        ),
        params![filter.plugin_id, filter.project],
        RawConnection::from_row,
    )?;
    raw.into_iter().map(|r| r.decode(conn)).collect()
}

/// Set the status of connection `id`.
pub fn set_status(tx: &Tx<'_>, id: &str, status: ConnectionStatus) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE connections SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, status.as_str(), now()],
    )?;
    found(n, id)
}

/// Replace connection `id`'s settings and the non-secret part of its auth
/// together, so the header an API key is sent in never disagrees with the
/// settings that name it.
pub fn update_settings_and_auth(
    tx: &Tx<'_>,
    id: &str,
    settings: &BTreeMap<String, String>,
    auth: &AuthConfig,
) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE connections SET settings = ?2, auth_config = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, to_json(settings)?, to_json(auth)?, now()],
    )?;
    found(n, id)
}

/// Delete connection `id`. Its projects, secrets, OAuth states, plugin state
/// and sync runs and records go with it (foreign-key cascades).
pub fn delete_connection(tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
    let n = tx.execute("DELETE FROM connections WHERE id = ?1", params![id])?;
    found(n, id)
}

/// The connection of `plugin_id` to use in `project`: the one scoped to the
/// project, or else the one global connection.
///
/// Several scoped to the project, or several global ones and none scoped,
/// is a [`StoreError::Conflict`] naming them; none is a
/// [`StoreError::NoMatch`] listing the plugin's connections and their scopes.
/// The status is not considered: a paused connection is still returned.
pub fn resolve_for_project(
    conn: &dyn Db,
    plugin_id: &str,
    project: &str,
) -> Result<ConnectionRecord, StoreError> {
    let all = list_connections(
        conn,
        &ConnectionFilter {
            plugin_id: Some(plugin_id.to_string()),
            project: None,
        },
    )?;
    let (mut scoped, mut global) = (Vec::new(), Vec::new());
    for c in &all {
        match &c.scope {
            Scope::Projects(projects) if projects.iter().any(|p| p == project) => scoped.push(c),
            Scope::Projects(_) => {}
            Scope::Global => global.push(c),
        }
    }
    let names = |cs: &[&ConnectionRecord]| {
        cs.iter()
            .map(|c| format!("`{}`", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (scoped.len(), global.len()) {
        (1, _) => Ok(scoped[0].clone()),
        (0, 1) => Ok(global[0].clone()),
        (0, 0) if all.is_empty() => Err(StoreError::NoMatch(format!(
            "no connection for project `{project}`: plugin `{plugin_id}` has no connections; \
             add one first"
        ))),
        (0, 0) => {
            let existing = all
                .iter()
                .map(|c| format!("`{}` ({})", c.name, c.scope))
                .collect::<Vec<_>>()
                .join(", ");
            Err(StoreError::NoMatch(format!(
                "no connection for project `{project}` (plugin `{plugin_id}`); existing \
                 connections: {existing}"
            )))
        }
        (0, _) => Err(StoreError::Conflict(format!(
            "plugin `{plugin_id}` has several global connections ({}) and none scoped to project \
             `{project}`; scope one of them to `{project}` or remove the others",
            names(&global)
        ))),
        _ => Err(StoreError::Conflict(format!(
            "connections {} of plugin `{plugin_id}` are all scoped to project `{project}`; \
             remove `{project}` from all but one of them",
            names(&scoped)
        ))),
    }
}

fn found(changed: u64, id: &str) -> Result<(), StoreError> {
    if changed == 0 {
        Err(StoreError::NotFound(format!("connection `{id}`")))
    } else {
        Ok(())
    }
}

/// Whether `e` is the engine refusing a row for a constraint (a taken id).
fn is_constraint_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Sqlite(e) => {
            e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
        }
        // SQLSTATE class 23: integrity constraint violation.
        StoreError::Postgres(e) => e.code().is_some_and(|c| c.code().starts_with("23")),
        _ => false,
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode connection data as JSON: {e}")))
}

fn parse_auth_kind(s: &str) -> Option<AuthKind> {
    [
        AuthKind::None,
        AuthKind::Basic,
        AuthKind::ApiKey,
        AuthKind::Bearer,
        AuthKind::Oauth2,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

/// A row as stored, before its JSON and enum columns are decoded.
struct RawConnection {
    id: String,
    name: String,
    plugin_id: String,
    settings: String,
    auth_kind: String,
    auth_config: String,
    is_global: bool,
    status: String,
    created_at: String,
    updated_at: String,
}

impl RawConnection {
    fn from_row(r: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.get(0)?,
            name: r.get(1)?,
            plugin_id: r.get(2)?,
            settings: r.get(3)?,
            auth_kind: r.get(4)?,
            auth_config: r.get(5)?,
            is_global: r.get(6)?,
            status: r.get(7)?,
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
        })
    }

    fn decode(self, conn: &dyn Db) -> Result<ConnectionRecord, StoreError> {
        let corrupt = |what: &str, e: &dyn fmt::Display| {
            StoreError::Corrupt(format!("{what} of connection `{}`: {e}", self.name))
        };
        let settings = serde_json::from_str(&self.settings).map_err(|e| corrupt("settings", &e))?;
        let auth_config =
            serde_json::from_str(&self.auth_config).map_err(|e| corrupt("auth config", &e))?;
        let auth_kind = parse_auth_kind(&self.auth_kind)
            .ok_or_else(|| corrupt("auth kind", &format!("unknown kind `{}`", self.auth_kind)))?;
        let status = self
            .status
            .parse()
            .map_err(|e: String| corrupt("status", &e))?;
        let scope = if self.is_global {
            Scope::Global
        } else {
            let projects = conn.query_map(
                "SELECT project FROM connection_projects WHERE connection_id = ?1 ORDER BY project",
                params![self.id],
                |r| r.get::<String>(0),
            )?;
            Scope::Projects(projects)
        };
        Ok(ConnectionRecord {
            id: self.id,
            name: self.name,
            plugin_id: self.plugin_id,
            settings,
            auth_kind,
            auth_config,
            scope,
            status,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::plugins::testing::install;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        insert_and_get_by_id_or_name,
        duplicate_names_are_a_conflict,
        unknown_plugins_are_not_found,
        an_empty_project_scope_is_refused,
        list_filters_by_plugin_and_project,
        status_and_settings_updates,
        delete_cascades_to_dependent_rows,
        resolve_prefers_a_project_scoped_connection_over_a_global_one,
        resolve_reports_ambiguity_naming_the_candidates,
        resolve_without_a_match_lists_what_exists
    );

    fn add(store: &Store, name: &str, plugin: &str, scope: Scope) -> ConnectionRecord {
        let mut c = ConnectionRecord::new(name, plugin, AuthKind::Bearer);
        c.scope = scope;
        store.write(|tx| insert_connection(tx, &c)).unwrap()
    }

    fn projects(ps: &[&str]) -> Scope {
        Scope::Projects(ps.iter().map(|p| p.to_string()).collect())
    }

    fn names(cs: &[ConnectionRecord]) -> Vec<&str> {
        cs.iter().map(|c| c.name.as_str()).collect()
    }

    fn count(store: &Store, table: &str, id: &str) -> u32 {
        store
            .read(|c| {
                c.query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE connection_id = ?1"),
                    params![id],
                    |r| r.get(0),
                )
            })
            .unwrap()
    }

    #[test]
    fn status_strings_round_trip_and_match_serde() {
        for s in ConnectionStatus::ALL {
            assert_eq!(s.as_str().parse::<ConnectionStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let err = "gone".parse::<ConnectionStatus>().unwrap_err();
        assert!(
            err.contains("gone") && err.contains("needs-reauth"),
            "{err}"
        );
    }

    #[test]
    fn auth_kind_strings_match_the_manifest_spelling() {
        for k in [
            AuthKind::None,
            AuthKind::Basic,
            AuthKind::ApiKey,
            AuthKind::Bearer,
            AuthKind::Oauth2,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(parse_auth_kind(k.as_str()), Some(k));
        }
    }

    #[test]
    fn scope_and_auth_config_serialize_compactly() {
        assert_eq!(
            serde_json::to_string(&Scope::Global).unwrap(),
            r#""global""#
        );
        assert_eq!(
            serde_json::to_string(&projects(&["a"])).unwrap(),
            r#"{"projects":["a"]}"#
        );
        let cfg = AuthConfig {
            header: Some("X-Key".into()),
            ..AuthConfig::default()
        };
        assert_eq!(
            serde_json::to_string(&cfg).unwrap(),
            r#"{"header":"X-Key"}"#
        );
        assert_eq!(
            serde_json::from_str::<AuthConfig>("{}").unwrap(),
            AuthConfig::default()
        );
    }

    fn insert_and_get_by_id_or_name(store: &TestStore) {
        install(store, "jira");
        let mut c = ConnectionRecord::new("work", "jira", AuthKind::Basic);
        c.settings
            .insert("base-url".into(), "https://jira.example.com".into());
        c.auth_config.username = Some("ops".into());
        c.scope = projects(&["web", "api", "web"]);
        let stored = store.write(|tx| insert_connection(tx, &c)).unwrap();
        assert_eq!(stored.scope, projects(&["api", "web"]));
        assert_eq!(stored.id, c.id);

        let by_id = store.read(|conn| get_connection(conn, &c.id)).unwrap();
        let by_name = store.read(|conn| get_connection(conn, "work")).unwrap();
        assert_eq!(by_id, stored);
        assert_eq!(by_name, stored);
        assert_eq!(by_id.auth_kind, AuthKind::Basic);
        assert_eq!(by_id.auth_config.username.as_deref(), Some("ops"));
        assert_eq!(by_id.settings["base-url"], "https://jira.example.com");
        assert_eq!(by_id.status, ConnectionStatus::Active);

        let err = store.read(|conn| get_connection(conn, "nope")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(err.to_string(), "connection `nope` not found");
    }

    fn duplicate_names_are_a_conflict(store: &TestStore) {
        install(store, "jira");
        add(store, "work", "jira", Scope::Global);
        let again = ConnectionRecord::new("work", "jira", AuthKind::Bearer);
        let err = store.write(|tx| insert_connection(tx, &again)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(err.to_string(), "a connection named `work` already exists");
    }

    fn unknown_plugins_are_not_found(store: &TestStore) {
        let c = ConnectionRecord::new("work", "jira", AuthKind::Bearer);
        let err = store.write(|tx| insert_connection(tx, &c)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert_eq!(err.to_string(), "plugin `jira` not found");
    }

    fn an_empty_project_scope_is_refused(store: &TestStore) {
        install(store, "jira");
        let mut c = ConnectionRecord::new("work", "jira", AuthKind::Bearer);
        c.scope = Scope::Projects(vec![]);
        let err = store.write(|tx| insert_connection(tx, &c)).unwrap_err();
        assert!(err.to_string().contains("at least one project"), "{err}");
    }

    fn list_filters_by_plugin_and_project(store: &TestStore) {
        install(store, "jira");
        install(store, "confluence");
        add(store, "d-global", "jira", Scope::Global);
        add(store, "c-web", "jira", projects(&["web"]));
        add(store, "b-api", "jira", projects(&["api"]));
        add(store, "a-docs", "confluence", projects(&["web"]));

        let all = store
            .read(|c| list_connections(c, &ConnectionFilter::default()))
            .unwrap();
        assert_eq!(names(&all), ["a-docs", "b-api", "c-web", "d-global"]);

        let jira = ConnectionFilter {
            plugin_id: Some("jira".into()),
            ..Default::default()
        };
        let got = store.read(|c| list_connections(c, &jira)).unwrap();
        assert_eq!(names(&got), ["b-api", "c-web", "d-global"]);

        let web = ConnectionFilter {
            project: Some("web".into()),
            ..Default::default()
        };
        let got = store.read(|c| list_connections(c, &web)).unwrap();
        assert_eq!(names(&got), ["a-docs", "c-web", "d-global"]);

        let jira_web = ConnectionFilter {
            plugin_id: Some("jira".into()),
            project: Some("web".into()),
        };
        let got = store.read(|c| list_connections(c, &jira_web)).unwrap();
        assert_eq!(names(&got), ["c-web", "d-global"]);
        assert_eq!(got[0].scope, projects(&["web"]));
    }

    fn status_and_settings_updates(store: &TestStore) {
        install(store, "jira");
        let c = add(store, "work", "jira", Scope::Global);
        std::thread::sleep(std::time::Duration::from_millis(5));
        store
            .write(|tx| set_status(tx, &c.id, ConnectionStatus::NeedsReauth))
            .unwrap();
        let got = store.read(|conn| get_connection(conn, &c.id)).unwrap();
        assert_eq!(got.status, ConnectionStatus::NeedsReauth);
        assert_ne!(got.updated_at, c.updated_at);
        assert_eq!(got.created_at, c.created_at);

        let settings = BTreeMap::from([("base-url".to_string(), "https://x.test".to_string())]);
        store
            .write(|tx| update_settings_and_auth(tx, &c.id, &settings, &c.auth_config))
            .unwrap();
        let got = store.read(|conn| get_connection(conn, &c.id)).unwrap();
        assert_eq!(got.settings, settings);

        let err = store
            .write(|tx| set_status(tx, "nope", ConnectionStatus::Paused))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store
            .write(|tx| update_settings_and_auth(tx, "nope", &settings, &AuthConfig::default()))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    fn delete_cascades_to_dependent_rows(store: &TestStore) {
        install(store, "jira");
        let c = add(store, "work", "jira", projects(&["web"]));
        let keep = add(store, "other", "jira", Scope::Global);
        let now = now();
        store
            .write(|tx| {
                for id in [&c.id, &keep.id] {
                    tx.execute(
                        "INSERT INTO plugin_state (connection_id, project, key, value, updated_at)
                         VALUES (?1, 'web', 'k', 'v', ?2)",
                        params![id, now],
                    )?;
                    let run = format!("run-{id}");
                    tx.execute(
                        "INSERT INTO sync_runs (id, connection_id, \"full\", started_at, status)
                         VALUES (?1, ?2, 1, ?3, 'running')",
                        params![run, id, now],
                    )?;
                    tx.execute(
                        "INSERT INTO sync_records
                             (connection_id, kind, record_id, updated_at, data, run_id, synced_at)
                         VALUES (?1, 'issue', '1', NULL, '{}', ?2, ?3)",
                        params![id, run, now],
                    )?;
                }
                Ok(())
            })
            .unwrap();

        store.write(|tx| delete_connection(tx, &c.id)).unwrap();
        for table in [
            "connection_projects",
            "plugin_state",
            "sync_runs",
            "sync_records",
        ] {
            assert_eq!(count(store, table, &c.id), 0, "{table}");
        }
        for table in ["plugin_state", "sync_runs", "sync_records"] {
            assert_eq!(count(store, table, &keep.id), 1, "{table}");
        }
        let err = store.read(|conn| get_connection(conn, &c.id)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        let err = store.write(|tx| delete_connection(tx, &c.id)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    fn resolve_prefers_a_project_scoped_connection_over_a_global_one(store: &TestStore) {
        install(store, "jira");
        install(store, "confluence");
        add(store, "shared", "jira", Scope::Global);
        add(store, "web-only", "jira", projects(&["web"]));
        add(store, "docs-web", "confluence", projects(&["web"]));

        let got = store
            .read(|c| resolve_for_project(c, "jira", "web"))
            .unwrap();
        assert_eq!(got.name, "web-only");
        let got = store
            .read(|c| resolve_for_project(c, "jira", "api"))
            .unwrap();
        assert_eq!(got.name, "shared");
    }

    fn resolve_reports_ambiguity_naming_the_candidates(store: &TestStore) {
        install(store, "jira");
        add(store, "g1", "jira", Scope::Global);
        add(store, "g2", "jira", Scope::Global);
        let err = store
            .read(|c| resolve_for_project(c, "jira", "web"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("`g1`, `g2`") && msg.contains("`web`"), "{msg}");

        // One scoped connection settles it despite two globals.
        add(store, "s1", "jira", projects(&["web"]));
        let got = store
            .read(|c| resolve_for_project(c, "jira", "web"))
            .unwrap();
        assert_eq!(got.name, "s1");

        add(store, "s2", "jira", projects(&["api", "web"]));
        let err = store
            .read(|c| resolve_for_project(c, "jira", "web"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("`s1`, `s2`") && msg.contains("`web`"), "{msg}");
        assert!(!msg.contains("g1"), "{msg}");
    }

    fn resolve_without_a_match_lists_what_exists(store: &TestStore) {
        install(store, "jira");
        install(store, "confluence");
        add(store, "a", "jira", projects(&["p2", "p1"]));
        add(store, "b", "jira", projects(&["p3"]));
        add(store, "docs", "confluence", Scope::Global);

        let err = store
            .read(|c| resolve_for_project(c, "jira", "web"))
            .unwrap_err();
        assert!(matches!(err, StoreError::NoMatch(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("project `web`") && msg.contains("plugin `jira`"),
            "{msg}"
        );
        assert!(
            msg.contains("existing connections: `a` (projects: p1, p2), `b` (projects: p3)"),
            "{msg}"
        );
        assert!(!msg.contains("docs"), "{msg}");

        let err = store
            .read(|c| resolve_for_project(c, "servicenow", "web"))
            .unwrap_err();
        assert!(matches!(err, StoreError::NoMatch(_)), "{err}");
        assert!(
            err.to_string()
                .contains("plugin `servicenow` has no connections"),
            "{err}"
        );
    }
}
