//! Credit lots and accounts in SQL (sqlx: Postgres, and SQLite's grants and expiry): the reads
//! a plan of `jilo_core::money` needs, inside the caller's transaction, and the lot writes.

use jilo_core::lots::{CreditLot, HoldPart};
use jilo_core::money;
use jilo_core::{Balance, Error, JobId, Timestamp, UserId};
use sqlx::{Any, Transaction};

use super::errors::StoreResult;
use super::Backend;

/// A lot row in [`LOT_COLUMNS`] order.
pub(crate) type LotRow = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
);

pub(crate) const LOT_COLUMNS: &str = "grant_key, user_id, granted, available, held, spent, \
    expired, expires_ms, granted_ms, expiry_written";

pub(crate) fn lot_from_row(r: LotRow) -> CreditLot {
    let (key, user, granted, available, held, spent, expired, expires, granted_ms, written) = r;
    CreditLot {
        key,
        user: UserId::new(user),
        granted,
        available,
        held,
        spent,
        expired,
        expires_at: expires.map(Timestamp::from_millis),
        granted_at: Timestamp::from_millis(granted_ms),
        expiry_written: written != 0,
    }
}

/// A new lot.
pub(crate) async fn insert_lot(
    tx: &mut Transaction<'static, Any>,
    lot: &CreditLot,
) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO jilo_credit_lots ({LOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(lot.key.as_str())
    .bind(lot.user.as_str())
    .bind(lot.granted)
    .bind(lot.available)
    .bind(lot.held)
    .bind(lot.spent)
    .bind(lot.expired)
    .bind(lot.expires_at.map(Timestamp::as_millis))
    .bind(lot.granted_at.as_millis())
    .bind(i64::from(lot.expiry_written))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The user's account, locked for the transaction on Postgres (every writer of a user's lots
/// takes the account first, then the lots: one order, no deadlock); `None` when never granted.
pub(crate) async fn account(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
) -> StoreResult<Option<Balance>> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT available, held, spent, granted, expired FROM jilo_accounts \
         WHERE user_id = $1{lock}"
    ))
    .bind(user.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(
        row.map(|(available, held, spent, granted, expired)| Balance {
            available,
            held,
            spent,
            granted,
            expired,
        }),
    )
}

/// The lots a reservation at `at` may touch: expiry not yet written, and credits free or due.
pub(crate) const OPEN_LOTS: &str = "expiry_written = 0 \
    AND (available > 0 OR (expires_ms IS NOT NULL AND expires_ms <= $2))";

/// The lots whose expiry is due by `at` and not yet written.
pub(crate) const DUE_LOTS: &str =
    "expiry_written = 0 AND expires_ms IS NOT NULL AND expires_ms <= $2";

/// The user's [`OPEN_LOTS`] at `at`, locked on Postgres.
pub(crate) async fn open_lots(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    at: Timestamp,
) -> StoreResult<Vec<CreditLot>> {
    load(tx, backend, user, OPEN_LOTS, at).await
}

/// The user's lots matching `filter` (SQL over the lot columns, `$1` the user, `$2` a time),
/// locked for the transaction on Postgres.
async fn load(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    filter: &str,
    at: Timestamp,
) -> StoreResult<Vec<CreditLot>> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let rows: Vec<LotRow> = sqlx::query_as(&format!(
        "SELECT {LOT_COLUMNS} FROM jilo_credit_lots WHERE user_id = $1 AND {filter} \
         ORDER BY grant_key{lock}"
    ))
    .bind(user.as_str())
    .bind(at.as_millis())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(lot_from_row).collect())
}

/// Postgres: locks the user's account row first, so every writer of a user's lots takes the
/// account, then the lots (no two orders, no deadlock between a hold and an expiry).
async fn lock_account(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
) -> StoreResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 FROM jilo_accounts WHERE user_id = $1 FOR UPDATE")
            .bind(user.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Writes a lot as a plan left it.
pub(crate) async fn save(tx: &mut Transaction<'static, Any>, lot: &CreditLot) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jilo_credit_lots SET available = $2, held = $3, spent = $4, expired = $5, \
         expiry_written = $6 WHERE grant_key = $1",
    )
    .bind(lot.key.as_str())
    .bind(lot.available)
    .bind(lot.held)
    .bind(lot.spent)
    .bind(lot.expired)
    .bind(i64::from(lot.expiry_written))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the expiry of the user's lots due by `at`, as [`money::plan_expiry`] decides.
/// Returns how many lots expired credits.
pub(crate) async fn expire_user_lots(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    at: Timestamp,
) -> StoreResult<u32> {
    lock_account(tx, backend, user).await?;
    let due = load(tx, backend, user, DUE_LOTS, at).await?;
    let plan = money::plan_expiry(&due, at);
    if plan.is_empty() {
        return Ok(0);
    }
    for lot in &plan.lots {
        save(tx, lot).await?;
    }
    super::ledger::change_account(tx, user, plan.account).await?;
    super::ledger::write_entries(tx, user, &plan.entries).await?;
    Ok(plan.lots_expired)
}

/// A hold's parts and their lots.
pub(crate) async fn parts_of(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    job: &JobId,
) -> StoreResult<(Vec<HoldPart>, Vec<CreditLot>)> {
    lock_account(tx, backend, user).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT lot_key, credits FROM jilo_hold_parts WHERE job_id = $1")
            .bind(job.as_str())
            .fetch_all(&mut **tx)
            .await?;
    if rows.is_empty() {
        return Err(Error::storage(
            format!("the hold of job {job} has no credit lots"),
            false,
            None,
        )
        .into());
    }
    let parts: Vec<HoldPart> = rows
        .into_iter()
        .map(|(lot, credits)| HoldPart { lot, credits })
        .collect();
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut lots = Vec::with_capacity(parts.len());
    for part in &parts {
        let row: LotRow = sqlx::query_as(&format!(
            "SELECT {LOT_COLUMNS} FROM jilo_credit_lots WHERE grant_key = $1 AND user_id = $2{lock}"
        ))
        .bind(part.lot.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            Error::storage(
                format!("the credit lot {} of job {job} is missing", part.lot),
                false,
                None,
            )
        })?;
        lots.push(lot_from_row(row));
    }
    Ok((parts, lots))
}
