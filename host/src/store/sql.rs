//! The one interface every table's code is written against: [`Db`], a
//! connection (or a transaction) that runs SQL with positional `?N`
//! parameters and answers with [`Row`]s of plain [`Value`]s.
//!
//! Two implementations sit behind it: SQLite (`rusqlite`, in this module) and
//! PostgreSQL ([`super::postgres`]). The repositories, the vault and the
//! services above them never learn which one runs. The SQL they write is the
//! common dialect of both: `?N` parameters (rewritten to `$N` for
//! PostgreSQL), `ON CONFLICT ... DO UPDATE SET col = excluded.col`,
//! `RETURNING`, integers as 64-bit, timestamps as fixed-width RFC 3339 text
//! (so text order is time order), booleans as 0/1 integers. Each backend has
//! its own migrations producing the same tables and columns.

use std::fmt;

use super::StoreError;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file in the data directory.
    Sqlite,
    /// A shared PostgreSQL server, for several airlock servers as one.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// One SQL value, as both engines store it.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer (also booleans, as 0 and 1).
    Int(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes (`BLOB` / `BYTEA`).
    Blob(Vec<u8>),
}

// Values carry sealed secrets' ciphertexts and settings; never print them.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Value::Null => "Null",
            Value::Int(_) => "Int(..)",
            Value::Real(_) => "Real(..)",
            Value::Text(_) => "Text(..)",
            Value::Blob(_) => "Blob(..)",
        })
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

/// A Rust value that binds as a SQL parameter.
pub trait ToSql {
    /// The value to bind.
    fn to_sql(&self) -> Value;
}

/// A Rust value a column decodes into.
pub trait FromSql: Sized {
    /// Decode `value`; `Err` names what was expected.
    fn from_sql(value: &Value) -> Result<Self, &'static str>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Value {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToSql::to_sql)
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> Value {
        self.clone()
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl<const N: usize> ToSql for [u8; N] {
    fn to_sql(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Value {
        Value::Real(*self)
    }
}

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_to_sql!(i8, i16, i32, i64, u8, u16, u32);

impl ToSql for u64 {
    /// Counts and sizes; past `i64::MAX` (never reached) they saturate.
    fn to_sql(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToSql for usize {
    fn to_sql(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl FromSql for Value {
    fn from_sql(value: &Value) -> Result<Self, &'static str> {
        Ok(value.clone())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Null => Ok(None),
            v => T::from_sql(v).map(Some),
        }
    }
}

impl FromSql for String {
    fn from_sql(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            _ => Err("text"),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err("bytes"),
        }
    }
}

impl FromSql for bool {
    fn from_sql(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Int(i) => Ok(*i != 0),
            _ => Err("a 0/1 integer"),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::Real(r) => Ok(*r),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Ok(*i as f64),
            _ => Err("a number"),
        }
    }
}

macro_rules! int_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_sql(value: &Value) -> Result<Self, &'static str> {
                match value {
                    Value::Int(i) => <$t>::try_from(*i).map_err(|_| "an integer in range"),
                    _ => Err("an integer"),
                }
            }
        }
    )*};
}
int_from_sql!(i32, i64, u8, u16, u32, u64, usize);

/// One result row: its values in `SELECT` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `index` decoded as `T`; a type mismatch is [`StoreError::Corrupt`].
    pub fn get<T: FromSql>(&self, index: usize) -> Result<T, StoreError> {
        let value = self.0.get(index).ok_or_else(|| {
            StoreError::Corrupt(format!("result has no column {index} (a query bug)"))
        })?;
        T::from_sql(value).map_err(|expected| {
            StoreError::Corrupt(format!(
                "column {index} holds {}, expected {expected}",
                value.kind()
            ))
        })
    }
}

/// Parameters as passed to [`Db`]: `params![a, b]` builds them.
pub type Params<'a> = &'a [&'a dyn ToSql];

/// Build a parameter slice: `params![id, name, 3]`.
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::sql::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::sql::ToSql),+] as &[&dyn $crate::store::sql::ToSql] };
}
pub(crate) use params;

/// A connection, or a transaction on one, of either engine.
///
/// Object safe; the typed helpers are in [`DbExt`].
pub trait Db {
    /// Run a statement that returns rows.
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError>;
    /// Run a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError>;
    /// Run several statements without parameters.
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError>;
    /// Whether this runs inside a transaction (reads there are not cached:
    /// the transaction may still roll back).
    fn in_transaction(&self) -> bool;
    /// Which engine this is.
    fn backend(&self) -> Backend;
}

/// Typed helpers over any [`Db`].
pub trait DbExt: Db {
    /// The first row mapped by `f`; [`StoreError::NoRows`] when there is none.
    fn query_row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.query(sql, params)?.first() {
            Some(row) => f(row),
            None => Err(StoreError::NoRows),
        }
    }

    /// The first row mapped by `f`, or `None`.
    fn query_opt<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// Every row mapped by `f`.
    fn query_map<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// Whether `sql` (a `SELECT 1 ...` query) returns at least one row.
    ///
    /// The repositories check for a row before writing so they can answer
    /// with their own `NotFound` or `Conflict` message instead of the
    /// engine's constraint error.
    fn exists(&self, sql: &str, params: Params<'_>) -> Result<bool, StoreError> {
        Ok(!self.query(sql, params)?.is_empty())
    }
}

impl<D: Db + ?Sized> DbExt for D {}

/// A write transaction: what the `write` side of the repositories takes, so
/// a function that changes rows cannot be handed a plain read connection.
/// It reads like any [`Db`].
pub struct Tx<'a>(pub(crate) &'a dyn Db);

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tx({})", self.0.backend())
    }
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = dyn Db + 'a;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

// A `&Tx` is accepted wherever a `&dyn Db` is (a write function may call
// the read functions inside its transaction).
impl Db for Tx<'_> {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.0.query(sql, params)
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        self.0.execute(sql, params)
    }

    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.0.execute_batch(sql)
    }

    fn in_transaction(&self) -> bool {
        self.0.in_transaction()
    }

    fn backend(&self) -> Backend {
        self.0.backend()
    }
}

// ---- SQLite -------------------------------------------------------------

impl rusqlite::types::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn sqlite_values(params: Params<'_>) -> Vec<Value> {
    params.iter().map(|p| p.to_sql()).collect()
}

fn sqlite_row(row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(columns);
    for i in 0..columns {
        values.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(values))
}

impl Db for rusqlite::Connection {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let values = sqlite_values(params);
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values.iter()), |r| {
                sqlite_row(r, columns)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let values = sqlite_values(params);
        let n = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(values.iter()))?;
        Ok(n as u64)
    }

    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }

    fn in_transaction(&self) -> bool {
        !self.is_autocommit()
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_round_trips_every_kind_of_value() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db: &dyn Db = &conn;
        db.execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")
            .unwrap();
        let none: Option<String> = None;
        let n = db
            .execute(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
                params![42u32, 1.5f64, "text", vec![1u8, 2], none],
            )
            .unwrap();
        assert_eq!(n, 1);
        let row = db
            .query_row("SELECT i, r, s, b, n FROM t", params![], |r| Ok(r.clone()))
            .unwrap();
        assert_eq!(row.get::<u32>(0).unwrap(), 42);
        assert_eq!(row.get::<f64>(1).unwrap(), 1.5);
        assert_eq!(row.get::<String>(2).unwrap(), "text");
        assert_eq!(row.get::<Vec<u8>>(3).unwrap(), vec![1, 2]);
        assert_eq!(row.get::<Option<String>>(4).unwrap(), None);
    }

    #[test]
    fn a_type_mismatch_is_corrupt_data_naming_the_column() {
        let row = Row(vec![Value::Text("x".into())]);
        let err = row.get::<i64>(0).unwrap_err();
        assert!(
            err.to_string()
                .contains("column 0 holds text, expected an integer"),
            "{err}"
        );
        let err = row.get::<i64>(3).unwrap_err();
        assert!(err.to_string().contains("no column 3"), "{err}");
        let err = Row(vec![Value::Int(-1)]).get::<u32>(0).unwrap_err();
        assert!(err.to_string().contains("in range"), "{err}");
    }

    #[test]
    fn exists_and_optional_rows() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT, v TEXT); INSERT INTO t VALUES ('a', 'x');")
            .unwrap();
        let db: &dyn Db = &conn;
        let sql = "SELECT 1 FROM t WHERE k = ?1 AND v = ?2";
        assert!(db.exists(sql, params!["a", "x"]).unwrap());
        assert!(!db.exists(sql, params!["a", "y"]).unwrap());
        let missing = db
            .query_opt("SELECT v FROM t WHERE k = ?1", params!["b"], |r| {
                r.get::<String>(0)
            })
            .unwrap();
        assert_eq!(missing, None);
        let err = db
            .query_row("SELECT v FROM t WHERE k = ?1", params!["b"], |r| {
                r.get::<String>(0)
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::NoRows), "{err:?}");
        let err = db.exists("SELECT 1 FROM missing", params![]).unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
    }

    #[test]
    fn values_never_print_their_contents() {
        let v = Value::Text("s3cr3t-canary".into());
        assert!(!format!("{v:?}").contains("canary"));
        let row = Row(vec![v, Value::Blob(b"canary".to_vec())]);
        assert!(!format!("{row:?}").contains("canary"));
    }
}
