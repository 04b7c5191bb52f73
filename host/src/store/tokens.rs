//! Management-API tokens (`api_tokens`): a name, a role, an optional project
//! restriction and the SHA-256 of the token. The token itself is never
//! stored; [`create_token`] returns it once.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, new_id, now};

/// Prefix of every token, so a leaked one is recognisable in logs and
/// secret scanners.
pub const TOKEN_PREFIX: &str = "alk_";

/// What a token may do. Ordered: each role may do everything the roles
/// below it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Invoke operations and chat.
    User,
    /// Manage connections (and everything a user may do).
    Operator,
    /// Manage plugins and everything else.
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 3] = [Role::User, Role::Operator, Role::Admin];

    /// The stored (and serialized) form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`: expected admin, operator or user"))
    }
}

/// A stored token (without the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Random hex id.
    pub id: String,
    /// Unique name the operator revokes it by.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The only project the token may act in; `None` for every project.
    pub project: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC of the revocation; `None` while the token is valid.
    pub revoked_at: Option<String>,
}

/// SHA-256 of a token, hex: what is stored and looked up. Tokens carry 256
/// random bits, so a plain hash (no salt, no stretching) is enough.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const COLUMNS: &str = "id, name, role, project, created_at, revoked_at";

fn from_row(row: &Row) -> Result<(TokenRecord, String), StoreError> {
    let role: String = row.get(2)?;
    Ok((
        TokenRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            role: Role::User,
            project: row.get(3)?,
            created_at: row.get(4)?,
            revoked_at: row.get(5)?,
        },
        role,
    ))
}

fn decode((mut record, role): (TokenRecord, String)) -> Result<TokenRecord, StoreError> {
    record.role = role
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("token `{}`: {e}", record.name)))?;
    Ok(record)
}

/// Create a token; returns its record and the token, which is not stored.
pub fn create_token(
    tx: &Tx<'_>,
    name: &str,
    role: Role,
    project: Option<&str>,
) -> Result<(TokenRecord, String), StoreError> {
    let taken = tx.exists("SELECT 1 FROM api_tokens WHERE name = ?1", params![name])?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "a token named `{name}` already exists; revoke it or pick another name"
        )));
    }
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let record = TokenRecord {
        id: new_id(),
        name: name.to_string(),
        role,
        project: project.map(String::from),
        created_at: now(),
        revoked_at: None,
    };
    tx.execute(
        "INSERT INTO api_tokens (id, name, token_hash, role, project, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record.id,
            record.name,
            token_hash(&token),
            role.as_str(),
            record.project,
            record.created_at
        ],
    )?;
    Ok((record, token))
}

/// The token whose hash is `hash`, revoked or not.
pub fn find_by_hash(conn: &dyn Db, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?1"),
        params![hash],
        from_row,
    )?
    .map(decode)
    .transpose()
}

/// Every token, oldest first.
pub fn list_tokens(conn: &dyn Db) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = conn.query_map(
        &format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, name"),
        params![],
        from_row,
    )?;
    rows.into_iter().map(decode).collect()
}

/// Whether any token, revoked or not, exists (the server creates a first
/// admin token only on a data directory that never had one).
pub fn any_token(conn: &dyn Db) -> Result<bool, StoreError> {
    conn.exists("SELECT 1 FROM api_tokens LIMIT 1", params![])
}

/// Revoke the token with this id or name. Revoking twice keeps the first
/// revocation time.
pub fn revoke_token(tx: &Tx<'_>, id_or_name: &str) -> Result<TokenRecord, StoreError> {
    let n = tx.execute(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2)
         WHERE id = ?1 OR name = ?1",
        params![id_or_name, now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("token `{id_or_name}`")));
    }
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1 OR name = ?1"),
        params![id_or_name],
        from_row,
    )
    .and_then(decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        only_the_hash_is_stored_and_it_finds_the_token,
        names_are_unique_and_revocation_sticks
    );

    fn only_the_hash_is_stored_and_it_finds_the_token(store: &TestStore) {
        let (record, token) = store
            .write(|tx| create_token(tx, "ci", Role::Operator, Some("web")))
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
        let stored: String = store
            .read(|c| c.query_row("SELECT token_hash FROM api_tokens", params![], |r| r.get(0)))
            .unwrap();
        assert_eq!(stored, token_hash(&token));
        assert!(!stored.contains(&token[TOKEN_PREFIX.len()..]));
        let found = store
            .read(|c| find_by_hash(c, &token_hash(&token)))
            .unwrap()
            .unwrap();
        assert_eq!(found, record);
        assert!(
            store
                .read(|c| find_by_hash(c, &token_hash("alk_other")))
                .unwrap()
                .is_none()
        );
    }

    fn names_are_unique_and_revocation_sticks(store: &TestStore) {
        store
            .write(|tx| create_token(tx, "a", Role::Admin, None))
            .unwrap();
        let err = store
            .write(|tx| create_token(tx, "a", Role::User, None))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let first = store.write(|tx| revoke_token(tx, "a")).unwrap();
        let again = store.write(|tx| revoke_token(tx, "a")).unwrap();
        assert!(first.revoked_at.is_some());
        assert_eq!(first.revoked_at, again.revoked_at);
        assert!(matches!(
            store.write(|tx| revoke_token(tx, "nope")).unwrap_err(),
            StoreError::NotFound(_)
        ));
        assert!(store.read(any_token).unwrap());
    }
}
