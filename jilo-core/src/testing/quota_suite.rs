//! The conformance suite every [`QuotaStore`] runs against itself.

use futures::future::join_all;

use crate::error::Error;
use crate::ids::{JobId, Timestamp, UserId};
use crate::ledger::{
    Balance, Grant, GrantOutcome, GrantReason, HoldOutcome, HoldState, LedgerEntryKind, Reservation,
};
use crate::traits::QuotaStore;

/// A random UTC day among the first 9000 after the epoch, so daily-cap checks of one run
/// rarely meet another run's holds, and a unique user prefix.
pub(crate) fn run_scope() -> (String, Timestamp) {
    let r = uuid::Uuid::new_v4().as_u128();
    let day = 1 + (r % 9_000) as i64;
    let prefix = format!("conf-{}", uuid::Uuid::new_v4().simple());
    (prefix, Timestamp::from_millis(day * 86_400_000 + 3_600_000))
}

fn reservation(user: &UserId, credits: i64, at: Timestamp) -> Reservation {
    Reservation {
        user: user.clone(),
        job: JobId::random(),
        credits,
        at,
        daily_cap: None,
    }
}

async fn balance_of(store: &dyn QuotaStore, user: &UserId) -> Balance {
    match store.balance(user).await {
        Ok(b) => b,
        Err(e) => panic!("balance of {user} failed: {e}"),
    }
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

/// Checks the [`QuotaStore`] contract: positive amounts only, idempotent grants, atomic holds
/// that end exactly once, `Insufficient` and the daily cap changing nothing, typed errors for
/// unknown users and holds, a ledger row per change, and the seed's concurrency bar (quota 10,
/// 100 concurrent reservations: exactly 10 holds, balance 0, 90 refusals).
///
/// Uses fresh random user ids, so it can run on a store holding other data. Panics naming the
/// broken rule.
pub async fn quota_store_suite(store: &dyn QuotaStore) {
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-alice"));

    // Unknown users are typed errors.
    expect_not_found(store.balance(&user).await, "balance of an unknown user");
    expect_not_found(store.history(&user).await, "history of an unknown user");
    expect_not_found(
        store.reserve(&reservation(&user, 5, at)).await,
        "reserving for an unknown user",
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
    expect_invalid(
        store
            .grant(&Grant::purchase(
                user.clone(),
                0,
                &format!("{prefix}-p0"),
                at,
            ))
            .await,
        "a zero grant",
    );
    expect_invalid(
        store
            .grant(&Grant::purchase(
                user.clone(),
                -5,
                &format!("{prefix}-p1"),
                at,
            ))
            .await,
        "a negative grant",
    );
    let mut blank = Grant::purchase(user.clone(), 5, "x", at);
    blank.key = "  ".to_owned();
    expect_invalid(store.grant(&blank).await, "a grant without a key");
    assert_eq!(
        balance_of(store, &user).await,
        Balance {
            available: 100,
            held: 0,
            spent: 0,
            granted: 100
        },
        "only the first grant counts"
    );

    // Holds.
    expect_invalid(
        store.reserve(&reservation(&user, 0, at)).await,
        "a zero hold",
    );
    expect_invalid(
        store.reserve(&reservation(&user, -1, at)).await,
        "a negative hold",
    );
    let first = reservation(&user, 30, at);
    let hold = store
        .reserve(&first)
        .await
        .unwrap_or_else(|e| panic!("reserving 30 of 100 failed: {e}"));
    assert_eq!(hold.state, HoldState::Held);
    assert_eq!(hold.credits, 30);
    match store.reserve(&first).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("a second hold for one job must conflict, got {other:?}"),
    }
    match store.reserve(&reservation(&user, 200, at)).await {
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
            granted: 100
        },
        "a refused hold changes nothing"
    );

    // A hold ends exactly once.
    let later = at.plus(std::time::Duration::from_secs(60));
    assert_eq!(
        store.settle(&first.job, later).await.ok(),
        Some(HoldOutcome::Ended(HoldState::Settled))
    );
    assert_eq!(
        store.settle(&first.job, later).await.ok(),
        Some(HoldOutcome::AlreadyEnded(HoldState::Settled)),
        "a second settle is a no-op"
    );
    assert_eq!(
        store.refund(&first.job, later).await.ok(),
        Some(HoldOutcome::AlreadyEnded(HoldState::Settled)),
        "a refund after a settle is a no-op"
    );
    let second = reservation(&user, 20, at);
    store
        .reserve(&second)
        .await
        .unwrap_or_else(|e| panic!("second hold failed: {e}"));
    assert_eq!(
        store.refund(&second.job, later).await.ok(),
        Some(HoldOutcome::Ended(HoldState::Refunded))
    );
    assert_eq!(
        store.settle(&second.job, later).await.ok(),
        Some(HoldOutcome::AlreadyEnded(HoldState::Refunded)),
        "a settle after a refund is a no-op"
    );
    expect_not_found(
        store.settle(&JobId::random(), later).await,
        "settling an unknown hold",
    );
    expect_not_found(
        store.refund(&JobId::random(), later).await,
        "refunding an unknown hold",
    );
    expect_not_found(
        store.hold(&JobId::random()).await,
        "reading an unknown hold",
    );
    assert_eq!(
        store.hold(&second.job).await.ok().map(|h| h.state),
        Some(HoldState::Refunded)
    );
    let b = balance_of(store, &user).await;
    assert_eq!(
        b,
        Balance {
            available: 70,
            held: 0,
            spent: 30,
            granted: 100
        }
    );
    assert!(b.is_consistent(), "granted = available + held + spent");

    // The ledger has one row per change, oldest first.
    let history = store
        .history(&user)
        .await
        .unwrap_or_else(|e| panic!("history failed: {e}"));
    let kinds: Vec<&str> = history
        .iter()
        .map(|e| match &e.kind {
            LedgerEntryKind::Grant { .. } => "grant",
            LedgerEntryKind::Hold { .. } => "hold",
            LedgerEntryKind::Settle { .. } => "settle",
            LedgerEntryKind::Refund { .. } => "refund",
        })
        .collect();
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

    // The daily cap counts every user's holds of the day, not refunded ones. Cap checks use a
    // day of their own (9000 days after this run's), which no other run's uncapped holds use.
    let at = Timestamp::from_millis(at.as_millis() + 9_000 * 86_400_000);
    let capped = UserId::new(format!("{prefix}-capped"));
    store
        .grant(&Grant::signup(capped.clone(), 100, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    let with_cap = |credits| Reservation {
        daily_cap: Some(2),
        ..reservation(&capped, credits, at)
    };
    let a = with_cap(1);
    store
        .reserve(&a)
        .await
        .unwrap_or_else(|e| panic!("capped hold 1: {e}"));
    store
        .reserve(&with_cap(1))
        .await
        .unwrap_or_else(|e| panic!("capped hold 2: {e}"));
    match store.reserve(&with_cap(1)).await {
        Err(Error::DailyCapReached { cap: 2 }) => {}
        other => panic!("a third hold of the day must hit the cap, got {other:?}"),
    }
    assert_eq!(
        balance_of(store, &capped).await.held,
        2,
        "a capped hold changes nothing"
    );
    store
        .refund(&a.job, at)
        .await
        .unwrap_or_else(|e| panic!("refund: {e}"));
    store
        .reserve(&with_cap(1))
        .await
        .unwrap_or_else(|e| panic!("a refunded hold frees a place under the cap: {e}"));

    // The seed's bar: quota 10, 100 concurrent reservations of 1.
    let racer = UserId::new(format!("{prefix}-racer"));
    store
        .grant(&Grant::signup(racer.clone(), 10, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    let results = join_all((0..100).map(|_| {
        let r = reservation(&racer, 1, at);
        async move { store.reserve(&r).await }
    }))
    .await;
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
