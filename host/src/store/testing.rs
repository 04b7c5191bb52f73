//! One test suite, two engines: a test written as `fn name(t: &TestStore)`
//! and listed in `on_both_backends!` runs once on
//! a fresh SQLite file and once on a fresh database of the real PostgreSQL
//! server the test process shares (`airlock_test_artifacts::postgres`).

use std::path::Path;
use std::sync::Arc;

use super::{Backend, DatabaseUrl, Store};

/// A fresh store of one engine, and what it takes to open it again (as a
/// second process, or a second server, would).
#[derive(Debug)]
pub(crate) struct TestStore {
    /// The store.
    pub store: Arc<Store>,
    /// Which database it is.
    pub url: DatabaseUrl,
    /// The data directory (SQLite's file lives here).
    pub dir: tempfile::TempDir,
}

impl TestStore {
    /// A fresh store on `backend`.
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => DatabaseUrl::Sqlite,
            Backend::Postgres => {
                let pg = airlock_test_artifacts::postgres::shared();
                DatabaseUrl::parse(&pg.database()).unwrap()
            }
        };
        let store = Arc::new(Store::open_url(&url, dir.path()).unwrap());
        Self { store, url, dir }
    }

    /// The same database opened again: another process, or another server.
    pub fn reopen(&self) -> Store {
        Store::open_url(&self.url, self.dir.path()).unwrap()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl std::ops::Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// For each `name`, a module `name` with tests `sqlite` and `postgres` that
/// call `name(&TestStore)` on a fresh store of that engine.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&$crate::store::testing::TestStore::new(
                    $crate::store::Backend::Sqlite,
                ));
            }

            #[test]
            fn postgres() {
                super::$name(&$crate::store::testing::TestStore::new(
                    $crate::store::Backend::Postgres,
                ));
            }
        }
    )+};
}
pub(crate) use on_both_backends;
