//! Credit lots in SQL (sqlx: Postgres, and SQLite's grants and expiry), applying the shared
//! rules of `jilo_core::lots` to the rows of one user inside the caller's transaction.

use jilo_core::lots::{self, CreditLot, HoldPart, RefundSplit};
use jilo_core::{Error, Grant, JobId, Timestamp, UserId};
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

/// The lot a new grant makes.
pub(crate) async fn insert_lot(
    tx: &mut Transaction<'static, Any>,
    grant: &Grant,
) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO jilo_credit_lots ({LOT_COLUMNS}) VALUES ($1, $2, $3, $3, 0, 0, 0, $4, $5, 0)"
    ))
    .bind(grant.key.as_str())
    .bind(grant.user.as_str())
    .bind(grant.credits)
    .bind(grant.expires_at.map(Timestamp::as_millis))
    .bind(grant.at.as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
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

async fn save(tx: &mut Transaction<'static, Any>, lot: &CreditLot) -> StoreResult<()> {
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

/// Writes the expiry of the user's lots due by `at`, once per lot: the lots, the account and
/// one `expire` entry each. Returns how many lots expired credits.
pub(crate) async fn expire_user_lots(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    at: Timestamp,
) -> StoreResult<u32> {
    lock_account(tx, backend, user).await?;
    let mut due = load(
        tx,
        backend,
        user,
        "expiry_written = 0 AND expires_ms IS NOT NULL AND expires_ms <= $2",
        at,
    )
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let gone = lots::expire(&mut due, at);
    for lot in &due {
        save(tx, lot).await?;
    }
    for part in &gone {
        sqlx::query(
            "UPDATE jilo_accounts SET available = available - $2, expired = expired + $2 \
             WHERE user_id = $1",
        )
        .bind(user.as_str())
        .bind(part.credits)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) \
             VALUES ($1, 'expire', NULL, $2, NULL, $3, $4)",
        )
        .bind(user.as_str())
        .bind(part.lot.as_str())
        .bind(part.credits)
        .bind(part.at.as_millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(u32::try_from(gone.len()).unwrap_or(u32::MAX))
}

/// Draws a hold's credits from the user's live lots (the account was already charged) and
/// records its parts.
pub(crate) async fn draw(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    job: &JobId,
    credits: i64,
    at: Timestamp,
) -> StoreResult<()> {
    let mut live = load(
        tx,
        backend,
        user,
        "available > 0 AND (expires_ms IS NULL OR expires_ms > $2)",
        at,
    )
    .await?;
    let parts = lots::draw(&mut live, credits, at).ok_or_else(|| {
        Error::storage(
            format!("the credit lots of {user} do not add up to the account"),
            false,
            None,
        )
    })?;
    for lot in live.iter().filter(|l| parts.iter().any(|p| p.lot == l.key)) {
        save(tx, lot).await?;
    }
    for part in &parts {
        sqlx::query("INSERT INTO jilo_hold_parts (job_id, lot_key, credits) VALUES ($1, $2, $3)")
            .bind(job.as_str())
            .bind(part.lot.as_str())
            .bind(part.credits)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A hold's parts and their lots.
async fn parts_of(
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

/// Spends a hold's parts.
pub(crate) async fn settle(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    job: &JobId,
) -> StoreResult<()> {
    let (parts, mut lots) = parts_of(tx, backend, user, job).await?;
    lots::settle(&mut lots, &parts);
    for lot in &lots {
        save(tx, lot).await?;
    }
    Ok(())
}

/// Returns a hold's parts to their lots at `at`; a part whose lot expired lapses.
pub(crate) async fn refund(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    user: &UserId,
    job: &JobId,
    at: Timestamp,
) -> StoreResult<RefundSplit> {
    let (parts, mut lots) = parts_of(tx, backend, user, job).await?;
    let split = lots::refund(&mut lots, &parts, at);
    for lot in &lots {
        save(tx, lot).await?;
    }
    Ok(split)
}
