//! `/api/v1/connections`: list (narrowed by project), create (optionally
//! tested first), get, update settings, replace the secret, delete, test,
//! pause, resume; and who may use or manage a
//! connection ([`usable`], [`managed`]) for the other connection routes.
//! Secrets go in (create, replace) and never come out: answers are
//! [`ConnectionRecord`]s, which hold no secret.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{CALL_ERRORS, CONNECTION_ERRORS, NO_CONNECTION};
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::server::openapi::{Created, NoContent, Operation, Routes};
use crate::service::{AuthInput, NewConnection};
use crate::store::connections::{ConnectionFilter, ConnectionRecord, Scope};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, id, summary, returns, errors| Operation {
        method,
        path,
        id,
        tag: "connections",
        summary,
        access: Access::Role(Role::Operator),
        returns,
        errors,
    };
    r.add(
        op(
            Method::GET,
            "/api/v1/connections",
            "listConnections",
            "List connections",
            "Connections (never their secrets)",
            &[],
        ),
        list,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections",
            "createConnection",
            "Create a connection; its secret is sealed in the vault and never returned",
            "The connection",
            &[
                (
                    400,
                    "invalid name, settings or credential (`invalid_request`)",
                ),
                (404, "no such plugin (`not_found`)"),
                (
                    409,
                    "the name is taken (`conflict`), or the plugin needs approval \
                     (`needs_approval`)",
                ),
                (
                    422,
                    "with `test`: the connection test failed, nothing was saved \
                     (`connection_test_failed`)",
                ),
            ],
        ),
        create,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/connections/{id}",
            "getConnection",
            "Get a connection by id or name",
            "The connection",
            CONNECTION_ERRORS,
        ),
        get,
    )
    .add(
        op(
            Method::PATCH,
            "/api/v1/connections/{id}",
            "updateConnection",
            "Update settings: each key set to a string sets it, to null removes it",
            "The updated connection",
            &[
                NO_CONNECTION,
                (
                    400,
                    "a setting is invalid, or the base-url of a connection with a credential \
                     would change origin (`invalid_request`)",
                ),
            ],
        ),
        update,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/connections/{id}",
            "deleteConnection",
            "Delete a connection and destroy its secrets",
            "Deleted",
            CONNECTION_ERRORS,
        ),
        delete,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/test",
            "testConnection",
            "Run the plugin's test-connection against the service",
            "The plugin's connection report",
            CALL_ERRORS,
        ),
        test,
    )
    .add(
        op(
            Method::PUT,
            "/api/v1/connections/{id}/secret",
            "replaceConnectionSecret",
            "Replace a connection's credential in place (same id, cursors and \
             conversations kept; the old secret destroyed; an audit event recorded)",
            "The connection",
            &[
                NO_CONNECTION,
                (
                    400,
                    "the credential is of another auth kind, or names an API-key header \
                     the plugin's settings own (`invalid_request`)",
                ),
            ],
        ),
        replace_secret,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/pause",
            "pauseConnection",
            "Stop calls through a connection",
            "The connection",
            CONNECTION_ERRORS,
        ),
        pause,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/resume",
            "resumeConnection",
            "Allow calls through a paused connection again",
            "The connection",
            CONNECTION_ERRORS,
        ),
        resume,
    )
}

/// The auth part of a create request. Secrets are moved into
/// [`SecretString`]s straight away; this type has no `Debug` on purpose.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(rename = "ConnectionAuth")]
enum AuthBody {
    /// No credential.
    None,
    /// HTTP basic authentication.
    Basic {
        #[serde(default)]
        username: String,
        #[schemars(extend("writeOnly" = true))]
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        #[schemars(extend("writeOnly" = true))]
        token: String,
    },
    /// A key in a header.
    ApiKey {
        /// The header; absent: the plugin's header setting decides.
        #[serde(default)]
        header: String,
        /// Text before the key; absent: the plugin's default prefix.
        prefix: Option<String>,
        #[schemars(extend("writeOnly" = true))]
        key: String,
    },
    /// OAuth 2.0: the client registered with the provider; absent: the
    /// org app's or the manifest's.
    Oauth2 {
        client_id: Option<String>,
        #[schemars(extend("writeOnly" = true))]
        client_secret: Option<String>,
    },
}

impl From<AuthBody> for AuthInput {
    fn from(a: AuthBody) -> Self {
        match a {
            AuthBody::None => AuthInput::None,
            AuthBody::Basic { username, password } => AuthInput::Basic {
                username,
                password: SecretString::from(password),
            },
            AuthBody::Bearer { token } => AuthInput::Bearer {
                token: SecretString::from(token),
            },
            AuthBody::ApiKey {
                header,
                prefix,
                key,
            } => AuthInput::ApiKey {
                header,
                prefix,
                key: SecretString::from(key),
            },
            AuthBody::Oauth2 {
                client_id,
                client_secret,
            } => AuthInput::OAuth2 {
                client_id,
                client_secret: client_secret.map(SecretString::from),
            },
        }
    }
}

/// A new connection.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewConnection")]
struct CreateBody {
    /// Unique name the connection is called by.
    name: String,
    /// The installed plugin's id.
    plugin: String,
    /// Settings by name, checked against the plugin's manifest.
    #[serde(default)]
    settings: BTreeMap<String, String>,
    /// The credential; absent: none.
    auth: Option<AuthBody>,
    /// Scope to these projects; absent: global (for a project-restricted
    /// token: its project).
    projects: Option<Vec<String>>,
    /// Run the plugin's connection test with this credential first and
    /// save the connection only if it passes (not for oauth2).
    #[serde(default)]
    test: bool,
}

/// Settings to change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ConnectionUpdate")]
struct UpdateBody {
    /// A string sets the setting, `null` removes it.
    settings: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ListQuery {
    /// Only connections usable in this project (global ones included).
    project: Option<String>,
    /// Only connections of this plugin.
    plugin: Option<String>,
}

/// What the plugin's test-connection reported.
#[derive(Debug, Serialize, JsonSchema)]
struct TestReport {
    /// Who the credential authenticates as, when the service says.
    account: Option<String>,
    /// What was checked and what came back.
    message: String,
}

/// The connection `id` (id or name), if the token may use it.
pub(crate) fn usable(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ConnectionRecord, ApiError> {
    let record = state.airlock().connection(id)?;
    principal.check_use(&record)?;
    Ok(record)
}

/// [`usable`], and the project the call is made for (the token's own
/// project by default), which the connection must serve.
pub(crate) fn usable_for(
    state: &AppState,
    principal: &Principal,
    id: &str,
    requested: Option<String>,
) -> Result<(ConnectionRecord, Option<String>), ApiError> {
    let record = usable(state, principal, id)?;
    let project = principal.project_for(requested)?;
    if let Some(p) = &project
        && !record.scope.includes(p)
    {
        return Err(ApiError::forbidden(format!(
            "connection `{}` ({}) does not serve project `{p}`",
            record.name, record.scope
        )));
    }
    Ok((record, project))
}

/// The connection `id` (id or name), if the token may manage it.
pub(crate) fn managed(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ConnectionRecord, ApiError> {
    let record = state.airlock().connection(id)?;
    principal.check_manage(&record)?;
    Ok(record)
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<ConnectionRecord>>, ApiError> {
    let filter = ConnectionFilter {
        plugin_id: q.plugin,
        project: principal.project_for(q.project)?,
    };
    Ok(Json(state.airlock().connections(&filter)?))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Created<ConnectionRecord>, ApiError> {
    let scope = match (principal.project(), body.projects) {
        (None, None) => Scope::Global,
        (None, Some(projects)) => Scope::Projects(projects),
        (Some(p), None) => Scope::Projects(vec![p.to_string()]),
        (Some(p), Some(projects)) if projects.len() == 1 && projects[0] == p => {
            Scope::Projects(projects)
        }
        (Some(p), Some(_)) => {
            return Err(ApiError::forbidden(format!(
                "token `{}` is restricted to project `{p}`: it can only create connections \
                 scoped to `{p}` alone",
                principal.token.name
            )));
        }
    };
    let new = NewConnection {
        name: body.name,
        plugin_id: body.plugin,
        settings: body.settings,
        auth: body.auth.map_or(AuthInput::None, AuthInput::from),
        scope,
    };
    let record = if body.test {
        state.airlock().add_connection_tested(new).await?.0
    } else {
        state.airlock().add_connection(new)?
    };
    tracing::info!(connection = %record.name, plugin = %record.plugin_id, by = %principal.token.name, "connection created");
    Ok(Created(record))
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionRecord>, ApiError> {
    Ok(Json(usable(&state, &principal, &id)?))
}

async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<ConnectionRecord>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    Ok(Json(
        state
            .airlock()
            .update_connection_settings(&record.id, &body.settings)?,
    ))
}

async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<NoContent, ApiError> {
    let record = managed(&state, &principal, &id)?;
    state.airlock().remove_connection(&record.id)?;
    tracing::info!(connection = %record.name, by = %principal.token.name, "connection deleted");
    Ok(NoContent)
}

async fn test(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TestReport>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let report = state.airlock().test_connection(&record.id).await?;
    Ok(Json(TestReport {
        account: report.account,
        message: report.message,
    }))
}

async fn replace_secret(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AuthBody>,
) -> Result<Json<ConnectionRecord>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let actor = format!("token:{}", principal.token.name);
    let record = state
        .airlock()
        .replace_credential(&record.id, AuthInput::from(body), &actor)
        .await?;
    tracing::info!(connection = %record.name, by = %principal.token.name, "credential replaced");
    Ok(Json(record))
}

async fn pause(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionRecord>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    Ok(Json(state.airlock().pause_connection(&record.id)?))
}

async fn resume(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionRecord>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    Ok(Json(state.airlock().resume_connection(&record.id)?))
}
