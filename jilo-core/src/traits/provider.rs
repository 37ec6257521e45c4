use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{JobId, ProviderId};
use crate::video::{ModelSpec, VideoRequest};

/// Names one submission: a job and its attempt number (1-based).
///
/// It is the submission's idempotency key ([`SubmissionKey::idempotency_key`]) and the tail
/// of its webhook URL (`…/webhooks/{provider}/{job}/{attempt}`), so a delivery for a request
/// id the Studio never learned (the submit's answer was lost) still finds its job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubmissionKey {
    /// The job.
    pub job: JobId,
    /// The attempt, 1 for the first submission.
    pub attempt: u32,
}

impl SubmissionKey {
    /// The key of a job's attempt.
    pub fn new(job: JobId, attempt: u32) -> Self {
        Self { job, attempt }
    }

    /// The idempotency key a provider that supports one sends: `jilo-{job}-{attempt}`.
    /// The same job and attempt always give the same key.
    pub fn idempotency_key(&self) -> String {
        format!("jilo-{}-{}", self.job, self.attempt)
    }

    /// The key from the two last segments of a webhook URL, as a host's router captured them
    /// (`…/webhooks/fal/{job}/{attempt}`). A missing job or an attempt that is not a positive
    /// number is [`Error::InvalidInput`].
    pub fn from_route(job: &str, attempt: &str) -> Result<Self> {
        let job = job.trim();
        if job.is_empty() || job.contains('/') {
            return Err(Error::invalid("job", "the webhook route names no job"));
        }
        let attempt = attempt
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| {
                Error::invalid("attempt", format!("`{attempt}` is not a positive number"))
            })?;
        Ok(Self::new(JobId::new(job), attempt))
    }
}

/// What the Studio asks a provider to start.
///
/// The attempt is written to the store before the call, so whatever happens to the call the
/// Studio knows an attempt may be at the provider. A provider that supports idempotency keys
/// sends [`SubmitRequest::idempotency_key`]; one that can look a submission up by it says so
/// through [`VideoProvider::find_submission`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubmitRequest {
    /// The job this submission is for (providers may send it as metadata).
    pub job: JobId,
    /// The attempt this submission is, 1-based, all providers together.
    pub attempt: u32,
    /// The user's request.
    pub request: VideoRequest,
    /// The provider's model to run, from its [`ModelSpec::provider_model`].
    pub provider_model: String,
    /// Where the provider should deliver the result, if the host receives webhooks; it names
    /// the job and attempt (`…/webhooks/{provider}/{job}/{attempt}`).
    pub webhook_url: Option<String>,
}

impl SubmitRequest {
    /// A submission of `request` as attempt `attempt` of `job`, without a webhook.
    pub fn new(
        job: JobId,
        attempt: u32,
        request: VideoRequest,
        provider_model: impl Into<String>,
    ) -> Self {
        Self {
            job,
            attempt,
            request,
            provider_model: provider_model.into(),
            webhook_url: None,
        }
    }

    /// The same submission with a webhook URL.
    pub fn with_webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    /// The job and attempt this submission is.
    pub fn key(&self) -> SubmissionKey {
        SubmissionKey::new(self.job.clone(), self.attempt)
    }

    /// The idempotency key: the same for every try of this job's attempt.
    pub fn idempotency_key(&self) -> String {
        self.key().idempotency_key()
    }
}

/// What a provider knows of a submission looked up by its key
/// ([`VideoProvider::find_submission`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmissionSearch {
    /// The provider has it: the submit went through.
    Found(Submission),
    /// The provider is sure it never accepted it: the attempt is lost and may be sent again.
    NotFound,
    /// The provider cannot look submissions up (the default).
    Unsupported,
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

/// A finished video at the provider, and how it is fetched.
///
/// ```
/// use jilo_core::ProviderVideo;
///
/// // A CDN that checks where a download comes from (速创's).
/// let video = ProviderVideo::new("https://cdn.example/v.mp4")
///     .with_header("Referer", "https://api.example.com/");
/// assert_eq!(video.headers, [("Referer".to_owned(), "https://api.example.com/".to_owned())]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderVideo {
    /// Where to download it.
    pub url: String,
    /// MIME type, when the provider says.
    pub content_type: Option<String>,
    /// Size in bytes, when the provider says.
    pub bytes: Option<u64>,
    /// Headers the download must carry (a hotlink-protected CDN's `Referer`, a browser
    /// `User-Agent`); never a key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl ProviderVideo {
    /// A video at this URL, fetched with no particular header.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The same video, fetched with this header too.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
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
    /// The submit left but its answer was lost (a time-out or a connection cut after the
    /// request was sent): the provider may be running, and billing, it. The Studio does not
    /// resubmit; it waits for the attempt's webhook and asks the provider
    /// ([`VideoProvider::find_submission`]) until the attempt is found or known lost.
    Unknown,
}

impl FailureClass {
    /// How the Studio handles an error from a submit.
    ///
    /// [`Error::OutcomeUnknown`] and [`Error::Timeout`] are [`FailureClass::Unknown`]: a
    /// time-out cannot tell whether the request arrived. Other retryable errors (a refused
    /// connection, DNS, 429, a 5xx the provider answered without taking the request) were
    /// known not to start anything and are [`FailureClass::Retryable`].
    pub fn of(error: &Error) -> FailureClass {
        match error {
            Error::ProviderOutOfFunds { .. } => FailureClass::OutOfFunds,
            Error::Unauthorized { .. } => FailureClass::KeyRejected,
            Error::OutcomeUnknown { .. } | Error::Timeout { .. } => FailureClass::Unknown,
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
/// signatures cover the exact bytes, and the submission its URL names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Header names and values as received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The job and attempt the delivery's URL names (`…/{provider}/{job}/{attempt}`), when
    /// the host's route captured them; see [`SubmissionKey::from_route`].
    pub submission: Option<SubmissionKey>,
}

impl WebhookDelivery {
    /// A delivery from headers and a body.
    pub fn new(headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            headers,
            body: body.into(),
            submission: None,
        }
    }

    /// A delivery as an HTTP server hands it over: axum's, hyper's or tower's `HeaderMap` (the
    /// `http` crate's) and the raw body. A header whose value is not visible ASCII is kept
    /// with its bytes read as UTF-8 where they are, so a signature check sees what was sent.
    ///
    /// ```
    /// use jilo_core::{SubmissionKey, WebhookDelivery};
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-fal-webhook-request-id", "r-1".parse().unwrap());
    /// // e.g. in axum: Path((provider, job, attempt)), headers: HeaderMap, body: Bytes
    /// let delivery = WebhookDelivery::from_http(&headers, bytes::Bytes::from_static(b"{}"))
    ///     .for_submission(SubmissionKey::from_route("job-1", "2")?);
    /// assert_eq!(delivery.header("X-Fal-Webhook-Request-Id"), Some("r-1"));
    /// # Ok::<(), jilo_core::Error>(())
    /// ```
    pub fn from_http(headers: &http::HeaderMap, body: impl Into<Vec<u8>>) -> Self {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let value = value
                    .to_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|_| String::from_utf8_lossy(value.as_bytes()).into_owned());
                (name.as_str().to_owned(), value)
            })
            .collect();
        Self::new(headers, body)
    }

    /// The same delivery, received at the URL of this submission.
    pub fn for_submission(mut self, key: SubmissionKey) -> Self {
        self.submission = Some(key);
        self
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

/// What a cancel did. Only [`CancelOutcome::Cancelled`] means the provider will not bill;
/// the Studio refunds a user's cancel only then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// The provider stopped the request and will not bill it.
    Cancelled,
    /// Too late: the provider started or finished it and will bill it (a cancel it merely
    /// forwarded to a running job, which may ignore it, is also too late).
    TooLate,
    /// The service has no cancel: the request runs to its end.
    Unsupported,
}

/// What a provider can do, as data the Studio reads before it acts (instead of calling and
/// catching "unsupported"). Build it with `..Capabilities::default()` (nothing) so fields
/// added later keep your code compiling.
///
/// ```
/// use jilo_core::Capabilities;
///
/// // A polled service with a cancel endpoint and nothing else.
/// let caps = Capabilities { cancel: true, ..Capabilities::default() };
/// assert!(!caps.webhooks && !caps.find_submission && !caps.balance);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// It calls the webhook URL given at submit when a request progresses or ends. Without
    /// it the Studio sends no webhook URL and polls the job every `poll_interval`; with it,
    /// and a `webhook_base_url`, it waits for deliveries and polls only at the
    /// `webhook_backstop`.
    pub webhooks: bool,
    /// [`VideoProvider::cancel`] can stop a request. Without it a user's cancel of a job at
    /// the provider is answered as [`CancelOutcome::Unsupported`] without a call.
    pub cancel: bool,
    /// [`VideoProvider::find_submission`] can look a submission up by its key. Without it
    /// an unknown submit outcome is reconciled by its webhook alone.
    pub find_submission: bool,
    /// [`VideoProvider::balance`] reads the account's balance (for low-balance alerts).
    pub balance: bool,
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
/// - `submit` is paid and called once per attempt; never retry it inside the provider after
///   the request may have left. Map a failure before sending (connection refused, DNS, 429, a
///   5xx that took nothing) to a retryable error, and a time-out or a connection cut after
///   sending to [`Error::OutcomeUnknown`] (or [`Error::Timeout`]): the Studio then waits for
///   the attempt's webhook and asks [`VideoProvider::find_submission`] before sending again.
///   Send [`SubmitRequest::idempotency_key`] where the service takes one.
/// - `parse_webhook` verifies the signature over the raw bytes before reading them, and returns
///   [`Error::Unauthorized`] for a bad one and [`Error::Protocol`] for an unreadable body.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait VideoProvider: Send + Sync {
    /// The provider's name in jilo, e.g. `fal`. Webhook routes use it.
    fn id(&self) -> ProviderId;

    /// The models offered, with durations, aspect ratios and prices.
    fn models(&self) -> Vec<ModelSpec>;

    /// What this provider can do ([`Capabilities`]); the Studio reads it once, when it is
    /// built, and calls only what is there.
    fn capabilities(&self) -> Capabilities;

    /// Starts a generation.
    async fn submit(&self, request: &SubmitRequest) -> Result<Submission>;

    /// Reads where a request is.
    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus>;

    /// Fetches the finished video of a succeeded request.
    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo>;

    /// Asks the provider to stop a request.
    async fn cancel(&self, query: &StatusQuery) -> Result<CancelOutcome>;

    /// Verifies and parses a webhook delivery. It must also check the delivery belongs to
    /// this account where the service signs that (a delivery to a job-named URL is matched
    /// to the job the URL names).
    async fn parse_webhook(&self, delivery: &WebhookDelivery) -> Result<WebhookEvent>;

    /// Looks a submission up by its key after its submit's answer was lost. The default, for
    /// services without such a lookup, is [`SubmissionSearch::Unsupported`]: the Studio then
    /// relies on the attempt's webhook and never resubmits the attempt blindly.
    async fn find_submission(&self, _key: &SubmissionKey) -> Result<SubmissionSearch> {
        Ok(SubmissionSearch::Unsupported)
    }

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
                response: Some(HttpFailure::new(402, "余额不足")),
                source: None,
            }),
            FailureClass::OutOfFunds
        );
        assert_eq!(
            FailureClass::of(&Error::Unauthorized {
                service: svc(),
                response: None,
                source: None,
            }),
            FailureClass::KeyRejected
        );
        assert_eq!(
            FailureClass::of(&Error::Unavailable {
                service: svc(),
                reason: "503".into(),
                response: None,
                source: None,
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
