//! The credit ledger in SQL: grants, holds and their ends, each one transaction.

use async_trait::async_trait;
use jilo_core::ledger::{KeptGrant, MAX_CREDITS};
use jilo_core::money::{
    self, AccountChange, EndPlan, GrantRead, HoldRead, PlannedEntry, ReserveRead,
};
use jilo_core::{
    Balance, CreditHold, CreditStatement, Error, ExpiringCredits, Grant, GrantOutcome, GrantReason,
    HistoryPage, HistoryQuery, HoldOutcome, HoldState, JobId, LedgerEntry, LedgerEntryKind,
    QuotaStore, Reservation, Result, Timestamp, UserId,
};
use sqlx::{Any, Row, Transaction};

use super::errors::StoreResult;
use super::lots;
use super::{Backend, SqlStore};

/// Advisory lock class for the daily-cap count on Postgres; the day is the second key.
const DAILY_CAP_LOCK: i32 = 0x6a69_6c6f;

pub(crate) fn hold_state(s: &str) -> Result<HoldState> {
    match s {
        "held" => Ok(HoldState::Held),
        "settled" => Ok(HoldState::Settled),
        "refunded" => Ok(HoldState::Refunded),
        other => Err(Error::storage(
            format!("unknown hold state `{other}` in the database"),
            false,
            None,
        )),
    }
}

pub(crate) use jilo_core::ledger::check_grant;

/// Writes a plan's ledger entries.
pub(crate) async fn write_entries(
    tx: &mut Transaction<'static, Any>,
    user: &UserId,
    entries: &[PlannedEntry],
) -> StoreResult<()> {
    for e in entries {
        sqlx::query(
            "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.as_str())
        .bind(e.kind.as_str())
        .bind(e.kind.job().map(|j| j.as_str().to_owned()))
        .bind(e.kind.grant_key().map(str::to_owned))
        .bind(e.kind.reason().map(|r| r.as_str().to_owned()))
        .bind(e.credits)
        .bind(e.at.as_millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Applies a plan's change to an existing account.
pub(crate) async fn change_account(
    tx: &mut Transaction<'static, Any>,
    user: &UserId,
    c: AccountChange,
) -> StoreResult<()> {
    if c == AccountChange::default() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE jilo_accounts SET available = available + $2, held = held + $3, \
         spent = spent + $4, granted = granted + $5, expired = expired + $6 WHERE user_id = $1",
    )
    .bind(user.as_str())
    .bind(c.available)
    .bind(c.held)
    .bind(c.spent)
    .bind(c.granted)
    .bind(c.expired)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a grant inside a transaction, as [`money::plan_grant`] decides; `Duplicate` when the
/// key was seen with the same grant.
pub(crate) async fn grant_in(
    tx: &mut Transaction<'static, Any>,
    grant: &Grant,
) -> StoreResult<GrantOutcome> {
    // Claiming the key is the read: a key already there is looked up and judged.
    let inserted = sqlx::query(
        "INSERT INTO jilo_grants (grant_key, user_id, credits, reason, at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (grant_key) DO NOTHING",
    )
    .bind(grant.key.as_str())
    .bind(grant.user.as_str())
    .bind(grant.credits)
    .bind(grant.reason.as_str())
    .bind(grant.at.as_millis())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let read = if inserted == 0 {
        let row =
            sqlx::query("SELECT user_id, credits, reason FROM jilo_grants WHERE grant_key = $1")
                .bind(grant.key.as_str())
                .fetch_one(&mut **tx)
                .await?;
        GrantRead {
            kept: Some(KeptGrant {
                user: row.try_get(0)?,
                credits: row.try_get(1)?,
                reason: row.try_get(2)?,
            }),
            granted: 0,
        }
    } else {
        let granted: Option<i64> =
            sqlx::query_scalar("SELECT granted FROM jilo_accounts WHERE user_id = $1")
                .bind(grant.user.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        GrantRead {
            kept: None,
            granted: granted.unwrap_or(0),
        }
    };
    let Some(plan) = money::plan_grant(grant, &read)? else {
        return Ok(GrantOutcome::Duplicate);
    };
    // The account is made when missing. Guarded again as it is written: a grant that raced
    // this one past the ceiling loses the race and is retried (and then refused by the plan).
    let c = plan.account;
    let added = sqlx::query(
        "INSERT INTO jilo_accounts (user_id, available, held, spent, granted) \
         VALUES ($1, $2, 0, 0, $3) \
         ON CONFLICT (user_id) DO UPDATE SET \
           available = jilo_accounts.available + excluded.available, \
           granted = jilo_accounts.granted + excluded.granted \
         WHERE jilo_accounts.granted <= $4 - excluded.granted",
    )
    .bind(grant.user.as_str())
    .bind(c.available)
    .bind(c.granted)
    .bind(MAX_CREDITS)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if added == 0 {
        return Err(Error::lost_race("the account changed during the grant").into());
    }
    lots::insert_lot(tx, &plan.lot).await?;
    write_entries(tx, &grant.user, std::slice::from_ref(&plan.entry)).await?;
    Ok(GrantOutcome::Granted)
}

/// Takes a hold inside a transaction for a job just created (so it has no hold yet), as
/// [`money::plan_reserve`] decides.
pub(crate) async fn reserve_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    r: &Reservation,
) -> StoreResult<CreditHold> {
    let day = r.at.utc_day();
    let mut holds_today = 0;
    if r.daily_cap.is_some() {
        if backend == Backend::Postgres {
            // Concurrent capped reservations of one day count one at a time.
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(DAILY_CAP_LOCK)
                .bind(i32::try_from(day.rem_euclid(i64::from(i32::MAX))).unwrap_or(0))
                .execute(&mut **tx)
                .await?;
        }
        let taken: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM jilo_holds WHERE utc_day = $1 AND {COUNTED_HOLDS}"
        ))
        .bind(day)
        .fetch_one(&mut **tx)
        .await?;
        holds_today = u32::try_from(taken).unwrap_or(u32::MAX);
    }
    let read = ReserveRead {
        account: lots::account(tx, backend, &r.user).await?,
        lots: lots::open_lots(tx, backend, &r.user, r.at).await?,
        holds_today,
        // The job row was inserted in this transaction: its hold cannot exist yet (and the
        // hold's primary key would refuse a second one).
        hold_exists: false,
    };
    let plan = money::plan_reserve(r, read)?;
    change_account(tx, &r.user, plan.account).await?;
    for lot in &plan.lots {
        lots::save(tx, lot).await?;
    }
    sqlx::query(
        "INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms) \
         VALUES ($1, $2, $3, 'held', $4, $5)",
    )
    .bind(r.job.as_str())
    .bind(r.user.as_str())
    .bind(r.credits)
    .bind(plan.day)
    .bind(r.at.as_millis())
    .execute(&mut **tx)
    .await?;
    for part in &plan.parts {
        sqlx::query("INSERT INTO jilo_hold_parts (job_id, lot_key, credits) VALUES ($1, $2, $3)")
            .bind(r.job.as_str())
            .bind(part.lot.as_str())
            .bind(part.credits)
            .execute(&mut **tx)
            .await?;
    }
    write_entries(tx, &r.user, &plan.entries).await?;
    Ok(plan.hold)
}

/// The holds the daily cap counts (every one not refunded), in SQL.
pub(crate) const COUNTED_HOLDS: &str = "state <> 'refunded'";

/// Ends a hold inside a transaction, as [`money::plan_end_hold`] decides: exactly once; a hold
/// already ended the same way is left as it is, one ended the other way is refused (and the
/// caller's transaction rolls back).
pub(crate) async fn end_hold_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    job: &JobId,
    to: HoldState,
    at: Timestamp,
) -> StoreResult<HoldOutcome> {
    // Ending an open hold is claimed by compare-and-set; the plan below decides the rest (an
    // end `to` "held" is refused there, and this transaction rolls back).
    let ended: Option<(String, i64)> = sqlx::query_as(
        "UPDATE jilo_holds SET state = $2, ended_ms = $3 \
         WHERE job_id = $1 AND state = 'held' RETURNING user_id, credits",
    )
    .bind(job.as_str())
    .bind(to.as_str())
    .bind(at.as_millis())
    .fetch_optional(&mut **tx)
    .await?;
    let read = match ended {
        Some((user, credits)) => {
            let user = UserId::new(user);
            let (parts, lots) = lots::parts_of(tx, backend, &user, job).await?;
            HoldRead::Held {
                hold: CreditHold {
                    user,
                    job: job.clone(),
                    credits,
                    state: HoldState::Held,
                },
                parts,
                lots,
            }
        }
        None => {
            let current: Option<String> =
                sqlx::query_scalar("SELECT state FROM jilo_holds WHERE job_id = $1")
                    .bind(job.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
            match current {
                None => HoldRead::Missing,
                Some(s) => HoldRead::Ended(hold_state(&s)?),
            }
        }
    };
    let plan = money::plan_end_hold(job, read, to, at)?;
    let outcome = plan.outcome();
    if let EndPlan::End(end) = plan {
        for lot in &end.lots {
            lots::save(tx, lot).await?;
        }
        change_account(tx, &end.user, end.account).await?;
        write_entries(tx, &end.user, &end.entries).await?;
    }
    Ok(outcome)
}

#[async_trait]
impl QuotaStore for SqlStore {
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome> {
        check_grant(grant)?;
        self.retry("granting credits", || async {
            let mut tx = self.begin_write().await?;
            let outcome = grant_in(&mut tx, grant).await?;
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn hold(&self, job: &JobId) -> Result<CreditHold> {
        self.retry("reading a hold", || async {
            let row: Option<(String, i64, String)> =
                sqlx::query_as("SELECT user_id, credits, state FROM jilo_holds WHERE job_id = $1")
                    .bind(job.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            let (user, credits, state) = row.ok_or_else(|| Error::not_found("hold", job))?;
            Ok(CreditHold {
                user: UserId::new(user),
                job: job.clone(),
                credits,
                state: hold_state(&state)?,
            })
        })
        .await
    }

    async fn balance(&self, user: &UserId) -> Result<Balance> {
        self.retry("reading a balance", || async {
            let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT available, held, spent, granted, expired FROM jilo_accounts \
                 WHERE user_id = $1",
            )
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
            let (available, held, spent, granted, expired) =
                row.ok_or_else(|| Error::not_found("user", user))?;
            Ok(Balance {
                available,
                held,
                spent,
                granted,
                expired,
            })
        })
        .await
    }

    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>> {
        // Unknown users are NotFound, like a balance read.
        self.balance(user).await?;
        self.retry("reading the ledger", || async {
            let rows: Vec<EntryRow> = sqlx::query_as(&format!(
                "SELECT {ENTRY_COLUMNS} FROM jilo_ledger WHERE user_id = $1 ORDER BY seq"
            ))
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(|r| entry_from_row(user, r)).collect()
        })
        .await
    }

    async fn statement(
        &self,
        user: &UserId,
        at: Timestamp,
        period_start: Timestamp,
    ) -> Result<CreditStatement> {
        // Lots due by `at` expire first (lazily, on this read).
        self.expire_user_credits(user, at).await?;
        self.retry("reading a statement", || async {
            // One snapshot for the balance and the lots, so the parts a page shows add up
            // while holds and grants go on (SQLite: a read transaction in WAL mode).
            let mut tx = match self.backend {
                Backend::Postgres => {
                    self.pool
                        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        .await?
                }
                Backend::Sqlite => self.pool.begin_with("BEGIN DEFERRED").await?,
            };
            let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT available, held, spent, granted, expired FROM jilo_accounts \
                 WHERE user_id = $1",
            )
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let (available, held, spent, granted, expired) =
                row.ok_or_else(|| Error::not_found("user", user))?;
            let balance = Balance {
                available,
                held,
                spent,
                granted,
                expired,
            };
            let expiring: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT expires_ms, CAST(SUM(available) AS BIGINT) FROM jilo_credit_lots \
                 WHERE user_id = $1 AND available > 0 AND expires_ms IS NOT NULL \
                 AND expires_ms > $2 GROUP BY expires_ms ORDER BY expires_ms",
            )
            .bind(user.as_str())
            .bind(at.as_millis())
            .fetch_all(&mut *tx)
            .await?;
            let lasting: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(available) AS BIGINT) FROM jilo_credit_lots \
                 WHERE user_id = $1 AND expires_ms IS NULL",
            )
            .bind(user.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let spent: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger \
                 WHERE user_id = $1 AND kind = 'settle' AND at_ms >= $2",
            )
            .bind(user.as_str())
            .bind(period_start.as_millis())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(CreditStatement {
                balance,
                expiring: expiring
                    .into_iter()
                    .map(|(when, credits)| ExpiringCredits {
                        credits,
                        expires_at: Timestamp::from_millis(when),
                    })
                    .collect(),
                lasting: lasting.unwrap_or(0),
                spent_this_period: spent.unwrap_or(0),
                period_start,
            })
        })
        .await
    }

    async fn expire_credits(&self, now: Timestamp) -> Result<u32> {
        let mut expired = 0;
        // A batch of users at a time; each user's expiry is its own transaction, and the
        // guarded lot update writes each lot's expiry once whoever else runs this.
        loop {
            let users: Vec<String> = self
                .retry("finding expired credits", || async {
                    Ok(sqlx::query_scalar(
                        "SELECT DISTINCT user_id FROM jilo_credit_lots \
                         WHERE expiry_written = 0 AND expires_ms IS NOT NULL \
                         AND expires_ms <= $1 LIMIT 100",
                    )
                    .bind(now.as_millis())
                    .fetch_all(&self.pool)
                    .await?)
                })
                .await?;
            if users.is_empty() {
                return Ok(expired);
            }
            for user in users {
                let user = UserId::new(user);
                expired += self
                    .retry("expiring credits", || async {
                        let mut tx = self.begin_write().await?;
                        let n = lots::expire_user_lots(&mut tx, self.backend, &user, now).await?;
                        tx.commit().await?;
                        Ok(n)
                    })
                    .await?;
            }
        }
    }

    async fn expire_user_credits(&self, user: &UserId, now: Timestamp) -> Result<u32> {
        // A read first: a write transaction (SQLite's one writer, Postgres's account lock)
        // only when a lot is due.
        let due: Option<i64> = self
            .retry("looking for a user's due credits", || async {
                Ok(sqlx::query_scalar(
                    "SELECT 1 FROM jilo_credit_lots WHERE user_id = $1 AND expiry_written = 0 \
                     AND expires_ms IS NOT NULL AND expires_ms <= $2 LIMIT 1",
                )
                .bind(user.as_str())
                .bind(now.as_millis())
                .fetch_optional(&self.pool)
                .await?)
            })
            .await?;
        if due.is_none() {
            // Unknown users are NotFound, like a balance read.
            self.balance(user).await?;
            return Ok(0);
        }
        self.retry("expiring a user's credits", || async {
            let mut tx = self.begin_write().await?;
            let n = lots::expire_user_lots(&mut tx, self.backend, user, now).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    async fn history_page(&self, user: &UserId, query: &HistoryQuery) -> Result<HistoryPage> {
        query.check()?;
        let sql = history_sql(query);
        let page = self
            .retry("reading a history page", || async {
                let rows: Vec<EntryRow> = sqlx::query_as(&sql)
                    .bind(user.as_str())
                    .bind(query.before.map_or(i64::MAX, |c| c.seq()))
                    .bind(i64::from(query.limit) + 1)
                    .fetch_all(&self.pool)
                    .await?;
                let entries = rows
                    .into_iter()
                    .map(|r| entry_from_row(user, r))
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(HistoryPage::from_overfetch(entries, query.limit))
            })
            .await?;
        if page.entries.is_empty() {
            // Nothing to show: an empty page of a known user, or an unknown user (NotFound,
            // like a balance read). Pages with entries skip this read.
            self.balance(user).await?;
        }
        Ok(page)
    }
}

impl SqlStore {
    /// The database's plan for the statement a history page runs (`EXPLAIN QUERY PLAN` on
    /// SQLite, `EXPLAIN` on Postgres), one line per step: for checking in production that
    /// pages are read by index, never by a scan of the ledger.
    pub async fn history_plan(&self, user: &UserId, query: &HistoryQuery) -> Result<String> {
        query.check()?;
        let sql = history_sql(query);
        let before = query.before.map_or(i64::MAX, |c| c.seq());
        let limit = i64::from(query.limit) + 1;
        self.retry("explaining a history page", || async {
            let lines: Vec<String> = match self.backend {
                Backend::Sqlite => {
                    let rows: Vec<(i64, i64, i64, String)> =
                        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                            .bind(user.as_str())
                            .bind(before)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?;
                    rows.into_iter().map(|(_, _, _, detail)| detail).collect()
                }
                Backend::Postgres => {
                    // The plan for these very values, not a generic one.
                    let literal = sql
                        .replace("$1", &pg_string(user.as_str()))
                        .replace("$2", &before.to_string())
                        .replace("$3", &limit.to_string());
                    sqlx::query_scalar(&format!("EXPLAIN {literal}"))
                        .fetch_all(&self.pool)
                        .await?
                }
            };
            Ok(lines.join("\n"))
        })
        .await
    }
}

/// A Postgres string literal of `s` that reads the same whatever `standard_conforming_strings`
/// says: an escape string, backslashes and quotes doubled.
fn pg_string(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

type EntryRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

const ENTRY_COLUMNS: &str = "seq, kind, job_id, grant_key, reason, credits, at_ms";

/// A history page's statement: `$1` the user, `$2` the cursor's seq, `$3` the page size plus
/// one. Kinds come from a closed enum and are written in as literals. Several kinds read one
/// page per kind, each a walk of the `(user_id, kind, seq)` index that stops at a page, and
/// merge them: `kind IN (...) ORDER BY seq` would sort every matching entry of the user.
fn history_sql(query: &HistoryQuery) -> String {
    let page = |kind: Option<&str>| {
        let kind = kind
            .map(|k| format!(" AND kind = '{k}'"))
            .unwrap_or_default();
        format!(
            "SELECT {ENTRY_COLUMNS} FROM jilo_ledger \
             WHERE user_id = $1 AND seq < $2{kind} ORDER BY seq DESC LIMIT $3"
        )
    };
    let kinds: std::collections::BTreeSet<&str> = query.kinds.iter().map(|k| k.as_str()).collect();
    match kinds.len() {
        0 => page(None),
        1 => page(kinds.first().copied()),
        _ => {
            let pages: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| format!("SELECT * FROM ({}) AS k{i}", page(Some(k))))
                .collect();
            format!(
                "SELECT * FROM ({}) AS pages ORDER BY seq DESC LIMIT $3",
                pages.join(" UNION ALL ")
            )
        }
    }
}

fn entry_from_row(user: &UserId, row: EntryRow) -> StoreResult<LedgerEntry> {
    let (seq, kind, job, key, reason, credits, at) = row;
    let job = || JobId::new(job.clone().unwrap_or_default());
    let kind = match kind.as_str() {
        "grant" => LedgerEntryKind::Grant {
            reason: reason
                .as_deref()
                .and_then(GrantReason::parse)
                .unwrap_or(GrantReason::Adjustment),
            key: key.clone().unwrap_or_default(),
        },
        "hold" => LedgerEntryKind::Hold { job: job() },
        "settle" => LedgerEntryKind::Settle { job: job() },
        "refund" => LedgerEntryKind::Refund { job: job() },
        "expire" => LedgerEntryKind::Expire {
            key: key.clone().unwrap_or_default(),
        },
        "lapse" => LedgerEntryKind::Lapse {
            job: job(),
            key: key.clone().unwrap_or_default(),
        },
        other => {
            return Err(
                Error::storage(format!("unknown ledger kind `{other}`"), false, None).into(),
            )
        }
    };
    Ok(LedgerEntry {
        seq,
        user: user.clone(),
        kind,
        credits,
        at: Timestamp::from_millis(at),
    })
}
