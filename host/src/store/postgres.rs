//! The PostgreSQL side of [`super::sql::Db`]: a small pool of connections
//! to one database that several airlock servers share.
//!
//! The store's interface is synchronous (SQLite's is), while
//! `tokio-postgres` is asynchronous and its connections must be driven by a
//! Tokio reactor. The pool therefore owns a runtime thread of its own that
//! drives every connection; a caller waits for its statement's answer
//! without entering any runtime (on a multi-threaded runtime it first tells
//! Tokio the thread blocks), so the store works the same from async code,
//! from plain threads and from the CLI.
//!
//! Write transactions take one advisory lock first ([`WRITER_LOCK`]), so
//! writers are serialised across every server exactly as SQLite's
//! `BEGIN IMMEDIATE` serialises them in one file: the repositories' "check,
//! then write" steps keep their meaning. Readers are never blocked.
//!
//! A connection that breaks (the server restarted, the network dropped) is
//! dropped from the pool; the next use opens a new one, so airlock recovers
//! without a restart. While the database is down every use fails with
//! [`StoreError::Unavailable`], which names the database (never its
//! password) and says that calls resume when it is back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio_postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::StoreError;
use super::sql::{Backend, Db, Params, Row, Tx, Value};

/// The advisory lock every write transaction holds: one writer at a time
/// across every server on the database (the audit log has locks of its own).
pub const WRITER_LOCK: i64 = 0x6169_726c_6f63_6b01;
/// The advisory lock migrations run under, so servers starting together
/// migrate once.
pub const MIGRATION_LOCK: i64 = 0x6169_726c_6f63_6b02;

/// Most connections one process opens.
const MAX_CONNECTIONS: usize = 8;
/// How long opening a connection may take before the use fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Session settings: no statement or lock wait hangs a call for ever, and
/// a commit returns only once it is durable on the server, whatever the
/// database's own default (an audit row must exist before its request
/// leaves, even if PostgreSQL then crashes).
const SESSION_SETTINGS: &str =
    "SET lock_timeout = '10s'; SET statement_timeout = '30s'; SET synchronous_commit = 'on'";

/// The query options a database URL may carry (the driver's).
const URL_OPTIONS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "options",
    "application_name",
    "sslmode",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// Where the database is, parsed once from `postgres://...`.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    shown: String,
}

// The configuration holds the password; print only the shown form.
impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgTarget").field(&self.shown).finish()
    }
}

impl PgTarget {
    /// Parse a `postgres://user:password@host:port/database?options` URL.
    /// TLS is not built in: `sslmode=require` (or stricter) is refused.
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme `{}` is not a database airlock knows: use postgres://",
                parsed.scheme()
            ));
        }
        if parsed
            .query_pairs()
            .any(|(k, v)| k == "sslmode" && !matches!(&*v, "disable" | "prefer" | "allow"))
        {
            return Err(
                "this airlock has no TLS for PostgreSQL: reach the database over a private \
                 network or a local socket and use sslmode=disable"
                    .into(),
            );
        }
        if let Some((key, _)) = parsed
            .query_pairs()
            .find(|(k, _)| !URL_OPTIONS.contains(&k.as_ref()))
        {
            return Err(format!(
                "unknown option `{key}` in the URL; known: {}",
                URL_OPTIONS.join(", ")
            ));
        }
        let mut config: Config = url.parse().map_err(|e| format!("{e}"))?;
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("airlock");
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        shown.set_query(None);
        Ok(Self {
            config,
            shown: shown.to_string(),
        })
    }

    /// The URL without its password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// One open connection and its prepared statements.
struct PgClient {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
}

/// The connections of one process to one database.
pub struct PgPool {
    target: PgTarget,
    runtime: tokio::runtime::Handle,
    idle: Mutex<Vec<PgClient>>,
    /// Connections open or being opened, and a signal when one is returned.
    open: (Mutex<usize>, Condvar),
    _stop: std::sync::mpsc::SyncSender<()>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("database", &self.target.shown)
            .finish()
    }
}

/// Wait for `f` on this thread. On a multi-threaded Tokio runtime the wait
/// is announced with `block_in_place`, so other tasks move to other workers.
fn wait<T>(f: impl Future<Output = T>) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| futures::executor::block_on(f))
        }
        _ => futures::executor::block_on(f),
    }
}

impl PgPool {
    /// A pool for `target`; opens one connection to check the database
    /// answers.
    pub fn connect(target: PgTarget) -> Result<Self, StoreError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("airlock-postgres".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the PostgreSQL runtime");
                let _ = handle_tx.send(rt.handle().clone());
                // Drive the connections until the pool is dropped.
                rt.block_on(async move {
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                });
            })
            .map_err(|e| StoreError::Unavailable {
                database: target.shown.clone(),
                reason: format!("cannot start its I/O thread: {e}"),
            })?;
        let runtime = handle_rx.recv().expect("the PostgreSQL runtime starts");
        let pool = Self {
            target,
            runtime,
            idle: Mutex::new(Vec::new()),
            open: (Mutex::new(0), Condvar::new()),
            _stop: stop_tx,
        };
        drop(pool.checkout()?);
        Ok(pool)
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.target.shown
    }

    fn unavailable(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Unavailable {
            database: self.target.shown.clone(),
            reason: describe(e),
        }
    }

    async fn open_client(
        config: Config,
        runtime: tokio::runtime::Handle,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = runtime
            .spawn(async move { config.connect(NoTls).await })
            .await
            .expect("the connect task runs")?;
        runtime.spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // client then reports itself closed and the pool drops it.
            let _ = connection.await;
        });
        client.batch_execute(SESSION_SETTINGS).await?;
        Ok(client)
    }

    fn checkout(&self) -> Result<Lease<'_>, StoreError> {
        loop {
            if let Some(c) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                if c.client.is_closed() {
                    self.release_slot();
                    continue;
                }
                return Ok(Lease {
                    pool: self,
                    client: Some(c),
                    broken: std::cell::Cell::new(false),
                });
            }
            {
                let mut open = self.open.0.lock().unwrap_or_else(|e| e.into_inner());
                if *open >= MAX_CONNECTIONS {
                    let _unused = self
                        .open
                        .1
                        .wait_timeout(open, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                *open += 1;
            }
            let opened = wait(Self::open_client(
                self.target.config.clone(),
                self.runtime.clone(),
            ));
            match opened {
                Ok(client) => {
                    return Ok(Lease {
                        pool: self,
                        client: Some(PgClient {
                            client,
                            statements: RefCell::default(),
                        }),
                        broken: std::cell::Cell::new(false),
                    });
                }
                Err(e) => {
                    self.release_slot();
                    return Err(self.unavailable(&e));
                }
            }
        }
    }

    fn release_slot(&self) {
        let mut open = self.open.0.lock().unwrap_or_else(|e| e.into_inner());
        *open = open.saturating_sub(1);
        self.open.1.notify_one();
    }

    /// Run `f` on a connection outside a transaction.
    pub fn read<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<R, E>,
    ) -> Result<R, E> {
        let lease = self.checkout()?;
        let db = PgDb {
            lease: &lease,
            in_tx: false,
        };
        f(&db)
    }

    /// Run `f` in a transaction holding [`WRITER_LOCK`]; committed when it
    /// returns `Ok`, rolled back otherwise.
    pub fn transact<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.transact_locked(Some(WRITER_LOCK), f)
    }

    /// Run `f` in a transaction holding the advisory lock `lock` (none when
    /// `None`: the caller's statements lock what they need).
    pub fn transact_locked<R, E: From<StoreError>>(
        &self,
        lock: Option<i64>,
        f: impl FnOnce(&Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let lease = self.checkout()?;
        let db = PgDb {
            lease: &lease,
            in_tx: true,
        };
        db.execute_batch("BEGIN")?;
        // Until COMMIT or ROLLBACK answers, the connection is mid-transaction:
        // if this thread unwinds, the lease drops the connection instead of
        // returning it, and the server rolls back.
        lease.broken.set(true);
        if let Some(key) = lock {
            db.execute("SELECT pg_advisory_xact_lock(?1)", &[&key])?;
        }
        let out = f(&Tx(&db));
        match out {
            Ok(v) => {
                db.execute_batch("COMMIT")?;
                lease.broken.set(false);
                Ok(v)
            }
            Err(e) => {
                if db.execute_batch("ROLLBACK").is_ok() {
                    lease.broken.set(false);
                }
                Err(e)
            }
        }
    }
}

/// A connection taken from the pool, returned on drop unless it broke.
struct Lease<'p> {
    pool: &'p PgPool,
    client: Option<PgClient>,
    broken: std::cell::Cell<bool>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else { return };
        if self.broken.get() || c.client.is_closed() {
            drop(c);
            self.pool.release_slot();
            return;
        }
        self.pool
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
        self.pool.open.1.notify_one();
    }
}

/// [`Db`] over a leased connection.
struct PgDb<'l, 'p> {
    lease: &'l Lease<'p>,
    in_tx: bool,
}

impl PgDb<'_, '_> {
    fn client(&self) -> &PgClient {
        self.lease
            .client
            .as_ref()
            .expect("a lease holds its client")
    }

    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        let server_going = e.code().is_some_and(|c| {
            // Class 08: connection exception; 57: operator intervention
            // (the server shutting down, restarting or not yet accepting).
            c.code().starts_with("08") || c.code().starts_with("57")
        });
        let lost = e.is_closed() || e.as_db_error().is_none() && self.client().client.is_closed();
        if server_going || lost {
            self.lease.broken.set(true);
            return self.lease.pool.unavailable(&e);
        }
        StoreError::from(e)
    }

    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        let c = self.client();
        if let Some(s) = c.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let translated = translate(sql);
        let stmt = wait(c.client.prepare(&translated)).map_err(|e| self.error(e))?;
        c.statements
            .borrow_mut()
            .insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

impl Db for PgDb<'_, '_> {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let values = bind(params);
        let rows =
            wait(self.client().client.query(&stmt, &refs(&values))).map_err(|e| self.error(e))?;
        rows.iter().map(read_row).collect()
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        let values = bind(params);
        wait(self.client().client.execute(&stmt, &refs(&values))).map_err(|e| self.error(e))
    }

    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        wait(self.client().client.batch_execute(sql)).map_err(|e| self.error(e))
    }

    fn in_transaction(&self) -> bool {
        self.in_tx
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }
}

/// What went wrong, in the server's words when it said something: the
/// driver's own text for a server error is only "db error".
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// `?N` parameters to PostgreSQL's `$N`, outside quoted text.
fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// The parameters as values PostgreSQL binds.
fn bind(params: Params<'_>) -> Vec<PgValue> {
    params.iter().map(|p| PgValue(p.to_sql())).collect()
}

/// What `tokio-postgres` takes as parameters.
fn refs(values: &[PgValue]) -> Vec<&(dyn PgToSql + Sync)> {
    values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect()
}

/// A [`Value`] bound to whatever type PostgreSQL inferred for its slot.
#[derive(Debug)]
struct PgValue(Value);

type BoxError = Box<dyn StdError + Sync + Send>;

impl PgToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer as {ty}").into()),
            },
            Value::Real(r) => match *ty {
                Type::FLOAT8 => r.to_sql(ty, out),
                _ => Err(format!("cannot bind a real as {ty}").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::VOID => None,
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "column `{}` has type {ty}, which the store does not read \
                     (a query bug: cast it to BIGINT or TEXT)",
                    column.name()
                )));
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_dollar_numbers_outside_quotes() {
        assert_eq!(
            translate("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d IN (?2, ?10)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d IN ($2, $10)"
        );
        assert_eq!(translate("SELECT 'it''s ?1', ?1"), "SELECT 'it''s ?1', $1");
    }

    #[test]
    fn urls_are_checked_and_never_shown_with_their_password() {
        let t = PgTarget::parse("postgres://airlock:hunter2@db.internal:5433/airlock").unwrap();
        assert_eq!(t.shown(), "postgres://airlock:***@db.internal:5433/airlock");
        assert!(!format!("{t:?}").contains("hunter2"));
        let err = PgTarget::parse("mysql://x@y/z").unwrap_err();
        assert!(err.contains("use postgres://"), "{err}");
        let err = PgTarget::parse("postgres://x@y/z?sslmode=require").unwrap_err();
        assert!(err.contains("no TLS"), "{err}");
        let err = PgTarget::parse("not a url").unwrap_err();
        assert!(err.contains("not a URL"), "{err}");
        let err = PgTarget::parse("postgres://x@y/z?frobnicate=1").unwrap_err();
        assert!(err.contains("frobnicate"), "{err}");
    }
}
