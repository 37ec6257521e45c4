//! Plans through the Studio on the in-memory store: an allowance granted once a month that
//! expires at the month's end, so the next month's replaces it rather than adding to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use jilo_core::plans::Plan;
use jilo_core::testing::{end_hold, take_hold, SimProvider};
use jilo_core::{
    Clock, EntryKind, Error, GrantOutcome, HistoryQuery, HoldState, InMemoryStore, Policy,
    QuotaStore, Studio, Timestamp, UserId,
};

#[derive(Debug)]
struct FixedClock(Mutex<Timestamp>);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

const DEC_15_2026: i64 = 1_797_336_000_000; // 2026-12-15T12:00:00Z
const JAN_1_2027: i64 = 1_798_761_600_000; // 2027-01-01T00:00:00Z

#[tokio::test]
async fn a_monthly_allowance_is_granted_once_and_replaced_next_month() {
    let store = Arc::new(InMemoryStore::new());
    let clock = Arc::new(FixedClock(Mutex::new(Timestamp::from_millis(DEC_15_2026))));
    let studio = Studio::builder()
        .provider(Arc::new(SimProvider::new("sim")))
        .store(store.clone())
        .clock(clock.clone())
        .policy(Policy {
            plans: vec![
                Plan::new("basic", "Basic", 50, 4_900, "CNY"),
                Plan::new("pro", "Pro", 200, 14_900, "CNY"),
            ],
            ..Policy::default()
        })
        .build()
        .unwrap();
    let user = UserId::new("subscriber");

    let first = studio.subscribe_plan(&user, "basic").await.unwrap();
    assert_eq!(first.outcome, GrantOutcome::Granted);
    assert_eq!(first.period, "2026-12");
    assert_eq!(first.expires_at, Timestamp::from_millis(JAN_1_2027));
    let again = studio.subscribe_plan(&user, "basic").await.unwrap();
    assert_eq!(again.outcome, GrantOutcome::Duplicate, "once per month");
    let changed = studio.subscribe_plan(&user, "pro").await.unwrap();
    assert_eq!(
        changed.outcome,
        GrantOutcome::Duplicate,
        "a plan changed mid-month grants nothing more (proration is the host's)"
    );
    assert!(matches!(
        studio.subscribe_plan(&user, "gold").await,
        Err(Error::NotFound { .. })
    ));

    // 20 of December's 50 are spent; the other 30 do not carry over.
    let (job, _) = take_hold(
        &*store,
        &user,
        20,
        Timestamp::from_millis(DEC_15_2026),
        None,
    )
    .await
    .unwrap();
    end_hold(&*store, &job.id, HoldState::Settled)
        .await
        .unwrap();
    *clock.0.lock().unwrap() = Timestamp::from_millis(JAN_1_2027 + 1_000);
    // No worker ran: reading the balance writes December's expiry first.
    let b = studio.balance(&user).await.unwrap();
    assert_eq!(
        (b.available, b.expired),
        (0, 30),
        "a balance read after the month ended does not count December's leftover"
    );
    let expiries = studio
        .credit_history(
            &user,
            &HistoryQuery::newest(10).of_kinds([EntryKind::Expire]),
        )
        .await
        .unwrap();
    assert_eq!(expiries.entries.len(), 1);
    assert_eq!(expiries.entries[0].credits, 30);
    assert_eq!(
        expiries.entries[0].at,
        Timestamp::from_millis(JAN_1_2027),
        "dated when the allowance expired"
    );
    assert_eq!(
        store.expire_credits(clock.now()).await.unwrap(),
        0,
        "the worker finds it written"
    );
    let january = studio.subscribe_plan(&user, "pro").await.unwrap();
    assert_eq!(january.outcome, GrantOutcome::Granted);
    assert_eq!(january.period, "2027-01");
    let b = store.balance(&user).await.unwrap();
    assert_eq!(
        (b.available, b.spent, b.expired, b.granted),
        (200, 20, 30, 250),
        "January's 200 replace December's leftover 30, which expired"
    );
    assert!(b.is_consistent());
    let january_statement = studio.credit_statement(&user).await.unwrap();
    assert_eq!(january_statement.expiring.len(), 1);
    assert_eq!(january_statement.expiring[0].credits, 200);
    assert_eq!(
        january_statement.spent_this_period, 0,
        "December's spending is not this month's"
    );

    // Plans are checked when the Studio is built.
    let bad = Studio::builder()
        .provider(Arc::new(SimProvider::new("sim")))
        .store(Arc::new(InMemoryStore::new()))
        .policy(Policy {
            plans: vec![
                Plan::new("basic", "Basic", 50, 4_900, "CNY"),
                Plan::new("basic", "Again", 10, 100, "CNY"),
            ],
            ..Policy::default()
        })
        .build();
    assert!(matches!(bad, Err(Error::InvalidInput { .. })));
}
