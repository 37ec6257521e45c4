//! The plain SQLite library behind the [`Conn`] seam.

use async_trait::async_trait;
use jilo_core::Error;

use crate::seam::errors::StoreResult;
use crate::seam::{Arg, Conn, Dialect, SqlRow, SqlValue};

/// A connection of the plain SQLite library. Its calls finish before they return, so the
/// shared (async) transactions run on it with `futures::executor::block_on`, never waiting.
pub(crate) struct LiteConn<'c>(pub(crate) &'c mut rusqlite::Connection);

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

/// Binds `$n` placeholders by name: SQLite numbers named parameters in order of first
/// appearance, so `$2` may be the first; each is looked up, never rewritten.
fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Arg<'_>]) -> StoreResult<()> {
    let count = stmt.parameter_count();
    if count != args.len() {
        return Err(Error::storage(
            format!("a statement takes {count} arguments, not {}", args.len()),
            false,
            None,
        )
        .into());
    }
    for i in 1..=count {
        let arg = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| args.get(n))
            .ok_or_else(|| {
                Error::storage(
                    format!("parameter {i} of a statement is not a `$n` within its arguments"),
                    false,
                    None,
                )
            })?;
        stmt.raw_bind_parameter(i, arg)?;
    }
    Ok(())
}

#[async_trait]
impl Conn for LiteConn<'_> {
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        let changed = stmt.raw_execute()?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<SqlRow>> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        let width = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(v) => SqlValue::Int(v),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
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
            out.push(SqlRow::new(cells));
        }
        Ok(out)
    }

    async fn batch(&mut self, sql: &str) -> StoreResult<()> {
        self.0.execute_batch(sql)?;
        Ok(())
    }

    fn dialect(&self) -> &'static Dialect {
        &super::DIALECT
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::LiteConn;
    use crate::seam::{args, Arg, Conn, SqlRow, SqlValue};

    #[test]
    fn placeholders_bind_by_number_whatever_their_order() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut c = LiteConn(&mut conn);
        let rows = futures::executor::block_on(
            c.fetch("SELECT $2, $1, $2 || '!', '$1'", &args![7, "seven"]),
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![SqlRow::new(vec![
                SqlValue::Text("seven".into()),
                SqlValue::Int(7),
                SqlValue::Text("seven!".into()),
                SqlValue::Text("$1".into()),
            ])]
        );
        let short = futures::executor::block_on(c.fetch("SELECT $1, $2", &[Arg::Int(Some(1))]));
        assert!(
            short.is_err(),
            "a missing argument is refused, not read as null"
        );
    }
}
