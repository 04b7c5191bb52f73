//! Leases (`leases`): one holder at a time, across processes and servers
//! sharing the database, for work that must not run twice at once: an OAuth
//! refresh of a connection (its refresh token may be single-use) and a
//! connection's sync. A lease ends when its holder releases it or when its
//! time runs out, which is how the work of a server that died is taken
//! over. Every step runs inside the caller's write transaction, so it is
//! atomic against the other servers (writers are serialised).

use std::time::Duration;

use super::sql::{Db, DbExt, Tx, params};
use super::{StoreError, now, time_after};

/// A new holder name: the host, the process and a random part, so every
/// server (and every `Airlock` embedded in one process) is its own holder
/// and an operator reading the table sees where a lease is held.
pub fn new_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "{}:{}:{}",
        if host.is_empty() { "host" } else { &host },
        std::process::id(),
        &super::new_id()[..8]
    )
}

/// Another holder's live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Who holds it.
    pub holder: String,
    /// When it runs out unless renewed.
    pub expires_at: String,
}

/// Take lease `name` for `holder` for `ttl`: when nobody holds it, its time
/// ran out, or `holder` already holds it (then it is renewed). `Err(Held)`
/// (inside `Ok`) names the live holder otherwise.
pub fn acquire(
    tx: &Tx<'_>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Result<(), Held>, StoreError> {
    if let Some(held) = current(tx, name)?
        && held.holder != holder
        && held.expires_at > now()
    {
        return Ok(Err(held));
    }
    tx.execute(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
             expires_at = excluded.expires_at",
        params![name, holder, time_after(ttl)],
    )?;
    Ok(Ok(()))
}

/// Extend `holder`'s lease by `ttl` from now; `false` when it is no longer
/// `holder`'s (it ran out and another took it).
pub fn renew(tx: &Tx<'_>, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
    let n = tx.execute(
        "UPDATE leases SET expires_at = ?3 WHERE name = ?1 AND holder = ?2",
        params![name, holder, time_after(ttl)],
    )?;
    Ok(n == 1)
}

/// End `holder`'s lease (nothing when it is not theirs any more).
pub fn release(tx: &Tx<'_>, name: &str, holder: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
        params![name, holder],
    )?;
    Ok(())
}

/// The lease `name` as stored, expired or not.
pub fn current(conn: &dyn Db, name: &str) -> Result<Option<Held>, StoreError> {
    conn.query_opt(
        "SELECT holder, expires_at FROM leases WHERE name = ?1",
        params![name],
        |r| {
            Ok(Held {
                holder: r.get(0)?,
                expires_at: r.get(1)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestStore;

    const TTL: Duration = Duration::from_secs(30);

    crate::store::testing::on_both_backends!(
        one_holder_at_a_time_across_servers,
        an_expired_lease_is_taken_over
    );

    fn one_holder_at_a_time_across_servers(store: &TestStore) {
        let other = store.reopen();
        assert_eq!(
            store.write(|tx| acquire(tx, "sync:c", "a", TTL)).unwrap(),
            Ok(())
        );
        let held = other
            .write(|tx| acquire(tx, "sync:c", "b", TTL))
            .unwrap()
            .unwrap_err();
        assert_eq!(held.holder, "a");
        // The holder takes it again (a renewal); the other renews nothing.
        assert_eq!(
            store.write(|tx| acquire(tx, "sync:c", "a", TTL)).unwrap(),
            Ok(())
        );
        assert!(!other.write(|tx| renew(tx, "sync:c", "b", TTL)).unwrap());
        assert!(store.write(|tx| renew(tx, "sync:c", "a", TTL)).unwrap());
        // Another name is another lease.
        assert_eq!(
            other.write(|tx| acquire(tx, "sync:d", "b", TTL)).unwrap(),
            Ok(())
        );
        // Released only by its holder.
        other.write(|tx| release(tx, "sync:c", "b")).unwrap();
        assert_eq!(
            store
                .read(|c| current(c, "sync:c"))
                .unwrap()
                .unwrap()
                .holder,
            "a"
        );
        store.write(|tx| release(tx, "sync:c", "a")).unwrap();
        assert_eq!(
            other.write(|tx| acquire(tx, "sync:c", "b", TTL)).unwrap(),
            Ok(())
        );
    }

    fn an_expired_lease_is_taken_over(store: &TestStore) {
        // A holder that died: its lease ran out.
        store
            .write(|tx| acquire(tx, "oauth-refresh:c", "dead", Duration::ZERO))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let other = store.reopen();
        assert_eq!(
            other
                .write(|tx| acquire(tx, "oauth-refresh:c", "alive", TTL))
                .unwrap(),
            Ok(())
        );
        assert!(
            !store
                .write(|tx| renew(tx, "oauth-refresh:c", "dead", TTL))
                .unwrap()
        );
        let holder = new_holder();
        assert!(holder.contains(&std::process::id().to_string()), "{holder}");
        assert_ne!(holder, new_holder(), "every holder is its own");
    }
}
