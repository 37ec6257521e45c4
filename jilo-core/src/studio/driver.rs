//! Performing the state machine's steps: compare-and-set writes and the effects they call for.

use crate::error::{Error, Result};
use crate::ids::Timestamp;
use crate::job::{Job, JobState, JobUpdate, StoredVideo};
use crate::ledger::{Grant, HoldState};
use crate::machine::{self, Effect, Input, Lifecycle, Limits};
use crate::traits::FailureClass;

use super::Inner;

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
            // Copying a video can take long, so it holds the job longer.
            let lease = if effects.contains(&Effect::Store) {
                policy.storing_lease.max(policy.lease)
            } else {
                policy.lease
            };
            let until = now.plus(lease);
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
