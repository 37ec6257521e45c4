use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::ids::{JobId, ProviderId, UserId};
use crate::job::{ClaimRequest, DeliveryOutcome, DeliveryRecord, Job, JobEvent, JobUpdate};
use crate::ledger::{CreditHold, Reservation};

/// Durable generation jobs.
///
/// Contract (checked by [`crate::testing::job_store_suite`]):
/// - `create` writes the job and takes its credit hold in one transaction, on the ledger of the
///   same backend's [`crate::QuotaStore`]: both or neither. A short balance fails with
///   [`crate::Error::Insufficient`] and writes no job.
/// - `update` is a compare-and-set: it applies only when the stored job still has the expected
///   version and state, bumps the version by one, and otherwise fails with
///   [`crate::Error::Conflict`] (or [`crate::Error::NotFound`]) changing nothing.
/// - Every successful `create` and `update` publishes the job's [`JobEvent`] to `watch`ers,
///   across processes where the backend is shared.
/// - `job_by_provider_request` finds a job by any request id it has had at that provider.
/// - `record_delivery` remembers a webhook delivery once: the second time it is `Duplicate`.
/// - `claim_due` returns non-terminal jobs whose `next_check_at` or deadline has come and whose
///   lease is free or expired, and leases them to the worker; two workers never claim the same
///   job at once.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Writes a new job and takes its hold, atomically.
    async fn create(&self, job: &Job, hold: &Reservation) -> Result<CreditHold>;

    /// Reads a job.
    async fn job(&self, id: &JobId) -> Result<Job>;

    /// Writes a job if it is still at the expected version and state; returns it as stored.
    async fn update(&self, update: &JobUpdate) -> Result<Job>;

    /// Finds the job a provider request belongs to: the job's current request, or one of an
    /// earlier attempt (so a late delivery for it is recognised and absorbed).
    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Job>>;

    /// A user's jobs, newest first, at most `limit`.
    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>>;

    /// Remembers a webhook delivery; says whether it was new.
    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome>;

    /// Leases the jobs that need a worker now.
    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>>;

    /// A stream of every job's events from now on.
    async fn watch(&self) -> Result<BoxStream<'static, JobEvent>>;
}
