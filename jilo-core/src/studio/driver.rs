//! Performing the state machine's steps: compare-and-set writes and the effects they call for.

use crate::alert::{Alert, AlertKind};
use crate::error::{Error, Result};
use crate::ids::{ProviderId, Timestamp};
use crate::job::{Job, JobState, JobUpdate, StoredVideo};
use crate::ledger::{Grant, HoldState};
use crate::machine::{self, Effect, Input, Lifecycle, Limits};
use crate::traits::{FailureClass, ProviderStatus, StatusQuery, SubmitRequest, VideoToStore};
use crate::video::{ModelSpec, VideoRequest};

use super::{Inner, RegisteredProvider};

/// How many times a write is re-read and re-applied after losing a compare-and-set race.
const CONFLICT_RETRIES: usize = 4;

/// What was learnt with an input, written into the job alongside the transition.
#[derive(Clone, Debug)]
pub(crate) enum Observation {
    Nothing,
    Accepted {
        request_id: String,
        webhook: bool,
    },
    Failure {
        reason: String,
    },
    Progress {
        progress: Option<u8>,
        stage: Option<String>,
    },
    Video {
        url: String,
    },
    Stored(StoredVideo),
}

/// What to do after an effect that asked a service something.
pub(crate) enum Follow {
    /// Feed this input back into the machine.
    Input(Input, Observation),
    /// Nothing new: look again later.
    Reschedule,
}

/// The status query for a job's current provider request.
pub(crate) fn status_query(job: &Job, provider: &RegisteredProvider) -> StatusQuery {
    StatusQuery {
        request_id: job.provider_request_id.clone().unwrap_or_default(),
        provider_model: provider_model(provider, &job.request.model),
    }
}

fn provider_model(provider: &RegisteredProvider, model: &str) -> String {
    provider
        .models
        .iter()
        .find(|m| m.id == model)
        .map(|m| m.provider_model.clone())
        .unwrap_or_else(|| model.to_owned())
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
        provider_index: job.provider_index,
        store_attempts: job.store_attempts,
    }
}

impl Inner {
    pub(crate) fn provider(&self, id: &ProviderId) -> Option<&RegisteredProvider> {
        self.providers.iter().find(|p| &p.id == id)
    }

    /// The providers offering the request, healthy ones first, and the first one's spec.
    pub(crate) fn route_for(&self, request: &VideoRequest) -> Result<(Vec<ProviderId>, ModelSpec)> {
        let offering: Vec<(&RegisteredProvider, &ModelSpec)> = self
            .providers
            .iter()
            .filter_map(|p| {
                p.models
                    .iter()
                    .find(|m| m.id == request.model)
                    .map(|m| (p, m))
            })
            .collect();
        if offering.is_empty() {
            let known: Vec<&str> = self
                .providers
                .iter()
                .flat_map(|p| p.models.iter().map(|m| m.id.as_str()))
                .collect();
            return Err(Error::invalid(
                "model",
                format!(
                    "no provider offers `{}`; offered: {}",
                    request.model,
                    known.join(", ")
                ),
            ));
        }
        let fitting: Vec<(&RegisteredProvider, &ModelSpec)> = offering
            .iter()
            .filter(|(_, m)| m.offers(request.duration_secs, request.aspect_ratio))
            .copied()
            .collect();
        if fitting.is_empty() {
            let (field, offered) = if offering
                .iter()
                .any(|(_, m)| m.durations.contains(&request.duration_secs))
            {
                let mut ratios: Vec<&str> = offering
                    .iter()
                    .flat_map(|(_, m)| m.aspect_ratios.iter().map(|r| r.as_str()))
                    .collect();
                ratios.dedup();
                ("aspect_ratio", ratios.join(", "))
            } else {
                let mut durations: Vec<u32> = offering
                    .iter()
                    .flat_map(|(_, m)| m.durations.iter().copied())
                    .collect();
                durations.sort_unstable();
                durations.dedup();
                let list: Vec<String> = durations.iter().map(|d| format!("{d}s")).collect();
                ("duration_secs", list.join(", "))
            };
            return Err(Error::invalid(
                field,
                format!("model `{}` offers only {offered}", request.model),
            ));
        }
        let now = self.clock.now();
        let (mut healthy, cooling): (Vec<_>, Vec<_>) = fitting
            .into_iter()
            .partition(|(p, _)| !self.health.is_cooling(&p.id, now));
        healthy.extend(cooling);
        let spec = healthy[0].1.clone();
        let route = healthy.iter().map(|(p, _)| p.id.clone()).collect();
        Ok((route, spec))
    }

    fn limits(&self, job: &Job) -> Limits {
        Limits {
            max_attempts: self.policy.max_attempts,
            providers: job.route.len(),
        }
    }

    /// Applies `input` and then every input the effects produce, until the job rests.
    /// Returns the job as last written (or as read, when the input did not apply).
    pub(crate) async fn drive(
        &self,
        job: Job,
        input: Input,
        observation: Observation,
    ) -> Result<Job> {
        let mut job = job;
        let mut input = input;
        let mut observation = observation;
        loop {
            let Some((written, effects)) = self.apply(job.clone(), input, &observation).await?
            else {
                if input == Input::Accepted {
                    // The job moved on (cancelled, timed out) while the provider accepted a
                    // submission we can no longer record: stop it there.
                    if let Observation::Accepted { request_id, .. } = &observation {
                        self.cancel_orphan(&job, request_id).await;
                    }
                }
                return self.jobs.job(&job.id).await;
            };
            job = written;
            let mut follow = None;
            for effect in effects {
                match effect {
                    Effect::Submit { provider_index } => {
                        follow = Some(self.submit(&job, provider_index).await);
                    }
                    Effect::Poll => follow = Some(self.poll(&job).await),
                    Effect::Store => follow = Some(self.store_video(&job).await),
                    Effect::CancelAtProvider => self.cancel_at_provider(&job).await,
                    Effect::AlertOutOfFunds { provider_index } => {
                        self.provider_alert(&job, provider_index, FailureClass::OutOfFunds)
                            .await;
                    }
                    Effect::AlertKeyRejected { provider_index } => {
                        self.provider_alert(&job, provider_index, FailureClass::KeyRejected)
                            .await;
                    }
                    // Written with the transition itself.
                    Effect::Settle
                    | Effect::Refund
                    | Effect::GrantFreeRetry
                    | Effect::RetryLater => {}
                }
            }
            match follow {
                Some(Follow::Input(next_input, next_observation)) => {
                    input = next_input;
                    observation = next_observation;
                }
                Some(Follow::Reschedule) => return self.reschedule(job).await,
                None => return Ok(job),
            }
        }
    }

    /// One step and its compare-and-set write, re-read and re-applied when another writer won.
    /// `None` when the input does not apply to the job's state.
    async fn apply(
        &self,
        mut job: Job,
        input: Input,
        observation: &Observation,
    ) -> Result<Option<(Job, Vec<Effect>)>> {
        for _ in 0..CONFLICT_RETRIES {
            let step = machine::step(&lifecycle(&job), input, &self.limits(&job));
            if !step.applied {
                tracing::debug!(?input, state = %job.state, "input absorbed");
                return Ok(None);
            }
            let now = self.clock.now();
            let mut next = job.clone();
            next.state = step.next.state;
            next.attempts = step.next.attempts;
            next.provider_index = step.next.provider_index;
            next.store_attempts = step.next.store_attempts;
            next.updated_at = now;
            observe(&mut next, input, observation, &self.policy.deadline);
            self.schedule(&mut next, &step.effects, now);
            let mut update = JobUpdate::new(&job, next);
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
                Err(Error::Conflict { .. }) => {
                    tracing::debug!(job = %job.id, "lost a compare-and-set race; re-reading");
                    job = self.jobs.job(&job.id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "job {} kept changing under {CONFLICT_RETRIES} tries",
            job.id
        )))
    }

    /// Sets when the job is next looked at and who holds it while an effect is in flight.
    fn schedule(&self, job: &mut Job, effects: &[Effect], now: Timestamp) {
        let policy = &self.policy;
        let in_flight = effects
            .iter()
            .any(|e| matches!(e, Effect::Submit { .. } | Effect::Store | Effect::Poll));
        if job.state.is_terminal() {
            job.next_check_at = None;
            job.lease_owner = None;
            job.lease_until = None;
        } else if in_flight {
            // If this process dies mid-call, another worker resumes once the lease expires.
            let until = now.plus(policy.lease);
            job.next_check_at = Some(until);
            job.lease_owner = Some(self.worker.clone());
            job.lease_until = Some(until);
        } else {
            let wait = if effects.contains(&Effect::RetryLater) {
                policy
                    .retry_backoff
                    .delay(job.attempts.max(job.store_attempts))
            } else if job.webhook {
                policy.webhook_backstop
            } else {
                policy.poll_interval
            };
            job.next_check_at = Some(now.plus(wait));
            job.lease_owner = None;
            job.lease_until = None;
        }
    }

    /// Writes only the schedule: nothing new from the provider, look again later.
    async fn reschedule(&self, job: Job) -> Result<Job> {
        let now = self.clock.now();
        let mut next = job.clone();
        self.schedule(&mut next, &[], now);
        match self.jobs.update(&JobUpdate::new(&job, next)).await {
            Ok(written) => Ok(written),
            // Someone else moved the job meanwhile; their write stands.
            Err(Error::Conflict { .. }) => self.jobs.job(&job.id).await,
            Err(e) => Err(e),
        }
    }

    async fn submit(&self, job: &Job, provider_index: usize) -> Follow {
        let Some(registered) = job
            .route
            .get(provider_index)
            .and_then(|id| self.provider(id))
        else {
            return Follow::Input(
                Input::SubmitFailed(FailureClass::Permanent),
                Observation::Failure {
                    reason: format!(
                        "provider #{provider_index} of the job's route is not registered"
                    ),
                },
            );
        };
        let webhook_url = self.policy.webhook_url(&registered.id);
        let request = SubmitRequest {
            job: job.id.clone(),
            request: job.request.clone(),
            provider_model: provider_model(registered, &job.request.model),
            webhook_url: webhook_url.clone(),
        };
        match registered.provider.submit(&request).await {
            Ok(submission) => {
                tracing::info!(provider = %registered.id, request_id = %submission.request_id, "submitted");
                Follow::Input(
                    Input::Accepted,
                    Observation::Accepted {
                        request_id: submission.request_id,
                        webhook: webhook_url.is_some(),
                    },
                )
            }
            Err(e) => {
                let class = FailureClass::of(&e);
                tracing::warn!(provider = %registered.id, error = %e, ?class, "submit failed");
                if matches!(class, FailureClass::OutOfFunds | FailureClass::KeyRejected) {
                    self.health.cool(
                        &registered.id,
                        self.clock.now().plus(self.policy.provider_cooldown),
                    );
                }
                Follow::Input(
                    Input::SubmitFailed(class),
                    Observation::Failure {
                        reason: e.to_string(),
                    },
                )
            }
        }
    }

    async fn poll(&self, job: &Job) -> Follow {
        let Some(registered) = job.provider().and_then(|id| self.provider(id)) else {
            tracing::warn!("the job's provider is not registered; cannot poll");
            return Follow::Reschedule;
        };
        let query = status_query(job, registered);
        match registered.provider.status(&query).await {
            Ok(status) => self.follow_status(registered, &query, status).await,
            Err(e) => {
                tracing::warn!(error = %e, "status poll failed");
                Follow::Reschedule
            }
        }
    }

    /// Turns a provider's status (from a poll or a webhook) into the machine's input.
    pub(crate) async fn follow_status(
        &self,
        registered: &RegisteredProvider,
        query: &StatusQuery,
        status: ProviderStatus,
    ) -> Follow {
        match status {
            ProviderStatus::Queued { .. } => Follow::Reschedule,
            ProviderStatus::Running { progress, stage } => {
                Follow::Input(Input::Progress, Observation::Progress { progress, stage })
            }
            ProviderStatus::Succeeded { video: Some(video) } => {
                Follow::Input(Input::Succeeded, Observation::Video { url: video.url })
            }
            ProviderStatus::Succeeded { video: None } => {
                match registered.provider.result(query).await {
                    Ok(video) => {
                        Follow::Input(Input::Succeeded, Observation::Video { url: video.url })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fetching the result failed; will poll again");
                        Follow::Reschedule
                    }
                }
            }
            ProviderStatus::Failed { reason, class } => Follow::Input(
                Input::ProviderFailed(class),
                Observation::Failure { reason },
            ),
        }
    }

    async fn store_video(&self, job: &Job) -> Follow {
        let Some(url) = job.video_url.clone() else {
            return Follow::Input(
                Input::StoreFailed,
                Observation::Failure {
                    reason: "the provider gave no video URL".to_owned(),
                },
            );
        };
        let Some(media) = &self.media else {
            return Follow::Input(
                Input::Stored,
                Observation::Stored(StoredVideo {
                    key: url.clone(),
                    location: url,
                    bytes: None,
                    content_type: None,
                }),
            );
        };
        let video = VideoToStore {
            job: job.id.clone(),
            user: job.user.clone(),
            url,
        };
        match media.store(&video).await {
            Ok(stored) => Follow::Input(Input::Stored, Observation::Stored(stored)),
            Err(e) => {
                tracing::warn!(error = %e, "storing the video failed");
                Follow::Input(
                    Input::StoreFailed,
                    Observation::Failure {
                        reason: e.to_string(),
                    },
                )
            }
        }
    }

    async fn cancel_at_provider(&self, job: &Job) {
        let Some(registered) = job.provider().and_then(|id| self.provider(id)) else {
            return;
        };
        if job.provider_request_id.is_none() {
            return;
        }
        let query = status_query(job, registered);
        if let Err(e) = registered.provider.cancel(&query).await {
            tracing::warn!(error = %e, "cancelling at the provider failed");
        }
    }

    async fn cancel_orphan(&self, job: &Job, request_id: &str) {
        let Some(registered) = job.provider().and_then(|id| self.provider(id)) else {
            return;
        };
        let query = StatusQuery {
            request_id: request_id.to_owned(),
            provider_model: provider_model(registered, &job.request.model),
        };
        tracing::warn!(
            request_id,
            "submission accepted after the job moved on; cancelling it"
        );
        if let Err(e) = registered.provider.cancel(&query).await {
            tracing::warn!(error = %e, "cancelling the orphan submission failed");
        }
    }

    async fn provider_alert(&self, job: &Job, provider_index: usize, class: FailureClass) {
        let Some(provider) = job.route.get(provider_index).cloned() else {
            return;
        };
        let kind = if class == FailureClass::OutOfFunds {
            AlertKind::ProviderOutOfFunds { provider }
        } else {
            AlertKind::KeyRejected { provider }
        };
        let detail = job.failure.clone().unwrap_or_default();
        self.alert(kind, detail).await;
    }

    /// Sends an alert unless the same subject was alerted within the cooldown.
    pub(crate) async fn alert(&self, kind: AlertKind, detail: String) {
        let now = self.clock.now();
        if !self
            .alerts
            .admit(&kind.subject(), now, self.policy.alert_cooldown)
        {
            tracing::debug!(alert = %kind, "alert suppressed within the cooldown");
            return;
        }
        let alert = Alert {
            kind,
            detail,
            at: now,
        };
        if let Err(e) = self.notifier.notify(&alert).await {
            tracing::error!(error = %e, alert = %alert.kind, "sending an admin alert failed");
        }
    }
}

/// Writes what was learnt into the job.
fn observe(job: &mut Job, input: Input, observation: &Observation, deadline: &std::time::Duration) {
    match observation {
        Observation::Accepted {
            request_id,
            webhook,
        } => {
            job.provider_request_id = Some(request_id.clone());
            job.webhook = *webhook;
            job.failure = None;
            job.stage = Some("submitted".to_owned());
        }
        Observation::Failure { reason } => job.failure = Some(reason.clone()),
        Observation::Progress { progress, stage } => {
            let p = progress.unwrap_or(job.progress).min(100).max(job.progress);
            job.progress = p;
            job.stage = Some(stage.clone().unwrap_or_else(|| stage_for(p).to_owned()));
        }
        Observation::Video { url } => {
            job.video_url = Some(url.clone());
            job.progress = 100;
            job.stage = Some("storing".to_owned());
        }
        Observation::Stored(stored) => {
            job.output = Some(stored.clone());
            job.stage = Some("completed".to_owned());
        }
        Observation::Nothing => {}
    }
    match input {
        Input::DeadlinePassed => {
            job.failure = Some(format!(
                "no result within {} minutes",
                deadline.as_secs() / 60
            ));
        }
        Input::CancelRequested => job.failure = Some("cancelled by the user".to_owned()),
        _ => {}
    }
    if job.state == JobState::Queued {
        // Back in the queue after a failure: the old request is over.
        if matches!(input, Input::SubmitFailed(_) | Input::ProviderFailed(_)) {
            job.provider_request_id = None;
            job.progress = 0;
            job.stage = Some("retrying".to_owned());
        } else if matches!(input, Input::Resume) {
            job.stage = Some("submitting".to_owned());
        }
    }
    if job.state.is_terminal() {
        job.stage = Some(job.state.as_str().to_owned());
    }
}
