//! The Studio: the one object a host builds, which drives every job through the state machine.

mod builder;
mod discover;
mod driver;
mod effects;
mod plans;
mod publishing;
mod routing;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::alert::AlertKind;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::job::{ClaimRequest, DeliveryOutcome, DeliveryRecord, Job, JobEvent, JobState};
use crate::ledger::{Balance, Reservation};
use crate::machine::Input;
use crate::policy::Policy;
use crate::traits::{
    CreativeModel, JobStore, MediaStore, Moderator, Notifier, ProviderStatus, Publisher,
    QuotaStore, TrendSource, VideoProvider, WebhookDelivery,
};
use crate::video::{ModelSpec, VideoRequest};

pub use builder::StudioBuilder;
pub use discover::{DiscoverQuery, DiscoveredVideo, Discovery, PlatformFailure};
pub use plans::PlanAllowance;

use driver::{Follow, Mode, Observation};

/// A provider with the models it reported when the Studio was built.
pub(crate) struct RegisteredProvider {
    pub(crate) id: ProviderId,
    pub(crate) models: Vec<ModelSpec>,
    /// What it can do, read once when the Studio is built.
    pub(crate) capabilities: crate::traits::Capabilities,
    pub(crate) provider: Arc<dyn VideoProvider>,
}

pub(crate) struct Inner {
    pub(crate) providers: Vec<RegisteredProvider>,
    pub(crate) quota: Arc<dyn QuotaStore>,
    pub(crate) jobs: Arc<dyn JobStore>,
    pub(crate) trends: Arc<dyn crate::traits::TrendCache>,
    pub(crate) publications: Arc<dyn crate::traits::PublicationStore>,
    pub(crate) notifier: Arc<dyn Notifier>,
    pub(crate) moderator: Option<Arc<dyn Moderator>>,
    pub(crate) media: Option<Arc<dyn MediaStore>>,
    pub(crate) trend_sources: Vec<Arc<dyn TrendSource>>,
    pub(crate) creative: Option<Arc<dyn CreativeModel>>,
    pub(crate) publisher: Option<Arc<dyn Publisher>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Policy,
    pub(crate) worker: String,
    /// Wakes this process's [`Studio::run`] when a webhook left a job due at once.
    pub(crate) wake: tokio::sync::Notify,
    /// Numbers this process's lease tokens.
    pub(crate) lease_counter: std::sync::atomic::AtomicU64,
    /// Retryable submit failures in a row, per provider (the breaker's count).
    pub(crate) failures_in_a_row: std::sync::Mutex<std::collections::HashMap<ProviderId, u32>>,
    /// Whether this process is resuming stalled uploads now (one pass at a time).
    pub(crate) resuming_uploads: std::sync::atomic::AtomicBool,
    /// Every upload's progress in this process, for [`Studio::watch_uploads`].
    pub(crate) uploads: tokio::sync::broadcast::Sender<crate::publish::UploadUpdate>,
    /// The one follower of each job watched in this process ([`Studio::subscribe`]), shared
    /// by all its subscribers, with its number.
    pub(crate) followed: std::sync::Mutex<std::collections::HashMap<JobId, (u64, Arc<Follower>)>>,
}

/// Generates videos for users with exact credits: validates and moderates a request, holds the
/// credits, submits with failover, follows the job by webhook or polling, stores the video,
/// and settles or refunds the hold.
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`: share one across tasks and handlers.
/// Several processes can drive one shared store: every transition is a compare-and-set, and
/// workers claim jobs with leases.
#[derive(Clone)]
pub struct Studio {
    inner: Arc<Inner>,
}

impl fmt::Debug for Studio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Studio")
            .field(
                "providers",
                &self
                    .inner
                    .providers
                    .iter()
                    .map(|p| &p.id)
                    .collect::<Vec<_>>(),
            )
            .field("worker", &self.inner.worker)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// What [`Studio::handle_webhook`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookOutcome {
    /// The job the delivery concerns.
    pub job: JobId,
    /// The job's state afterwards.
    pub state: JobState,
    /// Whether the same delivery was seen before (and so ignored).
    pub duplicate: bool,
    /// Whether the delivery moved the job. A late delivery to a finished job is recorded but
    /// not applied.
    pub applied: bool,
}

/// One provider's costs on one UTC day ([`Studio::cost_report`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostLine {
    /// The provider the jobs ended on.
    pub provider: ProviderId,
    /// The UTC day the jobs were created on, as days since 1970-01-01.
    pub utc_day: i64,
    /// Jobs that ended on this provider.
    pub jobs: u64,
    /// Of those, jobs whose video was delivered.
    pub delivered: u64,
    /// Credits settled for them.
    pub credits_charged: i64,
    /// What the provider charged, in its currency's minor units.
    pub provider_cost_minor: i64,
    /// The provider's currency (ISO 4217).
    pub currency: String,
}

/// What one [`Studio::tick`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickReport {
    /// Jobs claimed.
    pub claimed: usize,
    /// Jobs that changed.
    pub advanced: usize,
    /// Jobs whose handling failed (logged; they are retried when their lease expires).
    pub errors: usize,
}

impl Studio {
    /// Starts composing a Studio.
    pub fn builder() -> StudioBuilder {
        StudioBuilder::default()
    }

    /// The policies in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Every model on offer, with the provider offering it, in failover order.
    pub fn models(&self) -> Vec<(ProviderId, ModelSpec)> {
        self.inner
            .providers
            .iter()
            .flat_map(|p| p.models.iter().map(|m| (p.id.clone(), m.clone())))
            .collect()
    }

    /// The credit ledger.
    pub fn quota_store(&self) -> &Arc<dyn QuotaStore> {
        &self.inner.quota
    }

    /// The job store.
    pub fn job_store(&self) -> &Arc<dyn JobStore> {
        &self.inner.jobs
    }

    /// The trend sources, for discovery.
    pub fn trend_sources(&self) -> &[Arc<dyn TrendSource>] {
        &self.inner.trend_sources
    }

    /// The creative model, if one was given.
    pub fn creative_model(&self) -> Option<&Arc<dyn CreativeModel>> {
        self.inner.creative.as_ref()
    }

    /// The publisher, if one was given.
    pub fn publisher(&self) -> Option<&Arc<dyn Publisher>> {
        self.inner.publisher.as_ref()
    }

    /// A user's balance.
    pub async fn balance(&self, user: &UserId) -> Result<Balance> {
        // Credits that expired by now are written off first (once per lot, by whoever comes
        // first: this read, a hold, or the worker).
        let now = self.inner.clock.now();
        self.inner.quota.expire_user_credits(user, now).await?;
        self.inner.quota.balance(user).await
    }

    /// Starts a generation and returns its job id once the job is handed to a provider (or
    /// scheduled for a retry).
    ///
    /// In order, each failing with nothing charged: the prompt must be 10 to 500 characters
    /// and the model, duration and aspect ratio offered by a provider
    /// ([`Error::InvalidInput`]); the moderator must allow the prompt ([`Error::Moderation`]
    /// naming the terms); the user must have the credits ([`Error::Insufficient`], also for a
    /// user never granted any, with 0 available; a user id that is blank, holds a control
    /// character or is longer than 256 bytes is [`Error::InvalidInput`]) and the
    /// daily cap must not be reached ([`Error::DailyCapReached`]). Then the job and its hold are
    /// written in one transaction and the job is submitted, failing over to the next provider
    /// when one is out of funds or rejects the key. A provider failure after that does not fail
    /// this call: the job records it and is retried, refunded or failed by the rules.
    pub async fn generate(&self, user: &UserId, request: VideoRequest) -> Result<JobId> {
        let inner = &self.inner;
        crate::ledger::check_user(user)?;
        request.validate_prompt()?;
        let (route, spec) = inner.route_for(&request).await?;
        if let Some(moderator) = &inner.moderator {
            let verdict = moderator.check(&request.prompt).await?;
            if !verdict.is_allowed() {
                return Err(Error::Moderation {
                    terms: verdict.flagged_terms,
                });
            }
        }
        let credits = inner
            .policy
            .pricing
            .credits_for(&spec, request.duration_secs)
            .ok_or_else(|| {
                Error::invalid(
                    "duration_secs",
                    format!(
                        "model `{}` has no price for {}s",
                        spec.id, request.duration_secs
                    ),
                )
            })?;
        let now = inner.clock.now();
        let lease_until = now.plus(inner.policy.lease);
        let token = inner.lease_token();
        let id = JobId::random();
        let mut job = Job {
            id: id.clone(),
            user: user.clone(),
            request,
            credits,
            state: JobState::Queued,
            version: 1,
            route,
            provider_index: 0,
            provider_request_id: None,
            attempts: 0,
            pending_submit: None,
            store_attempts: 0,
            provider_attempts: 0,
            progress: 0,
            stage: Some("queued".to_owned()),
            provider_cost: None,
            video_url: None,
            video_headers: Vec::new(),
            output: None,
            failure: None,
            failure_class: None,
            webhook: false,
            created_at: now,
            updated_at: now,
            deadline_at: now.plus(inner.policy.deadline),
            next_check_at: Some(lease_until),
            lease_owner: Some(token.clone()),
            lease_until: Some(lease_until),
        };
        let reservation = Reservation {
            user: user.clone(),
            job: id.clone(),
            credits,
            at: now,
            daily_cap: inner.policy.daily_generation_cap,
        };
        let span = tracing::info_span!(
            "generate",
            job = %id,
            user = %user,
            provider = %job.route.first().map(ProviderId::as_str).unwrap_or("-"),
            model = %job.request.model,
        );
        async {
            if let Err(e) = inner.jobs.create(&job, &reservation).await {
                if let Error::DailyCapReached { cap } = e {
                    inner
                        .alert(AlertKind::DailyCapReached { cap }, e.to_string())
                        .await;
                }
                return Err(e);
            }
            tracing::info!(credits, "job created, credits held");
            crate::telemetry::credits("held", credits);
            crate::telemetry::job_transition(JobState::Queued, job.route.first());
            job.version = 1;
            if let Err(e) = inner
                .drive(
                    job,
                    Input::Resume,
                    Observation::Nothing,
                    Mode::Worker,
                    &token,
                )
                .await
            {
                // The job and its hold exist; a worker resumes it when the lease expires.
                tracing::error!(error = %e, "submitting the job failed; a worker will resume it");
            }
            Ok(id)
        }
        .instrument(span)
        .await
    }

    /// Handles a webhook delivery for a provider and returns once its transition is stored.
    ///
    /// Verifies the signature on the raw bytes, finds the job (by the request id, or by the
    /// job and attempt the delivery's URL names when the request id was never learnt because
    /// the submit's answer was lost), and writes the transition together with the delivery's
    /// record: a failed write records nothing, so the provider's next delivery applies it, and
    /// a delivery seen before is reported as a duplicate. Nothing slow runs here: copying the
    /// video into media storage (and anything else that calls a service) is left to the
    /// workers ([`Studio::run`]), due at once.
    ///
    /// A bad signature is [`Error::Unauthorized`], an unknown provider or job
    /// [`Error::NotFound`], a request id belonging to another job than the URL names
    /// [`Error::InvalidInput`]; none changes anything. A late delivery to a finished job, or
    /// one about an earlier attempt, is recorded and absorbed: no credit changes.
    pub async fn handle_webhook(
        &self,
        provider: &ProviderId,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookOutcome> {
        let result = self.handle_delivery(provider, delivery).await;
        let outcome = match &result {
            Ok(o) if o.duplicate => "duplicate",
            Ok(o) if o.applied => "applied",
            Ok(_) => "absorbed",
            Err(e) => match e.kind() {
                ErrorKind::Unauthorized => "refused",
                ErrorKind::NotFound => "unknown",
                ErrorKind::InvalidInput => "invalid",
                _ => "failed",
            },
        };
        crate::telemetry::webhook(provider, outcome);
        result
    }

    async fn handle_delivery(
        &self,
        provider: &ProviderId,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookOutcome> {
        let inner = &self.inner;
        let registered = inner
            .provider(provider)
            .ok_or_else(|| Error::not_found("provider", provider))?;
        let event = registered.provider.parse_webhook(delivery).await?;
        let by_request = inner
            .jobs
            .job_by_provider_request(provider, &event.request_id)
            .await?;
        let by_url = by_request.is_none();
        let job = match (by_request, &delivery.submission) {
            (Some(job), Some(key)) if job.id != key.job => {
                return Err(Error::invalid(
                    "webhook",
                    format!(
                        "request {} belongs to another job than the URL names",
                        event.request_id
                    ),
                ))
            }
            (Some(job), _) => job,
            (None, Some(key)) => inner.jobs.job(&key.job).await?,
            (None, None) => {
                return Err(Error::not_found(
                    "job for provider request",
                    &event.request_id,
                ))
            }
        };
        let span =
            tracing::info_span!("webhook", job = %job.id, user = %job.user, provider = %provider);
        self.apply_delivery(job, by_url, provider, delivery, event)
            .instrument(span)
            .await
    }

    async fn apply_delivery(
        &self,
        job: Job,
        by_url: bool,
        provider: &ProviderId,
        delivery: &WebhookDelivery,
        event: crate::traits::WebhookEvent,
    ) -> Result<WebhookOutcome> {
        let inner = &self.inner;
        let token = inner.lease_token();
        let record = DeliveryRecord {
            provider: provider.clone(),
            delivery_id: event.delivery_id.clone(),
            job: job.id.clone(),
            at: inner.clock.now(),
        };
        let outcome = |job: &Job, duplicate, applied| WebhookOutcome {
            job: job.id.clone(),
            state: job.state,
            duplicate,
            applied,
        };
        let current_request = job.provider() == Some(provider)
            && job.provider_request_id.as_deref() == Some(event.request_id.as_str());
        // The URL names the attempt still awaiting its submit's answer: this is that answer.
        let pending_answer = delivery.submission.as_ref().and_then(|key| {
            let pending = job.pending_submit.as_ref()?;
            let at = job.route.get(pending.provider_index)?;
            (key.job == job.id && key.attempt == pending.attempt && at == provider)
                .then_some(pending.attempt)
        });
        let mut job = job;
        if let Some(attempt) = pending_answer {
            let accepted = Observation::Accepted {
                request_id: event.request_id.clone(),
                attempt,
                webhook: true,
            };
            tracing::info!(request_id = %event.request_id, attempt, "webhook names the pending submission");
            job = inner
                .drive(job, Input::Accepted, accepted, Mode::Webhook, &token)
                .await?;
        } else if !current_request {
            // A late word about an earlier attempt: recorded, and changes nothing.
            tracing::info!(request_id = %event.request_id, "delivery for an earlier attempt ignored");
            let duplicate =
                inner.jobs.record_delivery(&record).await? == DeliveryOutcome::Duplicate;
            let still_running = matches!(
                event.status,
                ProviderStatus::Queued { .. } | ProviderStatus::Running { .. }
            );
            if by_url && still_running && !duplicate {
                // A request of this job the Studio never learnt (its attempt was given up as
                // lost): it runs, and bills, beside the attempt in use. Stop it.
                inner.cancel_orphan(&job, &event.request_id).await;
            }
            return Ok(outcome(&job, duplicate, false));
        }
        let Follow::Input(input, observation) = effects::follow_status(event.status) else {
            // Still queued at the provider: nothing to move, but the delivery is remembered.
            let duplicate =
                inner.jobs.record_delivery(&record).await? == DeliveryOutcome::Duplicate;
            return Ok(outcome(&job, duplicate, pending_answer.is_some()));
        };
        match inner
            .drive_with(
                job.clone(),
                input,
                observation,
                Mode::Webhook,
                &token,
                Some(record.clone()),
            )
            .await
        {
            Ok(driven) if driven.wrote_first => Ok(outcome(&driven.job, false, true)),
            Ok(driven) => {
                // Absorbed (a finished job) or changing nothing (the same progress again).
                let duplicate =
                    inner.jobs.record_delivery(&record).await? == DeliveryOutcome::Duplicate;
                Ok(outcome(&driven.job, duplicate, pending_answer.is_some()))
            }
            Err(Error::AlreadyExists { .. }) => {
                tracing::info!("duplicate delivery ignored");
                let now = inner.jobs.job(&job.id).await?;
                Ok(outcome(&now, true, false))
            }
            Err(e) => Err(e),
        }
    }

    /// One pass of the worker: claims due jobs (polls jobs without webhooks, resubmits after
    /// back-off, reconciles submits whose answer was lost, stores finished videos, resumes
    /// jobs a crashed process left mid-flight, times out jobs past their deadline) and works
    /// on them, at most [`Policy::worker_concurrency`] at once, until each rests.
    pub async fn tick(&self) -> Result<TickReport> {
        let inner = &self.inner;
        // No more than it works on at once: a claimed job waiting for a place would see its
        // lease expire and be taken by another worker.
        let places = inner.policy.worker_concurrency.max(1);
        let claimed = self.claim(inner.policy.claim_batch.min(places)).await?;
        let mut report = TickReport {
            claimed: claimed.len(),
            ..TickReport::default()
        };
        let results: Vec<Option<bool>> = stream::iter(claimed)
            .map(|job| self.work(job))
            .buffer_unordered(inner.policy.worker_concurrency.max(1))
            .collect()
            .await;
        for r in results {
            match r {
                Some(true) => report.advanced += 1,
                Some(false) => {}
                None => report.errors += 1,
            }
        }
        Ok(report)
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Job>> {
        let inner = &self.inner;
        inner
            .jobs
            .claim_due(&ClaimRequest {
                worker: inner.lease_token(),
                now: inner.clock.now(),
                lease: inner.policy.lease,
                limit,
            })
            .await
    }

    /// Drives one claimed job until it rests. `Some(advanced)`, or `None` on an error (logged;
    /// the job is retried when its lease expires).
    async fn work(&self, job: Job) -> Option<bool> {
        let inner = &self.inner;
        let now = inner.clock.now();
        // A job waiting for its result times out; a storing job's copy gives up.
        let input = if job.deadline_at <= now
            && (job.state.awaits_result() || job.state == JobState::Storing)
        {
            Input::DeadlinePassed
        } else {
            Input::Resume
        };
        let span = tracing::info_span!("tick", job = %job.id, user = %job.user, provider = %job.provider().map(|p| p.as_str()).unwrap_or("-"));
        let before = (job.version, job.state);
        // The claim's lease token is this drive's.
        let token = job
            .lease_owner
            .clone()
            .unwrap_or_else(|| inner.lease_token());
        match inner
            .drive(job, input, Observation::Nothing, Mode::Worker, &token)
            .instrument(span)
            .await
        {
            Ok(after) => Some((after.version, after.state) != before),
            Err(e) => {
                tracing::warn!(error = %e, "worker could not advance a job");
                None
            }
        }
    }

    /// Works until `shutdown` completes: claims due jobs whenever a place is free (at most
    /// [`Policy::worker_concurrency`] at once, each in its own task, its lease renewed while
    /// it runs), looking every [`Policy::tick_interval`] and at once when a webhook in this
    /// process left a job due. A failing claim is logged and the loop goes on.
    ///
    /// On shutdown it claims nothing more and returns when the jobs in hand rest, waiting at
    /// most [`Policy::shutdown_grace`]; jobs still running then (or when the future is
    /// dropped) are stopped mid-effect and resumed by another worker once their leases expire
    /// (a submit cut off that way is reconciled, not sent twice).
    pub async fn run<F>(&self, shutdown: F)
    where
        F: Future<Output = ()>,
    {
        let concurrency = self.inner.policy.worker_concurrency.max(1);
        let places = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut balances_due = tokio::time::Instant::now();
        let mut uploads_due = tokio::time::Instant::now();
        let mut stats_due = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            if tokio::time::Instant::now() >= balances_due {
                balances_due += self.inner.policy.balance_check_interval;
                self.check_balances().await;
                // Credits whose lot expired: one ledger entry per lot, whoever gets there.
                if let Err(e) = self
                    .inner
                    .quota
                    .expire_credits(self.inner.clock.now())
                    .await
                {
                    tracing::warn!(error = %e, "writing credit expiries failed");
                }
            }
            if self.inner.publisher.is_some() {
                let now = tokio::time::Instant::now();
                if now >= uploads_due {
                    uploads_due = now + self.inner.policy.publish_check_interval;
                    let studio = self.clone();
                    // Uploads are long: they run beside the jobs, one pass at a time.
                    tasks.spawn(async move {
                        studio.resume_publications().await;
                    });
                }
                if now >= stats_due {
                    stats_due = now + self.inner.policy.stats_interval;
                    let studio = self.clone();
                    tasks.spawn(async move {
                        if let Err(e) = studio.sync_stats().await {
                            tracing::warn!(error = %e, "syncing video statistics failed");
                        }
                    });
                }
            }
            let free = places.available_permits();
            if free > 0 {
                match self.claim(free.min(self.inner.policy.claim_batch)).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let Ok(place) = places.clone().try_acquire_owned() else {
                                break;
                            };
                            let studio = self.clone();
                            tasks.spawn(async move {
                                studio.work(job).await;
                                drop(place);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming due jobs failed"),
                }
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.policy.tick_interval) => {}
            }
        }
        let drained = tokio::time::timeout(self.inner.policy.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "jobs still running at shutdown are stopped; other workers resume them after \
                 their leases"
            );
            tasks.abort_all();
        }
    }

    /// What each provider cost per UTC day for the jobs created in `from..to`: jobs that
    /// ended there, those delivered, the credits charged (settled: delivered and timed-out
    /// jobs; a time-out's free retry is a separate grant) and what the provider charged for
    /// the jobs it ran to the end (delivered and timed out), in its currency's minor units.
    /// The margin the seed works out by hand (1.1 元 a video against 15 credits).
    pub async fn cost_report(&self, from: Timestamp, to: Timestamp) -> Result<Vec<CostLine>> {
        let jobs = self.inner.jobs.jobs_created_between(from, to).await?;
        let mut lines: std::collections::BTreeMap<(ProviderId, i64, String), CostLine> =
            std::collections::BTreeMap::new();
        for job in jobs.iter().filter(|j| j.state.is_terminal()) {
            let Some(provider) = job.provider().cloned() else {
                continue;
            };
            let currency = job
                .provider_cost
                .as_ref()
                .map(|c| c.currency.clone())
                .unwrap_or_default();
            let day = job.created_at.utc_day();
            let line = lines
                .entry((provider.clone(), day, currency.clone()))
                .or_insert_with(|| CostLine {
                    provider,
                    utc_day: day,
                    jobs: 0,
                    delivered: 0,
                    credits_charged: 0,
                    provider_cost_minor: 0,
                    currency,
                });
            line.jobs += 1;
            let ran = matches!(job.state, JobState::Completed | JobState::TimedOut);
            if job.state == JobState::Completed {
                line.delivered += 1;
            }
            if ran {
                line.credits_charged += job.credits;
                line.provider_cost_minor += job.provider_cost.as_ref().map_or(0, |c| c.minor);
            }
        }
        Ok(lines.into_values().collect())
    }

    /// Reads every provider's balance and alerts the admin for each one under its
    /// [`Policy::low_balance`] threshold (once per [`Policy::alert_cooldown`], across
    /// processes). Returns the balances read; a provider without a balance endpoint gives
    /// `None`, one whose read failed is logged and left out. [`Studio::run`] calls it every
    /// [`Policy::balance_check_interval`].
    pub async fn check_balances(
        &self,
    ) -> Vec<(ProviderId, Option<crate::traits::ProviderBalance>)> {
        let inner = &self.inner;
        let mut read = Vec::new();
        for p in &inner.providers {
            if !p.capabilities.balance {
                read.push((p.id.clone(), None));
                continue;
            }
            let started = std::time::Instant::now();
            let balance = p.provider.balance().await;
            crate::telemetry::provider_call(&p.id, "balance", started.elapsed());
            match balance {
                Ok(balance) => {
                    if let (Some(b), Some(threshold)) =
                        (&balance, inner.policy.low_balance.get(&p.id))
                    {
                        if b.minor < *threshold {
                            let detail = format!(
                                "{} {} left ({} minor units), under the threshold of {}",
                                b.minor as f64 / 100.0,
                                b.currency,
                                b.minor,
                                threshold
                            );
                            inner
                                .alert(
                                    AlertKind::BalanceLow {
                                        provider: p.id.clone(),
                                        balance_minor: b.minor,
                                    },
                                    detail,
                                )
                                .await;
                        }
                    }
                    read.push((p.id.clone(), balance));
                }
                Err(e) => tracing::warn!(provider = %p.id, error = %e, "reading a balance failed"),
            }
        }
        read
    }

    /// Cancels a user's job, refunding the hold only when the provider will not bill:
    ///
    /// - queued, nothing at a provider: cancelled, **refunded**;
    /// - at the provider (submitted or running): the provider is asked to stop. If it
    ///   confirms, the job is cancelled and **refunded**. If it answers that it is too late
    ///   (or has no cancel), it will finish and bill: the cancel is refused with
    ///   [`Error::NotAllowed`] and the job goes on; the user is **charged when the video is
    ///   delivered** (and refunded if the provider then fails);
    /// - a submission in flight, or whose answer was lost: refused with
    ///   [`Error::NotAllowed`] until the provider's answer is known (try again shortly);
    /// - storing or finished: refused with [`Error::NotAllowed`].
    ///
    /// Another user's job is [`Error::NotFound`]; a provider that cannot be reached returns
    /// its error and nothing changes.
    pub async fn cancel(&self, user: &UserId, job: &JobId) -> Result<Job> {
        let current = self.job_for(user, job).await?;
        let span = tracing::info_span!("cancel", job = %job, user = %user);
        async {
            let inner = &self.inner;
            let state = current.state;
            let input = match state {
                JobState::Queued if current.pending_submit.is_some() => {
                    return Err(Error::not_allowed(format!(
                        "job {job} is being submitted to the provider; try again when it is accepted"
                    )))
                }
                JobState::Queued => Input::CancelRequested,
                JobState::Submitted | JobState::Running => {
                    match inner.ask_cancel(&current).await? {
                        crate::traits::CancelOutcome::Cancelled => Input::CancelConfirmed,
                        crate::traits::CancelOutcome::TooLate
                        | crate::traits::CancelOutcome::Unsupported => {
                            return Err(Error::not_allowed(format!(
                                "job {job} has started at the provider, which will finish and bill it: it goes on and is charged when the video is delivered"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(Error::not_allowed(format!(
                        "job {job} is {state} and can no longer be cancelled"
                    )))
                }
            };
            let version = current.version;
            let after = inner
                .drive(current, input, Observation::Nothing, Mode::Worker, &inner.lease_token())
                .await?;
            if after.state != JobState::Cancelled || after.version == version {
                return Err(Error::not_allowed(format!(
                    "job {job} is {} and can no longer be cancelled (was {state})",
                    after.state
                )));
            }
            Ok(after)
        }
        .instrument(span)
        .await
    }

    /// A job.
    pub async fn job(&self, id: &JobId) -> Result<Job> {
        self.inner.jobs.job(id).await
    }

    /// A job, if it belongs to `user`; otherwise [`Error::NotFound`].
    pub async fn job_for(&self, user: &UserId, id: &JobId) -> Result<Job> {
        let job = self.inner.jobs.job(id).await?;
        if &job.user != user {
            return Err(Error::not_found("job", id));
        }
        Ok(job)
    }

    /// A user's jobs, newest first.
    pub async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>> {
        self.inner.jobs.jobs_for_user(user, limit).await
    }

    /// A stream of a job's events for a host's SSE or websocket: the job as it is now, then
    /// each change (state, progress %, stage), ending after a terminal state. On a shared
    /// Postgres store it sees changes made by other processes.
    ///
    /// A process follows each watched job once, however many subscribe to it (ten thousand
    /// browsers watching one job cost one follower): the store's events for the job, and a
    /// re-read of the job every [`Policy::poll_interval`], so an event lost on the way (a
    /// listener reconnecting) delays the subscribers at most that long and never leaves them
    /// waiting for a terminal state that already happened. Each subscriber gets every change
    /// from the latest on; one that falls more than 64 events behind skips what it missed
    /// (never the terminal state), and events are never repeated (only newer versions of the
    /// job pass). The follower stops after the terminal state, or when its last subscriber is
    /// gone.
    pub async fn subscribe(&self, id: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        if let Some(joined) = self.joined(id) {
            return Ok(joined);
        }
        // Watch first, then read, so no change between the two is missed.
        let live = self.inner.jobs.watch_job(id).await?;
        let current = self.inner.jobs.job(id).await?;
        let first = current.event();
        if current.state.is_terminal() {
            return Ok(stream::iter([first]).boxed());
        }
        let number = self
            .inner
            .lease_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let follower = Arc::new(Follower {
            events: tokio::sync::broadcast::channel(FOLLOWER_BUFFER).0,
            latest: std::sync::Mutex::new(first),
        });
        let joined = {
            let mut followed = self
                .inner
                .followed
                .lock()
                .map_err(|_| Error::storage("the followers' map is poisoned", false, None))?;
            // Another subscriber may have started a follower meanwhile: join it.
            match followed.get(id) {
                Some((_, existing)) => Some(existing.join()),
                None => {
                    followed.insert(id.clone(), (number, follower.clone()));
                    None
                }
            }
        };
        if let Some(joined) = joined {
            return Ok(joined);
        }
        let mine = follower.join();
        let jobs = self.inner.jobs.clone();
        let every = self.inner.policy.poll_interval;
        let reread_id = id.clone();
        let rereads = stream::unfold((), move |()| {
            let (jobs, id) = (jobs.clone(), reread_id.clone());
            async move {
                tokio::time::sleep(every).await;
                Some((jobs.job(&id).await.ok().map(|j| j.event()), ()))
            }
        })
        .filter_map(futures::future::ready);
        let filter_id = id.clone();
        let mut last_version = current.version;
        let changes = stream::select(live, rereads)
            .filter(move |e| {
                let keep = e.job == filter_id && e.version > last_version;
                if keep {
                    last_version = e.version;
                }
                futures::future::ready(keep)
            })
            .boxed();
        tokio::spawn(follow(
            Arc::downgrade(&self.inner),
            id.clone(),
            number,
            follower,
            changes,
        ));
        Ok(mine)
    }

    /// A stream from the process's live follower of `id`, if there is one.
    fn joined(&self, id: &JobId) -> Option<BoxStream<'static, JobEvent>> {
        let followed = self.inner.followed.lock().ok()?;
        followed.get(id).map(|(_, f)| f.join())
    }
}

/// Events a follower keeps for subscribers that fall behind.
const FOLLOWER_BUFFER: usize = 64;

/// A process's one follower of a job: its changes as they come, and the latest for those who
/// join later.
pub(crate) struct Follower {
    events: tokio::sync::broadcast::Sender<JobEvent>,
    latest: std::sync::Mutex<JobEvent>,
}

impl Follower {
    /// A subscriber's stream: the latest event, then each newer one, ending after a terminal
    /// state (or when the follower stops).
    fn join(&self) -> BoxStream<'static, JobEvent> {
        // Subscribe first, then read the latest: nothing between the two is missed.
        let rx = self.events.subscribe();
        let latest = self.latest.lock().ok().map(|l| l.clone());
        let last = latest.as_ref().map(|e| e.version);
        let ended = latest.as_ref().is_some_and(|e| e.state.is_terminal());
        let later = stream::unfold((rx, last, ended), |(mut rx, last, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(event) if last.is_none_or(|v| event.version > v) => {
                        let terminal = event.state.is_terminal();
                        let version = event.version;
                        return Some((event, (rx, Some(version), terminal)));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a job subscriber fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        stream::iter(latest).chain(later).boxed()
    }
}

/// Feeds a job's changes to its subscribers until a terminal state, the end of the changes,
/// or the last subscriber leaving; then forgets the follower. Leaving and joining happen under
/// the followers' lock, so a subscriber never joins a follower that is gone; and the follower
/// is forgotten however its task ends (a panic, a runtime shutting down), so no subscriber
/// joins a dead one.
async fn follow(
    inner: std::sync::Weak<Inner>,
    id: JobId,
    number: u64,
    follower: Arc<Follower>,
    mut changes: BoxStream<'static, JobEvent>,
) {
    let _forget = Forget {
        inner: inner.clone(),
        id,
        number,
    };
    loop {
        tokio::select! {
            event = changes.next() => match event {
                Some(event) => {
                    let terminal = event.state.is_terminal();
                    if let Ok(mut latest) = follower.latest.lock() {
                        *latest = event.clone();
                    }
                    let _ = follower.events.send(event);
                    if terminal {
                        return;
                    }
                }
                None => return,
            },
            () = follower.events.closed() => {
                let Some(inner) = inner.upgrade() else { return };
                let Ok(mut followed) = inner.followed.lock() else { return };
                // Nobody joined since the last one left: forgotten under the same lock.
                if follower.events.receiver_count() == 0 {
                    if followed.get(&_forget.id).is_some_and(|(n, _)| *n == number) {
                        followed.remove(&_forget.id);
                    }
                    return;
                }
            }
        }
    }
}

/// Forgets a follower when its task ends, however it ends.
struct Forget {
    inner: std::sync::Weak<Inner>,
    id: JobId,
    number: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            if let Ok(mut followed) = inner.followed.lock() {
                if followed
                    .get(&self.id)
                    .is_some_and(|(n, _)| *n == self.number)
                {
                    followed.remove(&self.id);
                }
            }
        }
    }
}
