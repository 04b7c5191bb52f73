//! Calls in flight per connection ([`Limits::connection_calls`]).
//!
//! The instance pool is shared by every connection; without a per-connection
//! bound one busy (or hostile) connection could hold every instance and
//! leave none for the others. A call over the bound waits for a slot, first
//! come first served, within its own wall-clock deadline: a burst on one
//! connection is served at the bound's pace instead of failing, and a wait
//! that outlasts the deadline fails with a limit error that says so.
//!
//! [`Limits::connection_calls`]: crate::limits::Limits::connection_calls

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One connection's slots, and how many calls hold or wait for one.
#[derive(Debug)]
struct Slots {
    free: Arc<Semaphore>,
    /// Calls holding a slot plus calls waiting for one: the entry is dropped
    /// when this reaches zero, so the map holds only busy connections.
    users: usize,
}

type Table = Arc<Mutex<HashMap<String, Slots>>>;

fn lock(table: &Table) -> MutexGuard<'_, HashMap<String, Slots>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slots of every busy connection, by connection id.
#[derive(Debug, Default)]
pub(super) struct ConnectionSlots {
    table: Table,
}

/// How many calls a connection has running and waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionLoad {
    /// Calls holding one of the connection's slots.
    pub running: usize,
    /// Calls waiting for a slot to free up.
    pub waiting: usize,
}

impl ConnectionSlots {
    /// A slot for one call on `connection`, once fewer than `max` calls hold
    /// one. Dropping the future while it waits gives up its place.
    pub(super) async fn acquire(&self, connection: &str, max: usize) -> CallSlot {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        let free = {
            let mut table = lock(&self.table);
            let slots = table
                .entry(connection.to_string())
                .or_insert_with(|| Slots {
                    free: Arc::new(Semaphore::new(max)),
                    users: 0,
                });
            slots.users += 1;
            slots.free.clone()
        };
        // Registered before waiting, so a wait that is given up is counted
        // off too.
        let user = User {
            table: self.table.clone(),
            connection: connection.to_string(),
        };
        let permit = free
            .acquire_owned()
            .await
            .expect("a connection's semaphore is never closed");
        CallSlot {
            _permit: permit,
            _user: user,
        }
    }

    /// How many calls `connection` has running and waiting now.
    pub(super) fn load(&self, connection: &str, max: usize) -> ConnectionLoad {
        let table = lock(&self.table);
        let Some(slots) = table.get(connection) else {
            return ConnectionLoad::default();
        };
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        let running = max.saturating_sub(slots.free.available_permits());
        ConnectionLoad {
            running,
            waiting: slots.users.saturating_sub(running),
        }
    }
}

/// One call's place on its connection, given back when dropped (the call
/// ended, failed, timed out or its stream was dropped).
#[derive(Debug)]
pub(super) struct CallSlot {
    // Field order is drop order: the slot is freed before the entry may go.
    _permit: OwnedSemaphorePermit,
    _user: User,
}

/// A call holding or waiting for a slot on `connection`.
#[derive(Debug)]
struct User {
    table: Table,
    connection: String,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if let Some(slots) = table.get_mut(&self.connection) {
            slots.users -= 1;
            if slots.users == 0 {
                table.remove(&self.connection);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn a_call_over_the_bound_waits_for_a_freed_slot() {
        let slots = ConnectionSlots::default();
        let first = slots.acquire("a", 2).await;
        let _second = slots.acquire("a", 2).await;
        let mut third = Box::pin(slots.acquire("a", 2));
        assert!(
            (&mut third).now_or_never().is_none(),
            "both slots are taken"
        );
        let load = slots.load("a", 2);
        assert_eq!((load.running, load.waiting), (2, 1));
        let _other = slots
            .acquire("b", 2)
            .now_or_never()
            .expect("another connection has slots of its own");
        drop(first);
        assert!(
            third.now_or_never().is_some(),
            "the freed slot is handed on"
        );
    }

    #[tokio::test]
    async fn idle_connections_are_forgotten_even_after_a_wait_is_given_up() {
        let slots = ConnectionSlots::default();
        let held = slots.acquire("a", 1).await;
        let mut waiting = Box::pin(slots.acquire("a", 1));
        assert!((&mut waiting).now_or_never().is_none());
        drop(waiting);
        assert_eq!(slots.load("a", 1).waiting, 0);
        drop(held);
        assert!(lock(&slots.table).is_empty());
        assert_eq!(slots.load("a", 1), ConnectionLoad::default());
    }
}
