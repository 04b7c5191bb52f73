//! `/api/v1/plugins`: list, inspect, upload a `.wasm` (compiled and
//! checked, then held for approval), approve its grant, remove. Plugins are
//! host-wide: every route here needs a token without a project restriction.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::blocking;
use crate::manifest::Manifest;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiBytes, ApiError, ApiJson, ApiPath};
use crate::server::openapi::describe::{Described, Schemas};
use crate::server::openapi::{DocResponse, NoContent, Operation, Routes};
use crate::server::{AppState, UPLOAD_PATH};
use crate::service::{CapabilityChange, InstallPlan, Signer};
use crate::store::plugins::PluginRecord;
use crate::store::tokens::Role;

pub fn routes(r: Routes, max_upload: usize) -> Routes {
    let op = |method, path, id, summary, role, returns, errors| Operation {
        method,
        path,
        id,
        tag: "plugins",
        summary,
        access: Access::Role(role),
        returns,
        errors,
    };
    r.add(
        op(
            Method::GET,
            "/api/v1/plugins",
            "listPlugins",
            "List installed plugins",
            Role::Operator,
            "Installed plugins",
            &[],
        ),
        list,
    )
    .add_with_limit(
        op(
            Method::POST,
            UPLOAD_PATH,
            "uploadPlugin",
            "Upload a plugin (.wasm): validated, compiled and held for approval",
            Role::Admin,
            "The install plan: 202 with the capabilities to approve, or 200 `unchanged` when \
             this exact file is installed",
            &[
                (400, "the body is empty (`invalid_request`)"),
                (
                    422,
                    "not a valid plugin component or manifest (`invalid_plugin`), a signature \
                     that does not verify (`invalid_signature`), or refused by the trust \
                     policy (`unsigned_plugin`, `untrusted_plugin`)",
                ),
                (
                    429,
                    "too many uploads are waiting for approval (`too_many_pending`)",
                ),
            ],
        ),
        upload,
        max_upload,
    )
    .add(
        op(
            Method::GET,
            PENDING_PATH,
            "listPendingPlugins",
            "List uploads waiting for approval, with their manifests and what they change",
            Role::Operator,
            "The install plans waiting for approval, by plugin id",
            &[],
        ),
        pending,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/plugins/{id}",
            "getPlugin",
            "Inspect an installed plugin (manifest, approved grant), and any upload pending approval",
            Role::Operator,
            "The plugin",
            &[(404, "no such plugin installed or pending (`not_found`)")],
        ),
        get,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/plugins/{id}/approve",
            "approvePlugin",
            "Approve the pending upload's capabilities and install it",
            Role::Admin,
            "The installed plugin",
            &[
                (404, "no upload of that plugin is pending (`not_found`)"),
                (
                    409,
                    "the pending upload has another SHA-256 (`sha256_mismatch`)",
                ),
            ],
        ),
        approve,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/plugins/{id}",
            "deletePlugin",
            "Remove a plugin (refused while connections use it)",
            Role::Admin,
            "Removed",
            &[
                (404, "no such plugin (`not_found`)"),
                (409, "connections still use it (`conflict`)"),
            ],
        ),
        remove,
    )
}

/// The uploads waiting for approval. A static segment: it wins over
/// `/api/v1/plugins/{id}`, which is why no plugin may have the id `pending`.
const PENDING_PATH: &str = "/api/v1/plugins/pending";

/// What an upload would do.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "InstallPlan")]
struct PlanView {
    /// The manifest's plugin id.
    id: String,
    /// The manifest's version.
    version: String,
    /// Hex SHA-256 of the uploaded file: approve exactly this.
    sha256: String,
    /// The interfaces the component exports.
    interfaces: Vec<String>,
    /// The egress the plugin asks for beyond its connections' base URLs
    /// (the manifest's `egress`): what approving grants. An entry's
    /// `credential` lists the auth kinds whose credential the host also
    /// sends to that destination; absent, it receives none.
    grant: Vec<crate::manifest::EgressSpec>,
    /// The whole manifest: name, description, category, auth kinds with the
    /// OAuth endpoints and API-key header settings, the settings schema and
    /// the egress entries.
    manifest: Manifest,
    /// What changes from the installed version, in words (each line is an
    /// entry of `diff`, signed `+ ` or `- ` when added or removed).
    changes: Vec<String>,
    /// What changes from the installed version, one entry per capability.
    diff: Vec<CapabilityChange>,
    /// Who signed the file (the signature verified over its bytes) and the
    /// trusted key that vouches for it for this plugin id; `null` when the
    /// file is unsigned.
    signer: Option<Signer>,
    /// `pending-approval`, or `unchanged` when this exact file is installed.
    status: PlanStatus,
}

/// Whether an upload waits for approval.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum PlanStatus {
    /// Held until approved.
    PendingApproval,
    /// This exact file is installed already; nothing to approve.
    Unchanged,
}

fn plan_view(plan: &InstallPlan) -> PlanView {
    PlanView {
        id: plan.manifest.id.clone(),
        version: plan.manifest.version.clone(),
        sha256: plan.sha256.clone(),
        interfaces: plan.interfaces.clone(),
        grant: plan.grant.clone(),
        manifest: plan.manifest.clone(),
        changes: plan.changes.clone(),
        diff: plan.diff.clone(),
        signer: plan.signer.clone(),
        status: if plan.unchanged() {
            PlanStatus::Unchanged
        } else {
            PlanStatus::PendingApproval
        },
    }
}

/// An upload's answer: `202 Accepted` while it waits for approval, `200`
/// when it is installed already.
#[derive(Debug)]
struct Uploaded(PlanView);

impl IntoResponse for Uploaded {
    fn into_response(self) -> Response {
        let status = match self.0.status {
            PlanStatus::PendingApproval => StatusCode::ACCEPTED,
            PlanStatus::Unchanged => StatusCode::OK,
        };
        (status, Json(self.0)).into_response()
    }
}

impl DocResponse for Uploaded {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        for status in [202, 200] {
            let schema = schemas.output::<PlanView>();
            doc.success
                .entry(status)
                .or_default()
                .push(("application/json", schema));
        }
    }
}

/// An installed plugin and the upload of it waiting for approval; at least
/// one of the two is there.
#[derive(Debug, Serialize, JsonSchema)]
struct PluginView {
    /// The installed plugin, if any.
    installed: Option<PluginRecord>,
    /// The upload waiting for approval, if any.
    pending: Option<PlanView>,
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
) -> Result<Uploaded, ApiError> {
    principal.require_unrestricted("uploading plugins")?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send the plugin's .wasm file as the request body",
        ));
    }
    let airlock = state.airlock().clone();
    // Compiling is CPU-bound and can take seconds.
    let plan = blocking(move || Ok(airlock.plan_install(body.to_vec())?)).await?;
    let view = plan_view(&plan);
    if plan.unchanged() {
        return Ok(Uploaded(view));
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
    Ok(Uploaded(view))
}

async fn pending(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<PlanView>>, ApiError> {
    principal.require_unrestricted("listing plugin uploads")?;
    let mut plans: Vec<PlanView> = state.pending().values().map(plan_view).collect();
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(plans))
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PluginView>, ApiError> {
    principal.require_unrestricted("inspecting plugins")?;
    let pending = state.pending().get(&id).map(plan_view);
    let installed = match state
        .airlock()
        .store()
        .read(|c| crate::store::plugins::get_plugin(c, &id))
    {
        Ok(p) => Some(p),
        Err(crate::store::StoreError::NotFound(_)) if pending.is_some() => None,
        Err(e) => return Err(crate::service::ServiceError::from(e).into()),
    };
    Ok(Json(PluginView { installed, pending }))
}

/// Which upload to approve.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PluginApproval")]
struct Approve {
    /// SHA-256 of the uploaded file, as the upload answered: approves
    /// exactly that file.
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
) -> Result<NoContent, ApiError> {
    principal.require_unrestricted("removing plugins")?;
    state.airlock().remove_plugin(&id)?;
    state.pending().remove(&id);
    Ok(NoContent)
}
