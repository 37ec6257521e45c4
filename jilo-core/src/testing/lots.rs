//! The rules of credit lots (grants that expire), one function each. A store that keeps no
//! lots says so with [`StoreCapabilities::expiring_credits`]: each rule then checks that the
//! store refuses its expiring grants with [`Error::InvalidInput`] on `expires_at`, changing
//! nothing, and skips the rest. [`credit_lots_suite`] runs them all.
//!
//! The rules write expiries with [`QuotaStore::expire_credits`], which expires every user's
//! due lots: run one lots suite at a time on a store.

use futures::future::join_all;

use crate::error::Error;
use crate::ids::{Timestamp, UserId};
use crate::ledger::{
    Balance, EntryKind, ExpiringCredits, Grant, GrantOutcome, HistoryQuery, HoldState,
    LedgerEntryKind,
};
use crate::plans::{Plan, PlanPeriod};
use crate::traits::{JobStore, QuotaStore};

use super::support::{balance_of, end_hold_at, rules, run_scope, take_hold};

/// What a store under the conformance rules supports, for the rules that depend on it.
///
/// ```
/// use jilo_core::testing::StoreCapabilities;
///
/// // A store that keeps every grant lasting and refuses expiring ones:
/// let caps = StoreCapabilities::ALL.without_expiring_credits();
/// assert!(!caps.expiring_credits);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCapabilities {
    /// The store keeps grants that expire ([`Grant::expires_at`]) as lots. Without, it must
    /// refuse them with [`Error::InvalidInput`] on `expires_at`, changing nothing.
    pub expiring_credits: bool,
}

impl StoreCapabilities {
    /// Everything a store of this crate supports.
    pub const ALL: StoreCapabilities = StoreCapabilities {
        expiring_credits: true,
    };

    /// The same, for a store that keeps no lots.
    #[must_use]
    pub const fn without_expiring_credits(self) -> Self {
        StoreCapabilities {
            expiring_credits: false,
        }
    }
}

impl Default for StoreCapabilities {
    fn default() -> Self {
        StoreCapabilities::ALL
    }
}

/// Checks credit lots, every rule of this module in turn: a hold draws the soonest-expiring
/// credits first; a refund after a lot expired lapses that lot's part and returns the rest;
/// expiry is written once per lot, by a hold lazily or by [`QuotaStore::expire_credits`]
/// however many callers run it at once; expired credits are never held; and the quota bar
/// holds when the credits come from three lots (10 credits, 100 concurrent holds of 1:
/// exactly 10). `granted = available + held + spent + expired` throughout. With
/// `expiring_credits` off, checks that every expiring grant is refused instead.
///
/// Prints each rule's name before it runs and panics naming the broken rule.
pub async fn credit_lots_suite<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    rules!(store, "lots" with caps:
        a_hold_draws_the_soonest_expiring_credits_first,
        expiry_is_written_once_per_lot,
        expired_credits_are_never_held,
        a_hold_writes_the_expiry_it_finds_due,
        a_monthly_allowance_grants_once_a_period,
        grants_that_cannot_be_lots_change_nothing,
        concurrent_holds_on_three_lots_never_exceed_the_balance,
        a_statement_under_load_adds_up,
    );
}

/// A rule's scope: its prefix, its start, and its grants of `credits` under `key`, expiring
/// `expires` milliseconds after the start when given.
struct Lots {
    prefix: String,
    t: Timestamp,
}

impl Lots {
    fn new() -> Self {
        let (prefix, t) = run_scope();
        Lots { prefix, t }
    }

    fn ms(&self, d: i64) -> Timestamp {
        Timestamp::from_millis(self.t.as_millis() + d)
    }

    fn user(&self, name: &str) -> UserId {
        UserId::new(format!("{}-{name}", self.prefix))
    }

    fn grant(&self, user: &UserId, key: &str, credits: i64, expires: Option<i64>) -> Grant {
        let g = Grant::purchase(
            user.clone(),
            credits,
            &format!("{}-{key}", self.prefix),
            self.t,
        );
        match expires {
            Some(d) => g.expiring_at(self.ms(d)),
            None => g,
        }
    }
}

/// Grants `grant`. An expiring grant on a store without lots must be refused on `expires_at`
/// changing nothing: then `false`, and the rule stops there.
async fn give<S>(store: &S, caps: StoreCapabilities, grant: &Grant, what: &str) -> bool
where
    S: QuotaStore + ?Sized,
{
    if grant.expires_at.is_none() || caps.expiring_credits {
        if let Err(e) = store.grant(grant).await {
            panic!("{what} failed: {e}");
        }
        return true;
    }
    let before = store.balance(&grant.user).await.ok();
    match store.grant(grant).await {
        Err(Error::InvalidInput { ref field, .. }) if field == "expires_at" => {}
        other => panic!(
            "{what}: a store without expiring credits refuses it with InvalidInput on expires_at, got {other:?}"
        ),
    }
    assert_eq!(
        store.balance(&grant.user).await.ok(),
        before,
        "{what}: a refused expiring grant changes nothing"
    );
    false
}

fn consistent(b: &Balance, what: &str) {
    assert!(
        b.is_consistent(),
        "{what}: {b:?} breaks granted = available + held + spent + expired"
    );
}

/// Grants a lasting 100, a later 5 (expiring at +1000) and a sooner 3 (at +500), then holds
/// 6; `None` when the store keeps no lots.
async fn three_grants_and_a_hold<S>(
    store: &S,
    caps: StoreCapabilities,
    lots: &Lots,
    user: &UserId,
) -> Option<crate::job::Job>
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lasting = lots.grant(user, "lasting", 100, None);
    give(store, caps, &lasting, "lasting grant").await;
    let later = lots.grant(user, "later", 5, Some(1_000));
    let sooner = lots.grant(user, "sooner", 3, Some(500));
    if !give(store, caps, &later, "later grant").await
        || !give(store, caps, &sooner, "sooner grant").await
    {
        return None;
    }
    let (job, _) = take_hold(store, user, 6, lots.t, None)
        .await
        .unwrap_or_else(|e| panic!("hold failed: {e}"));
    Some(job)
}

/// A hold draws the soonest-expiring lots first and the lasting lot last; a refund after a
/// lot expired lapses that lot's part ([`LedgerEntryKind::Lapse`]) and returns the rest.
pub async fn a_hold_draws_the_soonest_expiring_credits_first<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let user = lots.user("lots");
    let Some(job) = three_grants_and_a_hold(store, caps, &lots, &user).await else {
        return;
    };
    let b = balance_of(store, &user).await;
    assert_eq!((b.available, b.held), (102, 6));
    consistent(&b, "after the hold");
    // Lasting credits last: the 6 came from the sooner 3 and 3 of the later 5.
    let drawn = store
        .statement(&user, lots.t, lots.t)
        .await
        .unwrap_or_else(|e| panic!("statement failed: {e}"));
    assert_eq!(
        (drawn.expiring.clone(), drawn.lasting),
        (
            vec![ExpiringCredits {
                credits: 2,
                expires_at: lots.ms(1_000)
            }],
            100
        ),
        "a hold draws the soonest-expiring lots first and the lasting lot last"
    );
    end_hold_at(store, &job.id, HoldState::Refunded, Some(lots.ms(600)))
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
}

/// Expiry is written once per lot, with many callers of [`QuotaStore::expire_credits`] at
/// once, dated when the lot expired whenever it is written.
pub async fn expiry_is_written_once_per_lot<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let user = lots.user("lots");
    let Some(job) = three_grants_and_a_hold(store, caps, &lots, &user).await else {
        return;
    };
    end_hold_at(store, &job.id, HoldState::Refunded, Some(lots.ms(600)))
        .await
        .unwrap_or_else(|e| panic!("refund failed: {e}"));
    let runs = join_all((0..8).map(|_| store.expire_credits(lots.ms(1_200)))).await;
    assert!(
        runs.iter().all(|r| r.is_ok()),
        "expiring credits failed: {runs:?}"
    );
    store
        .expire_credits(lots.ms(5_000))
        .await
        .unwrap_or_else(|e| panic!("expiring credits failed: {e}"));
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
                key: format!("payment:{}-later", lots.prefix)
            },
            5
        )],
        "the later lot's 5 expire, once; the sooner lot had nothing unheld to expire"
    );
    assert_eq!(
        expiries.entries[0].at,
        lots.ms(1_000),
        "an expiry is dated when the lot expired, whenever it is written"
    );
    let b = balance_of(store, &user).await;
    assert_eq!((b.available, b.expired, b.granted), (100, 8, 108));
    consistent(&b, "after the expiry");
}

/// Expired credits are never held; the next read that looks at the lots writes the expiry
/// the refused hold did not keep: a user's own expiry ([`QuotaStore::expire_user_credits`],
/// once, [`Error::NotFound`] for an unknown user) or a statement.
pub async fn expired_credits_are_never_held<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let late = lots.user("late");
    let short = lots.grant(&late, "short", 5, Some(100));
    if !give(store, caps, &short, "short grant").await {
        return;
    }
    let small = lots.grant(&late, "small", 2, None);
    give(store, caps, &small, "small grant").await;
    let refused = take_hold(store, &late, 3, lots.ms(200), None).await;
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
    let written = store
        .expire_user_credits(&late, lots.ms(200))
        .await
        .unwrap_or_else(|e| panic!("expiring a user's credits failed: {e}"));
    assert!(written <= 1, "one lot at most: {written}");
    assert_eq!(
        store
            .expire_user_credits(&late, lots.ms(300))
            .await
            .unwrap_or_else(|e| panic!("expiring a user's credits failed: {e}")),
        0,
        "once"
    );
    assert!(matches!(
        store
            .expire_user_credits(&lots.user("nobody"), lots.ms(300))
            .await,
        Err(Error::NotFound { .. })
    ));
    let statement = store
        .statement(&late, lots.ms(200), lots.t)
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
}

/// A hold writes the expiry it finds due, dated when the lot expired.
pub async fn a_hold_writes_the_expiry_it_finds_due<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let holder = lots.user("holder");
    let short = lots.grant(&holder, "h-short", 5, Some(100));
    if !give(store, caps, &short, "holder's short grant").await {
        return;
    }
    let lasting = lots.grant(&holder, "h-lasting", 2, None);
    give(store, caps, &lasting, "holder's lasting grant").await;
    take_hold(store, &holder, 1, lots.ms(250), None)
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
        vec![(5, lots.ms(100))],
        "the hold wrote the expiry, dated when the lot expired"
    );
}

/// A monthly refresh run twice in a period grants once; next month's replaces the rest.
pub async fn a_monthly_allowance_grants_once_a_period<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let subscriber = lots.user("plan");
    let plan = Plan::new("basic", "Basic", 50, 4_900, "CNY");
    let period = PlanPeriod::containing(lots.t);
    let allowance = plan.allowance(&subscriber, period, lots.t);
    if !caps.expiring_credits {
        give(store, caps, &allowance, "the allowance").await;
        return;
    }
    let first = store
        .grant(&allowance)
        .await
        .unwrap_or_else(|e| panic!("the allowance failed: {e}"));
    let second = store
        .grant(&plan.allowance(&subscriber, period, lots.ms(1)))
        .await
        .unwrap_or_else(|e| panic!("the allowance again failed: {e}"));
    assert_eq!(
        (first, second),
        (GrantOutcome::Granted, GrantOutcome::Duplicate),
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
        vec![ExpiringCredits {
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
}

/// Grants that cannot be lots change nothing: credits that expire when granted, and keys
/// starting with `jilo:` (jilo's own).
pub async fn grants_that_cannot_be_lots_change_nothing<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let checked = lots.user("checked");
    let backwards = Grant::purchase(
        checked.clone(),
        5,
        &format!("{}-backwards", lots.prefix),
        lots.ms(100),
    )
    .expiring_at(lots.ms(100));
    // Refused on `expires_at` by every store: with lots as a lot that expires when granted,
    // without as an expiring grant.
    give(
        store,
        caps.without_expiring_credits(),
        &backwards,
        "credits that expire when granted",
    )
    .await;
    let mut reserved = Grant::purchase(checked.clone(), 5, "reserved", lots.t);
    reserved.key = "jilo:legacy:someone".to_owned();
    assert!(
        matches!(store.grant(&reserved).await, Err(Error::InvalidInput { ref field, .. }) if field == "key"),
        "keys starting with `jilo:` are jilo's own"
    );
    assert!(
        matches!(store.balance(&checked).await, Err(Error::NotFound { .. })),
        "a refused grant makes no account"
    );
}

/// The quota bar with three lots: 10 credits, 100 concurrent holds of 1, exactly 10 taken.
pub async fn concurrent_holds_on_three_lots_never_exceed_the_balance<S>(
    store: &S,
    caps: StoreCapabilities,
) where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let racer = lots.user("three-lots");
    let (a, b) = (
        lots.grant(&racer, "a", 4, Some(10_000)),
        lots.grant(&racer, "b", 3, Some(20_000)),
    );
    if !give(store, caps, &a, "lot a").await {
        return;
    }
    give(store, caps, &b, "lot b").await;
    give(store, caps, &lots.grant(&racer, "c", 3, None), "lot c").await;
    let results = join_all((0..100).map(|_| take_hold(store, &racer, 1, lots.t, None))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        10,
        "exactly 10 of 100 concurrent holds are taken from three lots"
    );
    let b = balance_of(store, &racer).await;
    assert_eq!((b.available, b.held), (0, 10));
    consistent(&b, "after the race");
}

/// A statement read while holds are taken adds up: one snapshot of balance and lots.
pub async fn a_statement_under_load_adds_up<S>(store: &S, caps: StoreCapabilities)
where
    S: QuotaStore + JobStore + ?Sized,
{
    let lots = Lots::new();
    let reader = lots.user("reader");
    let month = lots.grant(&reader, "r-month", 40, Some(30_000));
    if !give(store, caps, &month, "reader's expiring lot").await {
        return;
    }
    let lasting = lots.grant(&reader, "r-lasting", 40, None);
    give(store, caps, &lasting, "reader's lasting lot").await;
    let holds = join_all((0..30).map(|_| take_hold(store, &reader, 2, lots.t, None)));
    let reads = join_all((0..30).map(|_| store.statement(&reader, lots.t, lots.t)));
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
