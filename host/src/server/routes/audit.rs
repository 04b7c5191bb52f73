//! The audit trail over the API: list recorded requests with filters (a
//! project-restricted token sees only its project's), verify the chain.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

use crate::audit::{AuditEntry, AuditFilter, DecisionKind, VerifyReport};
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiQuery};
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::store::tokens::Role;

/// Most entries one listing returns.
const MAX_LIST: usize = 1000;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::GET,
            path: "/api/v1/audit",
            tag: "audit",
            summary: "Recorded outbound requests, newest first",
            access: Access::Role(Role::Operator),
            body: RequestBody::None,
            success: (200, "Audit entries"),
            query: &[
                ("connection", "Connection id or name"),
                ("plugin", "Plugin id"),
                ("project", "Project"),
                ("decision", "allowed or denied"),
                ("since", "RFC 3339 time or YYYY-MM-DD, inclusive"),
                ("until", "RFC 3339 time or YYYY-MM-DD, exclusive"),
                ("limit", "At most this many (default 100, max 1000)"),
            ],
        },
        list,
    )
    .add(
        Operation {
            method: Method::GET,
            path: "/api/v1/audit/verify",
            tag: "audit",
            summary: "Check the audit log's hash chain",
            access: Access::Role(Role::Operator),
            body: RequestBody::None,
            success: (
                200,
                "The verification report (`ok` false names the first problem)",
            ),
            query: &[],
        },
        verify,
    )
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    connection: Option<String>,
    plugin: Option<String>,
    project: Option<String>,
    decision: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    // Names are resolved; an unknown one may be the id of a deleted
    // connection, whose entries stay in the log.
    let connection_id = q
        .connection
        .map(|c| state.airlock().connection(&c).map(|r| r.id).unwrap_or(c));
    let decision = q
        .decision
        .map(|d| d.parse::<DecisionKind>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = AuditFilter {
        connection_id,
        plugin_id: q.plugin,
        project: principal.project_for(q.project)?,
        decision,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(100).min(MAX_LIST),
    };
    Ok(Json(state.airlock().list_audit(&filter)?))
}

async fn verify(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_unrestricted("verifying the whole audit log")?;
    let report: VerifyReport = state.airlock().verify_audit()?;
    let mut value = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    value["ok"] = serde_json::Value::Bool(report.is_ok());
    value["summary"] = serde_json::Value::String(report.to_string());
    Ok(Json(value))
}
