//! The hot write transactions of an SQLite file store (a job created with its hold, a job's
//! transition with its credit changes) on one connection of the plain SQLite library, owned by
//! a thread of its own.
//!
//! Through sqlx every statement is a round trip to the connection's worker thread; a job's
//! credit life is a dozen statements. Here a whole transaction is one closure sent to the
//! thread: one hop each way, the statements prepared once and cached. SQLite has one writer at
//! a time anyway, so one writing connection per store loses nothing, and in-process writers no
//! longer meet each other in SQLite's busy handler. Other processes still coordinate through
//! SQLite's locks (`BEGIN IMMEDIATE`, the busy timeout); reads stay on the sqlx pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use jilo_core::money::{
    self, AccountChange, EndPlan, GrantRead, HoldRead, PlannedEntry, ReserveRead,
};
use jilo_core::{
    Balance, CreditHold, DeliveryRecord, Error, Grant, HoldState, Job, JobId, JobUpdate,
    Reservation, Timestamp, UserId,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::errors::StoreResult;

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writing connection's thread. Dropping it ends the thread once queued work is done.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    work: mpsc::Sender<Work>,
    /// Transactions sent and not yet answered.
    in_flight: AtomicUsize,
}

impl SqliteWriter {
    /// Opens the file (created when missing) and starts the thread.
    pub(crate) fn open(path: &str, busy_timeout: Duration) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        conn.set_prepared_statement_cache_capacity(32);
        let (work, queue) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("jilo-sqlite-writer".to_owned())
            .spawn(move || {
                let mut conn = conn;
                while let Some(job) = next_work(&queue) {
                    job(&mut conn);
                }
            })
            .map_err(|e| {
                Error::storage(
                    "starting the SQLite writer thread",
                    false,
                    Some(Box::new(e) as jilo_core::error::BoxError),
                )
            })?;
        Ok(Self {
            work,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the writing connection and waits for its answer.
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let _ = answer.send(f(conn));
        });
        let gone = || -> super::errors::StoreError {
            Error::storage("the SQLite writer thread has stopped", false, None).into()
        };
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        // Counted down however this call ends, a dropped caller included.
        let _counted = InFlight(&self.in_flight);
        let sent = self.work.send(work);
        let answer = match sent {
            Err(_) => Err(gone()),
            Ok(()) => {
                let mut answered = answered;
                // The writer's only client looks for the answer a moment before it sleeps:
                // the transaction takes about that long, and the wake-up is saved. Callers that
                // wait behind others just sleep, leaving the CPU to the writer.
                let started = std::time::Instant::now();
                loop {
                    match answered.try_recv() {
                        Ok(v) => break v,
                        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => break Err(gone()),
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                            if alone && started.elapsed() < STAY_AWAKE =>
                        {
                            tokio::task::yield_now().await;
                        }
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                            break answered.await.unwrap_or_else(|_| Err(gone()));
                        }
                    }
                }
            }
        };
        answer
    }
}

/// Counts a caller down when its call ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the writer keeps looking for more work before it sleeps (and its only caller for
/// the answer): a transaction and a caller's next one usually follow within this, and finding
/// the other side awake saves a thread wake-up.
const STAY_AWAKE: Duration = Duration::from_micros(200);

/// The next piece of work, `None` once the store is gone.
fn next_work(queue: &mpsc::Receiver<Work>) -> Option<Work> {
    let started = std::time::Instant::now();
    loop {
        match queue.try_recv() {
            Ok(work) => return Some(work),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < STAY_AWAKE => {
                std::thread::yield_now();
            }
            Err(mpsc::TryRecvError::Empty) => return queue.recv().ok(),
        }
    }
}

/// Creates a job (at version 1) and takes its hold, in one immediate transaction.
pub(crate) fn create(
    conn: &mut Connection,
    job: &Job,
    doc: &str,
    hold: &Reservation,
) -> StoreResult<CreditHold> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists = tx
        .prepare_cached("SELECT 1 FROM jilo_jobs WHERE id = ?1")?
        .exists([job.id.as_str()])?;
    if exists {
        return Err(Error::already_exists("job", &job.id).into());
    }
    tx.prepare_cached(
        "INSERT INTO jilo_jobs (id, user_id, state, version, provider, provider_request_id, \
         created_ms, deadline_ms, next_check_ms, lease_owner, lease_until_ms, doc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        job.id.as_str(),
        job.user.as_str(),
        job.state.as_str(),
        version(job.version)?,
        job.provider().map(|p| p.as_str()),
        job.provider_request_id.as_deref(),
        job.created_at.as_millis(),
        job.deadline_at.as_millis(),
        job.next_check_at.map(Timestamp::as_millis),
        job.lease_owner.as_deref(),
        job.lease_until.map(Timestamp::as_millis),
        doc,
    ])?;
    remember_request(&tx, job)?;
    let taken = reserve(&tx, hold)?;
    tx.commit()?;
    Ok(taken)
}

/// A compare-and-set write of `next` (its version already `expected + 1`) with the hold's
/// end, the grant and the delivery of `update`, in one immediate transaction.
pub(crate) fn update(
    conn: &mut Connection,
    update: &JobUpdate,
    next: &Job,
    doc: &str,
) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx
        .prepare_cached(
            "UPDATE jilo_jobs SET state = ?1, version = ?2, provider = ?3, \
             provider_request_id = ?4, next_check_ms = ?5, lease_owner = ?6, \
             lease_until_ms = ?7, deadline_ms = ?8, doc = ?9 \
             WHERE id = ?10 AND version = ?11 AND state = ?12",
        )?
        .execute(params![
            next.state.as_str(),
            version(next.version)?,
            next.provider().map(|p| p.as_str()),
            next.provider_request_id.as_deref(),
            next.next_check_at.map(Timestamp::as_millis),
            next.lease_owner.as_deref(),
            next.lease_until.map(Timestamp::as_millis),
            next.deadline_at.as_millis(),
            doc,
            next.id.as_str(),
            version(update.expected_version)?,
            update.expected_state.as_str(),
        ])?;
    if changed == 0 {
        let current: Option<(i64, String)> = tx
            .prepare_cached("SELECT version, state FROM jilo_jobs WHERE id = ?1")?
            .query_row([next.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        return Err(match current {
            None => Error::not_found("job", &next.id),
            Some((version, state)) => Error::lost_race(format!(
                "job {} is at version {version} ({state}), not {} ({})",
                next.id, update.expected_version, update.expected_state
            )),
        }
        .into());
    }
    remember_request(&tx, next)?;
    if let Some(d) = &update.delivery {
        if !insert_delivery(&tx, d)? {
            return Err(Error::already_exists("delivery", &d.delivery_id).into());
        }
    }
    if let Some(to) = update.end_hold {
        end_hold(&tx, next, to)?;
    }
    if let Some(g) = &update.grant {
        let known = tx
            .prepare_cached("SELECT 1 FROM jilo_accounts WHERE user_id = ?1")?
            .exists([g.user.as_str()])?;
        if !known {
            return Err(Error::not_found("user", &g.user).into());
        }
        grant(&tx, g)?;
    }
    tx.commit()?;
    Ok(())
}

fn version(v: u64) -> StoreResult<i64> {
    Ok(i64::try_from(v).map_err(|_| Error::invalid("version", "out of range"))?)
}

fn remember_request(tx: &rusqlite::Transaction<'_>, job: &Job) -> StoreResult<()> {
    if let (Some(provider), Some(request_id)) = (job.provider(), &job.provider_request_id) {
        tx.prepare_cached(
            "INSERT INTO jilo_job_requests (provider, request_id, job_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT (provider, request_id) DO NOTHING",
        )?
        .execute(params![provider.as_str(), request_id, job.id.as_str()])?;
    }
    Ok(())
}

fn insert_delivery(tx: &rusqlite::Transaction<'_>, d: &DeliveryRecord) -> StoreResult<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO jilo_deliveries (provider, delivery_id, job_id, at_ms) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (provider, delivery_id) DO NOTHING",
        )?
        .execute(params![
            d.provider.as_str(),
            d.delivery_id.as_str(),
            d.job.as_str(),
            d.at.as_millis()
        ])?;
    Ok(inserted == 1)
}

/// Writes a plan's ledger entries.
fn write_entries(
    tx: &rusqlite::Transaction<'_>,
    user: &UserId,
    entries: &[PlannedEntry],
) -> StoreResult<()> {
    for e in entries {
        tx.prepare_cached(
            "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            user.as_str(),
            e.kind.as_str(),
            e.kind.job().map(JobId::as_str),
            e.kind.grant_key(),
            e.kind.reason().map(|r| r.as_str()),
            e.credits,
            e.at.as_millis()
        ])?;
    }
    Ok(())
}

/// Applies a plan's change to an existing account.
fn change_account(
    tx: &rusqlite::Transaction<'_>,
    user: &UserId,
    c: AccountChange,
) -> StoreResult<()> {
    if c == AccountChange::default() {
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE jilo_accounts SET available = available + ?2, held = held + ?3, \
         spent = spent + ?4, granted = granted + ?5, expired = expired + ?6 WHERE user_id = ?1",
    )?
    .execute(params![
        user.as_str(),
        c.available,
        c.held,
        c.spent,
        c.granted,
        c.expired
    ])?;
    Ok(())
}

/// The user's account; `None` when never granted.
fn account(tx: &rusqlite::Transaction<'_>, user: &UserId) -> StoreResult<Option<Balance>> {
    Ok(tx
        .prepare_cached(
            "SELECT available, held, spent, granted, expired FROM jilo_accounts \
             WHERE user_id = ?1",
        )?
        .query_row([user.as_str()], |r| {
            Ok(Balance {
                available: r.get(0)?,
                held: r.get(1)?,
                spent: r.get(2)?,
                granted: r.get(3)?,
                expired: r.get(4)?,
            })
        })
        .optional()?)
}

/// Takes a hold for a job just created (so it has no hold yet), as [`money::plan_reserve`]
/// decides.
fn reserve(tx: &rusqlite::Transaction<'_>, r: &Reservation) -> StoreResult<CreditHold> {
    let day = r.at.utc_day();
    let mut holds_today = 0;
    if r.daily_cap.is_some() {
        let taken: i64 = tx
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM jilo_holds WHERE utc_day = ?1 AND {}",
                super::ledger::COUNTED_HOLDS
            ))?
            .query_row([day], |row| row.get(0))?;
        holds_today = u32::try_from(taken).unwrap_or(u32::MAX);
    }
    let read = ReserveRead {
        account: account(tx, &r.user)?,
        lots: lots_where(
            tx,
            r.user.as_str(),
            super::lots::OPEN_LOTS,
            r.at.as_millis(),
        )?,
        holds_today,
        // The job row was inserted in this transaction: its hold cannot exist yet.
        hold_exists: false,
    };
    let plan = money::plan_reserve(r, read)?;
    change_account(tx, &r.user, plan.account)?;
    for lot in &plan.lots {
        save_lot(tx, lot)?;
    }
    tx.prepare_cached(
        "INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms) \
         VALUES (?1, ?2, ?3, 'held', ?4, ?5)",
    )?
    .execute(params![
        r.job.as_str(),
        r.user.as_str(),
        r.credits,
        plan.day,
        r.at.as_millis()
    ])?;
    for part in &plan.parts {
        tx.prepare_cached(
            "INSERT INTO jilo_hold_parts (job_id, lot_key, credits) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![r.job.as_str(), part.lot.as_str(), part.credits])?;
    }
    write_entries(tx, &r.user, &plan.entries)?;
    Ok(plan.hold)
}

/// Ends the job's hold `to`, as [`money::plan_end_hold`] decides.
fn end_hold(tx: &rusqlite::Transaction<'_>, job: &Job, to: HoldState) -> StoreResult<()> {
    let at = job.updated_at;
    // Ending an open hold is claimed by compare-and-set; the plan decides the rest (an end
    // `to` "held" is refused there, and the transaction rolls back).
    let ended: Option<(String, i64)> = tx
        .prepare_cached(
            "UPDATE jilo_holds SET state = ?2, ended_ms = ?3 \
             WHERE job_id = ?1 AND state = 'held' RETURNING user_id, credits",
        )?
        .query_row(params![job.id.as_str(), to.as_str(), at.as_millis()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let read = match ended {
        Some((user, credits)) => {
            let (parts, lots) = hold_lots(tx, job.id.as_str())?;
            HoldRead::Held {
                hold: CreditHold {
                    user: UserId::new(user),
                    job: job.id.clone(),
                    credits,
                    state: HoldState::Held,
                },
                parts,
                lots,
            }
        }
        None => {
            let current: Option<String> = tx
                .prepare_cached("SELECT state FROM jilo_holds WHERE job_id = ?1")?
                .query_row([job.id.as_str()], |r| r.get(0))
                .optional()?;
            match current {
                None => HoldRead::Missing,
                Some(s) => HoldRead::Ended(super::ledger::hold_state(&s)?),
            }
        }
    };
    if let EndPlan::End(end) = money::plan_end_hold(&job.id, read, to, at)? {
        for lot in &end.lots {
            save_lot(tx, lot)?;
        }
        change_account(tx, &end.user, end.account)?;
        write_entries(tx, &end.user, &end.entries)?;
    }
    Ok(())
}

/// A grant, idempotent by its key, as [`money::plan_grant`] decides.
fn grant(tx: &rusqlite::Transaction<'_>, g: &Grant) -> StoreResult<()> {
    // Claiming the key is the read: a key already there is looked up and judged.
    let inserted = tx
        .prepare_cached(
            "INSERT INTO jilo_grants (grant_key, user_id, credits, reason, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (grant_key) DO NOTHING",
        )?
        .execute(params![
            g.key.as_str(),
            g.user.as_str(),
            g.credits,
            g.reason.as_str(),
            g.at.as_millis()
        ])?;
    let read = if inserted == 0 {
        let kept = tx
            .prepare_cached(
                "SELECT user_id, credits, reason FROM jilo_grants WHERE grant_key = ?1",
            )?
            .query_row([g.key.as_str()], |row| {
                Ok(jilo_core::ledger::KeptGrant {
                    user: row.get(0)?,
                    credits: row.get(1)?,
                    reason: row.get(2)?,
                })
            })?;
        GrantRead {
            kept: Some(kept),
            granted: 0,
        }
    } else {
        GrantRead {
            kept: None,
            granted: account(tx, &g.user)?.map_or(0, |b| b.granted),
        }
    };
    let Some(plan) = money::plan_grant(g, &read)? else {
        return Ok(());
    };
    // The account is made when missing (this connection is the only writer: no race).
    tx.prepare_cached(
        "INSERT INTO jilo_accounts (user_id, available, held, spent, granted) \
         VALUES (?1, ?2, 0, 0, ?3) \
         ON CONFLICT (user_id) DO UPDATE SET \
           available = jilo_accounts.available + excluded.available, \
           granted = jilo_accounts.granted + excluded.granted",
    )?
    .execute(params![
        g.user.as_str(),
        plan.account.available,
        plan.account.granted
    ])?;
    let lot = &plan.lot;
    tx.prepare_cached(&format!(
        "INSERT INTO jilo_credit_lots ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        super::lots::LOT_COLUMNS
    ))?
    .execute(params![
        lot.key.as_str(),
        lot.user.as_str(),
        lot.granted,
        lot.available,
        lot.held,
        lot.spent,
        lot.expired,
        lot.expires_at.map(Timestamp::as_millis),
        lot.granted_at.as_millis(),
        i64::from(lot.expiry_written)
    ])?;
    write_entries(tx, &g.user, std::slice::from_ref(&plan.entry))
}

// ---- credit lots on the writer (the shared rules of `jilo_core::lots`) ----

use super::lots::LotRow;

/// A lot row in `LOT_COLUMNS` order.
fn lot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LotRow> {
    Ok((
        r.get::<_, String>(0)?,
        r.get::<_, String>(1)?,
        r.get::<_, i64>(2)?,
        r.get::<_, i64>(3)?,
        r.get::<_, i64>(4)?,
        r.get::<_, i64>(5)?,
        r.get::<_, i64>(6)?,
        r.get::<_, Option<i64>>(7)?,
        r.get::<_, i64>(8)?,
        r.get::<_, i64>(9)?,
    ))
}

fn lots_where(
    tx: &rusqlite::Transaction<'_>,
    user: &str,
    filter: &str,
    at: i64,
) -> StoreResult<Vec<jilo_core::lots::CreditLot>> {
    // The shared filters name the time `$2`; here parameters are `?N`.
    let filter = filter.replace("$2", "?2");
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {} FROM jilo_credit_lots WHERE user_id = ?1 AND {filter} ORDER BY grant_key",
        super::lots::LOT_COLUMNS
    ))?;
    let rows = stmt.query_map(params![user, at], lot_row)?;
    let mut lots = Vec::new();
    for row in rows {
        lots.push(super::lots::lot_from_row(row?));
    }
    Ok(lots)
}

fn save_lot(tx: &rusqlite::Transaction<'_>, lot: &jilo_core::lots::CreditLot) -> StoreResult<()> {
    tx.prepare_cached(
        "UPDATE jilo_credit_lots SET available = ?2, held = ?3, spent = ?4, expired = ?5, \
         expiry_written = ?6 WHERE grant_key = ?1",
    )?
    .execute(params![
        lot.key.as_str(),
        lot.available,
        lot.held,
        lot.spent,
        lot.expired,
        i64::from(lot.expiry_written)
    ])?;
    Ok(())
}

/// A hold's parts and their lots.
fn hold_lots(
    tx: &rusqlite::Transaction<'_>,
    job: &str,
) -> StoreResult<(
    Vec<jilo_core::lots::HoldPart>,
    Vec<jilo_core::lots::CreditLot>,
)> {
    let mut parts = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT lot_key, credits FROM jilo_hold_parts WHERE job_id = ?1")?;
        let rows = stmt.query_map([job], |r| {
            Ok(jilo_core::lots::HoldPart {
                lot: r.get(0)?,
                credits: r.get(1)?,
            })
        })?;
        for row in rows {
            parts.push(row?);
        }
    }
    if parts.is_empty() {
        return Err(Error::storage(
            format!("the hold of job {job} has no credit lots"),
            false,
            None,
        )
        .into());
    }
    let mut lots = Vec::new();
    for part in &parts {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {} FROM jilo_credit_lots WHERE grant_key = ?1",
            super::lots::LOT_COLUMNS
        ))?;
        let row = stmt.query_row([part.lot.as_str()], lot_row)?;
        lots.push(super::lots::lot_from_row(row));
    }
    Ok((parts, lots))
}
