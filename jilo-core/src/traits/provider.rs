use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{JobId, ProviderId};
use crate::video::{ModelSpec, VideoRequest};

/// What the Studio asks a provider to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The job this submission is for (providers may send it as metadata).
    pub job: JobId,
    /// The user's request.
    pub request: VideoRequest,
    /// The provider's model to run, from its [`ModelSpec::provider_model`].
    pub provider_model: String,
    /// Where the provider should deliver the result, if the host receives webhooks.
    pub webhook_url: Option<String>,
}

/// A provider's acceptance of a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The provider's id for the request; status, result, cancel and webhooks use it.
    pub request_id: String,
}

/// Which request to ask about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusQuery {
    /// The provider's request id.
    pub request_id: String,
    /// The provider model it runs (some services build status URLs from it).
    pub provider_model: String,
}

/// A finished video at the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderVideo {
    /// Where to download it.
    pub url: String,
    /// MIME type, when the provider says.
    pub content_type: Option<String>,
    /// Size in bytes, when the provider says.
    pub bytes: Option<u64>,
}

/// How a failure should be handled by the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Try again (on the same provider), within the attempt limit.
    Retryable,
    /// The provider's account cannot pay: fail over to the next provider and alert the admin.
    OutOfFunds,
    /// The provider rejected our key: fail over and alert the admin.
    KeyRejected,
    /// Trying again cannot help (the provider refused the input).
    Permanent,
}

impl FailureClass {
    /// How the Studio handles an error from a provider call.
    pub fn of(error: &Error) -> FailureClass {
        match error {
            Error::ProviderOutOfFunds { .. } => FailureClass::OutOfFunds,
            Error::Unauthorized { .. } => FailureClass::KeyRejected,
            e if e.is_retryable() => FailureClass::Retryable,
            _ => FailureClass::Permanent,
        }
    }
}

/// Where a request is at the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ProviderStatus {
    /// Waiting in the provider's queue.
    Queued {
        /// Position in the queue, when reported.
        position: Option<u32>,
    },
    /// Being generated.
    Running {
        /// 0 to 100, when reported.
        progress: Option<u8>,
        /// A short stage description, when reported.
        stage: Option<String>,
    },
    /// Done. Some services put the video in the status or webhook; others need
    /// [`VideoProvider::result`], and then `video` is `None`.
    Succeeded {
        /// The video, when already known.
        video: Option<ProviderVideo>,
    },
    /// The provider gave up.
    Failed {
        /// The provider's reason.
        reason: String,
        /// How to handle it.
        class: FailureClass,
    },
}

/// A webhook as the host received it: headers and the raw body, untouched, because
/// signatures cover the exact bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Header names and values as received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl WebhookDelivery {
    /// A delivery from headers and a body.
    pub fn new(headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            headers,
            body: body.into(),
        }
    }

    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A verified, parsed webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The provider's request id.
    pub request_id: String,
    /// An id of this delivery for deduplication: the provider's, or a digest of the body.
    pub delivery_id: String,
    /// What it reports.
    pub status: ProviderStatus,
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// The provider stopped the request.
    Cancelled,
    /// Too late: the provider already finished or started it and cannot stop.
    TooLate,
    /// The service has no cancel.
    Unsupported,
}

/// A provider's account balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderBalance {
    /// In the currency's minor units.
    pub minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A paid video-generation service: FAL, 速创, or one of your own.
///
/// Contract for implementers:
/// - Map every service error to [`Error`] in one function: 402 or a balance message →
///   [`Error::ProviderOutOfFunds`], 401/403 key → [`Error::Unauthorized`], 429 →
///   [`Error::RateLimited`], 5xx → [`Error::Unavailable`]. Keep the status and a truncated body,
///   never the key.
/// - `submit` is paid: never retry it blindly after a time-out; the Studio reconciles by
///   `status` first.
/// - `parse_webhook` verifies the signature over the raw bytes before reading them, and returns
///   [`Error::Unauthorized`] for a bad one and [`Error::Protocol`] for an unreadable body.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait VideoProvider: Send + Sync {
    /// The provider's name in jilo, e.g. `fal`. Webhook routes use it.
    fn id(&self) -> ProviderId;

    /// The models offered, with durations, aspect ratios and prices.
    fn models(&self) -> Vec<ModelSpec>;

    /// Starts a generation.
    async fn submit(&self, request: &SubmitRequest) -> Result<Submission>;

    /// Reads where a request is.
    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus>;

    /// Fetches the finished video of a succeeded request.
    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo>;

    /// Asks the provider to stop a request.
    async fn cancel(&self, query: &StatusQuery) -> Result<CancelOutcome>;

    /// Verifies and parses a webhook delivery.
    async fn parse_webhook(&self, delivery: &WebhookDelivery) -> Result<WebhookEvent>;

    /// The account balance, or `None` when the service has no balance endpoint.
    async fn balance(&self) -> Result<Option<ProviderBalance>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HttpFailure;

    #[test]
    fn errors_classify_for_the_state_machine() {
        let svc = || "p".to_owned();
        assert_eq!(
            FailureClass::of(&Error::ProviderOutOfFunds {
                service: svc(),
                response: Some(HttpFailure::new(402, "余额不足"))
            }),
            FailureClass::OutOfFunds
        );
        assert_eq!(
            FailureClass::of(&Error::Unauthorized {
                service: svc(),
                response: None
            }),
            FailureClass::KeyRejected
        );
        assert_eq!(
            FailureClass::of(&Error::Unavailable {
                service: svc(),
                reason: "503".into(),
                response: None
            }),
            FailureClass::Retryable
        );
        assert_eq!(
            FailureClass::of(&Error::invalid("prompt", "bad")),
            FailureClass::Permanent
        );
    }

    #[test]
    fn webhook_headers_are_case_insensitive() {
        let d = WebhookDelivery::new(vec![("X-Fal-Webhook-Signature".into(), "ab".into())], "{}");
        assert_eq!(d.header("x-fal-webhook-signature"), Some("ab"));
        assert_eq!(d.header("missing"), None);
    }
}
