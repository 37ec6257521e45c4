//! Paid submits are never doubled: every way a submit's outcome can be unknown (its answer
//! lost, a time-out, a crash between the call and the write) is reconciled, by the attempt's
//! job-named webhook or the provider's lookup, before anything is sent again. And webhook
//! deliveries are never lost to a failed write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use jilo_core::testing::{SimFailure, SimProvider, SIM_MODEL};
use jilo_core::{
    AlertClaim, Balance, CachedSearch, CancelOutcome, ClaimRequest, CreditHold, DeliveryOutcome,
    DeliveryRecord, Error, Grant, GrantOutcome, InMemoryStore, Job, JobEvent, JobId, JobState,
    JobStore, JobUpdate, LeaseRenewal, LedgerEntry, ModelSpec, Policy, Pricing, ProviderBalance,
    ProviderCooling, ProviderId, ProviderStatus, ProviderVideo, QuotaStore, Reservation,
    StatusQuery, Studio, Submission, SubmissionKey, SubmissionSearch, SubmitRequest, Timestamp,
    TokioClock, TrendCache, UserId, VideoProvider, VideoRequest, WebhookDelivery, WebhookEvent,
};

const HOOKS: &str = "https://host.example/webhooks";

fn policy() -> Policy {
    Policy {
        pricing: Pricing::new().with_price(SIM_MODEL, 5, 15),
        webhook_base_url: Some(HOOKS.to_owned()),
        ..Policy::default()
    }
}

fn studio<
    S: QuotaStore
        + JobStore
        + jilo_core::AlertStore
        + TrendCache
        + jilo_core::PublicationStore
        + 'static,
>(
    provider: Arc<dyn VideoProvider>,
    store: Arc<S>,
) -> Studio {
    studio_on(provider, store, TokioClock::new())
}

/// A Studio on this clock: every Studio of one test shares the test's clock (two
/// `TokioClock::new()` anchor at two wall times, apart by however busy the machine is).
fn studio_on<
    S: QuotaStore
        + JobStore
        + jilo_core::AlertStore
        + TrendCache
        + jilo_core::PublicationStore
        + 'static,
>(
    provider: Arc<dyn VideoProvider>,
    store: Arc<S>,
    clock: TokioClock,
) -> Studio {
    Studio::builder()
        .provider(provider)
        .store(store)
        .clock(Arc::new(clock))
        .policy(policy())
        .worker_name("worker-1")
        .build()
        .unwrap()
}

async fn user(store: &impl QuotaStore, name: &str) -> UserId {
    let user = UserId::new(name);
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    user
}

fn request() -> VideoRequest {
    VideoRequest::new("A heron lifting off a misty river at dawn", SIM_MODEL, 5)
}

fn kinds(entries: &[LedgerEntry]) -> Vec<&'static str> {
    entries.iter().map(|e| e.kind.as_str()).collect()
}

/// The delivery a host's route `…/webhooks/sim/{job}/{attempt}` hands to the Studio.
fn at_url(delivery: WebhookDelivery, job: &JobId, attempt: u32) -> WebhookDelivery {
    let url = format!("{HOOKS}/sim/{job}/{attempt}");
    let mut tail = url.rsplit('/');
    let (attempt, job) = (tail.next().unwrap(), tail.next().unwrap());
    delivery.for_submission(SubmissionKey::from_route(job, attempt).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_found_by_the_providers_lookup_and_billed_once() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.enable_lookup();
    sim.fail_next_submits(SimFailure::AnswerLost, 1);
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(sim.clone(), store.clone());
    let ana = user(&*store, "ana").await;

    let id = studio.generate(&ana, request()).await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.pending_submit.as_ref().map(|p| p.attempt), Some(1));
    assert_eq!(job.stage.as_deref(), Some("confirming the submission"));
    assert_eq!(sim.billed(), 1, "the provider accepted (and bills) it");
    let sent = sim.submissions();
    assert_eq!(sent[0].attempt, 1);
    assert_eq!(sent[0].idempotency_key(), format!("jilo-{id}-1"));
    assert_eq!(
        sent[0].webhook_url.as_deref(),
        Some(format!("{HOOKS}/sim/{id}/1").as_str())
    );

    // Within the grace window the worker waits for the attempt's webhook.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(studio.tick().await.unwrap().claimed, 0);
    // Then it asks the provider, which has it: the same attempt goes on.
    tokio::time::advance(studio.policy().submit_grace).await;
    assert_eq!(studio.tick().await.unwrap().advanced, 1);
    let job = studio.job(&id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Submitted, 1));
    assert!(job.pending_submit.is_none());
    let rid = job.provider_request_id.clone().unwrap();
    assert_eq!(
        sim.request_for_key(&format!("jilo-{id}-1")),
        Some(rid.clone())
    );

    let done = sim.succeeded(&rid, "https://cdn.example/heron.mp4");
    studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    studio.tick().await.unwrap();
    assert_eq!(studio.job(&id).await.unwrap().state, JobState::Completed);
    assert_eq!(sim.submissions().len(), 1, "one submit in all");
    assert_eq!(sim.billed(), 1);
    assert_eq!(
        kinds(&store.history(&ana).await.unwrap()),
        ["grant", "hold", "settle"]
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_lookup_the_job_named_webhook_completes_the_attempt() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.fail_next_submits(SimFailure::AnswerLost, 1);
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(sim.clone(), store.clone());
    let bo = user(&*store, "bo").await;
    let id = studio.generate(&bo, request()).await.unwrap();

    // Past the grace window the provider cannot say; the job keeps waiting, nothing is resent.
    for _ in 0..5 {
        tokio::time::advance(studio.policy().submit_grace).await;
        studio.tick().await.unwrap();
    }
    let job = studio.job(&id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Queued, 1));
    assert_eq!(sim.submissions().len(), 1);

    // The provider's webhook names a request the Studio never learnt; without the URL's job
    // it finds nothing, with it it completes the attempt.
    let rid = sim.request_for_key(&format!("jilo-{id}-1")).unwrap();
    let plain = sim.succeeded(&rid, "https://cdn.example/bo.mp4");
    match studio.handle_webhook(&"sim".into(), &plain).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a delivery for an unknown request without a job URL: {other:?}"),
    }
    let named = at_url(sim.succeeded(&rid, "https://cdn.example/bo.mp4"), &id, 1);
    let out = studio.handle_webhook(&"sim".into(), &named).await.unwrap();
    assert!(out.applied);
    assert_eq!(out.state, JobState::Storing);
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.provider_request_id.as_deref(), Some(rid.as_str()));
    // The same delivery again is a duplicate.
    let again = studio.handle_webhook(&"sim".into(), &named).await.unwrap();
    assert!(again.duplicate && !again.applied);
    studio.tick().await.unwrap();
    assert_eq!(studio.job(&id).await.unwrap().state, JobState::Completed);
    assert_eq!((sim.submissions().len(), sim.billed()), (1, 1));
    assert_eq!(
        kinds(&store.history(&bo).await.unwrap()),
        ["grant", "hold", "settle"]
    );

    // A URL naming another job than the request belongs to is refused.
    let other = studio.generate(&bo, request()).await.unwrap();
    let forged = at_url(sim.succeeded(&rid, "https://cdn.example/x.mp4"), &other, 1);
    match studio.handle_webhook(&"sim".into(), &forged).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("a request id of another job must be refused, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_submit_known_lost_is_sent_again_and_billed_once() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.enable_lookup();
    sim.fail_next_submits(SimFailure::TimedOut, 1);
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(sim.clone(), store.clone());
    let cy = user(&*store, "cy").await;
    let id = studio.generate(&cy, request()).await.unwrap();
    assert_eq!(studio.job(&id).await.unwrap().state, JobState::Queued);
    assert_eq!(
        sim.billed(),
        0,
        "the time-out came before the provider had it"
    );

    tokio::time::advance(studio.policy().submit_grace).await;
    studio.tick().await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Submitted, 2));
    let sent = sim.submissions();
    assert_eq!(
        sent.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        [1, 2],
        "resent as the next attempt only once the provider said it never had the first"
    );
    assert_eq!(sim.billed(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_submit_refused_before_sending_is_retried_as_before() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.fail_next_submits(SimFailure::Unavailable, 1);
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(sim.clone(), store.clone());
    let dee = user(&*store, "dee").await;
    let id = studio.generate(&dee, request()).await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert!(
        job.pending_submit.is_none(),
        "nothing can be at the provider"
    );
    tokio::time::advance(studio.policy().retry_backoff.max).await;
    studio.tick().await.unwrap();
    assert_eq!(
        studio.job(&id).await.unwrap().state,
        JobState::Submitted,
        "resubmitted after the back-off, no reconciliation needed"
    );
    assert_eq!(sim.submissions().len(), 2);
}

/// A provider whose submit (or, with `gate_status`, status) answers only when the test lets
/// it: stands for a call in flight.
struct Gated {
    sim: Arc<SimProvider>,
    gate: tokio::sync::Semaphore,
    gate_status: bool,
}

#[async_trait]
impl VideoProvider for Gated {
    fn id(&self) -> ProviderId {
        self.sim.id()
    }
    fn models(&self) -> Vec<ModelSpec> {
        self.sim.models()
    }
    fn capabilities(&self) -> jilo_core::Capabilities {
        self.sim.capabilities()
    }
    async fn submit(&self, request: &SubmitRequest) -> jilo_core::Result<Submission> {
        let answer = self.sim.submit(request).await;
        let _permit = self.gate.acquire().await;
        answer
    }
    async fn status(&self, q: &StatusQuery) -> jilo_core::Result<ProviderStatus> {
        if self.gate_status {
            let _permit = self.gate.acquire().await;
        }
        self.sim.status(q).await
    }
    async fn result(&self, q: &StatusQuery) -> jilo_core::Result<ProviderVideo> {
        self.sim.result(q).await
    }
    async fn cancel(&self, q: &StatusQuery) -> jilo_core::Result<CancelOutcome> {
        self.sim.cancel(q).await
    }
    async fn parse_webhook(&self, d: &WebhookDelivery) -> jilo_core::Result<WebhookEvent> {
        self.sim.parse_webhook(d).await
    }
    async fn find_submission(&self, key: &SubmissionKey) -> jilo_core::Result<SubmissionSearch> {
        self.sim.find_submission(key).await
    }
    async fn balance(&self) -> jilo_core::Result<Option<ProviderBalance>> {
        self.sim.balance().await
    }
}

/// The process dies between the provider accepting and the `Accepted` write: the next
/// worker finds the attempt pending, asks the provider, and goes on with it.
#[tokio::test(start_paused = true)]
async fn a_crash_between_the_call_and_the_write_is_reconciled() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.enable_lookup();
    let gated = Arc::new(Gated {
        sim: sim.clone(),
        gate: tokio::sync::Semaphore::new(0),
        gate_status: false,
    });
    let store = Arc::new(InMemoryStore::new());
    let clock = TokioClock::new();
    let dying = studio_on(gated, store.clone(), clock);
    let eve = user(&*store, "eve").await;
    let call = tokio::spawn({
        let dying = dying.clone();
        let eve = eve.clone();
        async move { dying.generate(&eve, request()).await }
    });
    while sim.billed() == 0 {
        tokio::task::yield_now().await;
    }
    call.abort(); // the process is gone mid-call
    assert!(call.await.is_err());
    let id = store.jobs_for_user(&eve, 1).await.unwrap()[0].id.clone();
    let job = store.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.pending_submit.as_ref().map(|p| p.attempt), Some(1));

    // Another process's worker, once the lease is over.
    let next = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .clock(Arc::new(clock))
        .policy(policy())
        .worker_name("worker-2")
        .build()
        .unwrap();
    assert_eq!(next.tick().await.unwrap().claimed, 0, "the lease holds");
    tokio::time::advance(next.policy().lease + Duration::from_secs(1)).await;
    next.tick().await.unwrap();
    let job = next.job(&id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Submitted, 1));
    assert_eq!((sim.submissions().len(), sim.billed()), (1, 1));
    let rid = job.provider_request_id.unwrap();
    next.handle_webhook(
        &"sim".into(),
        &sim.succeeded(&rid, "https://cdn.example/e.mp4"),
    )
    .await
    .unwrap();
    next.tick().await.unwrap();
    assert_eq!(next.job(&id).await.unwrap().state, JobState::Completed);
    assert_eq!(
        kinds(&store.history(&eve).await.unwrap()),
        ["grant", "hold", "settle"]
    );
}

/// The provider's webhook beats its own HTTP answer: the job goes on from the webhook, and
/// the answer arriving after is recognised, not cancelled as an orphan.
#[tokio::test(start_paused = true)]
async fn a_webhook_before_the_submits_answer_is_applied_once() {
    let sim = Arc::new(SimProvider::new("sim"));
    let gated = Arc::new(Gated {
        sim: sim.clone(),
        gate: tokio::sync::Semaphore::new(0),
        gate_status: false,
    });
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(gated.clone(), store.clone());
    let fay = user(&*store, "fay").await;
    let call = tokio::spawn({
        let studio = studio.clone();
        let fay = fay.clone();
        async move { studio.generate(&fay, request()).await }
    });
    while sim.billed() == 0 {
        tokio::task::yield_now().await;
    }
    let id = store.jobs_for_user(&fay, 1).await.unwrap()[0].id.clone();
    let rid = sim.request_for_key(&format!("jilo-{id}-1")).unwrap();
    let running = ProviderStatus::Running {
        progress: Some(20),
        stage: None,
    };
    let early = at_url(sim.webhook(&rid, running), &id, 1);
    let out = studio.handle_webhook(&"sim".into(), &early).await.unwrap();
    assert!(out.applied);
    assert_eq!(out.state, JobState::Running);
    gated.gate.add_permits(1);
    assert_eq!(call.await.unwrap().unwrap(), id);
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.provider_request_id.as_deref(), Some(rid.as_str()));
    assert!(sim.cancels().is_empty(), "the answer is not an orphan");
}

#[tokio::test(start_paused = true)]
async fn a_submission_in_doubt_cannot_be_cancelled_yet() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.fail_next_submits(SimFailure::AnswerLost, 1);
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(sim.clone(), store.clone());
    let gus = user(&*store, "gus").await;
    let id = studio.generate(&gus, request()).await.unwrap();
    match studio.cancel(&gus, &id).await {
        Err(Error::NotAllowed { .. }) => {}
        other => panic!("cancelling a submission in doubt must wait, got {other:?}"),
    }
    assert_eq!(studio.balance(&gus).await.unwrap().held, 15);
}

/// The in-memory store, failing the next transition that carries a webhook delivery.
#[derive(Debug)]
struct Flaky {
    inner: InMemoryStore,
    fail_next: AtomicBool,
    /// The next write that times a job out first sees the result arrive (written as a
    /// webhook's transition would: storing, with the copy's own deadline).
    result_beats_timeout: AtomicBool,
}

#[async_trait]
impl QuotaStore for Flaky {
    async fn grant(&self, g: &Grant) -> jilo_core::Result<GrantOutcome> {
        self.inner.grant(g).await
    }
    async fn hold(&self, job: &JobId) -> jilo_core::Result<CreditHold> {
        self.inner.hold(job).await
    }
    async fn balance(&self, user: &UserId) -> jilo_core::Result<Balance> {
        self.inner.balance(user).await
    }
    async fn statement(
        &self,
        user: &UserId,
        at: Timestamp,
        period_start: Timestamp,
    ) -> jilo_core::Result<jilo_core::CreditStatement> {
        self.inner.statement(user, at, period_start).await
    }
    async fn expire_credits(&self, now: Timestamp) -> jilo_core::Result<u32> {
        self.inner.expire_credits(now).await
    }
    async fn expire_user_credits(&self, user: &UserId, now: Timestamp) -> jilo_core::Result<u32> {
        self.inner.expire_user_credits(user, now).await
    }
    async fn history_page(
        &self,
        user: &UserId,
        query: &jilo_core::HistoryQuery,
    ) -> jilo_core::Result<jilo_core::HistoryPage> {
        self.inner.history_page(user, query).await
    }
    async fn history(&self, user: &UserId) -> jilo_core::Result<Vec<LedgerEntry>> {
        self.inner.history(user).await
    }
}

#[async_trait]
impl JobStore for Flaky {
    async fn create(&self, job: &Job, hold: &Reservation) -> jilo_core::Result<CreditHold> {
        self.inner.create(job, hold).await
    }
    async fn job(&self, id: &JobId) -> jilo_core::Result<Job> {
        self.inner.job(id).await
    }
    async fn update(&self, update: &JobUpdate) -> jilo_core::Result<Job> {
        if update.delivery.is_some() && self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(Error::storage("connection lost", true, None));
        }
        if update.job.state == JobState::TimedOut
            && self.result_beats_timeout.swap(false, Ordering::SeqCst)
        {
            let current = self.inner.job(&update.job.id).await?;
            let mut storing = current.clone();
            storing.state = JobState::Storing;
            storing.deadline_at = update.job.updated_at.plus(Duration::from_secs(15 * 60));
            storing.video_url = Some("https://cdn.example/just-made.mp4".into());
            self.inner
                .update(&JobUpdate::new(&current, storing))
                .await?;
        }
        self.inner.update(update).await
    }
    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> jilo_core::Result<Option<Job>> {
        self.inner
            .job_by_provider_request(provider, request_id)
            .await
    }
    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> jilo_core::Result<Vec<Job>> {
        self.inner.jobs_for_user(user, limit).await
    }
    async fn jobs_created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> jilo_core::Result<Vec<Job>> {
        self.inner.jobs_created_between(from, to).await
    }
    async fn record_delivery(&self, d: &DeliveryRecord) -> jilo_core::Result<DeliveryOutcome> {
        self.inner.record_delivery(d).await
    }
    async fn claim_due(&self, claim: &ClaimRequest) -> jilo_core::Result<Vec<Job>> {
        self.inner.claim_due(claim).await
    }
    async fn renew_lease(&self, renewal: &LeaseRenewal) -> jilo_core::Result<bool> {
        self.inner.renew_lease(renewal).await
    }
    async fn watch(&self) -> jilo_core::Result<BoxStream<'static, JobEvent>> {
        self.inner.watch().await
    }
}

#[async_trait]
impl jilo_core::AlertStore for Flaky {
    async fn claim_alert(&self, claim: &AlertClaim) -> jilo_core::Result<bool> {
        self.inner.claim_alert(claim).await
    }
    async fn cool_provider(&self, cooling: &ProviderCooling) -> jilo_core::Result<()> {
        self.inner.cool_provider(cooling).await
    }
    async fn cooling_providers(&self, now: Timestamp) -> jilo_core::Result<Vec<ProviderId>> {
        self.inner.cooling_providers(now).await
    }
}

#[async_trait]
impl TrendCache for Flaky {
    async fn cached_search(&self, key: &str) -> jilo_core::Result<Option<CachedSearch>> {
        self.inner.cached_search(key).await
    }
    async fn store_search(&self, key: &str, search: &CachedSearch) -> jilo_core::Result<()> {
        self.inner.store_search(key, search).await
    }
    async fn cached_analysis(
        &self,
        platform: jilo_core::Platform,
        video_id: &str,
    ) -> jilo_core::Result<Option<jilo_core::ViralAnalysis>> {
        self.inner.cached_analysis(platform, video_id).await
    }
    async fn store_analysis(
        &self,
        platform: jilo_core::Platform,
        video_id: &str,
        analysis: &jilo_core::ViralAnalysis,
        at: Timestamp,
    ) -> jilo_core::Result<()> {
        self.inner
            .store_analysis(platform, video_id, analysis, at)
            .await
    }
    async fn claim_source_run(
        &self,
        claim: &jilo_core::SourceRunClaim,
    ) -> jilo_core::Result<jilo_core::SourceRunState> {
        self.inner.claim_source_run(claim).await
    }
    async fn record_source_run(
        &self,
        key: &str,
        owner: &str,
        run_id: &str,
        until: Timestamp,
    ) -> jilo_core::Result<()> {
        self.inner
            .record_source_run(key, owner, run_id, until)
            .await
    }
    async fn end_source_run(
        &self,
        key: &str,
        owner: &str,
        run_id: Option<String>,
    ) -> jilo_core::Result<()> {
        self.inner.end_source_run(key, owner, run_id).await
    }
}

#[async_trait]
impl jilo_core::PublicationStore for Flaky {
    async fn begin_publication(
        &self,
        p: &jilo_core::Publication,
    ) -> jilo_core::Result<jilo_core::PublicationBegun> {
        self.inner.begin_publication(p).await
    }
    async fn claim_publication(
        &self,
        claim: &jilo_core::PublicationClaim,
    ) -> jilo_core::Result<Option<jilo_core::Publication>> {
        self.inner.claim_publication(claim).await
    }
    async fn save_upload(&self, checkpoint: &jilo_core::UploadCheckpoint) -> jilo_core::Result<()> {
        self.inner.save_upload(checkpoint).await
    }
    async fn renew_publication(
        &self,
        held: &jilo_core::HeldPublication,
        until: Timestamp,
    ) -> jilo_core::Result<()> {
        self.inner.renew_publication(held, until).await
    }
    async fn finish_publication(
        &self,
        held: &jilo_core::HeldPublication,
        outcome: &jilo_core::PublicationOutcome,
    ) -> jilo_core::Result<jilo_core::Publication> {
        self.inner.finish_publication(held, outcome).await
    }
    async fn note_publication(
        &self,
        key: &jilo_core::PublicationKey,
        notes: &[String],
    ) -> jilo_core::Result<()> {
        self.inner.note_publication(key, notes).await
    }
    async fn release_publication(
        &self,
        held: &jilo_core::HeldPublication,
    ) -> jilo_core::Result<()> {
        self.inner.release_publication(held).await
    }
    async fn publication(
        &self,
        key: &jilo_core::PublicationKey,
    ) -> jilo_core::Result<Option<jilo_core::Publication>> {
        self.inner.publication(key).await
    }
    async fn publications_of(&self, job: &JobId) -> jilo_core::Result<Vec<jilo_core::Publication>> {
        self.inner.publications_of(job).await
    }
    async fn stalled_publications(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> jilo_core::Result<Vec<jilo_core::Publication>> {
        self.inner.stalled_publications(now, limit).await
    }
    async fn publications_due_for_stats(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> jilo_core::Result<Vec<jilo_core::Publication>> {
        self.inner.publications_due_for_stats(before, limit).await
    }
    async fn record_stats(&self, reading: &jilo_core::StatsReading) -> jilo_core::Result<()> {
        self.inner.record_stats(reading).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_webhook_whose_write_failed_is_applied_on_the_next_delivery() {
    let sim = Arc::new(SimProvider::new("sim"));
    let store = Arc::new(Flaky {
        inner: InMemoryStore::new(),
        fail_next: AtomicBool::new(false),
        result_beats_timeout: AtomicBool::new(false),
    });
    let studio = studio(sim.clone(), store.clone());
    let hal = user(&*store, "hal").await;
    let id = studio.generate(&hal, request()).await.unwrap();
    let rid = studio.job(&id).await.unwrap().provider_request_id.unwrap();
    let before = studio.job(&id).await.unwrap();

    let delivery = sim.succeeded(&rid, "https://cdn.example/hal.mp4");
    store.fail_next.store(true, Ordering::SeqCst);
    match studio.handle_webhook(&"sim".into(), &delivery).await {
        Err(e) => assert_eq!(e.kind(), jilo_core::ErrorKind::Storage),
        Ok(out) => panic!("the failed write must fail the webhook, got {out:?}"),
    }
    assert_eq!(studio.job(&id).await.unwrap(), before, "nothing changed");
    // The provider delivers again (same delivery): applied, not taken for a duplicate.
    let out = studio
        .handle_webhook(&"sim".into(), &delivery)
        .await
        .unwrap();
    assert!(out.applied && !out.duplicate);
    studio.tick().await.unwrap();
    assert_eq!(studio.job(&id).await.unwrap().state, JobState::Completed);
    assert_eq!(
        kinds(&store.history(&hal).await.unwrap()),
        ["grant", "hold", "settle"]
    );
}

/// Two workers on one store and one clock, polling (no webhook URL): `slow`, whose status
/// calls wait at `slow_poller`'s gate, and `other`, on the sim directly.
struct TwoWorkers {
    sim: Arc<SimProvider>,
    slow_poller: Arc<Gated>,
    store: Arc<InMemoryStore>,
    slow: Studio,
    other: Studio,
}

fn two_workers() -> TwoWorkers {
    let sim = Arc::new(SimProvider::new("sim"));
    let slow_poller = Arc::new(Gated {
        sim: sim.clone(),
        gate: tokio::sync::Semaphore::new(0),
        gate_status: true,
    });
    let store = Arc::new(InMemoryStore::new());
    let mut no_hooks = policy();
    no_hooks.webhook_base_url = None;
    let clock = TokioClock::new();
    let build = |provider: Arc<dyn VideoProvider>, name: &str| {
        Studio::builder()
            .provider(provider)
            .store(store.clone())
            .clock(Arc::new(clock))
            .policy(no_hooks.clone())
            .worker_name(name)
            .build()
            .unwrap()
    };
    let slow = build(slow_poller.clone(), "slow");
    let other = build(sim.clone(), "other");
    TwoWorkers {
        sim,
        slow_poller,
        store,
        slow,
        other,
    }
}

/// A poll in flight while the job moves on to another attempt: its answer about the old
/// request is dropped, not applied to the new one.
#[tokio::test(start_paused = true)]
async fn a_stale_poll_answer_never_touches_a_newer_attempt() {
    let TwoWorkers {
        sim,
        slow_poller,
        store,
        slow,
        other,
    } = two_workers();
    let ida = user(&*store, "ida").await;
    let id = other.generate(&ida, request()).await.unwrap();
    let first = other.job(&id).await.unwrap().provider_request_id.unwrap();

    // The slow worker starts polling the first request and hangs in the call.
    tokio::time::advance(other.policy().poll_interval).await;
    let polling = tokio::spawn({
        let slow = slow.clone();
        async move { slow.tick().await }
    });
    tokio::task::yield_now().await;
    // Meanwhile the provider reports the first request failed; the job is resubmitted.
    let failed = ProviderStatus::Failed {
        reason: "GPU fault".into(),
        class: jilo_core::FailureClass::Retryable,
    };
    other
        .handle_webhook(&"sim".into(), &sim.webhook(&first, failed))
        .await
        .unwrap();
    tokio::time::advance(other.policy().retry_backoff.max).await;
    other.tick().await.unwrap();
    let moved = other.job(&id).await.unwrap();
    assert_eq!((moved.state, moved.attempts), (JobState::Submitted, 2));
    let second = moved.provider_request_id.clone().unwrap();
    assert_ne!(first, second);

    // The slow poll answers, about the first request: dropped.
    slow_poller.gate.add_permits(10);
    polling.await.unwrap().unwrap();
    let job = other.job(&id).await.unwrap();
    assert_eq!(
        (job.state, job.attempts, job.provider_request_id.as_deref()),
        (JobState::Submitted, 2, Some(second.as_str())),
        "the second attempt goes on"
    );
    assert_eq!(sim.submissions().len(), 2);
}

/// A submit that never answers does not pin its job: after the call time-out the attempt is
/// in doubt (reconciled, not resent) and the lease is given back.
#[tokio::test(start_paused = true)]
async fn a_hung_submit_gives_its_job_back_after_the_call_timeout() {
    let sim = Arc::new(SimProvider::new("sim"));
    let hung = Arc::new(Gated {
        sim: sim.clone(),
        gate: tokio::sync::Semaphore::new(0),
        gate_status: false,
    });
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(hung, store.clone());
    let jo = user(&*store, "jo").await;
    let started = tokio::time::Instant::now();
    let id = studio.generate(&jo, request()).await.unwrap();
    assert!(started.elapsed() >= studio.policy().call_timeout);
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.pending_submit.as_ref().map(|p| p.attempt), Some(1));
    assert_eq!(job.lease_owner, None, "the lease is given back");
    assert!(job.failure.unwrap().contains("did not answer"));
    assert_eq!(sim.submissions().len(), 1);
}

/// A poll that learns nothing new gives the lease back and looks again at the polling
/// interval, not when the lease would have expired.
#[tokio::test(start_paused = true)]
async fn a_poll_that_changes_nothing_releases_the_job() {
    let sim = Arc::new(SimProvider::new("sim"));
    let store = Arc::new(InMemoryStore::new());
    let mut no_hooks = policy();
    no_hooks.webhook_base_url = None;
    let studio = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .clock(Arc::new(TokioClock::new()))
        .policy(no_hooks)
        .build()
        .unwrap();
    let kai = user(&*store, "kai").await;
    let id = studio.generate(&kai, request()).await.unwrap();
    let created = studio.job(&id).await.unwrap();
    let (rid, t0) = (created.provider_request_id.unwrap(), created.created_at);
    let running = ProviderStatus::Running {
        progress: Some(50),
        stage: None,
    };
    sim.set_status(&rid, running);
    for round in 0..3 {
        tokio::time::advance(studio.policy().poll_interval).await;
        let report = studio.tick().await.unwrap();
        assert_eq!(report.claimed, 1, "round {round}: polled every interval");
        let job = studio.job(&id).await.unwrap();
        assert_eq!((job.state, job.progress), (JobState::Running, 50));
        assert_eq!(job.lease_owner, None, "round {round}: lease given back");
        let polled_at = t0.plus(studio.policy().poll_interval * (round + 1));
        assert_eq!(
            job.next_check_at,
            Some(polled_at.plus(studio.policy().poll_interval)),
            "round {round}: next look one polling interval after this one"
        );
    }
}

/// A host that refunds a running job's hold behind the Studio's back (writing the job store
/// directly; `QuotaStore` has no refund) cannot end with a completed job on a refunded hold:
/// the completing transition fails loudly, typed, and changes nothing.
#[tokio::test(start_paused = true)]
async fn a_hold_refunded_behind_the_studios_back_never_completes() {
    let sim = Arc::new(SimProvider::new("sim"));
    let store = Arc::new(InMemoryStore::new());
    let studio = studio(sim.clone(), store.clone());
    let lin = user(&*store, "lin").await;
    let id = studio.generate(&lin, request()).await.unwrap();
    let running = studio.job(&id).await.unwrap();
    let mut refund = JobUpdate::new(&running, running.clone());
    refund.end_hold = Some(jilo_core::HoldState::Refunded);
    store.update(&refund).await.unwrap();
    assert_eq!(
        store.hold(&id).await.unwrap().state,
        jilo_core::HoldState::Refunded
    );

    let rid = running.provider_request_id.unwrap();
    let done = sim.succeeded(&rid, "https://cdn.example/lin.mp4");
    studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    let report = studio.tick().await.unwrap();
    assert_eq!(report.errors, 1, "the completing transition fails loudly");
    let job = studio.job(&id).await.unwrap();
    assert_ne!(job.state, JobState::Completed);
    assert_eq!(
        store.hold(&id).await.unwrap().state,
        jilo_core::HoldState::Refunded
    );
    let last = JobUpdate {
        end_hold: Some(jilo_core::HoldState::Settled),
        ..JobUpdate::new(&job, job.clone())
    };
    match store.update(&last).await {
        Err(Error::NotAllowed { reason }) => assert!(reason.contains("refunded"), "{reason}"),
        other => panic!("settling a refunded hold must be NotAllowed, got {other:?}"),
    }
    let b = store.balance(&lin).await.unwrap();
    assert_eq!(
        (b.available, b.held, b.spent),
        (100, 0, 0),
        "nothing was charged twice"
    );
}

/// A provider answering 429 with `Retry-After: 2` is not asked again sooner, however short the
/// back-off; one that keeps answering 429 ends the job by the rules (the attempt limit: failed
/// and refunded), never a hang.
#[tokio::test(start_paused = true)]
async fn rate_limits_are_waited_out_and_end_the_job_by_the_rules() {
    let sim = Arc::new(SimProvider::new("sim"));
    sim.fail_all_submits(SimFailure::RateLimited);
    let store = Arc::new(InMemoryStore::new());
    let studio = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .clock(Arc::new(TokioClock::new()))
        .policy(Policy {
            retry_backoff: jilo_core::Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_millis(200),
            },
            ..policy()
        })
        .build()
        .unwrap();
    let max = user(&*store, "max").await;
    let id = studio.generate(&max, request()).await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    let waited = job.next_check_at.unwrap().as_millis() - job.updated_at.as_millis();
    assert!(
        waited >= 2_000,
        "Retry-After: 2 honoured, not the 200 ms back-off ({waited} ms)"
    );
    tokio::time::advance(Duration::from_millis(1_500)).await;
    assert_eq!(
        studio.tick().await.unwrap().claimed,
        0,
        "not before the two seconds"
    );
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(3)).await;
        studio.tick().await.unwrap();
    }
    let job = studio.job(&id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Failed, 3));
    assert_eq!(sim.submissions().len(), 3);
    let b = studio.balance(&max).await.unwrap();
    assert_eq!((b.available, b.held), (100, 0), "refunded");
}

/// While a worker's provider call on a job is in flight, a webhook that moves the job leaves
/// that worker's lease in place: no other worker claims the job until the call ends.
#[tokio::test(start_paused = true)]
async fn a_webhook_during_a_workers_call_keeps_its_lease() {
    let TwoWorkers {
        sim,
        slow_poller,
        store,
        slow,
        other,
    } = two_workers();
    let user = user(&*store, "lease-keeper").await;
    let id = other.generate(&user, request()).await.unwrap();
    let rid = other.job(&id).await.unwrap().provider_request_id.unwrap();

    // The slow worker claims the job and hangs in its status call.
    tokio::time::advance(other.policy().poll_interval).await;
    let polling = tokio::spawn({
        let slow = slow.clone();
        async move { slow.tick().await }
    });
    // Readiness, not time: yield until the slow worker's claim is written.
    for _ in 0..10_000 {
        if other.job(&id).await.unwrap().lease_owner.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let leased = other.job(&id).await.unwrap();
    let owner = leased
        .lease_owner
        .clone()
        .expect("the slow worker holds the job");
    // A webhook moves the job meanwhile.
    let running = ProviderStatus::Running {
        progress: Some(40),
        stage: None,
    };
    other
        .handle_webhook(&"sim".into(), &sim.webhook(&rid, running))
        .await
        .unwrap();
    let moved = other.job(&id).await.unwrap();
    assert_eq!(moved.state, JobState::Running);
    assert_eq!(
        (moved.lease_owner.as_deref(), moved.lease_until),
        (Some(owner.as_str()), leased.lease_until),
        "the webhook left the worker's lease as it was"
    );
    // Another worker finds nothing to claim while the call is in flight.
    tokio::time::advance(other.policy().poll_interval).await;
    assert_eq!(other.tick().await.unwrap().claimed, 0);
    assert_eq!(
        other.job(&id).await.unwrap().lease_owner.as_deref(),
        Some(owner.as_str())
    );
    // The call ends; the job goes on.
    slow_poller.gate.add_permits(10);
    polling.await.unwrap().unwrap();
    assert_eq!(sim.submissions().len(), 1, "nothing was sent twice");
    assert!(!other.job(&id).await.unwrap().state.is_terminal());
}

/// A result that arrives while a worker times its job out wins: the worker's deadline, seen
/// before the job moved on, is dropped on the re-read (the copy has a deadline of its own),
/// so the video the provider just made (and billed) is copied, not refunded away.
#[tokio::test(start_paused = true)]
async fn a_result_arriving_during_a_timeout_is_kept() {
    let sim = Arc::new(SimProvider::new("sim"));
    let store = Arc::new(Flaky {
        inner: InMemoryStore::new(),
        fail_next: AtomicBool::new(false),
        result_beats_timeout: AtomicBool::new(false),
    });
    let studio = studio(sim.clone(), store.clone());
    let user = user(&*store, "late-result").await;
    let id = studio.generate(&user, request()).await.unwrap();
    tokio::time::advance(studio.policy().deadline + Duration::from_secs(1)).await;
    store.result_beats_timeout.store(true, Ordering::SeqCst);
    studio.tick().await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert!(
        !store.result_beats_timeout.load(Ordering::SeqCst),
        "the race was run"
    );
    assert!(
        matches!(job.state, JobState::Storing | JobState::Completed),
        "the result won: {:?} ({:?})",
        job.state,
        job.failure
    );
    assert_ne!(
        store.hold(&id).await.unwrap().state,
        jilo_core::HoldState::Refunded
    );
}
