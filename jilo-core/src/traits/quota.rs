use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{JobId, Timestamp, UserId};
use crate::ledger::{
    Balance, CreditHold, Grant, GrantOutcome, HoldOutcome, LedgerEntry, Reservation,
};

/// The credit ledger: grants, two-phase holds, balances and history.
///
/// Contract (checked by [`crate::testing::quota_store_suite`]):
/// - Amounts must be positive ([`crate::ledger::check_amount`]); bad input changes nothing.
/// - `reserve` is atomic: it takes the hold or fails with [`crate::Error::Insufficient`]
///   (or [`crate::Error::DailyCapReached`]) and changes nothing. Under any concurrency, across
///   tasks and processes, the holds taken never exceed the balance.
/// - A hold ends exactly once: `settle` or `refund`. The second call of either is a no-op that
///   returns [`HoldOutcome::AlreadyEnded`] with the state the hold already has.
/// - `grant` is idempotent by key. A user exists once granted; a user never granted is
///   [`crate::Error::NotFound`].
/// - Every change is one ledger entry, and always `granted = available + held + spent`.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Adds credits under an idempotency key.
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome>;

    /// Takes a hold on a user's credits for a job.
    async fn reserve(&self, reservation: &Reservation) -> Result<CreditHold>;

    /// Spends a hold: the credits leave the user for good.
    async fn settle(&self, job: &JobId, at: Timestamp) -> Result<HoldOutcome>;

    /// Returns a hold to the user.
    async fn refund(&self, job: &JobId, at: Timestamp) -> Result<HoldOutcome>;

    /// The hold of a job.
    async fn hold(&self, job: &JobId) -> Result<CreditHold>;

    /// A user's balance.
    async fn balance(&self, user: &UserId) -> Result<Balance>;

    /// A user's ledger entries, oldest first.
    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>>;
}
