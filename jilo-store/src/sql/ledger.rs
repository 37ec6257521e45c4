//! The credit ledger in SQL: grants, holds and their ends, each one transaction.

use async_trait::async_trait;
use jilo_core::ledger::{
    check_account_ceiling, check_amount, check_regrant, check_user, KeptGrant, MAX_CREDITS,
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

fn hold_state(s: &str) -> Result<HoldState> {
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

async fn ledger_row(
    tx: &mut Transaction<'static, Any>,
    user: &UserId,
    kind: &str,
    job: Option<&JobId>,
    grant: Option<(&str, GrantReason)>,
    credits: i64,
    at: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user.as_str())
    .bind(kind)
    .bind(job.map(|j| j.as_str().to_owned()))
    .bind(grant.map(|(k, _)| k.to_owned()))
    .bind(grant.map(|(_, r)| r.as_str().to_owned()))
    .bind(credits)
    .bind(at.as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a grant inside a transaction; `Duplicate` when the key was seen.
pub(crate) async fn grant_in(
    tx: &mut Transaction<'static, Any>,
    grant: &Grant,
) -> StoreResult<GrantOutcome> {
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
    if inserted == 0 {
        // The key was seen: the same grant again is a duplicate, another grant an error.
        let row =
            sqlx::query("SELECT user_id, credits, reason FROM jilo_grants WHERE grant_key = $1")
                .bind(grant.key.as_str())
                .fetch_one(&mut **tx)
                .await?;
        let kept = KeptGrant {
            user: row.try_get(0)?,
            credits: row.try_get(1)?,
            reason: row.try_get(2)?,
        };
        return Ok(check_regrant(grant, &kept)?);
    }
    // Guarded: an account is granted at most MAX_CREDITS in all, so no sum overflows.
    let added = sqlx::query(
        "INSERT INTO jilo_accounts (user_id, available, held, spent, granted) \
         VALUES ($1, $2, 0, 0, $2) \
         ON CONFLICT (user_id) DO UPDATE SET \
           available = jilo_accounts.available + excluded.available, \
           granted = jilo_accounts.granted + excluded.granted \
         WHERE jilo_accounts.granted <= $3 - excluded.granted",
    )
    .bind(grant.user.as_str())
    .bind(grant.credits)
    .bind(MAX_CREDITS)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if added == 0 {
        let granted: i64 =
            sqlx::query_scalar("SELECT granted FROM jilo_accounts WHERE user_id = $1")
                .bind(grant.user.as_str())
                .fetch_one(&mut **tx)
                .await?;
        check_account_ceiling(granted, grant)?;
        return Err(Error::lost_race("the account changed during the grant").into());
    }
    lots::insert_lot(tx, grant).await?;
    ledger_row(
        tx,
        &grant.user,
        "grant",
        None,
        Some((&grant.key, grant.reason)),
        grant.credits,
        grant.at,
    )
    .await?;
    Ok(GrantOutcome::Granted)
}

/// Takes a hold inside a transaction: the daily cap, then one guarded update of the balance.
pub(crate) async fn reserve_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    r: &Reservation,
) -> StoreResult<CreditHold> {
    check_amount(r.credits)?;
    check_user(&r.user)?;
    let day = r.at.utc_day();
    if let Some(cap) = r.daily_cap {
        if backend == Backend::Postgres {
            // Concurrent capped reservations of one day count one at a time.
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(DAILY_CAP_LOCK)
                .bind(i32::try_from(day.rem_euclid(i64::from(i32::MAX))).unwrap_or(0))
                .execute(&mut **tx)
                .await?;
        }
        let taken: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jilo_holds WHERE utc_day = $1 AND state <> 'refunded'",
        )
        .bind(day)
        .fetch_one(&mut **tx)
        .await?;
        if taken >= i64::from(cap) {
            return Err(Error::DailyCapReached { cap }.into());
        }
    }
    // Credits that expired by now are not there to hold.
    lots::expire_user_lots(tx, backend, &r.user, r.at).await?;
    let taken = sqlx::query(
        "UPDATE jilo_accounts SET available = available - $2, held = held + $2 \
         WHERE user_id = $1 AND available >= $2",
    )
    .bind(r.user.as_str())
    .bind(r.credits)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if taken == 0 {
        let available: Option<i64> =
            sqlx::query_scalar("SELECT available FROM jilo_accounts WHERE user_id = $1")
                .bind(r.user.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        // A user never granted is short by the whole amount, as on every store.
        return Err(Error::Insufficient {
            available: available.unwrap_or(0),
            needed: r.credits,
        }
        .into());
    }
    sqlx::query(
        "INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms) \
         VALUES ($1, $2, $3, 'held', $4, $5)",
    )
    .bind(r.job.as_str())
    .bind(r.user.as_str())
    .bind(r.credits)
    .bind(day)
    .bind(r.at.as_millis())
    .execute(&mut **tx)
    .await?;
    lots::draw(tx, backend, &r.user, &r.job, r.credits, r.at).await?;
    ledger_row(tx, &r.user, "hold", Some(&r.job), None, r.credits, r.at).await?;
    Ok(CreditHold {
        user: r.user.clone(),
        job: r.job.clone(),
        credits: r.credits,
        state: HoldState::Held,
    })
}

/// Ends a hold inside a transaction, exactly once: a hold already ended the same way is left
/// as it is, one ended the other way is [`Error::NotAllowed`] (and the caller's transaction
/// rolls back).
pub(crate) async fn end_hold_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    job: &JobId,
    to: HoldState,
    at: Timestamp,
) -> StoreResult<HoldOutcome> {
    let state = match to {
        HoldState::Settled => "settled",
        HoldState::Refunded => "refunded",
        HoldState::Held => {
            return Err(Error::invalid("end_hold", "a hold ends as settled or refunded").into())
        }
    };
    let ended: Option<(String, i64)> = sqlx::query_as(
        "UPDATE jilo_holds SET state = $2, ended_ms = $3 \
         WHERE job_id = $1 AND state = 'held' RETURNING user_id, credits",
    )
    .bind(job.as_str())
    .bind(state)
    .bind(at.as_millis())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((user, credits)) = ended else {
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM jilo_holds WHERE job_id = $1")
                .bind(job.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        return match current {
            None => Err(Error::not_found("hold", job).into()),
            Some(s) => {
                let ended = hold_state(&s)?;
                if ended == to {
                    Ok(HoldOutcome::AlreadyEnded(ended))
                } else {
                    Err(Error::not_allowed(format!(
                        "the hold of job {job} was already {s}; it cannot be {} too",
                        to.as_str()
                    ))
                    .into())
                }
            }
        };
    };
    let user = UserId::new(user);
    if to == HoldState::Settled {
        lots::settle(tx, backend, &user, job).await?;
        sqlx::query(
            "UPDATE jilo_accounts SET held = held - $2, spent = spent + $2 WHERE user_id = $1",
        )
        .bind(user.as_str())
        .bind(credits)
        .execute(&mut **tx)
        .await?;
        ledger_row(tx, &user, "settle", Some(job), None, credits, at).await?;
        return Ok(HoldOutcome::Ended(to));
    }
    let split = lots::refund(tx, backend, &user, job, at).await?;
    sqlx::query(
        "UPDATE jilo_accounts SET held = held - $2, available = available + $3, \
         expired = expired + $2 - $3 WHERE user_id = $1",
    )
    .bind(user.as_str())
    .bind(credits)
    .bind(split.returned)
    .execute(&mut **tx)
    .await?;
    if split.returned > 0 {
        ledger_row(tx, &user, "refund", Some(job), None, split.returned, at).await?;
    }
    for part in &split.lapsed {
        sqlx::query(
            "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) \
             VALUES ($1, 'lapse', $2, $3, NULL, $4, $5)",
        )
        .bind(user.as_str())
        .bind(job.as_str())
        .bind(part.lot.as_str())
        .bind(part.credits)
        .bind(at.as_millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(HoldOutcome::Ended(to))
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
