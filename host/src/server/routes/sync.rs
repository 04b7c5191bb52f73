//! Sync over the API: start a run (it runs to completion within the
//! request, each page committed with its cursor), list runs, list records.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::JsonSchema;
use serde::Deserialize;

use super::connections::managed;
use super::{CALL_ERRORS, CONNECTION_ERRORS};
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiPath, ApiQuery};
use crate::server::openapi::{Failure, Operation, Routes};
use crate::service::DEFAULT_PAGE_SIZE;
use crate::store::sync::{SyncRecordRow, SyncRun};
use crate::store::tokens::Role;

/// Most rows one listing returns.
const MAX_LIST: usize = 1000;

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, id, summary, returns, errors| Operation {
        method,
        path,
        id,
        tag: "sync",
        summary,
        access: Access::Role(Role::Operator),
        returns,
        errors,
    };
    r.add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/sync",
            "syncConnection",
            "Sync the connection's records: a delta from the stored cursor, or full",
            "The finished run",
            SYNC_ERRORS,
        ),
        start,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/connections/{id}/sync/runs",
            "listSyncRuns",
            "The connection's sync runs, newest first",
            "Runs",
            CONNECTION_ERRORS,
        ),
        runs,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/connections/{id}/sync/records",
            "listSyncRecords",
            "Synced records of the connection",
            "Records",
            CONNECTION_ERRORS,
        ),
        records,
    )
}

/// A sync calls the plugin like any operation, and may also stall.
const SYNC_ERRORS: &[Failure] = &[
    CALL_ERRORS[0],
    CALL_ERRORS[1],
    CALL_ERRORS[2],
    CALL_ERRORS[3],
    CALL_ERRORS[4],
    CALL_ERRORS[5],
    CALL_ERRORS[6],
    CALL_ERRORS[7],
    (
        502,
        "the plugin said there was more without a new cursor (`sync_stalled`)",
    ),
];

#[derive(Debug, Deserialize, JsonSchema)]
struct StartQuery {
    /// `true`: start from the beginning instead of the stored cursor.
    #[serde(default)]
    full: bool,
    /// Records asked for per page (default 100; clamped to 1..=1000).
    page_size: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ListQuery {
    /// At most this many (default 20 runs or 100 records, at most 1000).
    limit: Option<usize>,
    /// Skip this many (records only).
    #[serde(default)]
    offset: usize,
}

async fn start(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StartQuery>,
) -> Result<Json<SyncRun>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let page_size = q.page_size.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, 1000);
    let run = state
        .airlock()
        .sync(&record.id, q.full, page_size, |run| {
            tracing::debug!(connection = %record.name, pages = run.pages, records = run.records, "sync page committed");
        })
        .await?;
    Ok(Json(run))
}

async fn runs(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<SyncRun>>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let limit = q.limit.unwrap_or(20).min(MAX_LIST);
    Ok(Json(state.airlock().sync_runs(&record.id, limit)?))
}

async fn records(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<SyncRecordRow>>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    Ok(Json(
        state
            .airlock()
            .synced_records(&record.id, limit, q.offset)?,
    ))
}
