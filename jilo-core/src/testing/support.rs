//! What the rules share: a scope of their own in a shared store, and holds taken and ended
//! the only way a store takes and ends them.

use crate::error::Error;
use crate::ids::{JobId, Timestamp, UserId};
use crate::job::{Job, JobState, JobUpdate};
use crate::ledger::{Balance, CreditHold, HoldState, Reservation};
use crate::traits::{JobStore, QuotaStore};

use super::fixtures::sample_job;

/// A random UTC day among the first 9000 after the epoch, so daily-cap checks of one run
/// rarely meet another run's holds, and a unique user prefix.
pub(crate) fn run_scope() -> (String, Timestamp) {
    let r = uuid::Uuid::new_v4().as_u128();
    let day = 1 + (r % 9_000) as i64;
    let prefix = format!("conf-{}", uuid::Uuid::new_v4().simple());
    (prefix, Timestamp::from_millis(day * 86_400_000 + 3_600_000))
}

/// A random id for a run's records (jobs, channels, keys).
pub(crate) fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Takes a hold of `credits` for a new job of `user` the only way a hold is taken, with its
/// job; for stores' tests and benchmarks. The job has no check due (`next_check_at` is
/// `None`), but like any job it is overdue 15 minutes after `at`, and a worker claiming at a
/// later time leases it then ([`crate::JobStore::claim_due`]).
pub async fn take_hold<S>(
    store: &S,
    user: &UserId,
    credits: i64,
    at: Timestamp,
    daily_cap: Option<u32>,
) -> crate::Result<(Job, CreditHold)>
where
    S: JobStore + ?Sized,
{
    let mut job = sample_job(user, credits, at);
    job.next_check_at = None;
    let reservation = Reservation {
        user: user.clone(),
        job: job.id.clone(),
        credits,
        at,
        daily_cap,
    };
    let hold = store.create(&job, &reservation).await?;
    Ok((job, hold))
}

/// Ends a job's hold the way its terminal transition does: settled with `Completed`, refunded
/// with `Failed`. Reads the job first and retries a lost race, like the Studio.
pub async fn end_hold<S>(store: &S, job: &JobId, to: HoldState) -> crate::Result<Job>
where
    S: JobStore + ?Sized,
{
    end_hold_at(store, job, to, None).await
}

/// [`end_hold`] at a given time (the transition's `updated_at`), for expiry rules.
pub async fn end_hold_at<S>(
    store: &S,
    job: &JobId,
    to: HoldState,
    at: Option<Timestamp>,
) -> crate::Result<Job>
where
    S: JobStore + ?Sized,
{
    loop {
        let current = store.job(job).await?;
        let mut next = current.clone();
        if let Some(at) = at {
            next.updated_at = at;
        }
        next.state = if to == HoldState::Settled {
            JobState::Completed
        } else {
            JobState::Failed
        };
        next.next_check_at = None;
        let mut update = JobUpdate::new(&current, next);
        update.end_hold = Some(to);
        match store.update(&update).await {
            Err(Error::LostRace { .. }) => tokio::task::yield_now().await,
            other => return other,
        }
    }
}

pub(crate) async fn balance_of<S: QuotaStore + ?Sized>(store: &S, user: &UserId) -> Balance {
    match store.balance(user).await {
        Ok(b) => b,
        Err(e) => panic!("balance of {user} failed: {e}"),
    }
}

/// How many holds of a concurrent batch were taken and how many hit the daily cap of `cap`.
pub(crate) fn taken_and_capped<T>(results: &[crate::Result<T>], cap: u32) -> (usize, usize) {
    let taken = results.iter().filter(|r| r.is_ok()).count();
    let capped = results
        .iter()
        .filter(|r| matches!(r, Err(Error::DailyCapReached { cap: c }) if *c == cap))
        .count();
    (taken, capped)
}

pub(crate) fn expect_invalid<T: std::fmt::Debug>(result: crate::Result<T>, rule: &str) {
    match result {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("{rule}: expected InvalidInput, got {other:?}"),
    }
}

pub(crate) fn expect_not_found<T: std::fmt::Debug>(result: crate::Result<T>, rule: &str) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{rule}: expected NotFound, got {other:?}"),
    }
}

pub(crate) fn hold_for(job: &Job) -> Reservation {
    Reservation {
        user: job.user.clone(),
        job: job.id.clone(),
        credits: job.credits,
        at: job.created_at,
        daily_cap: None,
    }
}

pub(crate) async fn read_job<S: JobStore + ?Sized>(store: &S, id: &JobId) -> Job {
    store
        .job(id)
        .await
        .unwrap_or_else(|e| panic!("reading job {id} failed: {e}"))
}

/// Runs rules of one module on `store` in turn, each named first on the test's output (the
/// harness prints it beside a failure), with the store's capabilities when given.
macro_rules! rules {
    ($store:expr, $module:literal: $($rule:ident),+ $(,)?) => {
        $(
            println!("conformance rule {}::{}", $module, stringify!($rule));
            $rule($store).await;
        )+
    };
    ($store:expr, $module:literal with $caps:ident: $($rule:ident),+ $(,)?) => {
        $(
            println!("conformance rule {}::{}", $module, stringify!($rule));
            $rule($store, $caps).await;
        )+
    };
}
pub(crate) use rules;
