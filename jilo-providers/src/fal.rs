//! fal.ai's queue API as a [`VideoProvider`] (feature `fal`): minimax video-01, Kling
//! text-to-video and Veo 3, submitted with the job-named webhook, followed by status, result
//! and cancel, and webhooks verified with Ed25519 against fal's published keys.
//!
//! ```no_run
//! # fn run() -> jilo_core::Result<()> {
//! use jilo_providers::fal::FalProvider;
//! // FAL_KEY, FAL_QUEUE_URL (default https://queue.fal.run), FAL_JWKS_URL.
//! let fal = FalProvider::from_env()?.with_user_id("my-fal-user-id");
//! # let _ = fal; Ok(()) }
//! ```
//!
//! The rules the spec gives, as implemented:
//! - Submit uses the model's full id; status, result and cancel use only `owner/app` (the
//!   `workflows` and `comfy` namespaces keep three segments). Durations are strings on the wire.
//! - A submit is paid: it is never retried after it may have reached fal. A refused connection
//!   goes to the backup host (`queue.falrun.com`); a 5xx without fal's `x-fal-request-id`
//!   header (an ingress error: nothing was queued) is retryable; a 5xx with it, a time-out or
//!   a connection cut after sending is [`Error::OutcomeUnknown`]: the Studio reconciles by the
//!   job-named webhook (fal has no lookup by key).
//! - There is no FAILED status: a failure is `COMPLETED` with `error`; an unknown status is a
//!   terminal failure, never polled forever.
//! - Webhooks: `X-Fal-Webhook-{Request-Id,User-Id,Timestamp,Signature}`; Ed25519 over
//!   `request_id \n user_id \n timestamp \n hex(sha256(raw body))`, a timestamp within 300 s,
//!   every key of the JWKS tried (cached; refetched once, at most once a minute, when none
//!   verifies). Set [`FalProvider::with_user_id`] so a delivery signed for another fal account
//!   is refused. The body is never re-serialised (seeds exceed `i64`).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use jilo_core::{
    AspectRatio, CancelOutcome, Capabilities, Error, FailureClass, HttpFailure, ModelPrice,
    ModelSpec, ProviderBalance, ProviderId, ProviderStatus, ProviderVideo, Result, StatusQuery,
    Submission, SubmitRequest, VideoProvider, VideoRequest, WebhookDelivery, WebhookEvent,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::classify::{self, Says};
use crate::http::{self, CallKind, RateLimiter, RetryPolicy};
use jilo_core::config;

/// fal's queue host.
pub const DEFAULT_QUEUE_URL: &str = "https://queue.fal.run";
/// The backup queue host, tried when the first refuses the connection.
pub const BACKUP_QUEUE_URL: &str = "https://queue.falrun.com";
/// Where fal publishes its webhook signing keys.
pub const DEFAULT_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";
/// Calls a minute the client allows itself by default (fal's suggested pace).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 100;
/// How far a webhook's timestamp may be from now.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

const SERVICE: &str = "fal";
const JWKS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The least time between two fetches of the keys for signatures that do not verify.
pub const JWKS_REFETCH_GAP: Duration = Duration::from_secs(60);

/// jilo's id for minimax video-01 (6 s, fixed).
pub const MINIMAX_VIDEO_01: &str = "minimax-video-01";
/// jilo's id for Kling 1.6 standard text-to-video (5 or 10 s; 16:9, 9:16, 1:1).
pub const KLING_T2V: &str = "kling-t2v";
/// jilo's id for Veo 3 (4, 6 or 8 s; 16:9, 9:16; with audio).
pub const VEO3: &str = "veo3";

/// The models offered, with what fal charges (USD cents) and a default credit price a host's
/// [`jilo_core::Pricing`] overrides.
pub fn catalog() -> Vec<ModelSpec> {
    let price = |duration_secs, credits, cents| ModelPrice {
        duration_secs,
        credits,
        provider_cost_minor: cents,
        currency: "USD".to_owned(),
    };
    vec![
        ModelSpec {
            id: MINIMAX_VIDEO_01.to_owned(),
            provider_model: "fal-ai/minimax/video-01".to_owned(),
            durations: vec![6],
            aspect_ratios: vec![AspectRatio::Landscape],
            prices: vec![price(6, 15, 50)],
        },
        ModelSpec {
            id: KLING_T2V.to_owned(),
            provider_model: "fal-ai/kling-video/v1.6/standard/text-to-video".to_owned(),
            durations: vec![5, 10],
            aspect_ratios: vec![
                AspectRatio::Landscape,
                AspectRatio::Portrait,
                AspectRatio::Square,
            ],
            // $0.045 a second.
            prices: vec![price(5, 15, 23), price(10, 30, 45)],
        },
        ModelSpec {
            id: VEO3.to_owned(),
            provider_model: "fal-ai/veo3".to_owned(),
            durations: vec![4, 6, 8],
            aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait],
            // $0.40 a second with audio.
            prices: vec![price(4, 30, 160), price(6, 45, 240), price(8, 60, 320)],
        },
    ]
}

/// The prompt with the request's style options folded in (no model here takes them).
fn full_prompt(r: &VideoRequest) -> String {
    let mut prompt = r.prompt.trim().to_owned();
    for (name, value) in [
        ("style", &r.style.style),
        ("tone", &r.style.tone),
        ("pacing", &r.style.pacing),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            prompt.push_str(&format!(", {name}: {}", v.trim()));
        }
    }
    prompt
}

/// The model's input for a request.
pub fn model_input(provider_model: &str, r: &VideoRequest) -> Value {
    let prompt = full_prompt(r);
    if provider_model.starts_with("fal-ai/minimax/") {
        json!({"prompt": prompt, "prompt_optimizer": true})
    } else if provider_model.starts_with("fal-ai/veo3") {
        json!({
            "prompt": prompt,
            "duration": format!("{}s", r.duration_secs),
            "aspect_ratio": r.aspect_ratio.as_str(),
            "generate_audio": true,
        })
    } else {
        json!({
            "prompt": prompt,
            "duration": r.duration_secs.to_string(),
            "aspect_ratio": r.aspect_ratio.as_str(),
        })
    }
}

/// `owner/app` of a model id: what status, result and cancel URLs use.
pub fn app_of(model: &str) -> String {
    let parts: Vec<&str> = model.trim_matches('/').split('/').collect();
    let keep = if matches!(parts.first(), Some(&"workflows" | &"comfy")) {
        3
    } else {
        2
    };
    parts
        .iter()
        .take(keep)
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

struct Jwks {
    keys: Vec<VerifyingKey>,
    fetched: Option<Instant>,
}

/// The FAL provider.
pub struct FalProvider {
    id: ProviderId,
    key: SecretString,
    queue: String,
    backup: Option<String>,
    jwks_url: String,
    user_id: Option<String>,
    http: reqwest::Client,
    reads: RetryPolicy,
    jwks: tokio::sync::Mutex<Jwks>,
    refetch_gap: Duration,
    limit: RateLimiter,
    models: Vec<ModelSpec>,
    clock: Mutex<Option<SystemTime>>,
}

impl fmt::Debug for FalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalProvider")
            .field("id", &self.id)
            .field("key", &"***")
            .field("queue", &config::redact_url(&self.queue))
            .finish_non_exhaustive()
    }
}

impl FalProvider {
    /// A provider named `fal` with this key (`FAL_KEY`, or `KEY_ID:KEY_SECRET`), on fal's
    /// hosts, offering [`catalog`]. A key with whitespace around it or a control character
    /// is refused ([`Error::InvalidInput`] on `FAL_KEY`), and so is a machine whose TLS
    /// roots cannot load.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = http::secret("FAL_KEY", key)?;
        let http = http::client(Duration::from_secs(60))?;
        Ok(Self {
            id: ProviderId::new("fal"),
            key,
            queue: DEFAULT_QUEUE_URL.to_owned(),
            backup: Some(BACKUP_QUEUE_URL.to_owned()),
            jwks_url: DEFAULT_JWKS_URL.to_owned(),
            user_id: None,
            http,
            reads: RetryPolicy::fal(),
            jwks: tokio::sync::Mutex::new(Jwks {
                keys: Vec::new(),
                fetched: None,
            }),
            refetch_gap: JWKS_REFETCH_GAP,
            limit: RateLimiter::per_minute(DEFAULT_REQUESTS_PER_MINUTE),
            models: catalog(),
            clock: Mutex::new(None),
        })
    }

    /// `FAL_KEY` (required), `FAL_USER_ID` (your fal user id: webhooks signed for another
    /// account are refused; without it a warning is logged), `FAL_QUEUE_URL`, `FAL_JWKS_URL`,
    /// and `FAL_REQUESTS_PER_MINUTE` (the client's own pace, default 100: raise it with your
    /// fal plan's limit).
    /// Each value is checked; a bad one is [`Error::InvalidInput`] naming its variable.
    pub fn from_env() -> Result<Self> {
        let var = http::env_var;
        let mut fal = Self::new(http::required_env("FAL_KEY", "set it to a fal key")?)?;
        if let Some(url) = var("FAL_QUEUE_URL") {
            fal.queue = config::base_url("FAL_QUEUE_URL", &url)?;
            fal.backup = None;
        }
        if let Some(url) = var("FAL_JWKS_URL") {
            fal.jwks_url = config::http_url("FAL_JWKS_URL", &url)?.to_string();
        }
        if let Some(limit) = var("FAL_REQUESTS_PER_MINUTE") {
            let limit = limit
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| {
                    Error::invalid("FAL_REQUESTS_PER_MINUTE", "a whole number of calls above 0")
                })?;
            fal = fal.with_requests_per_minute(limit);
        }
        match var("FAL_USER_ID") {
            Some(user) => {
                config::secret("FAL_USER_ID", &user)?;
                fal = fal.with_user_id(user);
            }
            None => tracing::warn!(
                "FAL_USER_ID is not set: webhooks signed by any fal account will be accepted"
            ),
        }
        Ok(fal)
    }

    /// Other queue hosts: the first, and a backup tried when it refuses the connection. Each
    /// must be an http(s) base URL ([`Error::InvalidInput`] on `FAL_QUEUE_URL` otherwise).
    pub fn with_queue_url(
        mut self,
        url: impl Into<String>,
        backup: Option<String>,
    ) -> Result<Self> {
        self.queue = config::base_url("FAL_QUEUE_URL", &url.into())?;
        self.backup = backup
            .map(|b| config::base_url("FAL_QUEUE_URL", &b))
            .transpose()?;
        Ok(self)
    }

    /// Another JWKS URL ([`Error::InvalidInput`] on `FAL_JWKS_URL` when it is not http(s)).
    pub fn with_jwks_url(mut self, url: impl Into<String>) -> Result<Self> {
        self.jwks_url = config::http_url("FAL_JWKS_URL", &url.into())?.to_string();
        Ok(self)
    }

    /// Your fal user id: webhooks signed for another account are refused.
    pub fn with_user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Another name in jilo (for two fal accounts side by side).
    pub fn with_id(mut self, id: impl Into<ProviderId>) -> Self {
        self.id = id.into();
        self
    }

    /// Another HTTP client.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Another retry policy for reads (status, result, keys).
    pub fn with_retries(mut self, reads: RetryPolicy) -> Self {
        self.reads = reads;
        self
    }

    /// Another client-side rate limit: `limit` calls to the queue a minute.
    pub fn with_requests_per_minute(mut self, limit: u32) -> Self {
        self.limit = RateLimiter::per_minute(limit);
        self
    }

    /// Another least time between refetches of the keys (default [`JWKS_REFETCH_GAP`]).
    pub fn with_jwks_refetch_gap(mut self, gap: Duration) -> Self {
        self.refetch_gap = gap;
        self
    }

    /// Checks webhook timestamps against this time instead of the system clock (tests).
    pub fn with_fixed_now(self, now: SystemTime) -> Self {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        self
    }

    fn now(&self) -> SystemTime {
        self.clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(SystemTime::now)
    }

    fn auth(&self) -> String {
        format!("Key {}", self.key.expose_secret())
    }

    fn request_url(&self, query: &StatusQuery, tail: &str) -> String {
        format!(
            "{}/{}/requests/{}{tail}",
            self.queue,
            app_of(&query.provider_model),
            query.request_id
        )
    }

    async fn read(&self, url: &str) -> Result<(u16, Value)> {
        self.read_as(url, true).await
    }

    /// A GET, with the key only for fal's queue (never for the public keys' URL, which may be
    /// another host).
    async fn read_as(&self, url: &str, with_key: bool) -> Result<(u16, Value)> {
        self.limit.acquire().await;
        let resp = http::send(
            SERVICE,
            CallKind::Read,
            &self.reads,
            |_| false,
            |f| map_error(f, &[]),
            || {
                let call = self.http.get(url).header("accept", "application/json");
                if with_key {
                    call.header("authorization", self.auth())
                } else {
                    call
                }
            },
        )
        .await?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| http::transport_error(SERVICE, CallKind::Read, e))?;
        let body = serde_json::from_str(&text).map_err(|e| Error::Protocol {
            service: SERVICE.to_owned(),
            reason: format!("the answer is not JSON: {e}"),
            response: Some(HttpFailure::new(status, &text)),
            source: None,
        })?;
        Ok((status, body))
    }

    /// The signing keys, fetched when missing or older than a day, or (`refresh`) when none
    /// verified and the last fetch is over a minute old.
    async fn keys(&self, refresh: bool) -> Result<Vec<VerifyingKey>> {
        let mut jwks = self.jwks.lock().await;
        let stale = jwks.fetched.is_none_or(|t| t.elapsed() > JWKS_TTL);
        let may_refetch = jwks.fetched.is_none_or(|t| t.elapsed() >= self.refetch_gap);
        if stale || (refresh && may_refetch) {
            let url = self.jwks_url.clone();
            let (_, body) = self.read_as(&url, false).await?;
            jwks.keys = body["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
                .filter_map(|k| {
                    let x = k["x"].as_str()?.trim_end_matches('=');
                    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(x)
                        .ok()?;
                    VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()
                })
                .collect();
            jwks.fetched = Some(Instant::now());
        }
        Ok(jwks.keys.clone())
    }
}

fn unauthorized(reason: &str) -> Error {
    Error::Unauthorized {
        service: format!("{SERVICE} webhook ({reason})"),
        response: None,
        source: None,
    }
}

/// A failed answer of fal's queue: the status, and a `detail` string's own words (fal's
/// account errors, e.g. `User is locked. Reason: Exhausted balance.`) beside it. A `detail`
/// list is a validation error whose items quote the input: never read. `sent` are the texts
/// the request carried (the prompt), which never count.
fn map_error(failed: http::Failed, sent: &[&str]) -> Error {
    let body: Value = serde_json::from_str(&failed.body).unwrap_or(Value::Null);
    let says = match &body["detail"] {
        Value::String(detail) => classify::says_in_message(detail, sent),
        _ => Says::Nothing,
    };
    failed.into_error_saying(SERVICE, says)
}

/// The failure class of a request fal finished with an error: its infrastructure errors are
/// worth another try (and were not billed), the rest is the input.
fn class_of(error_type: Option<&str>) -> FailureClass {
    match error_type {
        Some(t) if t.starts_with("runner_") || t.ends_with("_timeout") => FailureClass::Retryable,
        _ => FailureClass::Permanent,
    }
}

fn video_of(payload: &Value) -> Option<ProviderVideo> {
    let video = &payload["video"];
    Some(ProviderVideo {
        url: video["url"].as_str()?.to_owned(),
        content_type: video["content_type"].as_str().map(str::to_owned),
        bytes: video["file_size"].as_u64(),
        headers: Vec::new(),
    })
}

#[async_trait]
impl VideoProvider for FalProvider {
    fn id(&self) -> ProviderId {
        self.id.clone()
    }

    fn models(&self) -> Vec<ModelSpec> {
        self.models.clone()
    }

    /// Webhooks (signed, to the job-named URL) and cancel; no lookup by key and no balance
    /// endpoint.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            webhooks: true,
            cancel: true,
            ..Capabilities::default()
        }
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<Submission> {
        http::redacted(self.key.expose_secret(), async {
            let body = model_input(&request.provider_model, &request.request);
            let mut hosts = vec![self.queue.clone()];
            hosts.extend(self.backup.clone());
            let mut last = None;
            self.limit.acquire().await;
            for host in hosts {
                let url = format!("{host}/{}", request.provider_model.trim_matches('/'));
                let mut call = self
                    .http
                    .post(&url)
                    .header("authorization", self.auth())
                    .header("accept", "application/json")
                    .json(&body);
                if let Some(hook) = &request.webhook_url {
                    call = call.query(&[("fal_webhook", hook.as_str())]);
                }
                match http::traced(SERVICE, 1, call).await {
                    Ok(resp) if resp.status().is_success() => {
                        let v: Value = resp.json().await.map_err(|e| Error::OutcomeUnknown {
                            service: SERVICE.to_owned(),
                            reason: format!("the submit's answer could not be read: {e}"),
                            source: Some(Box::new(e.without_url())),
                        })?;
                        let request_id = v["request_id"].as_str().unwrap_or_default().to_owned();
                        if request_id.is_empty() {
                            return Err(Error::OutcomeUnknown {
                                service: SERVICE.to_owned(),
                                reason: "the submit was accepted without a request id".to_owned(),
                                source: None,
                            });
                        }
                        return Ok(Submission { request_id });
                    }
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let fal_saw_it = resp.headers().contains_key("x-fal-request-id");
                        let retry_after = http::retry_after(resp.headers());
                        let text = resp.text().await.unwrap_or_default();
                        if status >= 500 && fal_saw_it {
                            return Err(Error::OutcomeUnknown {
                                service: SERVICE.to_owned(),
                                reason: format!("HTTP {status} after fal took the request"),
                                source: None,
                            });
                        }
                        return Err(map_error(
                            http::Failed {
                                status,
                                body: text,
                                retry_after,
                            },
                            &[request.request.prompt.as_str()],
                        ));
                    }
                    Err(e) if e.is_connect() => {
                        tracing::warn!(host = %host, "fal refused the connection; trying the backup host");
                        last = Some(http::transport_error(SERVICE, CallKind::PaidStart, e));
                    }
                    Err(e) => return Err(http::transport_error(SERVICE, CallKind::PaidStart, e)),
                }
            }
            Err(last.unwrap_or_else(|| Error::Unavailable {
                service: SERVICE.to_owned(),
                reason: "no queue host".to_owned(),
                response: None,
                source: None,
            }))
        })
        .await
    }

    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus> {
        http::redacted(self.key.expose_secret(), async {
            let (_, v) = self
                .read(&format!("{}?logs=1", self.request_url(query, "/status")))
                .await?;
            Ok(match v["status"].as_str() {
                Some("IN_QUEUE") => ProviderStatus::Queued {
                    position: v["queue_position"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok()),
                },
                Some("IN_PROGRESS") => ProviderStatus::Running {
                    progress: None,
                    stage: v["logs"]
                        .as_array()
                        .and_then(|logs| logs.last())
                        .and_then(|l| l["message"].as_str())
                        .map(str::to_owned),
                },
                Some("COMPLETED") => match v["error"].as_str() {
                    None => ProviderStatus::Succeeded { video: None },
                    Some(error) => ProviderStatus::Failed {
                        reason: error.to_owned(),
                        class: class_of(v["error_type"].as_str()),
                    },
                },
                other => ProviderStatus::Failed {
                    reason: format!(
                        "fal reported the unknown status {}",
                        other.unwrap_or("(none)")
                    ),
                    class: FailureClass::Permanent,
                },
            })
        })
        .await
    }

    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo> {
        http::redacted(self.key.expose_secret(), async {
            let (status, v) = self.read(&self.request_url(query, "")).await?;
            video_of(&v).ok_or_else(|| Error::Protocol {
                service: SERVICE.to_owned(),
                reason: "the result has no video URL".to_owned(),
                response: Some(HttpFailure::new(status, &v.to_string())),
                source: None,
            })
        })
        .await
    }

    async fn cancel(&self, query: &StatusQuery) -> Result<CancelOutcome> {
        http::redacted(self.key.expose_secret(), async {
            let url = self.request_url(query, "/cancel");
            self.limit.acquire().await;
            let resp = http::traced(
                SERVICE,
                1,
                self.http.put(&url).header("authorization", self.auth()),
            )
            .await
            .map_err(|e| http::transport_error(SERVICE, CallKind::Read, e))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let said = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_owned));
            match said.as_deref() {
                Some("OK") => Ok(CancelOutcome::Cancelled),
                // Forwarded to a running app, which may finish and bill; or already done.
                Some("CANCELLATION_REQUESTED" | "ALREADY_COMPLETED") => Ok(CancelOutcome::TooLate),
                Some("NOT_FOUND") => Err(Error::not_found("request", &query.request_id)),
                _ if (200..300).contains(&status) => Ok(CancelOutcome::TooLate),
                _ => Err(map_error(
                    http::Failed {
                        status,
                        body: text,
                        retry_after: None,
                    },
                    &[],
                )),
            }
        })
        .await
    }

    async fn parse_webhook(&self, delivery: &WebhookDelivery) -> Result<WebhookEvent> {
        http::redacted(self.key.expose_secret(), async {
            let header = |n: &str| {
                delivery
                    .header(n)
                    .ok_or_else(|| unauthorized(&format!("no {n}")))
            };
            let request_id = header("x-fal-webhook-request-id")?;
            let user_id = header("x-fal-webhook-user-id")?;
            let timestamp = header("x-fal-webhook-timestamp")?;
            let signature = header("x-fal-webhook-signature")?;
            if let Some(ours) = &self.user_id {
                if user_id != ours {
                    return Err(unauthorized("signed for another fal account"));
                }
            }
            let sent = timestamp
                .trim()
                .parse::<u64>()
                .map_err(|_| unauthorized("bad timestamp"))?;
            let now = self
                .now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if now.abs_diff(sent) > WEBHOOK_TOLERANCE.as_secs() {
                return Err(unauthorized("timestamp outside the 300 s window"));
            }
            let signature = hex::decode(signature.trim())
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .ok_or_else(|| unauthorized("bad signature encoding"))?;
            let digest = hex::encode(Sha256::digest(&delivery.body));
            let message = format!("{request_id}\n{user_id}\n{timestamp}\n{digest}");
            let verified = |keys: &[VerifyingKey]| {
                keys.iter()
                    .any(|k| k.verify(message.as_bytes(), &signature).is_ok())
            };
            if !verified(&self.keys(false).await?) && !verified(&self.keys(true).await?) {
                return Err(unauthorized("signature does not verify"));
            }
            // Verified: now read the body (never re-serialised; seeds exceed i64).
            let body: Value =
                serde_json::from_slice(&delivery.body).map_err(|e| Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!("webhook body: {e}"),
                    response: None,
                    source: Some(Box::new(e)),
                })?;
            if body["request_id"].as_str() != Some(request_id) {
                return Err(unauthorized("the body names another request"));
            }
            let status = match body["status"].as_str() {
                Some("OK") => match video_of(&body["payload"]) {
                    Some(video) => ProviderStatus::Succeeded { video: Some(video) },
                    None => ProviderStatus::Succeeded { video: None },
                },
                _ => {
                    let reason = body["error"]
                        .as_str()
                        .or(body["payload_error"].as_str())
                        .unwrap_or("fal reported an error")
                        .to_owned();
                    // "Invalid status code: 503": fal's infrastructure failed (not billed), as the
                    // status poll's runner errors are: worth another try.
                    let server_side = reason
                        .rsplit(':')
                        .next()
                        .and_then(|c| c.trim().parse::<u16>().ok())
                        .is_some_and(|c| c >= 500);
                    ProviderStatus::Failed {
                        reason,
                        class: if server_side {
                            FailureClass::Retryable
                        } else {
                            FailureClass::Permanent
                        },
                    }
                }
            };
            Ok(WebhookEvent {
                request_id: request_id.to_owned(),
                // fal sends no delivery id: the body's digest stands for it (a retry of the same
                // delivery is the same bytes).
                delivery_id: format!("sha256:{digest}"),
                status,
            })
        })
        .await
    }

    async fn balance(&self) -> Result<Option<ProviderBalance>> {
        http::redacted(self.key.expose_secret(), async {
            // fal publishes no balance endpoint.
            Ok(None)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_urls_use_owner_and_app() {
        assert_eq!(
            app_of("fal-ai/kling-video/v1.6/standard/text-to-video"),
            "fal-ai/kling-video"
        );
        assert_eq!(app_of("fal-ai/veo3"), "fal-ai/veo3");
        assert_eq!(app_of("workflows/me/flow/run"), "workflows/me/flow");
    }

    #[test]
    fn inputs_follow_each_model() {
        let r = VideoRequest::new("A red kite over hills", "kling-t2v", 10)
            .with_aspect_ratio(AspectRatio::Square);
        let kling = model_input("fal-ai/kling-video/v1.6/standard/text-to-video", &r);
        assert_eq!(
            kling,
            json!({"prompt": "A red kite over hills", "duration": "10", "aspect_ratio": "1:1"})
        );
        let mut v = VideoRequest::new("A red kite over hills", "veo3", 8);
        v.style.style = Some("cinematic".into());
        let veo = model_input("fal-ai/veo3", &v);
        assert_eq!(veo["duration"], "8s");
        assert_eq!(veo["prompt"], "A red kite over hills, style: cinematic");
        let minimax = model_input("fal-ai/minimax/video-01", &r);
        assert!(minimax.get("duration").is_none());
    }
}
