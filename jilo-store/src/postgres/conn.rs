//! sqlx's Postgres driver behind the [`Conn`] seam.

use async_trait::async_trait;
use jilo_core::Error;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgConnection, Postgres};

use crate::seam::errors::StoreResult;
use crate::seam::{Arg, Conn, Dialect, SqlRow, SqlValue};

/// A Postgres connection, usually inside a transaction the caller opened.
pub(crate) struct PgConn<'c>(pub(crate) &'c mut PgConnection);

fn bind<'q>(
    mut q: sqlx::query::Query<'q, Postgres, PgArguments>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
        };
    }
    q
}

/// A row's values by their Postgres types: integers of every width, booleans, text.
fn row(row: &PgRow) -> StoreResult<SqlRow> {
    use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        if row.try_get_raw(i)?.is_null() {
            values.push(SqlValue::Null);
            continue;
        }
        values.push(match column.type_info().name() {
            "INT8" => SqlValue::Int(row.try_get::<i64, _>(i)?),
            "INT4" => SqlValue::Int(i64::from(row.try_get::<i32, _>(i)?)),
            "INT2" => SqlValue::Int(i64::from(row.try_get::<i16, _>(i)?)),
            "BOOL" => SqlValue::Int(i64::from(row.try_get::<bool, _>(i)?)),
            "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => SqlValue::Text(row.try_get::<String, _>(i)?),
            other => {
                return Err(Error::storage(
                    format!("column {i} has a type jilo does not read ({other})"),
                    false,
                    None,
                )
                .into())
            }
        });
    }
    Ok(SqlRow::new(values))
}

#[async_trait]
impl Conn for PgConn<'_> {
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sqlx::query(sql), args)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<SqlRow>> {
        let rows = bind(sqlx::query(sql), args).fetch_all(&mut *self.0).await?;
        rows.iter().map(row).collect()
    }

    async fn batch(&mut self, sql: &str) -> StoreResult<()> {
        // A statement without arguments runs unprepared: several statements at once.
        sqlx::Executor::execute(&mut *self.0, sql).await?;
        Ok(())
    }

    fn dialect(&self) -> &'static Dialect {
        &super::DIALECT
    }
}
