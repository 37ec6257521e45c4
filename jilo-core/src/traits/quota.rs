use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{JobId, UserId};
use crate::ledger::{
    Balance, CreditHold, Grant, GrantOutcome, HistoryPage, HistoryQuery, LedgerEntry,
};

/// The host-facing credit ledger: grants, balances, holds to read and history.
///
/// Holds are not here: a hold is taken with its job ([`crate::JobStore::create`]) and ended
/// only by the job's transition ([`crate::JobUpdate::end_hold`]), so a host cannot refund a
/// running job's hold and still get its video. This does not compile:
///
/// ```compile_fail,E0599
/// # async fn host(store: &jilo_core::InMemoryStore, job: &jilo_core::JobId) {
/// use jilo_core::{QuotaStore, Timestamp};
/// store.refund(job, Timestamp::from_millis(0)).await;
/// # }
/// ```
///
/// And a transition whose hold was ended the other way (by a host writing the job store
/// directly) fails with [`crate::Error::NotAllowed`] instead of completing the job.
///
/// Contract (checked by [`crate::testing::quota_store_suite`], which also takes and ends holds
/// through the store's [`crate::JobStore`]):
/// - Input has one set of limits on every store: amounts positive and at most
///   [`crate::ledger::MAX_CREDITS`] ([`crate::ledger::check_amount`]), ids not blank and without
///   control characters ([`crate::ledger::check_user`], [`crate::ledger::check_grant`]), an
///   account granted at most [`crate::ledger::MAX_CREDITS`] in all; bad input is
///   [`crate::Error::InvalidInput`] and changes nothing.
/// - `grant` is idempotent by key: the same grant again is [`crate::GrantOutcome::Duplicate`];
///   a key reused for another grant (user, amount, reason) is
///   [`crate::Error::InvalidInput`] on `key` ([`crate::ledger::check_regrant`]). A user exists
///   once granted; reading a user never granted is [`crate::Error::NotFound`], and a hold for
///   one is [`crate::Error::Insufficient`] with 0 available.
/// - A hold is taken atomically with its job, or refused with [`crate::Error::Insufficient`]
///   (or [`crate::Error::DailyCapReached`]) changing nothing. Under any concurrency, across
///   tasks and processes, the holds taken never exceed the balance.
/// - A hold ends exactly once, settled or refunded, with its job's transition.
/// - Every change is one ledger entry, and always `granted = available + held + spent +
///   expired`.
/// - A grant may expire ([`Grant::expires_at`]): a hold draws from the soonest-expiring
///   credits first; a refund returns each credit to its lot, and one whose lot expired while
///   held lapses ([`crate::LedgerEntryKind::Lapse`]).
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait QuotaStore: Send + Sync + std::fmt::Debug {
    /// Adds credits under an idempotency key.
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome>;

    /// The hold of a job.
    async fn hold(&self, job: &JobId) -> Result<CreditHold>;

    /// A user's balance.
    async fn balance(&self, user: &UserId) -> Result<Balance>;

    /// A user's ledger entries, oldest first (all of them: for audits and tests; a page a
    /// user sees reads [`QuotaStore::history_page`]).
    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>>;

    /// The user's balance as a page shows it at `at`: expiring credits by date, lasting
    /// credits, and what was settled since `period_start`. Lots due by `at` expire first.
    async fn statement(
        &self,
        user: &UserId,
        at: crate::ids::Timestamp,
        period_start: crate::ids::Timestamp,
    ) -> Result<crate::ledger::CreditStatement>;

    /// Writes the expiry of every lot whose credits expired by `now` (one
    /// [`crate::LedgerEntryKind::Expire`] per lot, whoever runs it, however often); returns
    /// how many lots expired credits. Holds also expire a user's lots before they draw.
    async fn expire_credits(&self, now: crate::ids::Timestamp) -> Result<u32>;

    /// Writes the expiry of one user's lots due by `now`, as [`QuotaStore::expire_credits`]
    /// does for everyone: what a read of the account runs first, so a balance or history
    /// shown after a month ended never counts last month's allowance. Writes nothing when
    /// nothing is due. An unknown user is [`crate::Error::NotFound`].
    async fn expire_user_credits(&self, user: &UserId, now: crate::ids::Timestamp) -> Result<u32>;

    /// One page of a user's history, newest first, continued by cursor and filtered by kind.
    /// SQL stores read it by index, so the last page of years of entries is as quick as the
    /// first. A page size outside 1 to [`crate::ledger::MAX_PAGE`] is
    /// [`crate::Error::InvalidInput`]; an unknown user [`crate::Error::NotFound`].
    async fn history_page(&self, user: &UserId, query: &HistoryQuery) -> Result<HistoryPage>;
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: QuotaStore + ?Sized> QuotaStore for std::sync::Arc<T> {
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome> {
        (**self).grant(grant).await
    }

    async fn hold(&self, job: &JobId) -> Result<CreditHold> {
        (**self).hold(job).await
    }

    async fn balance(&self, user: &UserId) -> Result<Balance> {
        (**self).balance(user).await
    }

    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>> {
        (**self).history(user).await
    }

    async fn statement(
        &self,
        user: &UserId,
        at: crate::ids::Timestamp,
        period_start: crate::ids::Timestamp,
    ) -> Result<crate::ledger::CreditStatement> {
        (**self).statement(user, at, period_start).await
    }

    async fn expire_credits(&self, now: crate::ids::Timestamp) -> Result<u32> {
        (**self).expire_credits(now).await
    }

    async fn expire_user_credits(&self, user: &UserId, now: crate::ids::Timestamp) -> Result<u32> {
        (**self).expire_user_credits(user, now).await
    }

    async fn history_page(&self, user: &UserId, query: &HistoryQuery) -> Result<HistoryPage> {
        (**self).history_page(user, query).await
    }
}
