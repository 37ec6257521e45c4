//! The conformance suite every [`QuotaStore`] runs against itself, taking and ending holds
//! through the same backend's [`JobStore`] (the only way holds are taken and ended).

use std::time::Duration;

use futures::future::join_all;

use crate::error::Error;
use crate::ids::ProviderId;
use crate::ids::{JobId, Timestamp, UserId};
use crate::job::{DeliveryOutcome, DeliveryRecord, Job, JobState, JobUpdate};
use crate::ledger::{
    Balance, CreditHold, Grant, GrantOutcome, GrantReason, HoldState, LedgerEntryKind, Reservation,
    MAX_CREDITS,
};
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

/// Takes a hold of `credits` for a new job of `user` (not due for any worker) the only way a
/// hold is taken, with its job; for stores' tests and benchmarks.
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

async fn balance_of<S: QuotaStore + ?Sized>(store: &S, user: &UserId) -> Balance {
    match store.balance(user).await {
        Ok(b) => b,
        Err(e) => panic!("balance of {user} failed: {e}"),
    }
}

/// How many holds of a concurrent batch were taken and how many hit the daily cap of `cap`.
fn taken_and_capped<T>(results: &[crate::Result<T>], cap: u32) -> (usize, usize) {
    let taken = results.iter().filter(|r| r.is_ok()).count();
    let capped = results
        .iter()
        .filter(|r| matches!(r, Err(Error::DailyCapReached { cap: c }) if *c == cap))
        .count();
    (taken, capped)
}

fn expect_invalid<T: std::fmt::Debug>(result: crate::Result<T>, rule: &str) {
    match result {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("{rule}: expected InvalidInput, got {other:?}"),
    }
}

fn expect_not_found<T: std::fmt::Debug>(result: crate::Result<T>, rule: &str) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{rule}: expected NotFound, got {other:?}"),
    }
}

/// Checks the [`QuotaStore`] contract, with holds taken by [`JobStore::create`] and ended by
/// [`JobStore::update`]: positive amounts only, idempotent grants, atomic holds that end
/// exactly once (a second end the same way is a no-op, the other way fails with
/// [`Error::NotAllowed`]), two ends raced from many tasks leaving exact balances,
/// `Insufficient` and the daily cap changing nothing (also under 20 concurrent holds), typed
/// errors for unknown users and holds, a ledger row per change, and the seed's concurrency bar
/// (quota 10, 100 concurrent holds: exactly 10, balance 0, 90 refusals).
///
/// Uses fresh random user ids, so it can run on a store holding other data; its jobs are
/// never due for a worker. Panics naming the broken rule.
pub async fn quota_store_suite<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-alice"));

    // Unknown users are typed errors.
    expect_not_found(store.balance(&user).await, "balance of an unknown user");
    expect_not_found(store.history(&user).await, "history of an unknown user");
    match take_hold(store, &user, 5, at, None).await {
        Err(Error::Insufficient {
            available: 0,
            needed: 5,
        }) => {}
        other => panic!("holding for a user never granted: expected Insufficient {{ available: 0, needed: 5 }}, got {other:?}"),
    }
    expect_not_found(
        store.balance(&user).await,
        "a refused hold makes no account",
    );

    // Grants are idempotent by key; bad amounts change nothing.
    let signup = Grant::signup(user.clone(), 100, at);
    assert_eq!(
        store.grant(&signup).await.ok(),
        Some(GrantOutcome::Granted),
        "a first grant is granted"
    );
    assert_eq!(
        store.grant(&signup).await.ok(),
        Some(GrantOutcome::Duplicate),
        "a grant with a seen key is a duplicate"
    );
    for (credits, rule) in [(0, "a zero grant"), (-5, "a negative grant")] {
        let key = format!("{prefix}-p{credits}");
        expect_invalid(
            store
                .grant(&Grant::purchase(user.clone(), credits, &key, at))
                .await,
            rule,
        );
    }
    let mut blank = Grant::purchase(user.clone(), 5, "x", at);
    blank.key = "  ".to_owned();
    expect_invalid(store.grant(&blank).await, "a grant without a key");
    assert_eq!(
        balance_of(store, &user).await,
        Balance {
            available: 100,
            held: 0,
            spent: 0,
            granted: 100,
            expired: 0
        },
        "only the first grant counts"
    );

    // Holds.
    expect_invalid(take_hold(store, &user, 0, at, None).await, "a zero hold");
    expect_invalid(
        take_hold(store, &user, -1, at, None).await,
        "a negative hold",
    );
    let (first, hold) = take_hold(store, &user, 30, at, None)
        .await
        .unwrap_or_else(|e| panic!("holding 30 of 100 failed: {e}"));
    assert_eq!((hold.state, hold.credits), (HoldState::Held, 30));
    match take_hold(store, &user, 200, at, None).await {
        Err(Error::Insufficient {
            available: 70,
            needed: 200,
        }) => {}
        other => panic!("an oversized hold must be Insufficient {{70, 200}}, got {other:?}"),
    }
    assert_eq!(
        balance_of(store, &user).await,
        Balance {
            available: 70,
            held: 30,
            spent: 0,
            granted: 100,
            expired: 0
        },
        "a refused hold changes nothing"
    );

    // A hold ends exactly once: the same way again is a no-op, the other way is refused.
    end_hold(store, &first.id, HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("settling failed: {e}"));
    end_hold(store, &first.id, HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("a second settle must be a no-op, got {e}"));
    let settled_version = store.job(&first.id).await.map(|j| j.version).ok();
    match end_hold(store, &first.id, HoldState::Refunded).await {
        Err(Error::NotAllowed { .. }) => {}
        other => panic!("refunding a settled hold must be NotAllowed, got {other:?}"),
    }
    // A refused end leaves no trace: the webhook delivery written with it is not
    // remembered, so the provider's retry of that delivery is new.
    let current = store
        .job(&first.id)
        .await
        .unwrap_or_else(|e| panic!("reading the job: {e}"));
    let mut failed = current.clone();
    failed.state = JobState::Failed;
    let mut refused = JobUpdate::new(&current, failed);
    refused.end_hold = Some(HoldState::Refunded);
    let delivery = DeliveryRecord {
        provider: ProviderId::new("conformance"),
        delivery_id: format!("{prefix}-refused-end"),
        job: first.id.clone(),
        at,
    };
    refused.delivery = Some(delivery.clone());
    match store.update(&refused).await {
        Err(Error::NotAllowed { .. }) => {}
        other => {
            panic!("a delivery that would refund a settled hold must be NotAllowed, got {other:?}")
        }
    }
    assert_eq!(
        store.record_delivery(&delivery).await.ok(),
        Some(DeliveryOutcome::New),
        "the delivery of a refused transition is not remembered"
    );
    assert_eq!(
        store.job(&first.id).await.map(|j| j.version).ok(),
        settled_version,
        "a refused end changes the job neither"
    );
    let (second, _) = take_hold(store, &user, 20, at, None)
        .await
        .unwrap_or_else(|e| panic!("second hold failed: {e}"));
    end_hold(store, &second.id, HoldState::Refunded)
        .await
        .unwrap_or_else(|e| panic!("refunding failed: {e}"));
    match end_hold(store, &second.id, HoldState::Settled).await {
        Err(Error::NotAllowed { .. }) => {}
        other => panic!("settling a refunded hold must be NotAllowed, got {other:?}"),
    }
    expect_not_found(
        store.hold(&JobId::random()).await,
        "reading an unknown hold",
    );
    assert_eq!(
        store.hold(&second.id).await.ok().map(|h| h.state),
        Some(HoldState::Refunded)
    );
    let b = balance_of(store, &user).await;
    assert_eq!(
        b,
        Balance {
            available: 70,
            held: 0,
            spent: 30,
            granted: 100,
            expired: 0
        }
    );
    assert!(b.is_consistent(), "granted = available + held + spent");

    // The ledger has one row per change, oldest first.
    let history = store
        .history(&user)
        .await
        .unwrap_or_else(|e| panic!("history failed: {e}"));
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["grant", "hold", "settle", "hold", "refund"],
        "ledger rows"
    );
    assert!(
        history.windows(2).all(|w| w[0].seq < w[1].seq),
        "ledger order"
    );
    assert!(matches!(
        &history[0].kind,
        LedgerEntryKind::Grant { reason: GrantReason::Signup, key } if key == &signup.key
    ));
    assert!(history.iter().all(|e| e.credits > 0 && e.user == user));

    // Two ends of one hold raced from many tasks: exactly one ends it, balances stay exact.
    let racer = UserId::new(format!("{prefix}-ends"));
    store
        .grant(&Grant::signup(racer.clone(), 100, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    for ways in [
        [HoldState::Settled, HoldState::Refunded],
        [HoldState::Settled, HoldState::Settled],
        [HoldState::Refunded, HoldState::Refunded],
    ] {
        let (job, _) = take_hold(store, &racer, 10, at, None)
            .await
            .unwrap_or_else(|e| panic!("hold failed: {e}"));
        let results = join_all((0..8).map(|i| end_hold(store, &job.id, ways[i % 2]))).await;
        let hold = store
            .hold(&job.id)
            .await
            .unwrap_or_else(|e| panic!("reading the raced hold failed: {e}"));
        assert_ne!(hold.state, HoldState::Held, "a raced hold ends");
        for r in &results {
            match r {
                Ok(_) => {}
                Err(Error::NotAllowed { .. }) => {}
                Err(e) => panic!("ending a raced hold failed: {e}"),
            }
        }
        let ok_other_way = results
            .iter()
            .zip((0..8).map(|i| ways[i % 2]))
            .filter(|(r, way)| r.is_ok() && *way != hold.state)
            .count();
        assert_eq!(ok_other_way, 0, "{ways:?}: no end the other way succeeds");
    }
    let history = store
        .history(&racer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ends = history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                LedgerEntryKind::Settle { .. } | LedgerEntryKind::Refund { .. }
            )
        })
        .count();
    assert_eq!(ends, 3, "three raced holds, three ledger ends");
    let b = balance_of(store, &racer).await;
    assert_eq!(b.held, 0, "no raced hold stays held");
    assert!(
        b.is_consistent(),
        "raced ends keep the balance exact: {b:?}"
    );

    // The daily cap counts every user's holds of the day, not refunded ones. Cap checks use a
    // day of their own (9000 days after this run's), which no other run's uncapped holds use.
    let at = Timestamp::from_millis(at.as_millis() + 9_000 * 86_400_000);
    let capped = UserId::new(format!("{prefix}-capped"));
    store
        .grant(&Grant::signup(capped.clone(), 100, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    let (a, _) = take_hold(store, &capped, 1, at, Some(2))
        .await
        .unwrap_or_else(|e| panic!("capped hold 1: {e}"));
    take_hold(store, &capped, 1, at, Some(2))
        .await
        .unwrap_or_else(|e| panic!("capped hold 2: {e}"));
    match take_hold(store, &capped, 1, at, Some(2)).await {
        Err(Error::DailyCapReached { cap: 2 }) => {}
        other => panic!("a third hold of the day must hit the cap, got {other:?}"),
    }
    assert_eq!(
        balance_of(store, &capped).await.held,
        2,
        "a capped hold changes nothing"
    );
    // The cap is checked before the balance (`jilo_core::money`): a user short of credits on
    // a day at its cap hears about the cap, on every store alike.
    match take_hold(store, &capped, 1_000, at, Some(2)).await {
        Err(Error::DailyCapReached { cap: 2 }) => {}
        other => panic!("a short user on a capped day: expected DailyCapReached, got {other:?}"),
    }
    end_hold(store, &a.id, HoldState::Refunded)
        .await
        .unwrap_or_else(|e| panic!("refund: {e}"));
    take_hold(store, &capped, 1, at, Some(2))
        .await
        .unwrap_or_else(|e| panic!("a refunded hold frees a place under the cap: {e}"));

    // The daily cap under concurrency: 20 holds at once under a cap of 2 on a fresh day.
    let day2 = at.plus(Duration::from_secs(86_400));
    let results = join_all((0..20).map(|_| take_hold(store, &capped, 1, day2, Some(2)))).await;
    assert_eq!(
        taken_and_capped(&results, 2),
        (2, 18),
        "20 concurrent holds under a cap of 2"
    );

    // A settled hold still counts: cap 2, two holds, one settled, a third is refused.
    let day3 = day2.plus(Duration::from_secs(86_400));
    let (s1, _) = take_hold(store, &capped, 1, day3, Some(2))
        .await
        .unwrap_or_else(|e| panic!("day 3 hold 1: {e}"));
    take_hold(store, &capped, 1, day3, Some(2))
        .await
        .unwrap_or_else(|e| panic!("day 3 hold 2: {e}"));
    end_hold(store, &s1.id, HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("settle: {e}"));
    match take_hold(store, &capped, 1, day3, Some(2)).await {
        Err(Error::DailyCapReached { cap: 2 }) => {}
        other => {
            panic!("a settled hold counts toward the cap: expected DailyCapReached, got {other:?}")
        }
    }

    // Concurrent capped holds at different times of one UTC day count as one day.
    let day4_start = (day3.utc_day() + 1) * 86_400_000;
    let results = join_all((0..20).map(|i| {
        let when = Timestamp::from_millis(day4_start + i * 4_000_000 + 17);
        take_hold(store, &capped, 1, when, Some(2))
    }))
    .await;
    assert_eq!(
        taken_and_capped(&results, 2),
        (2, 18),
        "20 concurrent holds at 20 times of one day under a cap of 2"
    );

    // The seed's bar: quota 10, 100 concurrent holds of 1.
    let racer = UserId::new(format!("{prefix}-racer"));
    store
        .grant(&Grant::signup(racer.clone(), 10, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    let results = join_all((0..100).map(|_| take_hold(store, &racer, 1, at, None))).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Insufficient { needed: 1, .. })))
        .count();
    assert_eq!(accepted, 10, "exactly 10 of 100 concurrent holds are taken");
    assert_eq!(refused, 90, "the other 90 are refused as Insufficient");
    let b = balance_of(store, &racer).await;
    assert_eq!((b.available, b.held), (0, 10), "balance is exactly 0");
    assert!(b.is_consistent());

    history_pages(store).await;
    statements(store).await;
    grant_limits(store).await;
}

/// One set of input limits on every store: amounts past [`MAX_CREDITS`] and accounts that would
/// pass it are refused (never a panic, a wrapped or a REAL balance), a key names one grant (the
/// same grant again is a duplicate, another user or amount under it an error), and ids are
/// ids (no blank or control characters, a purchase's payment id included). Each refusal
/// changes nothing.
async fn grant_limits<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-limits"));
    let payment = format!("{prefix}-pay-1");
    for credits in [i64::MAX, MAX_CREDITS + 1] {
        let huge = Grant::purchase(user.clone(), credits, &payment, at);
        expect_invalid(store.grant(&huge).await, "a grant above MAX_CREDITS");
        expect_not_found(
            store.balance(&user).await,
            "a refused grant makes no account",
        );
    }
    let most = Grant::purchase(user.clone(), MAX_CREDITS, &payment, at);
    assert_eq!(
        store
            .grant(&most)
            .await
            .unwrap_or_else(|e| panic!("a grant of MAX_CREDITS: {e}")),
        GrantOutcome::Granted,
        "a refused grant leaves its key free"
    );
    let more = Grant::purchase(user.clone(), 1, &format!("{prefix}-pay-2"), at);
    expect_invalid(
        store.grant(&more).await,
        "an account granted more than MAX_CREDITS in all",
    );
    let b = balance_of(store, &user).await;
    assert_eq!(
        (b.available, b.granted),
        (MAX_CREDITS, MAX_CREDITS),
        "the ceiling's refusal changed nothing and the balance reads"
    );
    assert!(b.is_consistent());

    // A key names one grant: the same again (another time) is a duplicate; another user or
    // amount under it is refused.
    let again = Grant {
        at: at.plus(Duration::from_secs(60)),
        ..most.clone()
    };
    assert_eq!(
        store
            .grant(&again)
            .await
            .unwrap_or_else(|e| panic!("the same grant again: {e}")),
        GrantOutcome::Duplicate,
        "the same grant again under its key"
    );
    let thief = UserId::new(format!("{prefix}-other"));
    expect_invalid(
        store
            .grant(&Grant::purchase(thief.clone(), MAX_CREDITS, &payment, at))
            .await,
        "a payment id reused for another user",
    );
    expect_not_found(store.balance(&thief).await, "a reused key credits no one");
    expect_invalid(
        store
            .grant(&Grant::purchase(user.clone(), 5, &payment, at))
            .await,
        "a payment id reused for another amount",
    );
    assert_eq!(
        balance_of(store, &user).await,
        b,
        "refusals changed nothing"
    );

    // Ids are ids on every store.
    for bad in ["", "   ", "a\0b", "a\nb"] {
        let bad_user = UserId::new(bad);
        expect_invalid(
            store.grant(&Grant::signup(bad_user.clone(), 5, at)).await,
            "a grant to a blank or control-character user id",
        );
        expect_invalid(
            take_hold(store, &bad_user, 5, at, None).await,
            "a hold for a blank or control-character user id",
        );
    }
    expect_invalid(
        store.grant(&Grant::purchase(user.clone(), 5, "", at)).await,
        "a purchase without a payment id",
    );
    let nul_key = Grant {
        key: format!("{prefix}-k\0ey"),
        ..Grant::signup(user.clone(), 5, at)
    };
    expect_invalid(store.grant(&nul_key).await, "a key with a NUL");
    assert_eq!(
        balance_of(store, &user).await,
        b,
        "refusals changed nothing"
    );
}

/// A statement splits the available credits and sums what was settled since a period began.
async fn statements<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-statement"));
    expect_not_found(
        store.statement(&user, at, at).await,
        "a statement of an unknown user",
    );
    store
        .grant(&Grant::signup(user.clone(), 100, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    let (settled, _) = take_hold(store, &user, 10, at, None)
        .await
        .unwrap_or_else(|e| panic!("hold failed: {e}"));
    end_hold(store, &settled.id, HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("settle failed: {e}"));
    take_hold(store, &user, 5, at, None)
        .await
        .unwrap_or_else(|e| panic!("hold failed: {e}"));
    let before = Timestamp::from_millis(at.as_millis() - 1);
    let statement = store
        .statement(&user, at, before)
        .await
        .unwrap_or_else(|e| panic!("statement failed: {e}"));
    assert_eq!(
        statement.lasting, 85,
        "lasting credits are the available ones"
    );
    assert!(statement.expiring.is_empty());
    assert_eq!(statement.spent_this_period, 10);
    assert_eq!((statement.balance.held, statement.balance.spent), (5, 10));
    assert_eq!(statement.period_start, before);
    let later = Timestamp::from_millis(at.as_millis() + 1);
    let next_period = store
        .statement(&user, later, later)
        .await
        .unwrap_or_else(|e| panic!("statement failed: {e}"));
    assert_eq!(
        next_period.spent_this_period, 0,
        "spent before the period is not counted"
    );
}

/// History pages: newest first, continued by cursor with nothing skipped or repeated, filtered
/// by kind, sized 1 to 500, typed errors for an unknown user or a bad size.
async fn history_pages<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    use crate::ledger::{EntryKind, HistoryCursor, HistoryQuery};
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-pager"));
    expect_not_found(
        store.history_page(&user, &HistoryQuery::newest(10)).await,
        "a page of an unknown user",
    );
    for grant in [
        Grant::signup(user.clone(), 100, at),
        Grant::purchase(user.clone(), 10, &format!("{prefix}-pay"), at),
    ] {
        store
            .grant(&grant)
            .await
            .unwrap_or_else(|e| panic!("grant failed: {e}"));
    }
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let (job, _) = take_hold(store, &user, 3, at, None)
            .await
            .unwrap_or_else(|e| panic!("hold failed: {e}"));
        jobs.push(job.id);
    }
    end_hold(store, &jobs[0], HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("settle failed: {e}"));
    end_hold(store, &jobs[1], HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("settle failed: {e}"));
    end_hold(store, &jobs[2], HoldState::Refunded)
        .await
        .unwrap_or_else(|e| panic!("refund failed: {e}"));
    let all = store
        .history(&user)
        .await
        .unwrap_or_else(|e| panic!("history failed: {e}"));
    assert_eq!(all.len(), 10, "2 grants, 5 holds, 3 ends");
    let mut paged = Vec::new();
    let mut query = HistoryQuery::newest(3);
    let mut pages = 0;
    loop {
        let page = store
            .history_page(&user, &query)
            .await
            .unwrap_or_else(|e| panic!("a history page failed: {e}"));
        pages += 1;
        assert!(page.entries.len() <= 3);
        paged.extend(page.entries);
        match page.next {
            Some(next) => {
                let shown = next.to_string();
                let parsed: HistoryCursor = shown
                    .parse()
                    .unwrap_or_else(|e| panic!("a cursor reads back: {e}"));
                query = query.after(parsed);
            }
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(pages, 4, "10 entries in pages of 3");
    let newest_first: Vec<_> = all.iter().rev().cloned().collect();
    assert_eq!(
        paged, newest_first,
        "pages hold every entry once, newest first"
    );
    let exact = store
        .history_page(&user, &HistoryQuery::newest(10))
        .await
        .unwrap_or_else(|e| panic!("a history page failed: {e}"));
    assert_eq!(exact.entries.len(), 10);
    assert_eq!(exact.next, None, "a page that ends the history says so");
    let grants = store
        .history_page(
            &user,
            &HistoryQuery::newest(50).of_kinds([EntryKind::Grant]),
        )
        .await
        .unwrap_or_else(|e| panic!("a filtered page failed: {e}"));
    assert_eq!(
        grants.entries.iter().map(|e| e.credits).collect::<Vec<_>>(),
        vec![10, 100],
        "only grants, newest first"
    );
    let ends = store
        .history_page(
            &user,
            &HistoryQuery::newest(2).of_kinds([EntryKind::Settle, EntryKind::Refund]),
        )
        .await
        .unwrap_or_else(|e| panic!("a filtered page failed: {e}"));
    assert_eq!(ends.entries.len(), 2);
    assert_eq!(ends.entries[0].kind.as_str(), "refund");
    let rest = store
        .history_page(
            &user,
            &HistoryQuery::newest(2)
                .of_kinds([EntryKind::Settle, EntryKind::Refund])
                .after(ends.next.unwrap_or_else(|| panic!("a third end follows"))),
        )
        .await
        .unwrap_or_else(|e| panic!("a filtered page failed: {e}"));
    assert_eq!(rest.entries.len(), 1, "the filter holds across pages");
    assert_eq!(rest.next, None);
    for bad in [0, 501] {
        assert!(
            matches!(
                store.history_page(&user, &HistoryQuery::newest(bad)).await,
                Err(Error::InvalidInput { .. })
            ),
            "a page of {bad} is refused"
        );
    }
    assert!("x12".parse::<HistoryCursor>().is_err());
}

/// Checks credit lots (grants that expire), for stores that keep them: a hold draws the
/// soonest-expiring credits first; a refund after a lot expired lapses that lot's part and
/// returns the rest; expiry is written once per lot, by a hold lazily or by
/// [`QuotaStore::expire_credits`] however many callers run it at once; expired credits are
/// never held; and the quota bar holds when the credits come from three lots (10 credits,
/// 100 concurrent holds of 1: exactly 10). `granted = available + held + spent + expired`
/// throughout. Panics naming the broken rule.
pub async fn credit_lots_suite<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    use crate::ledger::{EntryKind, HistoryQuery, LedgerEntryKind};
    let (prefix, t) = run_scope();
    let ms = |d: i64| Timestamp::from_millis(t.as_millis() + d);
    let grant = |user: &UserId, key: &str, credits: i64, expires: Option<i64>| {
        let g = Grant::purchase(user.clone(), credits, &format!("{prefix}-{key}"), t);
        match expires {
            Some(d) => g.expiring_at(ms(d)),
            None => g,
        }
    };
    let ok = |what: &str, r: crate::Result<crate::ledger::GrantOutcome>| {
        if let Err(e) = r {
            panic!("{what} failed: {e}");
        }
    };
    let consistent = |b: &Balance, what: &str| {
        assert!(
            b.is_consistent(),
            "{what}: {b:?} breaks granted = available + held + spent + expired"
        );
    };

    // Soonest expiry first; a refund after the expiry lapses that part.
    let user = UserId::new(format!("{prefix}-lots"));
    ok(
        "lasting grant",
        store.grant(&grant(&user, "lasting", 100, None)).await,
    );
    ok(
        "later grant",
        store.grant(&grant(&user, "later", 5, Some(1_000))).await,
    );
    ok(
        "sooner grant",
        store.grant(&grant(&user, "sooner", 3, Some(500))).await,
    );
    let (job, _) = take_hold(store, &user, 6, t, None)
        .await
        .unwrap_or_else(|e| panic!("hold failed: {e}"));
    let b = balance_of(store, &user).await;
    assert_eq!((b.available, b.held), (102, 6));
    consistent(&b, "after the hold");
    // Lasting credits last: the 6 came from the sooner 3 and 3 of the later 5.
    let drawn = store
        .statement(&user, t, t)
        .await
        .unwrap_or_else(|e| panic!("statement failed: {e}"));
    assert_eq!(
        (drawn.expiring.clone(), drawn.lasting),
        (
            vec![crate::ledger::ExpiringCredits {
                credits: 2,
                expires_at: ms(1_000)
            }],
            100
        ),
        "a hold draws the soonest-expiring lots first and the lasting lot last"
    );
    end_hold_at(store, &job.id, HoldState::Refunded, Some(ms(600)))
        .await
        .unwrap_or_else(|e| panic!("refund failed: {e}"));
    let b = balance_of(store, &user).await;
    assert_eq!(
        (b.available, b.held, b.expired),
        (105, 0, 3),
        "the soonest lot gave 3 (lapsed: it expired at +500), the later lot 3 (back)"
    );
    consistent(&b, "after the refund");
    let history = store
        .history(&user)
        .await
        .unwrap_or_else(|e| panic!("history failed: {e}"));
    let lapse = history
        .iter()
        .find(|e| matches!(e.kind, LedgerEntryKind::Lapse { .. }))
        .unwrap_or_else(|| panic!("a lapse entry is written"));
    assert_eq!(lapse.credits, 3);
    assert!(matches!(&lapse.kind, LedgerEntryKind::Lapse { key, .. } if key.ends_with("-sooner")));
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, LedgerEntryKind::Refund { .. }) && e.credits == 3));

    // Expiry once per lot, with many callers at once.
    let runs = join_all((0..8).map(|_| store.expire_credits(ms(1_200)))).await;
    assert!(
        runs.iter().all(|r| r.is_ok()),
        "expiring credits failed: {runs:?}"
    );
    let again = store
        .expire_credits(ms(5_000))
        .await
        .unwrap_or_else(|e| panic!("expiring credits failed: {e}"));
    let _ = again;
    let expiries = store
        .history_page(
            &user,
            &HistoryQuery::newest(50).of_kinds([EntryKind::Expire]),
        )
        .await
        .unwrap_or_else(|e| panic!("a history page failed: {e}"));
    assert_eq!(
        expiries
            .entries
            .iter()
            .map(|e| (e.kind.clone(), e.credits))
            .collect::<Vec<_>>(),
        vec![(
            LedgerEntryKind::Expire {
                key: format!("payment:{prefix}-later")
            },
            5
        )],
        "the later lot's 5 expire, once; the sooner lot had nothing unheld to expire"
    );
    assert_eq!(
        expiries.entries[0].at,
        ms(1_000),
        "an expiry is dated when the lot expired, whenever it is written"
    );
    let b = balance_of(store, &user).await;
    assert_eq!((b.available, b.expired, b.granted), (100, 8, 108));
    consistent(&b, "after the expiry");

    // Expired credits are never held; a hold writes the expiry lazily.
    let late = UserId::new(format!("{prefix}-late"));
    ok(
        "short grant",
        store.grant(&grant(&late, "short", 5, Some(100))).await,
    );
    ok(
        "small grant",
        store.grant(&grant(&late, "small", 2, None)).await,
    );
    let refused = take_hold(store, &late, 3, ms(200), None).await;
    assert!(
        matches!(
            refused,
            Err(Error::Insufficient {
                available: 2,
                needed: 3
            })
        ),
        "only the 2 lasting credits are there after the expiry: {refused:?}"
    );
    // The next read that looks at the lots writes the expiry, if the refused hold did not
    // keep it: a user's own expiry (what a balance or history read runs first) ...
    let written = store
        .expire_user_credits(&late, ms(200))
        .await
        .unwrap_or_else(|e| panic!("expiring a user's credits failed: {e}"));
    assert!(written <= 1, "one lot at most: {written}");
    assert_eq!(
        store
            .expire_user_credits(&late, ms(300))
            .await
            .unwrap_or_else(|e| panic!("expiring a user's credits failed: {e}")),
        0,
        "once"
    );
    assert!(matches!(
        store
            .expire_user_credits(&UserId::new(format!("{prefix}-nobody")), ms(300))
            .await,
        Err(Error::NotFound { .. })
    ));
    // ... or a statement.
    let statement = store
        .statement(&late, ms(200), t)
        .await
        .unwrap_or_else(|e| panic!("statement failed: {e}"));
    assert_eq!((statement.lasting, statement.expiring.len()), (2, 0));
    let b = balance_of(store, &late).await;
    assert_eq!(
        (b.available, b.expired),
        (2, 5),
        "the expiry is written lazily"
    );
    consistent(&b, "after a lazy expiry");

    // A hold writes the expiry it finds due, dated when the lot expired.
    let holder = UserId::new(format!("{prefix}-holder"));
    ok(
        "holder's short grant",
        store.grant(&grant(&holder, "h-short", 5, Some(100))).await,
    );
    ok(
        "holder's lasting grant",
        store.grant(&grant(&holder, "h-lasting", 2, None)).await,
    );
    take_hold(store, &holder, 1, ms(250), None)
        .await
        .unwrap_or_else(|e| panic!("the hold after the expiry failed: {e}"));
    let written = store
        .history_page(
            &holder,
            &HistoryQuery::newest(10).of_kinds([EntryKind::Expire]),
        )
        .await
        .unwrap_or_else(|e| panic!("a history page failed: {e}"));
    assert_eq!(
        written
            .entries
            .iter()
            .map(|e| (e.credits, e.at))
            .collect::<Vec<_>>(),
        vec![(5, ms(100))],
        "the hold wrote the expiry, dated when the lot expired"
    );

    // A monthly refresh run twice in a period grants once; next month's replaces the rest.
    use crate::plans::{Plan, PlanPeriod};
    let subscriber = UserId::new(format!("{prefix}-plan"));
    let plan = Plan::new("basic", "Basic", 50, 4_900, "CNY");
    let period = PlanPeriod::containing(t);
    let first = store
        .grant(&plan.allowance(&subscriber, period, t))
        .await
        .unwrap_or_else(|e| panic!("the allowance failed: {e}"));
    let second = store
        .grant(&plan.allowance(&subscriber, period, ms(1)))
        .await
        .unwrap_or_else(|e| panic!("the allowance again failed: {e}"));
    assert_eq!(
        (first, second),
        (
            crate::ledger::GrantOutcome::Granted,
            crate::ledger::GrantOutcome::Duplicate
        ),
        "a refresh run twice in a period grants once"
    );
    let next_start = period.end();
    store
        .grant(&plan.allowance(&subscriber, period.next(), next_start))
        .await
        .unwrap_or_else(|e| panic!("next month's allowance failed: {e}"));
    let statement = store
        .statement(&subscriber, next_start, next_start)
        .await
        .unwrap_or_else(|e| panic!("statement failed: {e}"));
    assert_eq!(
        statement.expiring,
        vec![crate::ledger::ExpiringCredits {
            credits: 50,
            expires_at: period.next().end()
        }],
        "only this month's 50 are left: last month's expired"
    );
    assert_eq!(
        (statement.balance.available, statement.balance.expired),
        (50, 50)
    );
    consistent(&statement.balance, "after a refresh");

    // Grants that cannot be lots change nothing.
    let checked = UserId::new(format!("{prefix}-checked"));
    let backwards = Grant::purchase(checked.clone(), 5, &format!("{prefix}-backwards"), ms(100))
        .expiring_at(ms(100));
    assert!(
        matches!(store.grant(&backwards).await, Err(Error::InvalidInput { ref field, .. }) if field == "expires_at"),
        "credits that expire when granted are refused"
    );
    let mut reserved = Grant::purchase(checked.clone(), 5, "reserved", t);
    reserved.key = "jilo:legacy:someone".to_owned();
    assert!(
        matches!(store.grant(&reserved).await, Err(Error::InvalidInput { ref field, .. }) if field == "key"),
        "keys starting with `jilo:` are jilo's own"
    );
    assert!(
        matches!(store.balance(&checked).await, Err(Error::NotFound { .. })),
        "a refused grant makes no account"
    );

    // The quota bar with three lots.
    let racer = UserId::new(format!("{prefix}-three-lots"));
    ok(
        "lot a",
        store.grant(&grant(&racer, "a", 4, Some(10_000))).await,
    );
    ok(
        "lot b",
        store.grant(&grant(&racer, "b", 3, Some(20_000))).await,
    );
    ok("lot c", store.grant(&grant(&racer, "c", 3, None)).await);
    let results = join_all((0..100).map(|_| take_hold(store, &racer, 1, t, None))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        10,
        "exactly 10 of 100 concurrent holds are taken from three lots"
    );
    let b = balance_of(store, &racer).await;
    assert_eq!((b.available, b.held), (0, 10));
    consistent(&b, "after the race");

    // A statement read while holds are taken adds up: one snapshot of balance and lots.
    let reader = UserId::new(format!("{prefix}-reader"));
    ok(
        "reader's expiring lot",
        store
            .grant(&grant(&reader, "r-month", 40, Some(30_000)))
            .await,
    );
    ok(
        "reader's lasting lot",
        store.grant(&grant(&reader, "r-lasting", 40, None)).await,
    );
    let holds = join_all((0..30).map(|_| take_hold(store, &reader, 2, t, None)));
    let reads = join_all((0..30).map(|_| store.statement(&reader, t, t)));
    let (holds, reads) = futures::join!(holds, reads);
    assert_eq!(holds.iter().filter(|r| r.is_ok()).count(), 30);
    for read in reads {
        let st = read.unwrap_or_else(|e| panic!("statement failed: {e}"));
        let parts = st.expiring.iter().map(|e| e.credits).sum::<i64>() + st.lasting;
        assert_eq!(
            parts, st.balance.available,
            "a statement's expiring and lasting credits add up to its balance: {st:?}"
        );
        consistent(&st.balance, "a statement under load");
    }
}
