//! Generating, cancelling and reading jobs: the calls a host makes for a user.

use tracing::Instrument;

use crate::alert::AlertKind;
use crate::error::{Error, Result};
use crate::ids::{JobId, ProviderId, UserId};
use crate::job::{Job, JobState};
use crate::ledger::{Balance, Reservation};
use crate::machine::Input;
use crate::video::VideoRequest;

use super::driver::Mode;
use super::observation::Observation;
use super::shared::Studio;

impl Studio {
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
}
