//! The one seam between jilo's SQL and a database driver: [`Conn`] runs a statement with its
//! arguments and hands back plain rows, and [`Dialect`] names the few pieces of SQL a backend
//! spells its own way. Every transaction of the store (the money ones included) is written once
//! over `&mut dyn Conn`; a backend implements `Conn` for its connection and fills a `Dialect`.
//!
//! Statements use `$1 … $n` placeholders; a backend whose driver numbers them otherwise
//! rewrites them ([`numbered_placeholders`]).

use std::borrow::Cow;

use async_trait::async_trait;
use jilo_core::Error;

use super::errors::StoreResult;

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
        [$($crate::sql::conn::Arg::from($a)),*]
    };
}
pub(crate) use args;

/// One value of a result row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// A result row, its values in the order of the statement's columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Row(pub(crate) Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> StoreResult<&Cell> {
        self.0.get(i).ok_or_else(|| {
            Error::storage(format!("a result row has no column {i}"), false, None).into()
        })
    }

    fn mismatch(i: usize, want: &str) -> super::errors::StoreError {
        Error::storage(
            format!("column {i} of a result row is not {want}"),
            false,
            None,
        )
        .into()
    }

    /// An integer column that may be null.
    pub(crate) fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            Cell::Text(_) => Err(Self::mismatch(i, "an integer")),
        }
    }

    /// An integer column.
    pub(crate) fn int(&self, i: usize) -> StoreResult<i64> {
        self.opt_int(i)?
            .ok_or_else(|| Self::mismatch(i, "an integer (it is null)"))
    }

    /// A text column that may be null.
    pub(crate) fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            Cell::Int(_) => Err(Self::mismatch(i, "text")),
        }
    }

    /// A text column.
    pub(crate) fn text(&self, i: usize) -> StoreResult<String> {
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
    /// A statement announcing a job's event on commit (`$1` the channel, `$2` the event as
    /// JSON) to every process; `None` where the store publishes to its own process after
    /// the commit.
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
    pub(crate) migrations: &'static [super::migrate::Migration],
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
    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>>;

    /// Runs a script of several statements without arguments (a migration).
    async fn batch(&mut self, sql: &str) -> StoreResult<()>;

    /// This backend's own SQL.
    fn dialect(&self) -> &'static Dialect;

    /// The first row of a statement, if any.
    async fn fetch_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Option<Row>> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    /// The first row of a statement that always returns one.
    async fn fetch_one(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Row> {
        self.fetch_opt(sql, args)
            .await?
            .ok_or_else(|| Error::storage("a statement returned no row", false, None).into())
    }

    /// Whether a statement returns any row.
    async fn exists(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<bool> {
        Ok(self.fetch_opt(sql, args).await?.is_some())
    }
}

/// `$n` placeholders as `?n`, for drivers that bind by number that way (SQLite reads `$n`
/// as a name, numbered in order of appearance).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn numbered_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '$' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('?'),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

// ---- sqlx's `Any` driver (Postgres, and SQLite's reads and in-memory database) ----

/// A connection of sqlx's `Any` driver.
pub(crate) struct AnyConn<'c> {
    pub(crate) conn: &'c mut sqlx::AnyConnection,
    pub(crate) dialect: &'static Dialect,
}

fn bind_any<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
        };
    }
    q
}

fn any_row(row: &sqlx::any::AnyRow) -> StoreResult<Row> {
    use sqlx::any::AnyTypeInfoKind as Kind;
    use sqlx::{Row as _, ValueRef as _};
    let mut cells = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            cells.push(Cell::Null);
            continue;
        }
        let kind = raw.type_info().kind;
        cells.push(match kind {
            Kind::Bool => Cell::Int(i64::from(row.try_get::<bool, _>(i)?)),
            Kind::SmallInt | Kind::Integer | Kind::BigInt => Cell::Int(row.try_get::<i64, _>(i)?),
            Kind::Text => Cell::Text(row.try_get::<String, _>(i)?),
            other => {
                return Err(Error::storage(
                    format!("column {i} has a type jilo does not read ({other:?})"),
                    false,
                    None,
                )
                .into())
            }
        });
    }
    Ok(Row(cells))
}

#[async_trait]
impl Conn for AnyConn<'_> {
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind_any(sqlx::query(sql), args)
            .execute(&mut *self.conn)
            .await?
            .rows_affected())
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>> {
        let rows = bind_any(sqlx::query(sql), args)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter().map(any_row).collect()
    }

    async fn batch(&mut self, sql: &str) -> StoreResult<()> {
        // A statement without arguments runs unprepared: several statements at once.
        sqlx::Executor::execute(&mut *self.conn, sql).await?;
        Ok(())
    }

    fn dialect(&self) -> &'static Dialect {
        self.dialect
    }
}

// ---- the plain SQLite library (an SQLite file's writing connection) ----

/// A connection of the plain SQLite library. Its calls finish before they return, so the
/// shared (async) transactions run on it with `futures::executor::block_on`, never waiting.
#[cfg(feature = "sqlite")]
pub(crate) struct LiteConn<'c>(pub(crate) &'c mut rusqlite::Connection);

#[cfg(feature = "sqlite")]
impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Arg::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(v)),
            Arg::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::Int(None) | Arg::Text(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl Conn for LiteConn<'_> {
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let sql = numbered_placeholders(sql);
        let mut stmt = self.0.prepare_cached(&sql)?;
        let changed = stmt.execute(rusqlite::params_from_iter(args))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>> {
        use rusqlite::types::ValueRef;
        let sql = numbered_placeholders(sql);
        let mut stmt = self.0.prepare_cached(&sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(Error::storage(
                            format!("column {i} has a type jilo does not read"),
                            false,
                            None,
                        )
                        .into())
                    }
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    async fn batch(&mut self, sql: &str) -> StoreResult<()> {
        self.0.execute_batch(sql)?;
        Ok(())
    }

    fn dialect(&self) -> &'static Dialect {
        &super::SQLITE
    }
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT a FROM t WHERE b = $2 AND c = '$1' AND d = $10"),
            "SELECT a FROM t WHERE b = ?2 AND c = '$1' AND d = ?10"
        );
        assert!(matches!(
            numbered_placeholders("SELECT 1"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
