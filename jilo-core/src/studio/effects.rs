//! The effects that call services: submit, poll, store, cancel, alert.

use crate::alert::{Alert, AlertKind};
use crate::job::{Job, StoredVideo};
use crate::machine::Input;
use crate::traits::{FailureClass, ProviderStatus, StatusQuery, SubmitRequest, VideoToStore};

use super::driver::{Follow, Observation};
use super::routing::{provider_model, status_query};
use super::{Inner, RegisteredProvider};

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

    pub(crate) async fn poll(&self, job: &Job) -> Follow {
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

    pub(crate) async fn store_video(&self, job: &Job) -> Follow {
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

    pub(crate) async fn cancel_at_provider(&self, job: &Job) {
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

    pub(crate) async fn cancel_orphan(&self, job: &Job, request_id: &str) {
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
