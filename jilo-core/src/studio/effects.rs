//! The effects that call services: submit, poll, store, cancel, alert.

use crate::alert::{Alert, AlertClaim, AlertKind, ProviderCooling};
use crate::ids::ProviderId;
use crate::job::{Job, StoredVideo};
use crate::machine::Input;
use crate::traits::{
    CancelOutcome, FailureClass, ProviderStatus, ProviderVideo, StatusQuery, SubmissionKey,
    SubmissionSearch, SubmitRequest, VideoToStore,
};

use super::observation::{Follow, Observation};
use super::routing::{provider_model, status_query};
use super::shared::Inner;

/// Turns a provider's status (from a poll or a webhook) into the machine's input. It calls
/// nothing: a success without the video's URL leaves fetching it to the store step.
pub(crate) fn follow_status(status: ProviderStatus) -> Follow {
    match status {
        ProviderStatus::Queued { .. } => Follow::Reschedule,
        ProviderStatus::Running { progress, stage } => {
            Follow::Input(Input::Progress, Observation::Progress { progress, stage })
        }
        ProviderStatus::Succeeded { video } => {
            Follow::Input(Input::Succeeded, Observation::Video { video })
        }
        ProviderStatus::Failed { reason, class } => Follow::Input(
            Input::ProviderFailed(class),
            Observation::Failure {
                reason,
                retry_after: None,
            },
        ),
    }
}

impl Inner {
    pub(crate) async fn submit(&self, job: &Job, provider_index: usize) -> Follow {
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
                    retry_after: None,
                },
            );
        };
        let key = SubmissionKey::new(job.id.clone(), job.attempts);
        // A provider that sends no webhooks gets no URL: its job is polled.
        let webhook_url = if registered.capabilities.webhooks {
            self.policy.webhook_url(&registered.id, &key)
        } else {
            None
        };
        let mut request = SubmitRequest::new(
            job.id.clone(),
            job.attempts,
            job.request.clone(),
            provider_model(registered, &job.request.model),
        );
        request.webhook_url = webhook_url.clone();
        let started = std::time::Instant::now();
        let submitted = registered.provider.submit(&request).await;
        crate::telemetry::submit(
            &registered.id,
            submitted.as_ref().err().map(FailureClass::of),
            started.elapsed(),
        );
        match submitted {
            Ok(submission) => {
                self.breaker_count(&registered.id, false);
                tracing::info!(provider = %registered.id, request_id = %submission.request_id, attempt = job.attempts, "submitted");
                Follow::Input(
                    Input::Accepted,
                    Observation::Accepted {
                        request_id: submission.request_id,
                        attempt: job.attempts,
                        webhook: webhook_url.is_some(),
                    },
                )
            }
            Err(e) => {
                let class = FailureClass::of(&e);
                tracing::warn!(provider = %registered.id, error = %e, ?class, attempt = job.attempts, "submit failed");
                if matches!(class, FailureClass::Retryable | FailureClass::Unknown)
                    && self.breaker_count(&registered.id, true)
                        >= self.policy.breaker_failures.max(1)
                {
                    self.breaker_count(&registered.id, false);
                    self.cool(&registered.id).await;
                    self.alert(
                        AlertKind::ProviderDegraded {
                            provider: registered.id.clone(),
                        },
                        format!(
                            "{} submits in a row failed; the last: {e}. New jobs go to the other \
                             providers for {} minutes.",
                            self.policy.breaker_failures,
                            self.policy.provider_cooldown.as_secs() / 60
                        ),
                    )
                    .await;
                }
                if matches!(class, FailureClass::OutOfFunds | FailureClass::KeyRejected) {
                    self.cool(&registered.id).await;
                }
                Follow::Input(
                    Input::SubmitFailed(class),
                    Observation::Failure {
                        reason: e.to_string(),
                        retry_after: e.retry_after(),
                    },
                )
            }
        }
    }

    /// Counts a retryable failure (`true`) or resets the count (`false`); returns the count.
    fn breaker_count(&self, provider: &ProviderId, failed: bool) -> u32 {
        let mut counts = self
            .failures_in_a_row
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if failed {
            let n = counts.entry(provider.clone()).or_insert(0);
            *n += 1;
            *n
        } else {
            counts.remove(provider);
            0
        }
    }

    /// Marks a provider to be tried last for [`crate::Policy::provider_cooldown`], for every
    /// process sharing the store.
    async fn cool(&self, provider: &ProviderId) {
        let cooling = ProviderCooling {
            provider: provider.clone(),
            until: self.clock.now().plus(self.policy.provider_cooldown),
        };
        if let Err(e) = self.alerts.cool_provider(&cooling).await {
            tracing::warn!(error = %e, "recording a cooling provider failed");
        }
    }

    /// Finds out what became of a submission whose answer was lost: after the grace window
    /// its webhook had, asks the provider where it can. Resubmits (via `SubmissionLost`) only
    /// when the provider says it never received it.
    pub(crate) async fn reconcile(&self, job: &Job) -> Follow {
        let Some(pending) = job.pending_submit.clone() else {
            return Follow::Reschedule;
        };
        let grace_end = pending.since.plus(self.policy.submit_grace);
        if self.clock.now() < grace_end {
            return Follow::RescheduleAt(grace_end);
        }
        let Some(registered) = job
            .route
            .get(pending.provider_index)
            .and_then(|id| self.provider(id))
        else {
            tracing::warn!("the pending submission's provider is not registered; waiting");
            return Follow::Reschedule;
        };
        let key = SubmissionKey::new(job.id.clone(), pending.attempt);
        let search = if registered.capabilities.find_submission {
            registered.provider.find_submission(&key).await
        } else {
            Ok(SubmissionSearch::Unsupported)
        };
        match search {
            Ok(SubmissionSearch::Found(submission)) => {
                tracing::info!(request_id = %submission.request_id, attempt = pending.attempt, "pending submission found at the provider");
                Follow::Input(
                    Input::Accepted,
                    Observation::Accepted {
                        request_id: submission.request_id,
                        attempt: pending.attempt,
                        webhook: self.policy.webhook_base_url.is_some()
                            && registered.capabilities.webhooks,
                    },
                )
            }
            Ok(SubmissionSearch::NotFound) => {
                tracing::info!(
                    attempt = pending.attempt,
                    "pending submission never reached the provider"
                );
                Follow::Input(
                    Input::SubmissionLost,
                    Observation::Failure {
                        reason: format!(
                            "attempt {} never reached {}",
                            pending.attempt, registered.id
                        ),
                        retry_after: None,
                    },
                )
            }
            Ok(SubmissionSearch::Unsupported) => {
                tracing::debug!("the provider cannot look submissions up; waiting for its webhook");
                Follow::Reschedule
            }
            Err(e) => {
                tracing::warn!(error = %e, "looking up a pending submission failed");
                Follow::Reschedule
            }
        }
    }

    pub(crate) async fn poll(&self, job: &Job) -> Follow {
        let Some(registered) = job.provider().and_then(|id| self.provider(id)) else {
            tracing::warn!("the job's provider is not registered; cannot poll");
            return Follow::Reschedule;
        };
        let query = status_query(job, registered);
        let started = std::time::Instant::now();
        let status = registered.provider.status(&query).await;
        crate::telemetry::provider_call(&registered.id, "status", started.elapsed());
        match status {
            Ok(status) => follow_status(status),
            Err(e) => {
                tracing::warn!(error = %e, "status poll failed");
                Follow::Reschedule
            }
        }
    }

    /// The finished video and how it is fetched: as the provider delivered it, or asked now.
    async fn video_url(&self, job: &Job) -> Result<ProviderVideo, String> {
        if let Some(url) = &job.video_url {
            return Ok(ProviderVideo {
                url: url.clone(),
                headers: job.video_headers.clone(),
                ..ProviderVideo::default()
            });
        }
        let registered = job
            .provider()
            .and_then(|id| self.provider(id))
            .ok_or_else(|| "the job's provider is not registered".to_owned())?;
        let query = status_query(job, registered);
        registered
            .provider
            .result(&query)
            .await
            .map_err(|e| format!("fetching the result failed: {e}"))
    }

    pub(crate) async fn store_video(&self, job: &Job) -> Follow {
        let (url, headers) = match self.video_url(job).await {
            Ok(video) => (video.url, video.headers),
            Err(reason) => {
                tracing::warn!(%reason, "no video to store yet");
                return Follow::Input(
                    Input::StoreFailed,
                    Observation::Failure {
                        reason,
                        retry_after: None,
                    },
                );
            }
        };
        let Some(media) = &self.media else {
            return Follow::Input(
                Input::Stored,
                Observation::Stored {
                    stored: StoredVideo {
                        key: url.clone(),
                        location: url.clone(),
                        bytes: None,
                        content_type: None,
                    },
                    video_url: url,
                },
            );
        };
        let video = VideoToStore {
            job: job.id.clone(),
            user: job.user.clone(),
            url: url.clone(),
            headers,
        };
        match media.store(&video).await {
            Ok(stored) => Follow::Input(
                Input::Stored,
                Observation::Stored {
                    stored,
                    video_url: url,
                },
            ),
            Err(e) => {
                tracing::warn!(error = %e, "storing the video failed");
                Follow::Input(
                    Input::StoreFailed,
                    Observation::Failure {
                        reason: e.to_string(),
                        retry_after: None,
                    },
                )
            }
        }
    }

    /// Asks the provider to stop the job's request, best effort (a timed-out job).
    pub(crate) async fn cancel_at_provider(&self, job: &Job) {
        if let Err(e) = self.ask_cancel(job).await {
            tracing::warn!(error = %e, "cancelling at the provider failed");
        }
    }

    /// Asks the provider to stop the job's current request and says what it answered.
    pub(crate) async fn ask_cancel(&self, job: &Job) -> crate::Result<CancelOutcome> {
        let registered = job
            .provider()
            .and_then(|id| self.provider(id))
            .ok_or_else(|| {
                crate::Error::not_found(
                    "provider",
                    job.provider().map(|p| p.as_str()).unwrap_or("-"),
                )
            })?;
        if job.provider_request_id.is_none() || !registered.capabilities.cancel {
            return Ok(CancelOutcome::Unsupported);
        }
        let query = status_query(job, registered);
        let started = std::time::Instant::now();
        let answer = registered.provider.cancel(&query).await;
        crate::telemetry::provider_call(&registered.id, "cancel", started.elapsed());
        answer
    }

    pub(crate) async fn cancel_orphan(&self, job: &Job, request_id: &str) {
        let Some(registered) = job.provider().and_then(|id| self.provider(id)) else {
            return;
        };
        if !registered.capabilities.cancel {
            tracing::warn!(
                request_id,
                "submission accepted after the job moved on; the provider has no cancel"
            );
            return;
        }
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

    pub(crate) async fn provider_alert(
        &self,
        job: &Job,
        provider_index: usize,
        class: FailureClass,
    ) {
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

    /// Tells the admin a finished video was lost to its copy: the provider billed for it and
    /// the user was refunded (distinct from a provider failure).
    pub(crate) async fn copy_alert(&self, job: &Job) {
        let Some(provider) = job.provider().cloned() else {
            return;
        };
        let detail = format!(
            "job {} ({}): the provider's video at {} could not be copied into media storage \
             after {} tries; the user was refunded",
            job.id,
            job.user,
            job.video_url.as_deref().unwrap_or("(no URL)"),
            job.store_attempts
        );
        self.alert(
            AlertKind::CopyFailed {
                provider,
                job: job.id.clone(),
            },
            detail,
        )
        .await;
    }

    /// Sends an alert unless the same subject was alerted within the cooldown, by any process
    /// sharing the store. When the store cannot say, the alert goes out: a repeat is better
    /// than silence.
    pub(crate) async fn alert(&self, kind: AlertKind, detail: String) {
        let now = self.clock.now();
        let claim = AlertClaim {
            subject: kind.subject(),
            now,
            cooldown: self.policy.alert_cooldown,
        };
        match self.alerts.claim_alert(&claim).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(alert = %kind, "alert suppressed within the cooldown");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "the alert gate failed; sending anyway"),
        }
        crate::telemetry::alert(&kind);
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
