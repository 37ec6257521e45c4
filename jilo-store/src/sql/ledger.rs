//! The credit ledger in SQL: grants, holds and their ends, each one transaction.

use std::sync::Arc;

use super::lots;
use super::SqlStore;
use crate::seam::errors::StoreResult;
use crate::seam::{args, Conn, Explain, SqlRow};
use async_trait::async_trait;
use jilo_core::ledger::{KeptGrant, MAX_CREDITS};
use jilo_core::money::{self, EndPlan, GrantRead, HoldRead, ReserveRead};
use jilo_core::{
    Balance, CreditHold, CreditStatement, Error, ExpiringCredits, Grant, GrantOutcome, GrantReason,
    HistoryPage, HistoryQuery, HoldOutcome, HoldState, JobId, LedgerEntry, LedgerEntryKind,
    QuotaStore, Reservation, Result, Timestamp, UserId,
};

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

/// Adds a grant inside a transaction, as [`money::plan_grant`] decides; `Duplicate` when the
/// key was seen with the same grant.
pub(crate) async fn grant_in(c: &mut dyn Conn, grant: &Grant) -> StoreResult<GrantOutcome> {
    // Claiming the key is the read: a key already there is looked up and judged.
    let inserted = c
        .exec(
            "INSERT INTO jilo_grants (grant_key, user_id, credits, reason, at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (grant_key) DO NOTHING",
            &args![
                grant.key.as_str(),
                grant.user.as_str(),
                grant.credits,
                grant.reason.as_str(),
                grant.at.as_millis(),
            ],
        )
        .await?;
    let read = if inserted == 0 {
        let row = c
            .fetch_one(
                "SELECT user_id, credits, reason FROM jilo_grants WHERE grant_key = $1",
                &args![grant.key.as_str()],
            )
            .await?;
        GrantRead {
            kept: Some(KeptGrant {
                user: row.text(0)?,
                credits: row.int(1)?,
                reason: row.text(2)?,
            }),
            granted: 0,
        }
    } else {
        let granted = c
            .fetch_opt(
                "SELECT granted FROM jilo_accounts WHERE user_id = $1",
                &args![grant.user.as_str()],
            )
            .await?;
        GrantRead {
            kept: None,
            granted: granted.map(|r| r.int(0)).transpose()?.unwrap_or(0),
        }
    };
    let Some(plan) = money::plan_grant(grant, &read)? else {
        return Ok(GrantOutcome::Duplicate);
    };
    // The account is made when missing. Guarded again as it is written: a grant that raced
    // this one past the ceiling loses the race and is retried (and then refused by the plan).
    let change = plan.account;
    let added = c
        .exec(
            "INSERT INTO jilo_accounts (user_id, available, held, spent, granted) \
             VALUES ($1, $2, 0, 0, $3) \
             ON CONFLICT (user_id) DO UPDATE SET \
               available = jilo_accounts.available + excluded.available, \
               granted = jilo_accounts.granted + excluded.granted \
             WHERE jilo_accounts.granted <= $4 - excluded.granted",
            &args![
                grant.user.as_str(),
                change.available,
                change.granted,
                MAX_CREDITS
            ],
        )
        .await?;
    if added == 0 {
        return Err(Error::lost_race("the account changed during the grant").into());
    }
    lots::insert_lot(c, &plan.lot).await?;
    lots::write_entries(c, &grant.user, std::slice::from_ref(&plan.entry)).await?;
    Ok(GrantOutcome::Granted)
}

/// Takes a hold inside a transaction for a job just created (so it has no hold yet), as
/// [`money::plan_reserve`] decides.
pub(crate) async fn reserve_in(c: &mut dyn Conn, r: &Reservation) -> StoreResult<CreditHold> {
    let day = r.at.utc_day();
    let mut holds_today = 0;
    if r.daily_cap.is_some() {
        if let Some(lock) = c.dialect().day_lock {
            // Concurrent capped reservations of one day count one at a time.
            let key = day.rem_euclid(i64::from(i32::MAX));
            c.exec(lock, &args![i64::from(DAILY_CAP_LOCK), key]).await?;
        }
        let taken = c
            .fetch_one(
                &format!("SELECT COUNT(*) FROM jilo_holds WHERE utc_day = $1 AND {COUNTED_HOLDS}"),
                &args![day],
            )
            .await?
            .int(0)?;
        holds_today = u32::try_from(taken).unwrap_or(u32::MAX);
    }
    let read = ReserveRead {
        account: lots::account(c, &r.user).await?,
        lots: lots::open_lots(c, &r.user, r.at).await?,
        holds_today,
        // The job row was inserted in this transaction: its hold cannot exist yet (and the
        // hold's primary key would refuse a second one).
        hold_exists: false,
    };
    let plan = money::plan_reserve(r, read)?;
    lots::change_account(c, &r.user, plan.account).await?;
    for lot in &plan.lots {
        lots::save(c, lot).await?;
    }
    c.exec(
        "INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms) \
         VALUES ($1, $2, $3, 'held', $4, $5)",
        &args![
            r.job.as_str(),
            r.user.as_str(),
            r.credits,
            plan.day,
            r.at.as_millis(),
        ],
    )
    .await?;
    for part in &plan.parts {
        c.exec(
            "INSERT INTO jilo_hold_parts (job_id, lot_key, credits) VALUES ($1, $2, $3)",
            &args![r.job.as_str(), part.lot.as_str(), part.credits],
        )
        .await?;
    }
    lots::write_entries(c, &r.user, &plan.entries).await?;
    Ok(plan.hold)
}

/// The holds the daily cap counts (every one not refunded), in SQL.
pub(crate) const COUNTED_HOLDS: &str = "state <> 'refunded'";

/// Ends a hold inside a transaction, as [`money::plan_end_hold`] decides: exactly once; a hold
/// already ended the same way is left as it is, one ended the other way is refused (and the
/// caller's transaction rolls back).
pub(crate) async fn end_hold_in(
    c: &mut dyn Conn,
    job: &JobId,
    to: HoldState,
    at: Timestamp,
) -> StoreResult<HoldOutcome> {
    // Ending an open hold is claimed by compare-and-set; the plan below decides the rest (an
    // end `to` "held" is refused there, and this transaction rolls back).
    let ended = c
        .fetch_opt(
            "UPDATE jilo_holds SET state = $2, ended_ms = $3 \
             WHERE job_id = $1 AND state = 'held' RETURNING user_id, credits",
            &args![job.as_str(), to.as_str(), at.as_millis()],
        )
        .await?;
    let read = match ended {
        Some(row) => {
            let user = UserId::new(row.text(0)?);
            let (parts, lots) = lots::parts_of(c, &user, job).await?;
            HoldRead::Held {
                hold: CreditHold {
                    user,
                    job: job.clone(),
                    credits: row.int(1)?,
                    state: HoldState::Held,
                },
                parts,
                lots,
            }
        }
        None => {
            let current = c
                .fetch_opt(
                    "SELECT state FROM jilo_holds WHERE job_id = $1",
                    &args![job.as_str()],
                )
                .await?;
            match current {
                None => HoldRead::Missing,
                Some(row) => HoldRead::Ended(hold_state(&row.text(0)?)?),
            }
        }
    };
    let plan = money::plan_end_hold(job, read, to, at)?;
    let outcome = plan.outcome();
    if let EndPlan::End(end) = plan {
        for lot in &end.lots {
            lots::save(c, lot).await?;
        }
        lots::change_account(c, &end.user, end.account).await?;
        lots::write_entries(c, &end.user, &end.entries).await?;
    }
    Ok(outcome)
}

/// The columns of a balance, in [`lots::balance_from_row`]'s order.
const BALANCE: &str = "SELECT available, held, spent, granted, expired FROM jilo_accounts \
    WHERE user_id = $1";

async fn read_balance(c: &mut dyn Conn, user: &UserId) -> StoreResult<Balance> {
    let row = c.fetch_opt(BALANCE, &args![user.as_str()]).await?;
    let row = row.ok_or_else(|| Error::not_found("user", user))?;
    lots::balance_from_row(&row)
}

#[async_trait]
impl QuotaStore for SqlStore {
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome> {
        check_grant(grant)?;
        let grant = Arc::new(grant.clone());
        self.write("granting credits", move |c| {
            let grant = Arc::clone(&grant);
            Box::pin(async move { grant_in(c, &grant).await })
        })
        .await
    }

    async fn hold(&self, job: &JobId) -> Result<CreditHold> {
        let job = job.clone();
        self.read("reading a hold", false, move |c| {
            let job = job.clone();
            Box::pin(async move {
                let row = c
                    .fetch_opt(
                        "SELECT user_id, credits, state FROM jilo_holds WHERE job_id = $1",
                        &args![job.as_str()],
                    )
                    .await?
                    .ok_or_else(|| Error::not_found("hold", &job))?;
                Ok(CreditHold {
                    user: UserId::new(row.text(0)?),
                    credits: row.int(1)?,
                    state: hold_state(&row.text(2)?)?,
                    job,
                })
            })
        })
        .await
    }

    async fn balance(&self, user: &UserId) -> Result<Balance> {
        let user = user.clone();
        self.read("reading a balance", false, move |c| {
            let user = user.clone();
            Box::pin(async move { read_balance(c, &user).await })
        })
        .await
    }

    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>> {
        // Unknown users are NotFound, like a balance read.
        self.balance(user).await?;
        let user = user.clone();
        self.read("reading the ledger", false, move |c| {
            let user = user.clone();
            Box::pin(async move {
                c.fetch(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM jilo_ledger WHERE user_id = $1 ORDER BY seq"
                    ),
                    &args![user.as_str()],
                )
                .await?
                .iter()
                .map(|r| entry_from_row(&user, r))
                .collect()
            })
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
        let user = user.clone();
        // One snapshot for the balance and the lots, so the parts a page shows add up while
        // holds and grants go on.
        self.read("reading a statement", true, move |c| {
            let user = user.clone();
            Box::pin(async move {
                let balance = read_balance(c, &user).await?;
                let expiring = c
                    .fetch(
                        "SELECT expires_ms, CAST(SUM(available) AS BIGINT) FROM jilo_credit_lots \
                         WHERE user_id = $1 AND available > 0 AND expires_ms IS NOT NULL \
                         AND expires_ms > $2 GROUP BY expires_ms ORDER BY expires_ms",
                        &args![user.as_str(), at.as_millis()],
                    )
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(ExpiringCredits {
                            expires_at: Timestamp::from_millis(r.int(0)?),
                            credits: r.int(1)?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                let lasting = c
                    .fetch_one(
                        "SELECT CAST(SUM(available) AS BIGINT) FROM jilo_credit_lots \
                         WHERE user_id = $1 AND expires_ms IS NULL",
                        &args![user.as_str()],
                    )
                    .await?
                    .opt_int(0)?;
                let spent = c
                    .fetch_one(
                        "SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger \
                         WHERE user_id = $1 AND kind = 'settle' AND at_ms >= $2",
                        &args![user.as_str(), period_start.as_millis()],
                    )
                    .await?
                    .opt_int(0)?;
                Ok(CreditStatement {
                    balance,
                    expiring,
                    lasting: lasting.unwrap_or(0),
                    spent_this_period: spent.unwrap_or(0),
                    period_start,
                })
            })
        })
        .await
    }

    async fn expire_credits(&self, now: Timestamp) -> Result<u32> {
        let mut expired = 0;
        // A batch of users at a time; each user's expiry is its own transaction, and the
        // guarded lot update writes each lot's expiry once whoever else runs this.
        loop {
            let users = self
                .read("finding expired credits", false, move |c| {
                    Box::pin(async move {
                        c.fetch(
                            "SELECT DISTINCT user_id FROM jilo_credit_lots \
                             WHERE expiry_written = 0 AND expires_ms IS NOT NULL \
                             AND expires_ms <= $1 LIMIT 100",
                            &args![now.as_millis()],
                        )
                        .await?
                        .iter()
                        .map(|r| Ok(r.text(0)?))
                        .collect::<StoreResult<Vec<_>>>()
                    })
                })
                .await?;
            if users.is_empty() {
                return Ok(expired);
            }
            for user in users {
                let user = UserId::new(user);
                expired += self.expire_due(user, now).await?;
            }
        }
    }

    async fn expire_user_credits(&self, user: &UserId, now: Timestamp) -> Result<u32> {
        // A read first: a write transaction (SQLite's one writer, Postgres's account lock)
        // only when a lot is due.
        let owned = user.clone();
        let due = self
            .read("looking for a user's due credits", false, move |c| {
                let user = owned.clone();
                Box::pin(async move {
                    c.exists(
                        "SELECT 1 FROM jilo_credit_lots WHERE user_id = $1 AND expiry_written = 0 \
                         AND expires_ms IS NOT NULL AND expires_ms <= $2 LIMIT 1",
                        &args![user.as_str(), now.as_millis()],
                    )
                    .await
                })
            })
            .await?;
        if !due {
            // Unknown users are NotFound, like a balance read.
            self.balance(user).await?;
            return Ok(0);
        }
        self.expire_due(user.clone(), now).await
    }

    async fn history_page(&self, user: &UserId, query: &HistoryQuery) -> Result<HistoryPage> {
        query.check()?;
        let sql = history_sql(query);
        let before = query.before.map_or(i64::MAX, |c| c.seq());
        let limit = query.limit;
        let owned = user.clone();
        let page = self
            .read("reading a history page", false, move |c| {
                let (sql, user) = (sql.clone(), owned.clone());
                Box::pin(async move {
                    let entries = c
                        .fetch(&sql, &args![user.as_str(), before, i64::from(limit) + 1])
                        .await?
                        .iter()
                        .map(|r| entry_from_row(&user, r))
                        .collect::<StoreResult<Vec<_>>>()?;
                    Ok(HistoryPage::from_overfetch(entries, limit))
                })
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
    /// Writes the expiry of one user's due lots, in its own transaction.
    async fn expire_due(&self, user: UserId, now: Timestamp) -> Result<u32> {
        self.write("expiring credits", move |c| {
            let user = user.clone();
            Box::pin(async move { lots::expire_user_lots(c, &user, now).await })
        })
        .await
    }

    /// The database's plan for the statement a history page runs (`EXPLAIN QUERY PLAN` on
    /// SQLite, `EXPLAIN` on Postgres), one line per step: for checking in production that
    /// pages are read by index, never by a scan of the ledger.
    pub async fn history_plan(&self, user: &UserId, query: &HistoryQuery) -> Result<String> {
        query.check()?;
        let sql = history_sql(query);
        let before = query.before.map_or(i64::MAX, |c| c.seq());
        let limit = i64::from(query.limit) + 1;
        let user = user.clone();
        self.read("explaining a history page", false, move |c| {
            let (sql, user) = (sql.clone(), user.clone());
            Box::pin(async move {
                let lines = match c.dialect().explain {
                    Explain::QueryPlan => c
                        .fetch(
                            &format!("EXPLAIN QUERY PLAN {sql}"),
                            &args![user.as_str(), before, limit],
                        )
                        .await?
                        .iter()
                        .map(|r| Ok(r.text(3)?))
                        .collect::<StoreResult<Vec<_>>>()?,
                    Explain::Literal => {
                        // The plan for these very values, not a generic one.
                        let literal = sql
                            .replace("$1", &pg_string(user.as_str()))
                            .replace("$2", &before.to_string())
                            .replace("$3", &limit.to_string());
                        c.fetch(&format!("EXPLAIN {literal}"), &[])
                            .await?
                            .iter()
                            .map(|r| Ok(r.text(0)?))
                            .collect::<StoreResult<Vec<_>>>()?
                    }
                };
                Ok(lines.join("\n"))
            })
        })
        .await
    }
}

/// A Postgres string literal of `s` that reads the same whatever `standard_conforming_strings`
/// says: an escape string, backslashes and quotes doubled.
fn pg_string(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

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

fn entry_from_row(user: &UserId, row: &SqlRow) -> StoreResult<LedgerEntry> {
    let (seq, kind, job, key, reason) = (
        row.int(0)?,
        row.text(1)?,
        row.opt_text(2)?,
        row.opt_text(3)?,
        row.opt_text(4)?,
    );
    let (credits, at) = (row.int(5)?, row.int(6)?);
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
