use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::job::{
    ClaimRequest, DeliveryOutcome, DeliveryRecord, Job, JobEvent, JobUpdate, LeaseRenewal,
};
use crate::ledger::{CreditHold, Reservation};

/// Durable generation jobs.
///
/// Contract (checked by [`crate::testing::job_store_suite`]):
/// - `create` writes the job and takes its credit hold in one transaction, on the ledger of the
///   same backend's [`crate::QuotaStore`]: both or neither. A short balance fails with
///   [`crate::Error::Insufficient`] (the daily cap with [`crate::Error::DailyCapReached`]) and
///   writes no job; a job id seen before is [`crate::Error::AlreadyExists`]. This is the only
///   way a hold is taken.
/// - `update` is a compare-and-set: it applies only when the stored job still has the expected
///   version and state, bumps the version by one, and otherwise fails with
///   [`crate::Error::LostRace`] (or [`crate::Error::NotFound`]) changing nothing. Its
///   `end_hold` is the only way a hold ends: a hold already ended the other way fails the
///   update with [`crate::Error::NotAllowed`]; its `delivery`, seen before, with
///   [`crate::Error::AlreadyExists`]. Either way nothing is written.
/// - Every successful `create` and `update` publishes the job's [`JobEvent`] to `watch`ers,
///   across processes where the backend is shared.
/// - `job_by_provider_request` finds a job by any request id it has had at that provider.
/// - `record_delivery` remembers a webhook delivery once: the second time it is `Duplicate`.
/// - `claim_due` returns non-terminal jobs whose `next_check_at` or deadline has come and whose
///   lease is free or expired, and leases them to the worker; two workers never claim the same
///   job at once.
/// - `renew_lease` extends a lease its worker still holds on a non-terminal job, without
///   changing the job's version; it says `false` when the lease is no longer that worker's.
///
/// Alert claims and provider cooling, shared by the same processes, are a store's other small
/// trait, [`crate::AlertStore`].
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
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

    /// Every user's jobs created in `from..to`, oldest first (reports).
    async fn jobs_created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Job>>;

    /// Remembers a webhook delivery; says whether it was new.
    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome>;

    /// Leases the jobs that need a worker now.
    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>>;

    /// Extends a lease the worker holds; `false` when it holds it no more.
    async fn renew_lease(&self, renewal: &LeaseRenewal) -> Result<bool>;

    /// A stream of every job's events from now on.
    async fn watch(&self) -> Result<BoxStream<'static, JobEvent>>;

    /// A stream of one job's events from now on. The default filters [`JobStore::watch`];
    /// stores deliver only the job's events (an [`crate::EventHub`] does), so many
    /// subscribers each following one job do not each read every job's events.
    async fn watch_job(&self, job: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        use futures::StreamExt;
        let job = job.clone();
        Ok(self
            .watch()
            .await?
            .filter(move |e| futures::future::ready(e.job == job))
            .boxed())
    }
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: JobStore + ?Sized> JobStore for std::sync::Arc<T> {
    async fn create(&self, job: &Job, hold: &Reservation) -> Result<CreditHold> {
        (**self).create(job, hold).await
    }

    async fn job(&self, id: &JobId) -> Result<Job> {
        (**self).job(id).await
    }

    async fn update(&self, update: &JobUpdate) -> Result<Job> {
        (**self).update(update).await
    }

    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Job>> {
        (**self).job_by_provider_request(provider, request_id).await
    }

    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>> {
        (**self).jobs_for_user(user, limit).await
    }

    async fn jobs_created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Job>> {
        (**self).jobs_created_between(from, to).await
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome> {
        (**self).record_delivery(delivery).await
    }

    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>> {
        (**self).claim_due(claim).await
    }

    async fn renew_lease(&self, renewal: &LeaseRenewal) -> Result<bool> {
        (**self).renew_lease(renewal).await
    }

    async fn watch(&self) -> Result<BoxStream<'static, JobEvent>> {
        (**self).watch().await
    }

    async fn watch_job(&self, job: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        (**self).watch_job(job).await
    }
}
