//! The [`QuotaStore`] rules, one function each, with holds taken by [`JobStore::create`] and
//! ended by [`JobStore::update`] (the only way holds are taken and ended).
//!
//! Each rule uses fresh random user ids and days, so it runs on a store holding other data
//! and in any order; its jobs are never due for a worker. [`quota_store_suite`] runs them all.

use std::time::Duration;

use futures::future::join_all;

use crate::error::Error;
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::job::{DeliveryOutcome, DeliveryRecord, JobState, JobUpdate};
use crate::ledger::{
    Balance, EntryKind, Grant, GrantOutcome, GrantReason, HistoryCursor, HistoryQuery, HoldState,
    LedgerEntryKind, MAX_CREDITS,
};
use crate::traits::{JobStore, QuotaStore};

use super::support::{
    balance_of, end_hold, expect_invalid, expect_not_found, rules, run_scope, take_hold,
    taken_and_capped,
};

/// Checks the [`QuotaStore`] contract, every rule of this module in turn: positive amounts
/// only, idempotent grants, atomic holds that end exactly once (a second end the same way is
/// a no-op, the other way fails with [`Error::NotAllowed`]), two ends raced from many tasks
/// leaving exact balances, `Insufficient` and the daily cap changing nothing (also under 20
/// concurrent holds), typed errors for unknown users and holds, a ledger row per change, and
/// the seed's concurrency bar (quota 10, 100 concurrent holds: exactly 10, balance 0, 90
/// refusals).
///
/// Uses fresh random user ids, so it can run on a store holding other data; its jobs are
/// never due for a worker. Prints each rule's name before it runs (the test harness shows it
/// beside a failure) and panics naming the broken rule.
pub async fn quota_store_suite<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    rules!(store, "quota":
        unknown_users_are_typed_errors,
        grants_are_idempotent_by_key,
        a_hold_is_taken_whole_or_refused_changing_nothing,
        a_hold_ends_exactly_once,
        the_ledger_has_one_row_per_change,
        raced_ends_of_a_hold_end_it_once,
        the_daily_cap_counts_the_days_holds,
        the_daily_cap_holds_under_concurrency,
        a_settled_hold_counts_toward_the_cap,
        concurrent_holds_never_exceed_the_balance,
        history_pages_run_newest_first,
        a_statement_splits_the_balance,
        amounts_stay_within_max_credits,
        a_key_names_one_grant,
        ids_are_ids,
    );
}

/// A user never granted: reading is [`Error::NotFound`], a hold is [`Error::Insufficient`]
/// with 0 available, and the refused hold makes no account.
pub async fn unknown_users_are_typed_errors<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-alice"));
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
}

/// Grants are idempotent by key; zero, negative and keyless grants change nothing.
pub async fn grants_are_idempotent_by_key<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-alice"));
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
}

/// Grants `credits` at signup to a fresh user of this run.
async fn granted<S>(store: &S, prefix: &str, name: &str, credits: i64, at: Timestamp) -> UserId
where
    S: QuotaStore + ?Sized,
{
    let user = UserId::new(format!("{prefix}-{name}"));
    store
        .grant(&Grant::signup(user.clone(), credits, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    user
}

/// Zero and negative holds are [`Error::InvalidInput`]; a hold past the balance is
/// [`Error::Insufficient`] naming what is there; refusals change nothing.
pub async fn a_hold_is_taken_whole_or_refused_changing_nothing<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = granted(store, &prefix, "alice", 100, at).await;
    expect_invalid(take_hold(store, &user, 0, at, None).await, "a zero hold");
    expect_invalid(
        take_hold(store, &user, -1, at, None).await,
        "a negative hold",
    );
    let (_, hold) = take_hold(store, &user, 30, at, None)
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
}

/// A hold ends exactly once: the same way again is a no-op, the other way is
/// [`Error::NotAllowed`] and leaves no trace (not even the webhook delivery written with it).
pub async fn a_hold_ends_exactly_once<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = granted(store, &prefix, "alice", 100, at).await;
    let (first, _) = take_hold(store, &user, 30, at, None)
        .await
        .unwrap_or_else(|e| panic!("holding 30 of 100 failed: {e}"));
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
}

/// The ledger has one row per change (a grant, each hold, each end), oldest first, each
/// positive and the user's own.
pub async fn the_ledger_has_one_row_per_change<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-alice"));
    let signup = Grant::signup(user.clone(), 100, at);
    store
        .grant(&signup)
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    // Refused holds write no row.
    expect_invalid(take_hold(store, &user, 0, at, None).await, "a zero hold");
    assert!(
        take_hold(store, &user, 200, at, None).await.is_err(),
        "an oversized hold is refused"
    );
    let (first, _) = take_hold(store, &user, 30, at, None)
        .await
        .unwrap_or_else(|e| panic!("hold failed: {e}"));
    end_hold(store, &first.id, HoldState::Settled)
        .await
        .unwrap_or_else(|e| panic!("settling failed: {e}"));
    let (second, _) = take_hold(store, &user, 20, at, None)
        .await
        .unwrap_or_else(|e| panic!("second hold failed: {e}"));
    end_hold(store, &second.id, HoldState::Refunded)
        .await
        .unwrap_or_else(|e| panic!("refunding failed: {e}"));
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
}

/// Two ends of one hold raced from many tasks: exactly one ends it, no end the other way
/// succeeds, one ledger end per hold, balances stay exact.
pub async fn raced_ends_of_a_hold_end_it_once<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let racer = granted(store, &prefix, "ends", 100, at).await;
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
}

/// A day for daily-cap checks, in a lane of 9000 days of its own: the cap counts every
/// user's holds of a day, so the rules that check it (`lane` 1, 2, 3) never share a day with
/// each other or with any rule's uncapped holds (theirs fall in the first 9000 days).
fn cap_day(at: Timestamp, lane: i64) -> Timestamp {
    Timestamp::from_millis(at.as_millis() + lane * 9_000 * 86_400_000)
}

/// The daily cap counts every user's holds of the day (a cap of the whole service), not
/// refunded ones; a capped hold changes
/// nothing; the cap is checked before the balance (`jilo_core::money`), so a user short of
/// credits on a day at its cap hears about the cap, on every store alike.
pub async fn the_daily_cap_counts_the_days_holds<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let at = cap_day(at, 1);
    let capped = granted(store, &prefix, "capped", 100, at).await;
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
}

/// The daily cap under concurrency: 20 holds at once under a cap of 2 take 2, at one time or
/// at 20 times of one UTC day.
pub async fn the_daily_cap_holds_under_concurrency<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let at = cap_day(at, 2);
    let capped = granted(store, &prefix, "capped", 100, at).await;
    let day2 = at.plus(Duration::from_secs(86_400));
    let results = join_all((0..20).map(|_| take_hold(store, &capped, 1, day2, Some(2)))).await;
    assert_eq!(
        taken_and_capped(&results, 2),
        (2, 18),
        "20 concurrent holds under a cap of 2"
    );
    let day4_start = (day2.utc_day() + 2) * 86_400_000;
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
}

/// A settled hold still counts toward the daily cap: cap 2, two holds, one settled, a third
/// is refused.
pub async fn a_settled_hold_counts_toward_the_cap<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let day3 = cap_day(at, 3).plus(Duration::from_secs(2 * 86_400));
    let capped = granted(store, &prefix, "capped", 100, day3).await;
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
}

/// The seed's bar: quota 10, 100 concurrent holds of 1 take exactly 10, refuse 90 as
/// `Insufficient`, and leave the balance at exactly 0.
pub async fn concurrent_holds_never_exceed_the_balance<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let racer = granted(store, &prefix, "racer", 10, at).await;
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
}

/// History pages: newest first, continued by cursor with nothing skipped or repeated, filtered
/// by kind, sized 1 to 500, typed errors for an unknown user or a bad size.
pub async fn history_pages_run_newest_first<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
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

/// A statement splits the available credits and sums what was settled since a period began.
pub async fn a_statement_splits_the_balance<S>(store: &S)
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

/// Amounts past [`MAX_CREDITS`] and accounts that would pass it are refused (never a panic,
/// a wrapped or a REAL balance); a refused grant leaves its key free and makes no account.
pub async fn amounts_stay_within_max_credits<S>(store: &S)
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
}

/// A key names one grant: the same grant again (another time) is a duplicate; another user or
/// another amount under it is [`Error::InvalidInput`] and changes nothing.
pub async fn a_key_names_one_grant<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-limits"));
    let payment = format!("{prefix}-pay-1");
    // Far below the ceiling, so only the key can refuse what follows.
    let first = Grant::purchase(user.clone(), 100, &payment, at);
    store
        .grant(&first)
        .await
        .unwrap_or_else(|e| panic!("a first purchase: {e}"));
    let b = balance_of(store, &user).await;
    let again = Grant {
        at: at.plus(Duration::from_secs(60)),
        ..first.clone()
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
            .grant(&Grant::purchase(thief.clone(), 100, &payment, at))
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
}

/// Ids are ids on every store: no blank or control characters in a user id, a payment id or
/// a key; each refusal changes nothing.
pub async fn ids_are_ids<S>(store: &S)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = granted(store, &prefix, "limits", 10, at).await;
    let b = balance_of(store, &user).await;
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
