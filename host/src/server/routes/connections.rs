//! `/api/v1/connections`: list (narrowed by project), create, get, update
//! settings, delete, test, pause, resume, and invoke any exported operation.
//! Secrets go in (create) and never come out: answers are
//! [`ConnectionRecord`]s, which hold no secret.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::service::{AuthInput, NewConnection};
use crate::store::connections::{ConnectionFilter, ConnectionRecord, Scope};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, summary, role, body, success| Operation {
        method,
        path,
        tag: "connections",
        summary,
        access: Access::Role(role),
        body,
        success,
        query: &[],
    };
    r.add(
        Operation {
            query: &[
                (
                    "project",
                    "Only connections usable in this project (global ones included)",
                ),
                ("plugin", "Only connections of this plugin"),
            ],
            ..op(
                Method::GET,
                "/api/v1/connections",
                "List connections",
                Role::Operator,
                RequestBody::None,
                (200, "Connections (never their secrets)"),
            )
        },
        list,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections",
            "Create a connection; its secret is sealed in the vault and never returned",
            Role::Operator,
            RequestBody::Json(create_schema),
            (201, "The connection"),
        ),
        create,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/connections/{id}",
            "Get a connection by id or name",
            Role::Operator,
            RequestBody::None,
            (200, "The connection"),
        ),
        get,
    )
    .add(
        op(
            Method::PATCH,
            "/api/v1/connections/{id}",
            "Update settings: each key set to a string sets it, to null removes it",
            Role::Operator,
            RequestBody::Json(update_schema),
            (200, "The updated connection"),
        ),
        update,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/connections/{id}",
            "Delete a connection and destroy its secrets",
            Role::Operator,
            RequestBody::None,
            (204, "Deleted"),
        ),
        delete,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/test",
            "Run the plugin's test-connection against the service",
            Role::Operator,
            RequestBody::None,
            (200, "The plugin's connection report"),
        ),
        test,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/pause",
            "Stop calls through a connection",
            Role::Operator,
            RequestBody::None,
            (200, "The connection"),
        ),
        pause,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/resume",
            "Allow calls through a paused connection again",
            Role::Operator,
            RequestBody::None,
            (200, "The connection"),
        ),
        resume,
    )
    .add(
        Operation {
            tag: "invoke",
            query: &[(
                "project",
                "Project the call is made for (a restricted token's own project by default)",
            )],
            ..op(
                Method::POST,
                "/api/v1/connections/{id}/invoke/{interface}/{operation}",
                "Invoke an exported operation (e.g. tickets/create) with a JSON input",
                Role::User,
                RequestBody::Json(|| json!({ "description": "The operation's input, as JSON" })),
                (200, "The operation's output, as JSON"),
            )
        },
        invoke,
    )
}

fn create_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "plugin"],
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string" },
            "plugin": { "type": "string", "description": "Installed plugin id" },
            "settings": { "type": "object", "additionalProperties": { "type": "string" } },
            "projects": {
                "type": "array", "items": { "type": "string" },
                "description": "Scope to these projects; absent: global (a project-restricted token: its project)"
            },
            "auth": {
                "type": "object",
                "required": ["kind"],
                "description": "kind none | basic {username, password} | bearer {token} | api-key {header, prefix, key} | oauth2 {client_id, client_secret}",
                "properties": {
                    "kind": { "enum": ["none", "basic", "bearer", "api-key", "oauth2"] },
                    "username": { "type": "string" },
                    "password": { "type": "string", "writeOnly": true },
                    "token": { "type": "string", "writeOnly": true },
                    "header": { "type": "string" },
                    "prefix": { "type": "string" },
                    "key": { "type": "string", "writeOnly": true },
                    "client_id": { "type": "string" },
                    "client_secret": { "type": "string", "writeOnly": true }
                }
            }
        }
    })
}

fn update_schema() -> Value {
    json!({
        "type": "object",
        "required": ["settings"],
        "additionalProperties": false,
        "properties": {
            "settings": { "type": "object", "additionalProperties": { "type": ["string", "null"] } }
        }
    })
}

/// The auth part of a create request. Secrets are moved into
/// [`SecretString`]s straight away; this type has no `Debug` on purpose.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum AuthBody {
    None,
    Basic {
        #[serde(default)]
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    ApiKey {
        // Absent: the plugin's header setting decides.
        #[serde(default)]
        header: String,
        // Absent: the plugin's default prefix.
        prefix: Option<String>,
        key: String,
    },
    Oauth2 {
        client_id: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    plugin: String,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    auth: Option<AuthBody>,
    projects: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    settings: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    project: Option<String>,
    plugin: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InvokeQuery {
    project: Option<String>,
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
) -> Result<(StatusCode, Json<ConnectionRecord>), ApiError> {
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
    let record = state.airlock().add_connection(NewConnection {
        name: body.name,
        plugin_id: body.plugin,
        settings: body.settings,
        auth: body.auth.map_or(AuthInput::None, AuthInput::from),
        scope,
    })?;
    tracing::info!(connection = %record.name, plugin = %record.plugin_id, by = %principal.token.name, "connection created");
    Ok((StatusCode::CREATED, Json(record)))
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
) -> Result<StatusCode, ApiError> {
    let record = managed(&state, &principal, &id)?;
    state.airlock().remove_connection(&record.id)?;
    tracing::info!(connection = %record.name, by = %principal.token.name, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn test(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let report = state.airlock().test_connection(&record.id).await?;
    Ok(Json(
        json!({ "account": report.account, "message": report.message }),
    ))
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

async fn invoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, interface, operation)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<InvokeQuery>,
    ApiJson(input): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (record, project) = usable_for(&state, &principal, &id, q.project)?;
    let output = state
        .airlock()
        .call(
            &record.id,
            &format!("{interface}.{operation}"),
            input,
            project.as_deref(),
        )
        .await?;
    Ok(Json(output))
}
