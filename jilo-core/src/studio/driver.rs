//! Performing the state machine's steps: compare-and-set writes and the effects they call for.

use std::future::Future;

use crate::error::{Error, Result};
use crate::ids::Timestamp;
use crate::job::{DeliveryRecord, Job, JobState, JobUpdate, LeaseRenewal, PendingSubmit};
use crate::ledger::{Grant, HoldState};
use crate::machine::{self, Effect, Input, Lifecycle, Limits};
use crate::traits::FailureClass;

use super::observation::{Follow, Observation};
use super::shared::Inner;

/// How many times a write is re-read and re-applied after losing a compare-and-set race.
const CONFLICT_RETRIES: usize = 4;

/// Where a job is driven from, which decides what may run inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A worker, `generate` or `cancel`: effects that call services run here, with the lease
    /// renewed while they do.
    Worker,
    /// A webhook request: only the transition is written; anything that calls a service next
    /// is left, due at once, to a worker, so the provider's HTTP request is answered fast.
    Webhook,
}

/// The seed's progress stages, for providers that report a percentage without a stage.
fn stage_for(progress: u8) -> &'static str {
    match progress {
        0..=19 => "analysing the prompt",
        20..=79 => "generating frames",
        _ => "rendering",
    }
}

fn lifecycle(job: &Job) -> Lifecycle {
    Lifecycle {
        state: job.state,
        attempts: job.attempts,
        provider_attempts: job.provider_attempts,
        provider_index: job.provider_index,
        store_attempts: job.store_attempts,
        pending_submit: job.pending_submit.is_some(),
    }
}

/// Whether two versions of a job differ in anything but bookkeeping (schedule, lease, time).
fn same_record(a: &Job, b: &Job) -> bool {
    a.state == b.state
        && a.progress == b.progress
        && a.stage == b.stage
        && a.provider_request_id == b.provider_request_id
        && a.attempts == b.attempts
        && a.provider_attempts == b.provider_attempts
        && a.provider_index == b.provider_index
        && a.store_attempts == b.store_attempts
        && a.pending_submit == b.pending_submit
        && a.video_url == b.video_url
        && a.video_headers == b.video_headers
        && a.output == b.output
        && a.failure == b.failure
        && a.webhook == b.webhook
}

/// What a provider-derived input is about: the attempt, provider, request and store try of
/// the job it was learnt on. After a lost race, an input whose job has since moved to another
/// attempt is dropped, never applied to the new one.
type Origin = (u32, usize, Option<String>, Option<u32>, u32);

fn origin(job: &Job) -> Origin {
    (
        job.attempts,
        job.provider_index,
        job.provider_request_id.clone(),
        job.pending_submit.as_ref().map(|p| p.attempt),
        job.store_attempts,
    )
}

/// The result of driving a job.
pub(crate) struct Driven {
    /// The job as last written (or read).
    pub(crate) job: Job,
    /// Whether the first input was written (with the delivery, if one was given).
    pub(crate) wrote_first: bool,
}

impl Inner {
    fn limits(&self, job: &Job) -> Limits {
        Limits {
            max_attempts: self.policy.max_attempts,
            providers: job.route.len(),
        }
    }

    /// What the job's current provider charges for its model and duration, from its catalog.
    fn cost_of(&self, job: &Job) -> Option<crate::video::ProviderCost> {
        let provider = job.provider().and_then(|id| self.provider(id))?;
        let spec = provider.models.iter().find(|m| m.id == job.request.model)?;
        let price = spec.price(job.request.duration_secs)?;
        Some(crate::video::ProviderCost {
            minor: price.provider_cost_minor,
            currency: price.currency.clone(),
        })
    }

    /// A lease token unique to one drive or claim in this process: leases name it, so two
    /// tasks of one process never take each other's lease for their own.
    pub(crate) fn lease_token(&self) -> String {
        let n = self
            .lease_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}/{}", self.worker, n)
    }

    /// Applies `input` and then every input the effects produce, until the job rests.
    /// Returns the job as last written (or as read, when the input did not apply).
    pub(crate) async fn drive(
        &self,
        job: Job,
        input: Input,
        observation: Observation,
        mode: Mode,
        token: &str,
    ) -> Result<Job> {
        Ok(self
            .drive_with(job, input, observation, mode, token, None)
            .await?
            .job)
    }

    /// [`Inner::drive`], writing `delivery` with the first transition (the webhook's).
    pub(crate) async fn drive_with(
        &self,
        job: Job,
        input: Input,
        observation: Observation,
        mode: Mode,
        token: &str,
        delivery: Option<DeliveryRecord>,
    ) -> Result<Driven> {
        let mut job = job;
        let mut input = input;
        let mut observation = observation;
        let mut delivery = delivery;
        let mut wrote_first = None;
        loop {
            let applied = self
                .apply(
                    job.clone(),
                    input,
                    &observation,
                    mode,
                    token,
                    delivery.take(),
                )
                .await?;
            wrote_first.get_or_insert(applied.is_some());
            let wrote_first = wrote_first.unwrap_or(false);
            let Some((written, effects)) = applied else {
                let current = self.jobs.job(&job.id).await?;
                if let Observation::Accepted { request_id, .. } = &observation {
                    if current.provider_request_id.as_deref() != Some(request_id.as_str()) {
                        // The job moved on (cancelled, timed out, another attempt) while the
                        // provider accepted a submission we can no longer use: stop it there.
                        self.cancel_orphan(&current, request_id).await;
                    }
                }
                let job = self.release(current, token).await?;
                return Ok(Driven { job, wrote_first });
            };
            job = written;
            let mut follow = None;
            for effect in effects {
                match effect {
                    Effect::Submit { provider_index } => {
                        let call = self.submit(&job, provider_index);
                        let limit = self.policy.call_timeout;
                        follow = Some(self.leased(&job, token, limit, call).await.unwrap_or_else(
                            || {
                                Follow::Input(
                                    Input::SubmitFailed(FailureClass::Unknown),
                                    Observation::Failure {
                                        reason: format!(
                                            "the submit did not answer within {}s",
                                            limit.as_secs()
                                        ),
                                        retry_after: None,
                                    },
                                )
                            },
                        ));
                    }
                    Effect::Reconcile => {
                        let call = self.reconcile(&job);
                        let limit = self.policy.call_timeout;
                        let answer = self.leased(&job, token, limit, call).await;
                        follow = Some(answer.unwrap_or(Follow::Reschedule));
                    }
                    Effect::Poll => {
                        let call = self.poll(&job);
                        let limit = self.policy.call_timeout;
                        let answer = self.leased(&job, token, limit, call).await;
                        follow = Some(answer.unwrap_or(Follow::Reschedule));
                    }
                    Effect::Store => {
                        let copy = self.store_video(&job);
                        let limit = self.policy.store_timeout;
                        follow = Some(self.leased(&job, token, limit, copy).await.unwrap_or_else(
                            || {
                                Follow::Input(
                                    Input::StoreFailed,
                                    Observation::Failure {
                                        reason: format!(
                                            "copying the video took more than {}s",
                                            limit.as_secs()
                                        ),
                                        retry_after: None,
                                    },
                                )
                            },
                        ));
                    }
                    Effect::ResumeNow if mode == Mode::Worker => {
                        follow = Some(Follow::Input(Input::Resume, Observation::Nothing));
                    }
                    // Written as due now by `schedule`; a worker takes it up.
                    Effect::ResumeNow => self.wake.notify_one(),
                    Effect::CancelAtProvider => self.cancel_at_provider(&job).await,
                    Effect::AlertOutOfFunds { provider_index } => {
                        self.provider_alert(&job, provider_index, FailureClass::OutOfFunds)
                            .await;
                    }
                    Effect::AlertKeyRejected { provider_index } => {
                        self.provider_alert(&job, provider_index, FailureClass::KeyRejected)
                            .await;
                    }
                    Effect::AlertCopyFailed => self.copy_alert(&job).await,
                    // Written with the transition itself.
                    Effect::Settle
                    | Effect::Refund
                    | Effect::GrantFreeRetry
                    | Effect::RetryLater
                    | Effect::ReconcileLater => {}
                }
            }
            let job = match follow {
                Some(Follow::Input(next_input, next_observation)) => {
                    input = next_input;
                    observation = next_observation;
                    continue;
                }
                Some(Follow::Reschedule) => self.reschedule(job, None, token).await?,
                Some(Follow::RescheduleAt(at)) => self.reschedule(job, Some(at), token).await?,
                None => job,
            };
            return Ok(Driven { job, wrote_first });
        }
    }

    /// Runs an effect while renewing the job's lease every third of [`crate::Policy::lease`],
    /// so a slow effect keeps its job and no other worker starts it a second time; gives up
    /// (`None`) after `limit`, so a hung call never pins its job.
    async fn leased<T>(
        &self,
        job: &Job,
        token: &str,
        limit: std::time::Duration,
        effect: impl Future<Output = T>,
    ) -> Option<T> {
        let every = self.policy.lease / 3;
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                let renewal = LeaseRenewal {
                    job: job.id.clone(),
                    worker: token.to_owned(),
                    until: self.clock.now().plus(self.policy.lease),
                };
                match self.jobs.renew_lease(&renewal).await {
                    Ok(true) => tracing::debug!(job = %job.id, "lease renewed"),
                    Ok(false) => {
                        tracing::warn!(job = %job.id, "the job's lease was lost during an effect");
                        std::future::pending::<()>().await;
                    }
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "renewing a lease failed"),
                }
            }
        };
        let effect = tokio::time::timeout(limit, effect);
        tokio::pin!(effect);
        tokio::pin!(renew);
        let out = tokio::select! {
            biased;
            out = &mut effect => out,
            () = &mut renew => effect.await,
        };
        match out {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(job = %job.id, limit_secs = limit.as_secs(), "an effect ran out of time");
                None
            }
        }
    }

    /// One step and its compare-and-set write, re-read and re-applied when another writer won.
    /// `None` when the input does not apply to the job's state (or changes nothing).
    ///
    /// After a lost race a `Resume` is never re-applied (whoever moved the job scheduled it),
    /// and an input learnt from the provider is dropped if the job has moved to another
    /// attempt, request or store try meanwhile.
    async fn apply(
        &self,
        mut job: Job,
        input: Input,
        observation: &Observation,
        mode: Mode,
        token: &str,
        delivery: Option<DeliveryRecord>,
    ) -> Result<Option<(Job, Vec<Effect>)>> {
        let learnt_on = origin(&job);
        for round in 0..CONFLICT_RETRIES {
            if round > 0 {
                // A deadline seen before another writer moved the job (a result arrived and
                // gave the copy a deadline of its own) no longer holds.
                if input == Input::DeadlinePassed && job.deadline_at > self.clock.now() {
                    tracing::debug!("the job's deadline moved meanwhile; input dropped");
                    return Ok(None);
                }
                let absolute = matches!(input, Input::DeadlinePassed | Input::CancelRequested);
                if input == Input::Resume || (!absolute && origin(&job) != learnt_on) {
                    tracing::debug!(?input, "the job moved on meanwhile; input dropped");
                    return Ok(None);
                }
            }
            if let Observation::Accepted { attempt, .. } = observation {
                if job.pending_submit.as_ref().map(|p| p.attempt) != Some(*attempt) {
                    tracing::debug!(attempt, "acceptance of an attempt the job no longer awaits");
                    return Ok(None);
                }
            }
            let step = machine::step(&lifecycle(&job), input, &self.limits(&job));
            if !step.applied {
                tracing::debug!(?input, state = %job.state, "input absorbed");
                return Ok(None);
            }
            let now = self.clock.now();
            let mut next = job.clone();
            next.state = step.next.state;
            next.attempts = step.next.attempts;
            next.provider_attempts = step.next.provider_attempts;
            next.provider_index = step.next.provider_index;
            next.store_attempts = step.next.store_attempts;
            next.pending_submit = match (step.next.pending_submit, &job.pending_submit) {
                (false, _) => None,
                (true, Some(p)) if p.attempt == step.next.attempts => Some(p.clone()),
                (true, _) => Some(PendingSubmit {
                    attempt: step.next.attempts,
                    provider_index: step.next.provider_index,
                    since: now,
                }),
            };
            next.updated_at = now;
            if input == Input::Succeeded {
                // The video is made (and billed): its copy has a whole deadline of its own.
                next.deadline_at = next.deadline_at.max(now.plus(self.policy.deadline));
            }
            observe(&mut next, input, observation, &self.policy.deadline);
            if input == Input::Accepted {
                next.provider_cost = self.cost_of(&next);
            }
            if step.effects.contains(&Effect::Reconcile) {
                next.stage = Some("confirming the submission".to_owned());
            }
            if step.effects.is_empty() && same_record(&job, &next) {
                tracing::debug!(?input, state = %job.state, "input changes nothing");
                return Ok(None);
            }
            self.schedule(&mut next, &step.effects, now, mode, token);
            if let Observation::Failure {
                retry_after: Some(asked),
                ..
            } = observation
            {
                // A service that said when to come back is not asked sooner.
                if step.effects.contains(&Effect::RetryLater) {
                    let at = now.plus(*asked);
                    next.next_check_at = next.next_check_at.map(|t| t.max(at)).or(Some(at));
                }
            }
            let mut update = JobUpdate::new(&job, next);
            update.delivery = delivery.clone();
            for effect in &step.effects {
                match effect {
                    Effect::Settle => update.end_hold = Some(HoldState::Settled),
                    Effect::Refund => update.end_hold = Some(HoldState::Refunded),
                    Effect::GrantFreeRetry => {
                        update.grant = Some(Grant::free_retry(
                            job.user.clone(),
                            job.credits,
                            &job.id,
                            now,
                        ));
                    }
                    _ => {}
                }
            }
            match self.jobs.update(&update).await {
                Ok(written) => {
                    if written.state != job.state {
                        crate::telemetry::job_transition(written.state, written.provider());
                    }
                    match update.end_hold {
                        Some(HoldState::Settled) => {
                            crate::telemetry::credits("settled", job.credits)
                        }
                        Some(HoldState::Refunded) => {
                            crate::telemetry::credits("refunded", job.credits)
                        }
                        _ => {}
                    }
                    if update.grant.is_some() {
                        crate::telemetry::credits("granted_free_retry", job.credits);
                    }
                    tracing::info!(
                        from = %job.state,
                        to = %written.state,
                        ?input,
                        attempts = written.attempts,
                        provider = %written.provider().map(|p| p.as_str()).unwrap_or("-"),
                        "job transition"
                    );
                    return Ok(Some((written, step.effects)));
                }
                Err(Error::LostRace { .. }) => {
                    tracing::debug!(job = %job.id, "lost a compare-and-set race; re-reading");
                    job = self.jobs.job(&job.id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::lost_race(format!(
            "job {} kept changing under {CONFLICT_RETRIES} tries",
            job.id
        )))
    }

    /// Sets when the job is next looked at and who holds it while an effect is in flight. A
    /// write that calls nothing leaves another drive's live lease in place.
    fn schedule(&self, job: &mut Job, effects: &[Effect], now: Timestamp, mode: Mode, token: &str) {
        let policy = &self.policy;
        let in_flight = effects.iter().any(|e| e.calls_service())
            || (mode == Mode::Worker && effects.contains(&Effect::ResumeNow));
        if job.state.is_terminal() {
            job.next_check_at = None;
            job.lease_owner = None;
            job.lease_until = None;
        } else if in_flight {
            // If this process dies mid-call, another worker resumes once the lease expires;
            // while the call runs, the lease is renewed.
            let until = now.plus(policy.lease);
            job.next_check_at = Some(until);
            job.lease_owner = Some(token.to_owned());
            job.lease_until = Some(until);
        } else {
            job.next_check_at = Some(if effects.contains(&Effect::ResumeNow) {
                now
            } else if effects.contains(&Effect::ReconcileLater) {
                // Its webhook has until the end of the grace window; then ask at once.
                job.pending_submit
                    .as_ref()
                    .map(|p| p.since.plus(policy.submit_grace).max(now))
                    .unwrap_or(now)
            } else if effects.contains(&Effect::RetryLater) {
                now.plus(
                    policy
                        .retry_backoff
                        .delay(job.provider_attempts.max(job.store_attempts)),
                )
            } else {
                now.plus(self.wait_interval(job))
            });
            let held_by_another = job.lease_owner.as_deref() != Some(token)
                && job.lease_until.is_some_and(|until| until > now);
            if !held_by_another {
                job.lease_owner = None;
                job.lease_until = None;
            }
        }
    }

    /// How long a resting job waits before a worker looks again. A submission whose answer
    /// was lost and that the provider could not find is asked about again at the polling
    /// interval, while its webhook may still come.
    fn wait_interval(&self, job: &Job) -> std::time::Duration {
        let policy = &self.policy;
        if job.pending_submit.is_some() {
            return policy.poll_interval;
        }
        if job.webhook {
            policy.webhook_backstop
        } else {
            policy.poll_interval
        }
    }

    /// Writes only the schedule: nothing new from the provider, look again later (or sooner,
    /// if another writer made the job due sooner), and our lease released.
    async fn reschedule(&self, job: Job, at: Option<Timestamp>, token: &str) -> Result<Job> {
        let now = self.clock.now();
        let mut next = job.clone();
        let target = at.unwrap_or_else(|| now.plus(self.wait_interval(&job)));
        next.next_check_at = Some(match job.next_check_at {
            Some(sooner) if sooner < target => sooner,
            _ => target,
        });
        if next.lease_owner.as_deref() == Some(token) {
            next.lease_owner = None;
            next.lease_until = None;
        }
        if next == job {
            return Ok(job);
        }
        match self.jobs.update(&JobUpdate::new(&job, next)).await {
            Ok(written) => Ok(written),
            // Someone else moved the job meanwhile; their write stands.
            Err(Error::LostRace { .. }) => self.jobs.job(&job.id).await,
            Err(e) => Err(e),
        }
    }

    /// After an input that did not apply: gives back this drive's lease, if it still holds
    /// one, so the job is not left waiting for it to expire.
    async fn release(&self, current: Job, token: &str) -> Result<Job> {
        if current.state.is_terminal() || current.lease_owner.as_deref() != Some(token) {
            return Ok(current);
        }
        let job = self.reschedule(current, None, token).await?;
        if job.next_check_at.is_some_and(|t| t <= self.clock.now()) {
            self.wake.notify_one();
        }
        Ok(job)
    }
}

/// Writes what was learnt into the job.
fn observe(job: &mut Job, input: Input, observation: &Observation, deadline: &std::time::Duration) {
    match observation {
        Observation::Accepted {
            request_id,
            webhook,
            ..
        } => {
            job.provider_request_id = Some(request_id.clone());
            job.webhook = *webhook;
            job.failure = None;
            job.stage = Some("submitted".to_owned());
        }
        Observation::Failure { reason, .. } => job.failure = Some(reason.clone()),
        Observation::Progress { progress, stage } => {
            let p = progress.unwrap_or(job.progress).min(100).max(job.progress);
            job.progress = p;
            job.stage = Some(stage.clone().unwrap_or_else(|| stage_for(p).to_owned()));
        }
        Observation::Video { video } => {
            job.video_url = video.as_ref().map(|v| v.url.clone());
            job.video_headers = video
                .as_ref()
                .map(|v| v.headers.clone())
                .unwrap_or_default();
            job.progress = 100;
            job.stage = Some("storing".to_owned());
        }
        Observation::Stored { stored, video_url } => {
            job.output = Some(stored.clone());
            job.video_url = Some(video_url.clone());
            job.stage = Some("completed".to_owned());
        }
        Observation::Nothing => {}
    }
    if let Input::SubmitFailed(class) | Input::ProviderFailed(class) = input {
        job.failure_class = Some(class);
        let unserved = matches!(class, FailureClass::OutOfFunds | FailureClass::KeyRejected);
        if unserved && job.state == JobState::Failed {
            // The provider's words went to the admin's alert and the log; the user gets these.
            job.failure = Some(crate::job::SERVICE_UNAVAILABLE.to_owned());
        }
    }
    match input {
        Input::DeadlinePassed if job.state == JobState::Failed => {
            // The copy never succeeded: the user is refunded; the last copy error stays in
            // the log and the admin's alert.
            job.failure = Some(format!(
                "the finished video could not be copied within {}",
                span(*deadline)
            ));
        }
        Input::DeadlinePassed => {
            job.failure = Some(format!("no result within {}", span(*deadline)));
        }
        Input::CancelRequested | Input::CancelConfirmed => {
            job.failure = Some("cancelled by the user".to_owned());
        }
        _ => {}
    }
    if job.state == JobState::Queued {
        if job.pending_submit.is_some() {
            job.stage = Some(if matches!(input, Input::SubmitFailed(_)) {
                "confirming the submission".to_owned()
            } else {
                "submitting".to_owned()
            });
        } else if matches!(
            input,
            Input::SubmitFailed(_) | Input::ProviderFailed(_) | Input::SubmissionLost
        ) {
            // Back in the queue after a failure: the old request is over.
            job.provider_request_id = None;
            job.progress = 0;
            job.stage = Some("retrying".to_owned());
        }
    }
    if job.state.is_terminal() {
        job.stage = Some(job.state.as_str().to_owned());
    }
}

/// A deadline as a person reads it: `15 minutes`, `1 minute`, `90 s`.
fn span(d: std::time::Duration) -> String {
    match d.as_secs() {
        60 => "1 minute".to_owned(),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}
