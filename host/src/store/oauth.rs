//! OAuth: organisation-level app registrations per plugin (`oauth_apps`; the
//! client secret is the vault's), the operator's endpoint overrides of apps
//! and connections (`connection_oauth_endpoints`), and pending
//! authorisations (`oauth_states`).

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, new_id, now};

/// The OAuth app (client) registered for a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthAppRecord {
    /// Random hex id; the vault keys the client secret by it.
    pub id: String,
    /// The plugin whose connections use this app.
    pub plugin_id: String,
    /// The client id the provider issued (not secret).
    pub client_id: String,
    /// Endpoints replacing the manifest's for the plugin's connections.
    pub endpoints: EndpointTexts,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// OAuth endpoints an operator set in place of the manifest's, as stored:
/// each `None` leaves the next layer's value (connection, then app, then
/// manifest). Written only from checked values
/// ([`crate::credential::oauth::EndpointOverrides`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointTexts {
    /// The authorisation endpoint.
    pub authorize_url: Option<String>,
    /// The token endpoint (code exchange and refresh).
    pub token_url: Option<String>,
    /// The issuer identifier a callback's `iss` must name (RFC 9207).
    pub issuer: Option<String>,
}

impl EndpointTexts {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.authorize_url.is_none() && self.token_url.is_none() && self.issuer.is_none()
    }
}

/// A pending authorisation, keyed by the hash of its `state` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthStateRecord {
    /// Hex SHA-256 of the state value.
    pub state_hash: String,
    pub connection_id: String,
    /// Vault key version the verifier is sealed under.
    pub key_version: u32,
    /// The PKCE verifier, sealed by the vault.
    pub verifier: Vec<u8>,
    pub redirect_uri: String,
    pub created_at: String,
    pub expires_at: String,
}

/// Register (or change the client id of) the OAuth app of `plugin_id`.
/// Returns the app's id, which stays the same across updates so the client
/// secret stored against it remains valid.
/// Its endpoint overrides are replaced by `endpoints` (all `None` clears
/// them).
pub fn upsert_oauth_app(
    tx: &Tx<'_>,
    plugin_id: &str,
    client_id: &str,
    endpoints: &EndpointTexts,
) -> Result<String, StoreError> {
    let id = tx.query_row(
        "INSERT INTO oauth_apps
             (id, plugin_id, client_id, authorize_url, token_url, issuer, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (plugin_id) DO UPDATE SET
             client_id = excluded.client_id,
             authorize_url = excluded.authorize_url,
             token_url = excluded.token_url,
             issuer = excluded.issuer,
             updated_at = excluded.updated_at
         RETURNING id",
        params![
            new_id(),
            plugin_id,
            client_id,
            endpoints.authorize_url,
            endpoints.token_url,
            endpoints.issuer,
            now()
        ],
        |r| r.get(0),
    )?;
    Ok(id)
}

/// The OAuth app registered for `plugin_id`, if any.
pub fn get_oauth_app(conn: &dyn Db, plugin_id: &str) -> Result<Option<OAuthAppRecord>, StoreError> {
    conn.query_opt(
        "SELECT id, plugin_id, client_id, created_at, updated_at,
                authorize_url, token_url, issuer
         FROM oauth_apps WHERE plugin_id = ?1",
        params![plugin_id],
        |r| {
            Ok(OAuthAppRecord {
                id: r.get(0)?,
                plugin_id: r.get(1)?,
                client_id: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
                endpoints: EndpointTexts {
                    authorize_url: r.get(5)?,
                    token_url: r.get(6)?,
                    issuer: r.get(7)?,
                },
            })
        },
    )
}

/// Replace the endpoint overrides of connection `connection_id`; all `None`
/// removes them.
pub fn set_connection_endpoints(
    tx: &Tx<'_>,
    connection_id: &str,
    endpoints: &EndpointTexts,
) -> Result<(), StoreError> {
    if !tx.exists(
        "SELECT 1 FROM connections WHERE id = ?1",
        params![connection_id],
    )? {
        return Err(StoreError::NotFound(format!(
            "connection `{connection_id}`"
        )));
    }
    if endpoints.is_empty() {
        tx.execute(
            "DELETE FROM connection_oauth_endpoints WHERE connection_id = ?1",
            params![connection_id],
        )?;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO connection_oauth_endpoints
             (connection_id, authorize_url, token_url, issuer, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (connection_id) DO UPDATE SET
             authorize_url = excluded.authorize_url,
             token_url = excluded.token_url,
             issuer = excluded.issuer,
             updated_at = excluded.updated_at",
        params![
            connection_id,
            endpoints.authorize_url,
            endpoints.token_url,
            endpoints.issuer,
            now()
        ],
    )?;
    Ok(())
}

/// The endpoint overrides of connection `connection_id` (empty when none).
pub fn connection_endpoints(
    conn: &dyn Db,
    connection_id: &str,
) -> Result<EndpointTexts, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT authorize_url, token_url, issuer
             FROM connection_oauth_endpoints WHERE connection_id = ?1",
            params![connection_id],
            |r| {
                Ok(EndpointTexts {
                    authorize_url: r.get(0)?,
                    token_url: r.get(1)?,
                    issuer: r.get(2)?,
                })
            },
        )?
        .unwrap_or_default())
}

/// Remove the OAuth app of `plugin_id` (its client secret goes with it).
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "no command removes an OAuth app or purges expired states yet"
    )
)]
pub fn delete_oauth_app(tx: &Tx<'_>, plugin_id: &str) -> Result<(), StoreError> {
    let n = tx.execute(
        "DELETE FROM oauth_apps WHERE plugin_id = ?1",
        params![plugin_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "OAuth app for plugin `{plugin_id}`"
        )));
    }
    Ok(())
}

/// Record a pending authorisation.
pub fn insert_oauth_state(tx: &Tx<'_>, state: &OAuthStateRecord) -> Result<(), StoreError> {
    let connection_exists = tx.exists(
        "SELECT 1 FROM connections WHERE id = ?1",
        params![state.connection_id],
    )?;
    if !connection_exists {
        return Err(StoreError::NotFound(format!(
            "connection `{}`",
            state.connection_id
        )));
    }
    let duplicate = tx.exists(
        "SELECT 1 FROM oauth_states WHERE state_hash = ?1",
        params![state.state_hash],
    )?;
    if duplicate {
        return Err(StoreError::Conflict(
            "an OAuth authorisation with this state is already pending; start a new one".into(),
        ));
    }
    tx.execute(
        "INSERT INTO oauth_states
             (state_hash, connection_id, key_version, verifier, redirect_uri, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            state.state_hash,
            state.connection_id,
            state.key_version,
            state.verifier,
            state.redirect_uri,
            state.created_at,
            state.expires_at,
        ],
    )?;
    Ok(())
}

/// Remove and return the pending authorisation with `state_hash`. A state is
/// usable once: it is deleted whether or not it has expired, and the caller
/// checks `expires_at`.
pub fn take_oauth_state(
    tx: &Tx<'_>,
    state_hash: &str,
) -> Result<Option<OAuthStateRecord>, StoreError> {
    tx.query_opt(
        "DELETE FROM oauth_states WHERE state_hash = ?1
         RETURNING state_hash, connection_id, key_version, verifier, redirect_uri,
                   created_at, expires_at",
        params![state_hash],
        state_from_row,
    )
}

/// Delete the authorisations that expired at or before `now` (RFC 3339).
/// Returns how many were deleted.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "no command removes an OAuth app or purges expired states yet"
    )
)]
pub fn purge_expired_states(tx: &Tx<'_>, now: &str) -> Result<usize, StoreError> {
    let now = time::OffsetDateTime::parse(now, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("`{now}` is not an RFC 3339 time: {e}")))?;
    let mut purged = 0;
    for hash in expired_states(&**tx, now)? {
        let n = tx.execute(
            "DELETE FROM oauth_states WHERE state_hash = ?1",
            params![hash],
        )?;
        purged += usize::try_from(n).unwrap_or(usize::MAX);
    }
    Ok(purged)
}

/// The state hashes of the authorisations that expired at or before `now`.
/// Compared as times, not text: RFC 3339 strings with different
/// fractional-second lengths do not sort as the times they denote, and the
/// engines share no date functions, so the times are compared here. An
/// expiry that is not a time never expires (as SQLite's `julianday` of it
/// was NULL).
fn expired_states(db: &dyn Db, now: time::OffsetDateTime) -> Result<Vec<String>, StoreError> {
    let states = db.query_map(
        "SELECT state_hash, expires_at FROM oauth_states",
        params![],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    Ok(states
        .into_iter()
        .filter(|(_, expires_at)| parse_time(expires_at).is_some_and(|at| at <= now))
        .map(|(hash, _)| hash)
        .collect())
}

/// `s` as a time, if it is RFC 3339.
fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn state_from_row(r: &Row) -> Result<OAuthStateRecord, StoreError> {
    Ok(OAuthStateRecord {
        state_hash: r.get(0)?,
        connection_id: r.get(1)?,
        key_version: r.get(2)?,
        verifier: r.get(3)?,
        redirect_uri: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AuthKind;
    use crate::store::connections::{ConnectionRecord, delete_connection, insert_connection};
    use crate::store::plugins::testing::install;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        apps_upsert_get_delete,
        states_are_single_use,
        expired_states_are_still_taken_once,
        states_need_an_existing_connection,
        purge_removes_only_expired_states,
        connection_endpoints_are_replaced_cleared_and_go_with_the_connection,
        states_go_with_their_connection
    );

    /// Plugin `jira`, one connection, and vault key version 1 in `store`.
    fn setup(store: &TestStore) -> ConnectionRecord {
        install(store, "jira");
        let c = ConnectionRecord::new("work", "jira", AuthKind::Oauth2);
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO key_versions (version, wrapped_key, created_at, active)
                     VALUES (1, ?1, ?2, 1)",
                    params![vec![0u8], now()],
                )?;
                insert_connection(tx, &c)
            })
            .unwrap()
    }

    fn state(hash: &str, connection_id: &str, expires_at: &str) -> OAuthStateRecord {
        OAuthStateRecord {
            state_hash: hash.to_string(),
            connection_id: connection_id.to_string(),
            key_version: 1,
            verifier: vec![1, 2, 3, 0, 255],
            redirect_uri: "http://127.0.0.1:8400/callback".to_string(),
            created_at: "2025-01-01T00:00:00Z".to_string(),
            expires_at: expires_at.to_string(),
        }
    }

    fn apps_upsert_get_delete(store: &TestStore) {
        assert_eq!(store.read(|c| get_oauth_app(c, "jira")).unwrap(), None);

        let id = store
            .write(|tx| upsert_oauth_app(tx, "jira", "client-1", &EndpointTexts::default()))
            .unwrap();
        let app = store.read(|c| get_oauth_app(c, "jira")).unwrap().unwrap();
        assert_eq!(app.id, id);
        assert_eq!(app.client_id, "client-1");
        assert_eq!(app.plugin_id, "jira");

        assert!(app.endpoints.is_empty());
        let endpoints = EndpointTexts {
            authorize_url: None,
            token_url: Some("https://idp.example/token".into()),
            issuer: Some("https://idp.example".into()),
        };
        let again = store
            .write(|tx| upsert_oauth_app(tx, "jira", "client-2", &endpoints))
            .unwrap();
        assert_eq!(again, id, "the id survives an update");
        let app2 = store.read(|c| get_oauth_app(c, "jira")).unwrap().unwrap();
        assert_eq!(app2.client_id, "client-2");
        assert_eq!(app2.endpoints, endpoints);
        assert_eq!(app2.created_at, app.created_at);

        store.write(|tx| delete_oauth_app(tx, "jira")).unwrap();
        assert_eq!(store.read(|c| get_oauth_app(c, "jira")).unwrap(), None);
        let err = store.write(|tx| delete_oauth_app(tx, "jira")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert_eq!(err.to_string(), "OAuth app for plugin `jira` not found");
    }

    fn states_are_single_use(store: &TestStore) {
        let c = setup(store);
        let s = state("aa", &c.id, "2999-01-01T00:00:00Z");
        store.write(|tx| insert_oauth_state(tx, &s)).unwrap();

        let err = store.write(|tx| insert_oauth_state(tx, &s)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        let taken = store.write(|tx| take_oauth_state(tx, "aa")).unwrap();
        assert_eq!(taken, Some(s));
        assert_eq!(store.write(|tx| take_oauth_state(tx, "aa")).unwrap(), None);
    }

    fn expired_states_are_still_taken_once(store: &TestStore) {
        let c = setup(store);
        let s = state("bb", &c.id, "2000-01-01T00:00:00Z");
        store.write(|tx| insert_oauth_state(tx, &s)).unwrap();
        assert_eq!(
            store.write(|tx| take_oauth_state(tx, "bb")).unwrap(),
            Some(s)
        );
        assert_eq!(store.write(|tx| take_oauth_state(tx, "bb")).unwrap(), None);
    }

    fn states_need_an_existing_connection(store: &TestStore) {
        setup(store);
        let s = state("cc", "nope", "2999-01-01T00:00:00Z");
        let err = store.write(|tx| insert_oauth_state(tx, &s)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert_eq!(err.to_string(), "connection `nope` not found");
    }

    fn purge_removes_only_expired_states(store: &TestStore) {
        let c = setup(store);
        store
            .write(|tx| {
                insert_oauth_state(tx, &state("old", &c.id, "2025-01-01T10:00:00Z"))?;
                // Earlier than `now` below, though it sorts after it as text.
                insert_oauth_state(tx, &state("edge", &c.id, "2025-01-01T11:00:00Z"))?;
                insert_oauth_state(tx, &state("new", &c.id, "2025-01-01T11:00:00.6Z"))
            })
            .unwrap();
        let n = store
            .write(|tx| purge_expired_states(tx, "2025-01-01T11:00:00.5Z"))
            .unwrap();
        assert_eq!(n, 2);
        assert!(
            store
                .write(|tx| take_oauth_state(tx, "new"))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .write(|tx| take_oauth_state(tx, "edge"))
                .unwrap()
                .is_none()
        );

        let err = store
            .write(|tx| purge_expired_states(tx, "yesterday"))
            .unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
    }

    fn connection_endpoints_are_replaced_cleared_and_go_with_the_connection(store: &TestStore) {
        let c = setup(store);
        let none = store.read(|db| connection_endpoints(db, &c.id)).unwrap();
        assert!(none.is_empty());
        let set = EndpointTexts {
            authorize_url: Some("http://127.0.0.1:9/authorize".into()),
            token_url: Some("http://127.0.0.1:9/token".into()),
            issuer: None,
        };
        store
            .write(|tx| set_connection_endpoints(tx, &c.id, &set))
            .unwrap();
        assert_eq!(
            store.read(|db| connection_endpoints(db, &c.id)).unwrap(),
            set
        );
        store
            .write(|tx| set_connection_endpoints(tx, &c.id, &EndpointTexts::default()))
            .unwrap();
        assert!(
            store
                .read(|db| connection_endpoints(db, &c.id))
                .unwrap()
                .is_empty()
        );
        let err = store
            .write(|tx| set_connection_endpoints(tx, "nope", &set))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        store
            .write(|tx| set_connection_endpoints(tx, &c.id, &set))
            .unwrap();
        store.write(|tx| delete_connection(tx, &c.id)).unwrap();
        assert!(
            store
                .read(|db| connection_endpoints(db, &c.id))
                .unwrap()
                .is_empty()
        );
    }

    fn states_go_with_their_connection(store: &TestStore) {
        let c = setup(store);
        store
            .write(|tx| insert_oauth_state(tx, &state("dd", &c.id, "2999-01-01T00:00:00Z")))
            .unwrap();
        store.write(|tx| delete_connection(tx, &c.id)).unwrap();
        assert_eq!(store.write(|tx| take_oauth_state(tx, "dd")).unwrap(), None);
    }
}
