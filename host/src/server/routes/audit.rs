//! The audit trail over the API: list recorded requests with filters (a
//! project-restricted token sees only its project's), verify the chain.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, AuditFilter, DecisionKind, VerifyReport};
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiQuery};
use crate::server::openapi::{Operation, Routes};
use crate::store::tokens::Role;

/// Most entries one listing returns.
const MAX_LIST: usize = 1000;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::GET,
            path: "/api/v1/audit",
            id: "listAudit",
            tag: "audit",
            summary: "Recorded outbound requests, newest first; page with `before`",
            access: Access::Role(Role::Operator),
            returns: "Audit entries",
            errors: &[(
                400,
                "a time bound is neither RFC 3339 nor a date (`invalid_request`)",
            )],
        },
        list,
    )
    .add(
        Operation {
            method: Method::GET,
            path: "/api/v1/audit/verify",
            id: "verifyAudit",
            tag: "audit",
            summary: "Check the audit log's hash chain and answer its head (`last_seq`, \
                      `last_hash`)",
            access: Access::Role(Role::Operator),
            returns: "The verification report (`ok` false names the first problem)",
            errors: &[],
        },
        verify,
    )
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ListQuery {
    /// Connection id or name.
    connection: Option<String>,
    /// Plugin id.
    plugin: Option<String>,
    /// Project.
    project: Option<String>,
    /// Only allowed, or only denied, requests.
    decision: Option<DecisionKind>,
    /// RFC 3339 time or YYYY-MM-DD (midnight UTC), inclusive.
    #[serde(default)]
    #[schemars(schema_with = "time_bound")]
    since: Option<String>,
    /// RFC 3339 time or YYYY-MM-DD (midnight UTC), exclusive.
    #[serde(default)]
    #[schemars(schema_with = "time_bound")]
    until: Option<String>,
    /// Only entries older than this `seq` (exclusive). To page, pass the
    /// `seq` of the last (oldest) entry of the previous page; an empty page
    /// is the end.
    before: Option<i64>,
    /// At most this many (default 100, max 1000).
    limit: Option<usize>,
}

/// What [`AuditFilter`]'s `since` and `until` parse.
fn time_bound(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "format": "date-time" },
            { "type": "string", "format": "date" }
        ]
    })
}

/// [`VerifyReport`] with its verdict spelled out.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "AuditVerification")]
struct Verification {
    #[serde(flatten)]
    report: VerifyReport,
    /// Whether the chain checked out.
    ok: bool,
    /// The verdict in words.
    summary: String,
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
    let filter = AuditFilter {
        connection_id,
        plugin_id: q.plugin,
        project: principal.project_for(q.project)?,
        decision: q.decision,
        since: q.since,
        until: q.until,
        before: q.before,
        limit: q.limit.unwrap_or(100).min(MAX_LIST),
    };
    Ok(Json(state.airlock().list_audit(&filter)?))
}

async fn verify(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Verification>, ApiError> {
    principal.require_unrestricted("verifying the whole audit log")?;
    let report: VerifyReport = state.airlock().verify_audit()?;
    Ok(Json(Verification {
        ok: report.is_ok(),
        summary: report.to_string(),
        report,
    }))
}
