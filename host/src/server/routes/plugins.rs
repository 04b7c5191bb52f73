//! `/api/v1/plugins`: list, inspect, upload a `.wasm` (compiled and
//! checked, then held for approval), approve its grant, remove. Plugins are
//! host-wide: every route here needs a token without a project restriction.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::blocking;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiBytes, ApiError, ApiJson, ApiPath};
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::server::{AppState, UPLOAD_PATH};
use crate::service::InstallPlan;
use crate::store::plugins::PluginRecord;
use crate::store::tokens::Role;

pub fn routes(r: Routes, max_upload: usize) -> Routes {
    let op = |method, path, summary, role, body, success| Operation {
        method,
        path,
        tag: "plugins",
        summary,
        access: Access::Role(role),
        body,
        success,
        query: &[],
    };
    r.add(
        op(
            Method::GET,
            "/api/v1/plugins",
            "List installed plugins",
            Role::Operator,
            RequestBody::None,
            (200, "Installed plugins"),
        ),
        list,
    )
    .add_with_limit(
        op(
            Method::POST,
            UPLOAD_PATH,
            "Upload a plugin (.wasm): validated, compiled and held for approval",
            Role::Admin,
            RequestBody::Wasm,
            (
                202,
                "The install plan: capabilities to approve, or `unchanged`",
            ),
        ),
        upload,
        max_upload,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/plugins/{id}",
            "Inspect an installed plugin (manifest, approved grant), and any upload pending approval",
            Role::Operator,
            RequestBody::None,
            (200, "The plugin"),
        ),
        get,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/plugins/{id}/approve",
            "Approve the pending upload's capabilities and install it",
            Role::Admin,
            RequestBody::Json(approve_schema),
            (200, "The installed plugin"),
        ),
        approve,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/plugins/{id}",
            "Remove a plugin (refused while connections use it)",
            Role::Admin,
            RequestBody::None,
            (204, "Removed"),
        ),
        remove,
    )
}

fn approve_schema() -> Value {
    json!({
        "type": "object", "required": ["sha256"],
        "properties": { "sha256": {
            "type": "string",
            "description": "SHA-256 of the uploaded file, as the upload answered: approves exactly that file"
        } }
    })
}

/// What an upload would do.
#[derive(Debug, Serialize)]
struct PlanView<'a> {
    id: &'a str,
    version: &'a str,
    sha256: &'a str,
    interfaces: &'a [String],
    grant: &'a [crate::manifest::EgressSpec],
    changes: &'a [String],
    /// `pending-approval`, or `unchanged` when this exact file is installed.
    status: &'static str,
}

fn plan_view(plan: &InstallPlan) -> PlanView<'_> {
    PlanView {
        id: &plan.manifest.id,
        version: &plan.manifest.version,
        sha256: &plan.sha256,
        interfaces: &plan.interfaces,
        grant: &plan.grant,
        changes: &plan.changes,
        status: if plan.unchanged() {
            "unchanged"
        } else {
            "pending-approval"
        },
    }
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<PluginRecord>>, ApiError> {
    principal.require_unrestricted("listing plugins")?;
    Ok(Json(state.airlock().list_plugins()?))
}

async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_unrestricted("uploading plugins")?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send the plugin's .wasm file as the request body",
        ));
    }
    let airlock = state.airlock().clone();
    // Compiling is CPU-bound and can take seconds.
    let plan = blocking(move || Ok(airlock.plan_install(body.to_vec())?)).await?;
    let view =
        serde_json::to_value(plan_view(&plan)).map_err(|e| ApiError::internal(e.to_string()))?;
    if plan.unchanged() {
        return Ok((StatusCode::OK, Json(view)));
    }
    let mut pending = state.pending();
    if !pending.contains_key(&plan.manifest.id)
        && pending.len() >= state.config().max_pending_uploads
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_pending",
            format!(
                "{} uploads are already waiting for approval; approve or re-upload one of them \
                 ({}) first",
                pending.len(),
                pending.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    tracing::info!(plugin = %plan.manifest.id, sha256 = %plan.sha256, "plugin uploaded, pending approval");
    pending.insert(plan.manifest.id.clone(), plan);
    Ok((StatusCode::ACCEPTED, Json(view)))
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_unrestricted("inspecting plugins")?;
    let pending = state
        .pending()
        .get(&id)
        .map(|p| serde_json::to_value(plan_view(p)).unwrap_or(Value::Null));
    let installed = match state
        .airlock()
        .store()
        .read(|c| crate::store::plugins::get_plugin(c, &id))
    {
        Ok(p) => Some(p),
        Err(crate::store::StoreError::NotFound(_)) if pending.is_some() => None,
        Err(e) => return Err(crate::service::ServiceError::from(e).into()),
    };
    Ok(Json(json!({ "installed": installed, "pending": pending })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    sha256: String,
}

async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Approve>,
) -> Result<Json<PluginRecord>, ApiError> {
    principal.require_unrestricted("approving plugins")?;
    let plan = {
        let pending = state.pending();
        let plan = pending.get(&id).ok_or_else(|| {
            ApiError::not_found(format!(
                "no upload of plugin `{id}` is waiting for approval; upload it first"
            ))
        })?;
        if !plan.sha256.eq_ignore_ascii_case(body.sha256.trim()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "sha256_mismatch",
                format!(
                    "the pending upload of plugin `{id}` has SHA-256 {}, not {}: review the \
                     upload that is pending and approve that one",
                    plan.sha256, body.sha256
                ),
            ));
        }
        plan.clone()
    };
    let airlock = state.airlock().clone();
    let plan2 = plan.clone();
    let record = blocking(move || Ok(airlock.install(&plan2, true)?)).await?;
    // Only now, installed: a failed install keeps the upload for a retry.
    let mut pending = state.pending();
    if pending.get(&id).is_some_and(|p| p.sha256 == plan.sha256) {
        pending.remove(&id);
    }
    Ok(Json(record))
}

async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_unrestricted("removing plugins")?;
    state.airlock().remove_plugin(&id)?;
    state.pending().remove(&id);
    Ok(StatusCode::NO_CONTENT)
}
