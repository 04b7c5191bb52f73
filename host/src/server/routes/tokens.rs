//! `/api/v1/me` (who the calling token is) and `/api/v1/tokens`: list,
//! create (the token shown once) and revoke management-API tokens. Tokens
//! are host-wide: managing them needs an admin token without a project
//! restriction, or a project's admin could mint an unrestricted token.
//! No answer carries a token's hash; only creation carries the token.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath};
use crate::server::openapi::{Created, Operation, Routes};
use crate::store::tokens::{Role, TokenRecord};

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, id, summary, role, returns, errors| Operation {
        method,
        path,
        id,
        tag: "tokens",
        summary,
        access: Access::Role(role),
        returns,
        errors,
    };
    r.add(
        op(
            Method::GET,
            "/api/v1/me",
            "getMe",
            "The calling token: its id, name, role and project restriction",
            Role::User,
            "The calling token (never the token itself or its hash)",
            &[],
        ),
        me,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/tokens",
            "listTokens",
            "List API tokens, revoked ones included",
            Role::Admin,
            "Every token, oldest first (never the tokens themselves or their hashes)",
            &[],
        ),
        list,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/tokens",
            "createToken",
            "Create an API token; the token is in this answer only",
            Role::Admin,
            "The token (shown once: only its hash is stored) and its record",
            &[
                (
                    400,
                    "the name is empty, longer than 64 characters or has control characters, \
                     or the project is blank (`invalid_request`)",
                ),
                (
                    409,
                    "a token (live or revoked) already has that name (`conflict`)",
                ),
            ],
        ),
        create,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            "revokeToken",
            "Revoke a token (by id or name): refused from its next request on",
            Role::Admin,
            "The revoked token's record (revoking twice keeps the first time)",
            &[
                (404, "no token has that id or name (`not_found`)"),
                (
                    409,
                    "that is the token making this request (`self_revocation`): revoke it with \
                     another admin token",
                ),
            ],
        ),
        revoke,
    )
}

/// The calling token.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Me")]
struct Me {
    /// The token's id.
    id: String,
    /// The token's name.
    name: String,
    /// What it may do: `user` < `operator` < `admin`.
    role: Role,
    /// The only project it may act in; `null` when unrestricted.
    project: Option<String>,
}

/// A stored token, without the token or its hash.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Token")]
struct TokenView {
    /// Random hex id.
    id: String,
    /// Unique name (revoked tokens keep theirs).
    name: String,
    /// What it may do: `user` < `operator` < `admin`.
    role: Role,
    /// The only project it may act in; `null` when unrestricted.
    project: Option<String>,
    /// When it was created (RFC 3339 UTC).
    created_at: String,
    /// Whether it is revoked (refused on every request).
    revoked: bool,
    /// When it was revoked (RFC 3339 UTC); `null` while it is valid.
    revoked_at: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        Self {
            revoked: t.revoked_at.is_some(),
            id: t.id,
            name: t.name,
            role: t.role,
            project: t.project,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token to create.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewToken")]
struct NewToken {
    /// Unique name to revoke it by: 1-64 printable characters.
    name: String,
    /// What it may do: `user` < `operator` < `admin`.
    role: Role,
    /// Restrict it to this project; absent or `null` for every project.
    #[serde(default)]
    project: Option<String>,
}

/// A created token.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "CreatedToken")]
struct CreatedToken {
    /// The bearer token: shown here once, never again (only its hash is
    /// stored). Send it as `Authorization: Bearer <token>`.
    token: String,
    /// What is stored about it.
    record: TokenView,
}

async fn me(principal: Principal) -> Json<Me> {
    let t = principal.token;
    Json(Me {
        id: t.id,
        name: t.name,
        role: t.role,
        project: t.project,
    })
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    principal.require_unrestricted("managing tokens")?;
    let tokens = state.airlock().list_tokens()?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Created<CreatedToken>, ApiError> {
    principal.require_unrestricted("managing tokens")?;
    let created = state
        .airlock()
        .create_token(&body.name, body.role, body.project.as_deref())?;
    tracing::info!(
        token = %created.record.name,
        by = %principal.token.name,
        "API token created over the API"
    );
    Ok(Created(CreatedToken {
        token: created.token.expose_secret().to_string(),
        record: created.record.into(),
    }))
}

async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
    principal.require_unrestricted("managing tokens")?;
    let me = &principal.token;
    // What `revoke_token` matches: the id or the name.
    let named = state
        .airlock()
        .list_tokens()?
        .into_iter()
        .any(|t| (t.id == id || t.name == id) && t.id == me.id);
    if named {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "self_revocation",
            format!(
                "token `{}` is the one making this request; revoking it would lock this session \
                 out. Revoke it with another admin token, or with `airlock token revoke {}` on \
                 the host",
                me.name, me.name
            ),
        ));
    }
    let record = state.airlock().revoke_token(&id).map_err(|e| {
        let mut e = ApiError::from(e);
        if e.status == StatusCode::NOT_FOUND {
            e.message =
                format!("no token has the id or name `{id}`; GET /api/v1/tokens lists them");
        }
        e
    })?;
    tracing::info!(token = %record.name, by = %me.name, "API token revoked over the API");
    Ok(Json(record.into()))
}
