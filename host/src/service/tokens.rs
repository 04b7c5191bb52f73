//! Management-API tokens: created (shown once), listed, revoked, and
//! checked for each API request.

use super::{Airlock, ServiceError};
use crate::store::tokens::{self as repo, Role, TokenRecord};

/// A token as created: the record and the token itself, which exists only
/// here (the store keeps its hash).
#[derive(Debug)]
pub struct NewToken {
    /// What is stored about the token (name, role, project restriction).
    pub record: TokenRecord,
    /// The bearer token to hand to its user; it cannot be shown again.
    pub token: secrecy::SecretString,
}

fn validate_token_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "token name {name:?} must be 1-64 printable characters"
        )));
    }
    Ok(())
}

impl Airlock {
    /// Create an API token with `role`, restricted to `project` when given.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        project: Option<&str>,
    ) -> Result<NewToken, ServiceError> {
        validate_token_name(name)?;
        if project.is_some_and(|p| p.trim().is_empty()) {
            return Err(ServiceError::Invalid(
                "a token's project restriction cannot be empty".into(),
            ));
        }
        let (record, token) = self
            .store
            .write(|tx| repo::create_token(tx, name, role, project))?;
        tracing::info!(token = %record.name, role = %role, project = ?project, "API token created");
        Ok(NewToken {
            record,
            token: token.into(),
        })
    }

    /// Every token (never the tokens themselves), oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, ServiceError> {
        Ok(self.store.read(repo::list_tokens)?)
    }

    /// Revoke a token by id or name; it is refused from the next request on.
    pub fn revoke_token(&self, id_or_name: &str) -> Result<TokenRecord, ServiceError> {
        let record = self.store.write(|tx| repo::revoke_token(tx, id_or_name))?;
        tracing::info!(token = %record.name, "API token revoked");
        Ok(record)
    }

    /// The live (not revoked) token matching `token`, if any.
    pub fn authenticate_token(&self, token: &str) -> Result<Option<TokenRecord>, ServiceError> {
        let hash = repo::token_hash(token);
        Ok(self
            .store
            .read(|c| repo::find_by_hash(c, &hash))?
            .filter(|t| t.revoked_at.is_none()))
    }

    /// On a data directory that never had a token, create an admin token
    /// named `name` and return it (the server prints it on its first start).
    ///
    /// The check and the creation share one write transaction: servers
    /// starting together on one database create one token between them.
    pub fn first_admin_token(&self, name: &str) -> Result<Option<NewToken>, ServiceError> {
        validate_token_name(name)?;
        let created = self.store.write(|tx| {
            if repo::any_token(tx)? {
                return Ok(None);
            }
            repo::create_token(tx, name, Role::Admin, None).map(Some)
        })?;
        Ok(created.map(|(record, token)| {
            tracing::info!(token = %record.name, "first admin token created");
            NewToken {
                record,
                token: token.into(),
            }
        }))
    }
}
