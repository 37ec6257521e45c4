//! A store's capabilities as arguments: a store that keeps no expiring credits passes the lot
//! rules by refusing every expiring grant, and fails them if it takes one as lasting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use futures::stream::BoxStream;
use jilo_core::testing::{self, StoreCapabilities};
use jilo_core::{
    Balance, ClaimRequest, CreditHold, DeliveryOutcome, DeliveryRecord, Error, Grant, GrantOutcome,
    HistoryPage, HistoryQuery, InMemoryStore, Job, JobEvent, JobId, JobStore, JobUpdate,
    LeaseRenewal, LedgerEntry, ProviderId, QuotaStore, Reservation, Result, Timestamp, UserId,
};

/// The in-memory store with expiring credits refused, as a backend without lots would.
#[derive(Debug, Default)]
struct NoLots(InMemoryStore);

#[async_trait]
impl QuotaStore for NoLots {
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome> {
        if grant.expires_at.is_some() {
            return Err(Error::invalid(
                "expires_at",
                "this store keeps no expiring credits",
            ));
        }
        self.0.grant(grant).await
    }

    async fn hold(&self, job: &JobId) -> Result<CreditHold> {
        self.0.hold(job).await
    }

    async fn balance(&self, user: &UserId) -> Result<Balance> {
        self.0.balance(user).await
    }

    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>> {
        self.0.history(user).await
    }

    async fn statement(
        &self,
        user: &UserId,
        at: jilo_core::ids::Timestamp,
        period_start: jilo_core::ids::Timestamp,
    ) -> Result<jilo_core::ledger::CreditStatement> {
        self.0.statement(user, at, period_start).await
    }

    async fn expire_credits(&self, now: jilo_core::ids::Timestamp) -> Result<u32> {
        self.0.expire_credits(now).await
    }

    async fn expire_user_credits(
        &self,
        user: &UserId,
        now: jilo_core::ids::Timestamp,
    ) -> Result<u32> {
        self.0.expire_user_credits(user, now).await
    }

    async fn history_page(&self, user: &UserId, query: &HistoryQuery) -> Result<HistoryPage> {
        self.0.history_page(user, query).await
    }
}

#[async_trait]
impl JobStore for NoLots {
    async fn create(&self, job: &Job, hold: &Reservation) -> Result<CreditHold> {
        self.0.create(job, hold).await
    }

    async fn job(&self, id: &JobId) -> Result<Job> {
        self.0.job(id).await
    }

    async fn update(&self, update: &JobUpdate) -> Result<Job> {
        self.0.update(update).await
    }

    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Job>> {
        self.0.job_by_provider_request(provider, request_id).await
    }

    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>> {
        self.0.jobs_for_user(user, limit).await
    }

    async fn jobs_created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Job>> {
        self.0.jobs_created_between(from, to).await
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome> {
        self.0.record_delivery(delivery).await
    }

    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>> {
        self.0.claim_due(claim).await
    }

    async fn renew_lease(&self, renewal: &LeaseRenewal) -> Result<bool> {
        self.0.renew_lease(renewal).await
    }

    async fn watch(&self) -> Result<BoxStream<'static, JobEvent>> {
        self.0.watch().await
    }

    async fn watch_job(&self, job: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        self.0.watch_job(job).await
    }
}

/// A store that keeps no lots, told so, passes the lot rules: each checks the refusal.
#[tokio::test]
async fn a_store_without_lots_passes_the_lot_rules_by_refusing_expiring_grants() {
    let store = NoLots::default();
    testing::credit_lots_suite(&store, StoreCapabilities::ALL.without_expiring_credits()).await;
    // Its lasting grants and holds still work, and the other suites pass.
    testing::quota_store_suite(&store).await;
}

/// Told it keeps lots, the same store fails the first lot rule.
#[tokio::test]
#[should_panic(expected = "later grant failed")]
async fn a_store_without_lots_fails_the_lot_rules_when_it_claims_them() {
    // The first rule's first expiring grant is refused, and the rule names it.
    let store = NoLots::default();
    testing::lots::a_hold_draws_the_soonest_expiring_credits_first(&store, StoreCapabilities::ALL)
        .await;
}

/// A store that keeps lots, told it keeps none, fails: it takes an expiring grant it must
/// refuse.
#[tokio::test]
#[should_panic(expected = "a store without expiring credits refuses it")]
async fn a_store_with_lots_fails_the_refusal_rule() {
    testing::lots::expired_credits_are_never_held(
        &InMemoryStore::new(),
        StoreCapabilities::ALL.without_expiring_credits(),
    )
    .await;
}
