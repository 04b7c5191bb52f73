//! Syncing a connection: pages fetched through the plugin's `sync` export,
//! each committed with its cursor before the next is asked for, so a failure
//! never loses the cursor of the last committed page. A run ends
//! `succeeded` only when the plugin says there is no more; one that says
//! more without a new cursor to ask with ends `failed`.
//!
//! One sync of a connection runs at a time across every server on the
//! database: a run holds the connection's lease (`sync:<id>` in
//! `store::leases`), renewed with each committed page and released when the
//! run ends. A server that dies mid-run leaves its lease to run out
//! ([`super::AirlockConfig::sync_lease`]); the next sync, on any server,
//! marks the dead run failed and resumes from its last committed cursor.

use super::{Airlock, ServiceError};
use crate::runtime::types::SyncRequest;
use crate::store::leases;
use crate::store::sync::{self as repo, SyncRecordRow, SyncRun};
use crate::store::{StoreError, Tx};

/// Records asked for per page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Pages one run may fetch before it is stopped as runaway.
const MAX_PAGES: u32 = 100_000;

fn lease_name(connection_id: &str) -> String {
    format!("sync:{connection_id}")
}

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
        let (record, installed) = self.call_records(connection)?;
        let (plugin, conn) = self.prepare_installed(&record, &installed, None)?;
        let (mut run, mut cursor) = self.start_sync(&record, full)?;
        let lease = lease_name(&record.id);
        let holder = self.oauth.lease_holder.as_str();
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
                self.keep_lease(tx, &record.name, &lease)?;
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
        let finished = self.store.write(|tx| {
            repo::finish_run(tx, &run.id, error.is_none(), error.as_deref())?;
            leases::release(tx, &lease, holder)
        });
        // A run that failed says why; that its end could not be recorded
        // (another server already marked it) is secondary.
        outcome?;
        finished?;
        Ok(self
            .store
            .read(|c| repo::list_runs(c, &record.id, 1))?
            .into_iter()
            .next()
            .expect("the run just finished"))
    }

    /// Take the connection's sync lease and start a run, in one
    /// transaction: runs a dead server left `running` are marked failed,
    /// and a delta resumes from the last committed cursor, theirs included.
    /// The run and the cursor to ask with first.
    fn start_sync(
        &self,
        record: &crate::store::connections::ConnectionRecord,
        full: bool,
    ) -> Result<(SyncRun, Option<String>), ServiceError> {
        let holder = self.oauth.lease_holder.as_str();
        Ok(self.store.write(|tx| {
            let taken = leases::acquire(tx, &lease_name(&record.id), holder, self.sync_lease)?;
            if let Err(held) = taken {
                return Err(StoreError::Conflict(format!(
                    "a sync of connection `{}` is running on {} (its lease runs to {} unless \
                     renewed); try again when it ends",
                    record.name, held.holder, held.expires_at
                )));
            }
            let cursor = if full {
                None
            } else {
                repo::last_cursor(tx, &record.id)?
            };
            let interrupted = repo::fail_interrupted(
                tx,
                &record.id,
                "interrupted: the server running it stopped before it ended; a later run \
                 resumed from its last committed page",
            )?;
            if interrupted > 0 {
                tracing::warn!(connection = %record.name, runs = interrupted,
                    "sync runs left running by a stopped server marked failed; resuming");
            }
            let run = repo::start_run(tx, &record.id, cursor.is_none())?;
            Ok((run, cursor))
        })?)
    }

    /// Renew the sync lease inside a page's transaction; a lease that ran
    /// out and was taken over fails the page, so two servers never both
    /// write one connection's records.
    fn keep_lease(&self, tx: &Tx<'_>, name: &str, lease: &str) -> Result<(), StoreError> {
        if leases::renew(tx, lease, &self.oauth.lease_holder, self.sync_lease)? {
            return Ok(());
        }
        Err(StoreError::Conflict(format!(
            "the sync of connection `{name}` lost its lease (no page committed for longer than \
             the lease lasts) and another server took it over; this run stops"
        )))
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
