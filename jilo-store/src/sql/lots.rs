//! Credit lots, accounts and ledger rows in SQL: the reads a plan of `jilo_core::money` needs,
//! inside the caller's transaction, and the writes of what a plan decided.

use jilo_core::lots::{CreditLot, HoldPart};
use jilo_core::money::{self, AccountChange, PlannedEntry};
use jilo_core::{Balance, Error, JobId, Timestamp, UserId};

use crate::seam::errors::StoreResult;
use crate::seam::{args, Conn, SqlRow};

pub(crate) const LOT_COLUMNS: &str = "grant_key, user_id, granted, available, held, spent, \
    expired, expires_ms, granted_ms, expiry_written";

/// A lot from a row in [`LOT_COLUMNS`] order.
pub(crate) fn lot_from_row(r: &SqlRow) -> StoreResult<CreditLot> {
    Ok(CreditLot {
        key: r.text(0)?,
        user: UserId::new(r.text(1)?),
        granted: r.int(2)?,
        available: r.int(3)?,
        held: r.int(4)?,
        spent: r.int(5)?,
        expired: r.int(6)?,
        expires_at: r.opt_int(7)?.map(Timestamp::from_millis),
        granted_at: Timestamp::from_millis(r.int(8)?),
        expiry_written: r.int(9)? != 0,
    })
}

/// A new lot.
pub(crate) async fn insert_lot(c: &mut dyn Conn, lot: &CreditLot) -> StoreResult<()> {
    c.exec(
        &format!(
            "INSERT INTO jilo_credit_lots ({LOT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &args![
            lot.key.as_str(),
            lot.user.as_str(),
            lot.granted,
            lot.available,
            lot.held,
            lot.spent,
            lot.expired,
            lot.expires_at.map(Timestamp::as_millis),
            lot.granted_at.as_millis(),
            i64::from(lot.expiry_written),
        ],
    )
    .await?;
    Ok(())
}

/// A balance from a row of `available, held, spent, granted, expired`.
pub(crate) fn balance_from_row(r: &SqlRow) -> StoreResult<Balance> {
    Ok(Balance {
        available: r.int(0)?,
        held: r.int(1)?,
        spent: r.int(2)?,
        granted: r.int(3)?,
        expired: r.int(4)?,
    })
}

/// The user's account, locked for the transaction where the backend locks rows (every writer
/// of a user's lots takes the account first, then the lots: one order, no deadlock); `None`
/// when never granted.
pub(crate) async fn account(c: &mut dyn Conn, user: &UserId) -> StoreResult<Option<Balance>> {
    let lock = c.dialect().row_lock;
    c.fetch_opt(
        &format!(
            "SELECT available, held, spent, granted, expired FROM jilo_accounts \
             WHERE user_id = $1{lock}"
        ),
        &args![user.as_str()],
    )
    .await?
    .as_ref()
    .map(balance_from_row)
    .transpose()
}

/// The lots a reservation at `at` may touch: expiry not yet written, and credits free or due.
pub(crate) const OPEN_LOTS: &str = "expiry_written = 0 \
    AND (available > 0 OR (expires_ms IS NOT NULL AND expires_ms <= $2))";

/// The lots whose expiry is due by `at` and not yet written.
pub(crate) const DUE_LOTS: &str =
    "expiry_written = 0 AND expires_ms IS NOT NULL AND expires_ms <= $2";

/// The user's [`OPEN_LOTS`] at `at`, locked.
pub(crate) async fn open_lots(
    c: &mut dyn Conn,
    user: &UserId,
    at: Timestamp,
) -> StoreResult<Vec<CreditLot>> {
    load(c, user, OPEN_LOTS, at).await
}

/// The user's lots matching `filter` (SQL over the lot columns, `$1` the user, `$2` a time),
/// locked for the transaction.
async fn load(
    c: &mut dyn Conn,
    user: &UserId,
    filter: &str,
    at: Timestamp,
) -> StoreResult<Vec<CreditLot>> {
    let lock = c.dialect().row_lock;
    c.fetch(
        &format!(
            "SELECT {LOT_COLUMNS} FROM jilo_credit_lots WHERE user_id = $1 AND {filter} \
             ORDER BY grant_key{lock}"
        ),
        &args![user.as_str(), at.as_millis()],
    )
    .await?
    .iter()
    .map(lot_from_row)
    .collect()
}

/// Locks the user's account row first where the backend locks rows, so every writer of a
/// user's lots takes the account, then the lots (no two orders, no deadlock between a hold
/// and an expiry).
async fn lock_account(c: &mut dyn Conn, user: &UserId) -> StoreResult<()> {
    let lock = c.dialect().row_lock;
    if !lock.is_empty() {
        c.fetch_opt(
            &format!("SELECT 1 FROM jilo_accounts WHERE user_id = $1{lock}"),
            &args![user.as_str()],
        )
        .await?;
    }
    Ok(())
}

/// Writes a lot as a plan left it.
pub(crate) async fn save(c: &mut dyn Conn, lot: &CreditLot) -> StoreResult<()> {
    c.exec(
        "UPDATE jilo_credit_lots SET available = $2, held = $3, spent = $4, expired = $5, \
         expiry_written = $6 WHERE grant_key = $1",
        &args![
            lot.key.as_str(),
            lot.available,
            lot.held,
            lot.spent,
            lot.expired,
            i64::from(lot.expiry_written),
        ],
    )
    .await?;
    Ok(())
}

/// Writes the expiry of the user's lots due by `at`, as [`money::plan_expiry`] decides.
/// Returns how many lots expired credits.
pub(crate) async fn expire_user_lots(
    c: &mut dyn Conn,
    user: &UserId,
    at: Timestamp,
) -> StoreResult<u32> {
    lock_account(c, user).await?;
    let due = load(c, user, DUE_LOTS, at).await?;
    let plan = money::plan_expiry(&due, at);
    if plan.is_empty() {
        return Ok(0);
    }
    for lot in &plan.lots {
        save(c, lot).await?;
    }
    change_account(c, user, plan.account).await?;
    write_entries(c, user, &plan.entries).await?;
    Ok(plan.lots_expired)
}

/// A hold's parts and their lots.
pub(crate) async fn parts_of(
    c: &mut dyn Conn,
    user: &UserId,
    job: &JobId,
) -> StoreResult<(Vec<HoldPart>, Vec<CreditLot>)> {
    lock_account(c, user).await?;
    let rows = c
        .fetch(
            "SELECT lot_key, credits FROM jilo_hold_parts WHERE job_id = $1",
            &args![job.as_str()],
        )
        .await?;
    if rows.is_empty() {
        return Err(Error::storage(
            format!("the hold of job {job} has no credit lots"),
            false,
            None,
        )
        .into());
    }
    let parts = rows
        .iter()
        .map(|r| {
            Ok(HoldPart {
                lot: r.text(0)?,
                credits: r.int(1)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let lock = c.dialect().row_lock;
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM jilo_credit_lots WHERE grant_key = $1 AND user_id = $2{lock}"
    );
    let mut lots = Vec::with_capacity(parts.len());
    for part in &parts {
        let row = c
            .fetch_opt(&sql, &args![part.lot.as_str(), user.as_str()])
            .await?
            .ok_or_else(|| {
                Error::storage(
                    format!("the credit lot {} of job {job} is missing", part.lot),
                    false,
                    None,
                )
            })?;
        lots.push(lot_from_row(&row)?);
    }
    Ok((parts, lots))
}

/// Writes a plan's ledger entries.
pub(crate) async fn write_entries(
    c: &mut dyn Conn,
    user: &UserId,
    entries: &[PlannedEntry],
) -> StoreResult<()> {
    for e in entries {
        c.exec(
            "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &args![
                user.as_str(),
                e.kind.as_str(),
                e.kind.job().map(JobId::as_str),
                e.kind.grant_key(),
                e.kind.reason().map(|r| r.as_str()),
                e.credits,
                e.at.as_millis(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Applies a plan's change to an existing account.
pub(crate) async fn change_account(
    c: &mut dyn Conn,
    user: &UserId,
    change: AccountChange,
) -> StoreResult<()> {
    if change == AccountChange::default() {
        return Ok(());
    }
    c.exec(
        "UPDATE jilo_accounts SET available = available + $2, held = held + $3, \
         spent = spent + $4, granted = granted + $5, expired = expired + $6 WHERE user_id = $1",
        &args![
            user.as_str(),
            change.available,
            change.held,
            change.spent,
            change.granted,
            change.expired,
        ],
    )
    .await?;
    Ok(())
}
