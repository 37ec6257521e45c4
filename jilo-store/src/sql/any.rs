//! sqlx's `Any` driver behind the [`Conn`] seam: Postgres, and an SQLite store's reads and
//! in-memory database.

use async_trait::async_trait;
use jilo_core::Error;

use super::conn::{Arg, Cell, Conn, Dialect, Row};
use super::errors::StoreResult;

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
