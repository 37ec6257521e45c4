//! The one seam between jilo's SQL and a database driver: [`Conn`] runs a statement with its
//! arguments and hands back plain rows, and [`Dialect`] names the few pieces of SQL a backend
//! spells its own way. Every transaction of the store (the money ones included) is written once
//! over `&mut dyn Conn`; a backend implements `Conn` for its connection and fills a `Dialect`.
//!
//! Statements use `$1 … $n` placeholders; a backend whose driver reads them otherwise binds
//! them by name (SQLite).
//!
//! This module is the bottom of the SQL store: it imports none of the others; the wings
//! (`sqlite`, `postgres`) sit on it, and the shared transactions (`sql`) on them.

pub(crate) mod errors;

use async_trait::async_trait;
use jilo_core::{Error, Result};

use errors::StoreResult;

/// A statement's argument. Nulls keep their type: Postgres needs it to type the parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arg<'a> {
    /// An integer column (`BIGINT`), or null.
    Int(Option<i64>),
    /// A text column, or null.
    Text(Option<&'a str>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v.as_str()))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

/// Builds an argument list: `args![a, b, c]` is `[Arg::from(a), …]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        [$($crate::seam::Arg::from($a)),*]
    };
}
pub(crate) use args;

/// A value of a host's own SQL ([`SqlStore::query`](crate::SqlStore::query)): an argument, or
/// a column of a result row. jilo's tables hold integers and text only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlValue {
    /// SQL `NULL` (as an argument: a null of type text; cast it in the SQL for another type).
    Null,
    /// A 64-bit integer (`BIGINT`; smaller integers and booleans read as one too).
    Int(i64),
    /// Text.
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

impl<'a> From<&'a SqlValue> for Arg<'a> {
    fn from(v: &'a SqlValue) -> Self {
        match v {
            SqlValue::Null => Arg::Text(None),
            SqlValue::Int(i) => Arg::Int(Some(*i)),
            SqlValue::Text(t) => Arg::Text(Some(t.as_str())),
        }
    }
}

/// A result row of a host's own query, its values in the order of the statement's columns.
///
/// ```
/// use jilo_store::{SqlRow, SqlValue};
///
/// let row = SqlRow::new(vec![SqlValue::Text("u1".into()), SqlValue::Int(42), SqlValue::Null]);
/// assert_eq!(row.text(0)?, "u1");
/// assert_eq!(row.int(1)?, 42);
/// assert_eq!(row.opt_int(2)?, None);
/// assert!(row.int(0).is_err(), "text is not read as an integer");
/// # Ok::<(), jilo_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqlRow(Vec<SqlValue>);

impl SqlRow {
    /// A row of these values.
    pub fn new(values: Vec<SqlValue>) -> Self {
        Self(values)
    }

    /// The values, in column order.
    pub fn values(&self) -> &[SqlValue] {
        &self.0
    }

    /// How many columns the row has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn value(&self, i: usize) -> Result<&SqlValue> {
        self.0
            .get(i)
            .ok_or_else(|| Error::storage(format!("a result row has no column {i}"), false, None))
    }

    fn mismatch(i: usize, want: &str) -> Error {
        Error::storage(
            format!("column {i} of a result row is not {want}"),
            false,
            None,
        )
    }

    /// Column `i` as an integer that may be null.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.value(i)? {
            SqlValue::Null => Ok(None),
            SqlValue::Int(v) => Ok(Some(*v)),
            SqlValue::Text(_) => Err(Self::mismatch(i, "an integer")),
        }
    }

    /// Column `i` as an integer.
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| Self::mismatch(i, "an integer (it is null)"))
    }

    /// Column `i` as text that may be null.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.value(i)? {
            SqlValue::Null => Ok(None),
            SqlValue::Text(v) => Ok(Some(v.clone())),
            SqlValue::Int(_) => Err(Self::mismatch(i, "text")),
        }
    }

    /// Column `i` as text.
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| Self::mismatch(i, "text (it is null)"))
    }
}

/// The SQL a backend writes its own way. Everything else is shared.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// Appended to a `SELECT` that locks the rows it reads until the transaction ends
    /// (`" FOR UPDATE"`), or empty where a write transaction holds the whole database.
    pub(crate) row_lock: &'static str,
    /// Appended to the due-job subquery of a claim so concurrent claimers skip each other's
    /// rows (`" FOR UPDATE SKIP LOCKED"`), or empty.
    pub(crate) skip_locked: &'static str,
    /// A statement taking a transaction lock on (`$1` a class, `$2` a key, both 32-bit), so
    /// concurrent capped reservations of one day count one at a time; `None` where write
    /// transactions already run one at a time.
    pub(crate) day_lock: Option<&'static str>,
    /// A statement taking the migration lock (`$1`, 64-bit) for the transaction; `None` where
    /// the write transaction is the lock.
    pub(crate) migration_lock: Option<&'static str>,
    /// A statement announcing a job's event on commit (`$1` the event as JSON) to every
    /// process; `None` where the store publishes to its own process after the commit.
    pub(crate) notify: Option<&'static str>,
    /// A statement counting the `checksum` column of `jilo_schema` (0 or 1).
    pub(crate) has_checksum_column: &'static str,
    /// How a write transaction begins (SQLite takes the write lock at once, so a read never
    /// fails to upgrade it).
    pub(crate) begin_write: &'static str,
    /// How a read-only transaction that sees one snapshot begins.
    pub(crate) begin_snapshot: &'static str,
    /// How the database explains a statement's plan.
    pub(crate) explain: Explain,
    /// The backend's embedded migrations, oldest first.
    pub(crate) migrations: &'static [Migration],
}

/// One schema step.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// How a backend explains a statement's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Explain {
    /// `EXPLAIN QUERY PLAN` with the arguments bound; the step is the fourth column.
    QueryPlan,
    /// `EXPLAIN` of the statement with its arguments written in as literals (the plan for
    /// these very values, not a generic one); one line per row.
    Literal,
}

/// A connection (usually inside a transaction the caller opened) that runs statements.
#[async_trait]
pub(crate) trait Conn: Send {
    /// Runs a statement that returns no rows; returns how many rows it changed.
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64>;

    /// Runs a statement and returns its rows.
    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<SqlRow>>;

    /// Runs a script of several statements without arguments (a migration).
    async fn batch(&mut self, sql: &str) -> StoreResult<()>;

    /// This backend's own SQL.
    fn dialect(&self) -> &'static Dialect;

    /// The first row of a statement, if any.
    async fn fetch_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Option<SqlRow>> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    /// The first row of a statement that always returns one.
    async fn fetch_one(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<SqlRow> {
        self.fetch_opt(sql, args)
            .await?
            .ok_or_else(|| Error::storage("a statement returned no row", false, None).into())
    }

    /// Whether a statement returns any row.
    async fn exists(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<bool> {
        Ok(self.fetch_opt(sql, args).await?.is_some())
    }
}
