//! Sync over the API: start a run (it runs to completion within the
//! request, each page committed with its cursor), list runs, list records.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

use super::connections::managed;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiPath, ApiQuery};
use crate::server::openapi::{Operation, RequestBody, Routes};
use crate::service::DEFAULT_PAGE_SIZE;
use crate::store::sync::{SyncRecordRow, SyncRun};
use crate::store::tokens::Role;

/// Most rows one listing returns.
const MAX_LIST: usize = 1000;

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, summary, success, query| Operation {
        method,
        path,
        tag: "sync",
        summary,
        access: Access::Role(Role::Operator),
        body: RequestBody::None,
        success,
        query,
    };
    r.add(
        op(
            Method::POST,
            "/api/v1/connections/{id}/sync",
            "Sync the connection's records: a delta from the stored cursor, or full",
            (200, "The finished run"),
            &[
                ("full", "true: start from the beginning"),
                ("page_size", "Records asked for per page (default 100)"),
            ],
        ),
        start,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/connections/{id}/sync/runs",
            "The connection's sync runs, newest first",
            (200, "Runs"),
            &[("limit", "At most this many (default 20, max 1000)")],
        ),
        runs,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/connections/{id}/sync/records",
            "Synced records of the connection",
            (200, "Records"),
            &[
                ("limit", "At most this many (default 100, max 1000)"),
                ("offset", "Skip this many"),
            ],
        ),
        records,
    )
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    #[serde(default)]
    full: bool,
    page_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
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
