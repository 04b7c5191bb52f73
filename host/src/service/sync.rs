//! Syncing a connection: pages fetched through the plugin's `sync` export,
//! each committed with its cursor before the next is asked for, so a failure
//! never loses the cursor of the last committed page. A run ends
//! `succeeded` only when the plugin says there is no more; one that says
//! more without a new cursor to ask with ends `failed`.

use super::{Airlock, ServiceError};
use crate::runtime::types::SyncRequest;
use crate::store::sync::{self as repo, SyncRecordRow, SyncRun};

/// Records asked for per page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Pages one run may fetch before it is stopped as runaway.
const MAX_PAGES: u32 = 100_000;

impl Airlock {
    /// Run a sync of `connection`: from the stored cursor (a delta), or from
    /// the beginning when `full` or when nothing was synced yet. `progress`
    /// is told about each committed page.
    pub async fn sync(
        &self,
        connection: &str,
        full: bool,
        page_size: u32,
        mut progress: impl FnMut(&SyncRun),
    ) -> Result<SyncRun, ServiceError> {
        let record = self.connection(connection)?;
        let (plugin, conn) = self.prepare_call(&record, None)?;
        let mut cursor = if full {
            None
        } else {
            self.store.read(|c| repo::last_cursor(c, &record.id))?
        };
        let mut run = self
            .store
            .write(|tx| repo::start_run(tx, &record.id, cursor.is_none()))?;
        let outcome = loop {
            let request = SyncRequest {
                cursor: cursor.clone(),
                page_size: page_size.max(1),
            };
            let page = match self.runtime.fetch_page(&plugin, &conn, request).await {
                Ok(page) => page,
                Err(e) => break Err(ServiceError::from(e)),
            };
            let rows: Vec<SyncRecordRow> = page
                .records
                .into_iter()
                .map(|r| SyncRecordRow {
                    kind: r.kind,
                    record_id: r.id,
                    updated_at: r.updated_at,
                    data: r.data,
                })
                .collect();
            // More to come, but the next request would be this one again
            // (no cursor, or the same one): the run could never finish,
            // and ending it `succeeded` would hide what was not read.
            let stalled = page.has_more
                && page
                    .next_cursor
                    .as_ref()
                    .is_none_or(|next| cursor.as_ref() == Some(next));
            if let Err(e) = self.store.write(|tx| {
                repo::commit_page(tx, &run.id, &record.id, &rows, page.next_cursor.as_deref())
            }) {
                break Err(e.into());
            }
            run.pages += 1;
            run.records += rows.len() as u64;
            if page.next_cursor.is_some() {
                cursor = page.next_cursor;
            }
            run.cursor = cursor.clone();
            progress(&run);
            if !page.has_more {
                break Ok(());
            }
            if stalled || run.pages >= MAX_PAGES {
                break Err(ServiceError::SyncStalled {
                    plugin: record.plugin_id.clone(),
                    connection: record.name.clone(),
                    pages: run.pages,
                });
            }
        };
        let error = outcome.as_ref().err().map(ToString::to_string);
        self.store
            .write(|tx| repo::finish_run(tx, &run.id, error.is_none(), error.as_deref()))?;
        outcome?;
        Ok(self
            .store
            .read(|c| repo::list_runs(c, &record.id, 1))?
            .into_iter()
            .next()
            .expect("the run just finished"))
    }

    /// The connection's sync runs, newest first.
    pub fn sync_runs(&self, connection: &str, limit: usize) -> Result<Vec<SyncRun>, ServiceError> {
        let record = self.connection(connection)?;
        Ok(self.store.read(|c| repo::list_runs(c, &record.id, limit))?)
    }

    /// Synced records of a connection.
    pub fn synced_records(
        &self,
        connection: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<SyncRecordRow>, ServiceError> {
        let record = self.connection(connection)?;
        Ok(self
            .store
            .read(|c| repo::list_records(c, &record.id, limit, offset))?)
    }
}
