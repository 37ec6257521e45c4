//! 速创 (api.wuyinkeji.com) as a [`VideoProvider`] (feature `suchuang`): VEO 3.1 fast on the
//! current asynchronous API, followed by polling (the service sends no webhooks).
//!
//! ```no_run
//! # fn run() -> jilo_core::Result<()> {
//! use jilo_providers::suchuang::SuchuangProvider;
//! // SUCHUANG_API_KEY, SUCHUANG_API_URL (default https://api.wuyinkeji.com).
//! let suchuang = SuchuangProvider::from_env()?;
//! # let _ = suchuang; Ok(()) }
//! ```
//!
//! What the spec could establish (from third-party clients; no official page was readable),
//! and how the client stays tolerant where it could not:
//! - The key goes both as the raw `Authorization` header (no `Bearer`) and as `?key=`.
//! - Every answer is `{code, msg, data}`; an error may come as HTTP 200 with `code != 200` or
//!   as a non-2xx status with the same body: both are read, and mapped by `code` and by what
//!   `msg` says in 速创's own words (`余额` in a 4xx is out of funds unless the prompt sent
//!   carried it, `403` a rejected key, 5xx busy); an echo of the prompt never decides.
//! - Task ids are strings or numbers. Status `0` queued, `1` processing, `2` succeeded (URL in
//!   `result[0]`), `3` failed (`fail_reason`). The legacy VEO API numbered them differently
//!   (`1` success, `2` failed, `3` generating, URL in `content`): an answer that carries
//!   `content` is read with the legacy numbers.
//! - No balance endpoint is known, and no cancel: both answer "unsupported".
//! - Result URLs are hotlink-protected: the video says so ([`ProviderVideo::headers`]:
//!   `Referer: https://api.wuyinkeji.com/` and a browser `User-Agent`), and media storage
//!   fetches it with them.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jilo_core::{
    AspectRatio, CancelOutcome, Capabilities, Error, FailureClass, HttpFailure, ModelPrice,
    ModelSpec, ProviderBalance, ProviderId, ProviderStatus, ProviderVideo, Result, StatusQuery,
    Submission, SubmitRequest, VideoProvider, WebhookDelivery, WebhookEvent,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::classify;
use crate::http::{self, CallKind, RetryPolicy};
use jilo_core::config;

/// 速创's API.
pub const DEFAULT_API_URL: &str = "https://api.wuyinkeji.com";
/// jilo's id for VEO here, shared with the FAL catalog's `veo3` so jobs fail over between them.
pub const VEO3: &str = "veo3";

const SERVICE: &str = "suchuang";

/// The models offered: VEO 3.1 fast, 8 s, at 0.05 CNY a second (40 fen a video).
pub fn catalog() -> Vec<ModelSpec> {
    vec![ModelSpec {
        id: VEO3.to_owned(),
        provider_model: "veo3.1_fast".to_owned(),
        durations: vec![8],
        aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait],
        prices: vec![ModelPrice {
            duration_secs: 8,
            credits: 15,
            provider_cost_minor: 40,
            currency: "CNY".to_owned(),
        }],
    }]
}

/// The 速创 provider.
pub struct SuchuangProvider {
    id: ProviderId,
    key: SecretString,
    base: String,
    http: reqwest::Client,
    reads: RetryPolicy,
    models: Vec<ModelSpec>,
}

impl fmt::Debug for SuchuangProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuchuangProvider")
            .field("id", &self.id)
            .field("key", &"***")
            .field("base", &config::redact_url(&self.base))
            .finish_non_exhaustive()
    }
}

impl SuchuangProvider {
    /// A provider named `suchuang` with this key. A key with whitespace around it or a
    /// control character is refused ([`Error::InvalidInput`] on `SUCHUANG_API_KEY`), and so
    /// is a machine whose TLS roots cannot load.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = http::secret("SUCHUANG_API_KEY", key)?;
        let http = http::client(Duration::from_secs(60))?;
        Ok(Self {
            id: ProviderId::new("suchuang"),
            key,
            base: DEFAULT_API_URL.to_owned(),
            http,
            reads: RetryPolicy::suchuang(),
            models: catalog(),
        })
    }

    /// `SUCHUANG_API_KEY` (required), `SUCHUANG_API_URL`; a bad value is
    /// [`Error::InvalidInput`] naming its variable.
    pub fn from_env() -> Result<Self> {
        let key = http::required_env("SUCHUANG_API_KEY", "set it to a 速创 API key")?;
        let provider = Self::new(key)?;
        match http::env_var("SUCHUANG_API_URL") {
            Some(url) => provider.with_base_url(url),
            None => Ok(provider),
        }
    }

    /// Another API base URL ([`Error::InvalidInput`] on `SUCHUANG_API_URL` when it is not an
    /// http(s) base URL).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Result<Self> {
        self.base = config::base_url("SUCHUANG_API_URL", &url.into())?;
        Ok(self)
    }

    /// Another HTTP client.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Another retry policy for status reads.
    pub fn with_retries(mut self, reads: RetryPolicy) -> Self {
        self.reads = reads;
        self
    }

    fn authed(&self, call: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        call.header("authorization", self.key.expose_secret())
            .query(&[("key", self.key.expose_secret())])
    }

    /// The envelope's `data`, or the error its `code` and `msg` say.
    /// `sent` are the texts the request carried (the prompt): words of theirs that the
    /// service echoes in `msg` never classify the error.
    async fn envelope(
        &self,
        resp: reqwest::Response,
        kind: CallKind,
        sent: &[&str],
    ) -> Result<Value> {
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| http::transport_error(SERVICE, kind, e))?;
        let body: Value = match serde_json::from_str(&text) {
            Ok(body) => body,
            // A gateway's page or plain text on an error status: its status decides.
            Err(_) if status >= 400 => {
                return Err(classify::http_error(SERVICE, status, &text, None))
            }
            Err(e) => {
                return Err(Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!("the answer is not JSON: {e}"),
                    response: Some(HttpFailure::new(status, &text)),
                    source: None,
                })
            }
        };
        match body["code"].as_i64() {
            Some(200) => Ok(body["data"].clone()),
            code => Err(body_error(status, code, &text, &body, sent)),
        }
    }
}

/// An error from the envelope: the body's code where it is HTTP-like, else the HTTP status,
/// and what 速创 says in its own `msg` (it has no code for an empty balance: `code: 400` with
/// `余额` in `msg`), never words the request carried (`sent`: an echoed prompt).
fn body_error(
    http_status: u16,
    code: Option<i64>,
    text: &str,
    body: &Value,
    sent: &[&str],
) -> Error {
    let msg = body["msg"]
        .as_str()
        .or(body["message"].as_str())
        .or(body["data"]["message"].as_str())
        .unwrap_or_default();
    if code == Some(404) || classify::message_says(msg, &["不存在"], sent) {
        return Error::not_found("task", format!("at {SERVICE}: {msg}"));
    }
    // The HTTP status when the answer was an HTTP error (so an alert reports what came back);
    // on a 200 the body's code. A code that is not HTTP-like (10001, -1) refuses the request:
    // read it as a 400, so what the message says still counts.
    let status = match code.and_then(|c| u16::try_from(c).ok()) {
        _ if http_status >= 400 => http_status,
        Some(c) if (400..600).contains(&c) => c,
        _ => 400,
    };
    let says = classify::says_in_message(msg, sent);
    classify::error_from(SERVICE, status, text, None, says)
}

/// Answers whose `{code, msg}` body the envelope reads itself: 4xx but 429 (a 429 and 5xx go
/// through the shared retry and mapping).
fn client_error(status: u16) -> bool {
    (400..500).contains(&status) && status != 429
}

fn task_id(data: &Value) -> Option<String> {
    match &data["id"] {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What 速创's result CDN checks before it serves a video (hotlink protection): the API's
/// site as the referer and a browser's user agent. A bare download gets 403.
pub const CDN_REFERER: &str = "https://api.wuyinkeji.com/";
/// The browser user agent sent with result downloads.
pub const CDN_USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

fn cdn_headers() -> Vec<(String, String)> {
    vec![
        ("Referer".to_owned(), CDN_REFERER.to_owned()),
        ("User-Agent".to_owned(), CDN_USER_AGENT.to_owned()),
    ]
}

/// A task's detail as a status: the current numbering, or the legacy one when the answer
/// carries the legacy `content` field.
fn status_of(data: &Value) -> ProviderStatus {
    // The legacy answers carry the video in a `content` string and no `result` list.
    let legacy = data["content"].is_string() && data.get("result").is_none();
    let code = data["status"]
        .as_i64()
        .or_else(|| data["status"].as_str().and_then(|s| s.parse().ok()));
    let url = if legacy {
        data["content"].as_str().map(str::to_owned)
    } else {
        data["result"]
            .get(0)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
    .filter(|u| !u.trim().is_empty());
    let failure = data["fail_reason"]
        .as_str()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or("速创 reported the task failed")
        .to_owned();
    let (succeeded, failed, running) = if legacy { (1, 2, 3) } else { (2, 3, 1) };
    match code {
        Some(c) if c == succeeded => match url {
            Some(url) => ProviderStatus::Succeeded {
                video: Some(ProviderVideo {
                    url,
                    content_type: Some("video/mp4".to_owned()),
                    bytes: None,
                    headers: cdn_headers(),
                }),
            },
            // Done but the URL not there yet: look again, never resubmit a task that ran.
            None => ProviderStatus::Running {
                progress: Some(99),
                stage: Some("publishing the video".to_owned()),
            },
        },
        Some(c) if c == failed => ProviderStatus::Failed {
            reason: failure,
            class: FailureClass::Permanent,
        },
        Some(c) if c == running => ProviderStatus::Running {
            progress: None,
            stage: None,
        },
        Some(0) => ProviderStatus::Queued { position: None },
        other => ProviderStatus::Failed {
            reason: format!("速创 reported the unknown status {other:?}"),
            class: FailureClass::Permanent,
        },
    }
}

#[async_trait]
impl VideoProvider for SuchuangProvider {
    fn id(&self) -> ProviderId {
        self.id.clone()
    }

    fn models(&self) -> Vec<ModelSpec> {
        self.models.clone()
    }

    /// Nothing beyond submit and status: 速创 sends no webhooks (its jobs are polled), has
    /// no cancel, no lookup by key and no known balance endpoint.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<Submission> {
        http::redacted(self.key.expose_secret(), async {
            let url = format!("{}/api/async/video_{}", self.base, request.provider_model);
            let body = json!({
                "prompt": request.request.prompt.trim(),
                "aspectRatio": request.request.aspect_ratio.as_str(),
                "size": "720p",
            });
            // A paid start: sent once; only a refused connection or a 429 is sent again.
            let resp = http::send(
                SERVICE,
                CallKind::PaidStart,
                &RetryPolicy::once(),
                client_error,
                |f| f.into_error(SERVICE),
                || self.authed(self.http.post(&url).json(&body)),
            )
            .await?;
            let data = self
                .envelope(
                    resp,
                    CallKind::PaidStart,
                    &[request.request.prompt.as_str()],
                )
                .await?;
            let request_id = task_id(&data).ok_or_else(|| Error::OutcomeUnknown {
                service: SERVICE.to_owned(),
                reason: "the submit was accepted without a task id".to_owned(),
                source: None,
            })?;
            Ok(Submission { request_id })
        })
        .await
    }

    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus> {
        http::redacted(self.key.expose_secret(), async {
            let url = format!("{}/api/async/detail", self.base);
            let resp = http::send(
                SERVICE,
                CallKind::Read,
                &self.reads,
                client_error,
                |f| f.into_error(SERVICE),
                || {
                    self.authed(self.http.get(&url))
                        .query(&[("id", query.request_id.as_str())])
                },
            )
            .await?;
            let data = self.envelope(resp, CallKind::Read, &[]).await?;
            // A failed task's reason is kept on the job: no key in it either.
            Ok(match status_of(&data) {
                ProviderStatus::Failed { reason, class } => ProviderStatus::Failed {
                    reason: config::redact(reason, &[self.key.expose_secret()]),
                    class,
                },
                status => status,
            })
        })
        .await
    }

    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo> {
        http::redacted(self.key.expose_secret(), async {
            match self.status(query).await? {
                ProviderStatus::Succeeded { video: Some(video) } => Ok(video),
                other => Err(Error::not_allowed(format!(
                    "task {} has no video yet ({other:?})",
                    query.request_id
                ))),
            }
        })
        .await
    }

    async fn cancel(&self, _query: &StatusQuery) -> Result<CancelOutcome> {
        http::redacted(self.key.expose_secret(), async {
            Ok(CancelOutcome::Unsupported)
        })
        .await
    }

    async fn parse_webhook(&self, _delivery: &WebhookDelivery) -> Result<WebhookEvent> {
        http::redacted(self.key.expose_secret(), async {
            Err(Error::Unauthorized {
                service: format!("{SERVICE} webhook: 速创 sends no webhooks"),
                response: None,
                source: None,
            })
        })
        .await
    }

    async fn balance(&self) -> Result<Option<ProviderBalance>> {
        http::redacted(self.key.expose_secret(), async { Ok(None) }).await
    }
}
