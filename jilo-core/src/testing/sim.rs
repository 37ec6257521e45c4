//! An in-process simulated video provider: instant, scriptable, and strict about its input.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, HttpFailure, Result};
use crate::ids::ProviderId;
use crate::traits::{
    CancelOutcome, Capabilities, ProviderBalance, ProviderStatus, ProviderVideo, StatusQuery,
    Submission, SubmissionKey, SubmissionSearch, SubmitRequest, VideoProvider, WebhookDelivery,
    WebhookEvent,
};
use crate::video::{AspectRatio, ModelPrice, ModelSpec};

/// The model every [`SimProvider`] offers by default: 5 or 10 seconds, any ratio, 10 credits.
pub const SIM_MODEL: &str = "sim-video";

/// The header carrying a simulated webhook's shared token.
///
/// The simulator authenticates deliveries by token equality: enough to test that a Studio
/// refuses unauthenticated deliveries; real providers sign (FAL: Ed25519 over the raw body).
pub const SIM_TOKEN_HEADER: &str = "x-sim-token";

/// A failure the simulator can be told to answer a submit with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFailure {
    /// HTTP 503.
    Unavailable,
    /// HTTP 402, account out of funds (速创 says `余额不足`).
    OutOfFunds,
    /// HTTP 401.
    KeyRejected,
    /// HTTP 429 with `Retry-After: 2`.
    RateLimited,
    /// HTTP 422, input refused.
    Invalid,
    /// The submission is accepted (and billed) but its answer is lost on the way back: the
    /// caller sees [`Error::OutcomeUnknown`].
    AnswerLost,
    /// The call times out before the submission reaches the provider: nothing is accepted,
    /// but the caller, seeing [`Error::Timeout`], cannot tell.
    TimedOut,
}

impl SimFailure {
    fn error(self, service: &str) -> Error {
        let service = service.to_owned();
        match self {
            SimFailure::Unavailable => Error::Unavailable {
                service,
                reason: "service unavailable".into(),
                response: Some(HttpFailure::new(503, "upstream busy")),
                source: None,
            },
            SimFailure::OutOfFunds => Error::ProviderOutOfFunds {
                service,
                response: Some(HttpFailure::new(402, r#"{"code":400,"msg":"余额不足"}"#)),
                source: None,
            },
            SimFailure::KeyRejected => Error::Unauthorized {
                service,
                response: Some(HttpFailure::new(401, "invalid key")),
                source: None,
            },
            SimFailure::RateLimited => Error::RateLimited {
                service,
                retry_after: Some(std::time::Duration::from_secs(2)),
                response: Some(HttpFailure::new(429, "slow down")),
                source: None,
            },
            SimFailure::Invalid => Error::Protocol {
                service,
                reason: "input refused".into(),
                response: Some(HttpFailure::new(422, "prompt: field required")),
                source: None,
            },
            SimFailure::TimedOut => Error::Timeout {
                service,
                response: None,
                source: None,
            },
            SimFailure::AnswerLost => Error::OutcomeUnknown {
                service,
                reason: "connection reset after the request was sent".into(),
                source: None,
            },
        }
    }
}

#[derive(Debug, Default)]
struct SimState {
    next_id: u64,
    requests: HashMap<String, ProviderStatus>,
    submit_failures: VecDeque<SimFailure>,
    failing_forever: Option<SimFailure>,
    submissions: Vec<SubmitRequest>,
    by_key: HashMap<String, String>,
    lookup: bool,
    cancels: Vec<String>,
    deliveries: u64,
    balance_minor: Option<i64>,
}

/// The body of a simulated webhook delivery.
#[derive(Debug, Serialize, Deserialize)]
struct SimDelivery {
    request_id: String,
    delivery_id: String,
    status: ProviderStatus,
}

/// A simulated provider for tests, examples and benchmarks.
///
/// Submissions are accepted at once and stay queued until the test moves them with
/// [`SimProvider::set_status`] or a delivery from [`SimProvider::webhook`]. Submits can be made
/// to fail ([`SimProvider::fail_next_submits`]). It checks what it is sent: a model it does not
/// offer or a duration or ratio the model lacks is refused like a real service would.
#[derive(Debug)]
pub struct SimProvider {
    id: ProviderId,
    /// Makes request ids unique across simulator instances, as a real service's are.
    instance: String,
    models: Vec<ModelSpec>,
    token: String,
    state: Mutex<SimState>,
}

impl SimProvider {
    /// A provider named `id` offering [`SIM_MODEL`].
    pub fn new(id: &str) -> Self {
        let model = ModelSpec {
            id: SIM_MODEL.to_owned(),
            provider_model: format!("{id}/sim-video-v1"),
            durations: vec![5, 10],
            aspect_ratios: vec![
                AspectRatio::Landscape,
                AspectRatio::Portrait,
                AspectRatio::Square,
            ],
            prices: vec![
                ModelPrice {
                    duration_secs: 5,
                    credits: 10,
                    provider_cost_minor: 25,
                    currency: "USD".to_owned(),
                },
                ModelPrice {
                    duration_secs: 10,
                    credits: 20,
                    provider_cost_minor: 50,
                    currency: "USD".to_owned(),
                },
            ],
        };
        Self::with_models(id, vec![model])
    }

    /// A provider named `id` offering these models.
    pub fn with_models(id: &str, models: Vec<ModelSpec>) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        Self {
            id: ProviderId::new(id),
            instance: instance[..8].to_owned(),
            models,
            token: format!("sim-token-{id}"),
            state: Mutex::new(SimState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` submits fail this way.
    pub fn fail_next_submits(&self, failure: SimFailure, n: usize) {
        let mut s = self.lock();
        s.submit_failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Every submit fails this way until [`SimProvider::recover`].
    pub fn fail_all_submits(&self, failure: SimFailure) {
        self.lock().failing_forever = Some(failure);
    }

    /// Submits succeed again.
    pub fn recover(&self) {
        let mut s = self.lock();
        s.failing_forever = None;
        s.submit_failures.clear();
    }

    /// Lets [`VideoProvider::find_submission`] answer from the idempotency keys it saw
    /// (default: the lookup is unsupported, like FAL's).
    pub fn enable_lookup(&self) {
        self.lock().lookup = true;
    }

    /// The request id accepted for an idempotency key, if any.
    pub fn request_for_key(&self, idempotency_key: &str) -> Option<String> {
        self.lock().by_key.get(idempotency_key).cloned()
    }

    /// Sets the account balance it reports (default 10,000 minor units).
    pub fn set_balance(&self, minor: i64) {
        self.lock().balance_minor = Some(minor);
    }

    /// How many distinct requests it accepted (and would bill).
    pub fn billed(&self) -> usize {
        self.lock().requests.len()
    }

    /// Sets what `status` reports for a request.
    pub fn set_status(&self, request_id: &str, status: ProviderStatus) {
        self.lock().requests.insert(request_id.to_owned(), status);
    }

    /// Every submit accepted or refused so far, in order.
    pub fn submissions(&self) -> Vec<SubmitRequest> {
        self.lock().submissions.clone()
    }

    /// Request ids cancelled so far.
    pub fn cancels(&self) -> Vec<String> {
        self.lock().cancels.clone()
    }

    /// The ids of accepted requests, in order.
    pub fn request_ids(&self) -> Vec<String> {
        let s = self.lock();
        let mut ids: Vec<String> = s.requests.keys().cloned().collect();
        ids.sort_by_key(|id| id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()));
        ids
    }

    /// A correctly authenticated delivery reporting `status` for a request, with a fresh
    /// delivery id. Also sets the request's status.
    pub fn webhook(&self, request_id: &str, status: ProviderStatus) -> WebhookDelivery {
        let delivery_id = {
            let mut s = self.lock();
            s.deliveries += 1;
            s.requests.insert(request_id.to_owned(), status.clone());
            format!("{}-{}-delivery-{}", self.id, self.instance, s.deliveries)
        };
        let body = SimDelivery {
            request_id: request_id.to_owned(),
            delivery_id,
            status,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        WebhookDelivery::new(
            vec![
                (SIM_TOKEN_HEADER.to_owned(), self.token.clone()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            bytes,
        )
    }

    /// A delivery saying the request succeeded with a video at `url`.
    pub fn succeeded(&self, request_id: &str, url: &str) -> WebhookDelivery {
        self.webhook(
            request_id,
            ProviderStatus::Succeeded {
                video: Some(ProviderVideo {
                    url: url.to_owned(),
                    content_type: Some("video/mp4".to_owned()),
                    bytes: None,
                    headers: Vec::new(),
                }),
            },
        )
    }

    fn known(&self, request_id: &str) -> Result<ProviderStatus> {
        self.lock()
            .requests
            .get(request_id)
            .cloned()
            .ok_or_else(|| Error::not_found("request", request_id))
    }
}

#[async_trait]
impl VideoProvider for SimProvider {
    fn id(&self) -> ProviderId {
        self.id.clone()
    }

    fn models(&self) -> Vec<ModelSpec> {
        self.models.clone()
    }

    /// Everything: webhooks (the test delivers them), cancel, balance, and a lookup that
    /// answers [`SubmissionSearch::Unsupported`] until [`SimProvider::enable_lookup`].
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            webhooks: true,
            cancel: true,
            find_submission: true,
            balance: true,
        }
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<Submission> {
        let mut s = self.lock();
        s.submissions.push(request.clone());
        let key = request.idempotency_key();
        if let Some(known) = s.by_key.get(&key) {
            // Idempotent by key: the same attempt is the same request, billed once.
            return Ok(Submission {
                request_id: known.clone(),
            });
        }
        let failure = match s.failing_forever {
            Some(f) => Some(f),
            None => s.submit_failures.pop_front(),
        };
        if let Some(f) = failure.filter(|f| *f != SimFailure::AnswerLost) {
            return Err(f.error(self.id.as_str()));
        }
        let offered = self.models.iter().any(|m| {
            m.provider_model == request.provider_model
                && m.offers(request.request.duration_secs, request.request.aspect_ratio)
        });
        if !offered {
            return Err(Error::Protocol {
                service: self.id.to_string(),
                reason: format!(
                    "model {} cannot make {}s at {}",
                    request.provider_model,
                    request.request.duration_secs,
                    request.request.aspect_ratio
                ),
                response: Some(HttpFailure::new(422, "unsupported model parameters")),
                source: None,
            });
        }
        s.next_id += 1;
        let request_id = format!("{}-{}-req-{}", self.id, self.instance, s.next_id);
        s.requests.insert(
            request_id.clone(),
            ProviderStatus::Queued { position: Some(0) },
        );
        s.by_key.insert(key, request_id.clone());
        if let Some(lost) = failure {
            return Err(lost.error(self.id.as_str()));
        }
        Ok(Submission { request_id })
    }

    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus> {
        self.known(&query.request_id)
    }

    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo> {
        match self.known(&query.request_id)? {
            ProviderStatus::Succeeded { video: Some(v) } => Ok(v),
            ProviderStatus::Succeeded { video: None } => Ok(ProviderVideo {
                url: format!("https://sim.invalid/{}.mp4", query.request_id),
                content_type: Some("video/mp4".to_owned()),
                bytes: None,
                headers: Vec::new(),
            }),
            other => Err(Error::not_allowed(format!(
                "request {} has no result yet ({other:?})",
                query.request_id
            ))),
        }
    }

    async fn cancel(&self, query: &StatusQuery) -> Result<CancelOutcome> {
        let status = self.known(&query.request_id)?;
        self.lock().cancels.push(query.request_id.clone());
        Ok(match status {
            ProviderStatus::Queued { .. } => CancelOutcome::Cancelled,
            _ => CancelOutcome::TooLate,
        })
    }

    async fn parse_webhook(&self, delivery: &WebhookDelivery) -> Result<WebhookEvent> {
        let token_ok = delivery
            .header(SIM_TOKEN_HEADER)
            .is_some_and(|t| t.as_bytes() == self.token.as_bytes());
        if !token_ok {
            return Err(Error::Unauthorized {
                service: format!("{} webhook", self.id),
                response: None,
                source: None,
            });
        }
        let body: SimDelivery =
            serde_json::from_slice(&delivery.body).map_err(|e| Error::Protocol {
                service: self.id.to_string(),
                reason: format!("webhook body: {e}"),
                response: None,
                source: None,
            })?;
        Ok(WebhookEvent {
            request_id: body.request_id,
            delivery_id: body.delivery_id,
            status: body.status,
        })
    }

    async fn find_submission(&self, key: &SubmissionKey) -> Result<SubmissionSearch> {
        let s = self.lock();
        if !s.lookup {
            return Ok(SubmissionSearch::Unsupported);
        }
        Ok(match s.by_key.get(&key.idempotency_key()) {
            Some(request_id) => SubmissionSearch::Found(Submission {
                request_id: request_id.clone(),
            }),
            None => SubmissionSearch::NotFound,
        })
    }

    async fn balance(&self) -> Result<Option<ProviderBalance>> {
        Ok(Some(ProviderBalance {
            minor: self.lock().balance_minor.unwrap_or(10_000),
            currency: "USD".to_owned(),
        }))
    }
}
