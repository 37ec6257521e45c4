//! Provider webhooks: verified, deduplicated and applied as transitions.

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{JobId, ProviderId};
use crate::job::{DeliveryOutcome, DeliveryRecord, Job, JobState};
use crate::machine::Input;
use crate::traits::{ProviderStatus, WebhookDelivery};

use super::driver::Mode;
use super::effects;
use super::observation::{Follow, Observation};
use super::shared::Studio;

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

impl Studio {
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
}
