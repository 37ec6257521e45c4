//! Google's Gemini as jilo's creative model (feature `gemini`): why a trending video works,
//! a generation prompt written from it, and YouTube metadata, each as structured JSON output
//! checked against a schema.
//!
//! ```no_run
//! # async fn run() -> jilo_core::Result<()> {
//! use std::sync::Arc;
//! use jilo_providers::gemini::{CreativePrompts, GeminiModel};
//!
//! // GEMINI_API_KEY, GEMINI_API_URL, GEMINI_MODEL (default gemini-3.5-flash).
//! let gemini = GeminiModel::from_env()?.with_prompts(CreativePrompts {
//!     language: "Chinese".into(),
//!     ..CreativePrompts::default()
//! });
//! # let _ = Arc::new(gemini); Ok(()) }
//! ```
//!
//! Calls go through a client-side rate limit (60 a minute by default) and the shared retry
//! loop: 408, 429 and 5xx are retried, a 429's `RetryInfo.retryDelay` (the body, not a
//! header) is honoured. A prompt Gemini blocks, or an answer it stops for safety, is
//! [`Error::Moderation`] naming the reason; a retired or unknown model is
//! [`Error::InvalidInput`] on `GEMINI_MODEL`; a rejected key is [`Error::Unauthorized`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jilo_core::{
    CreativeModel, Error, HttpFailure, MetadataBrief, MetadataSuggestion, PromptBrief, Result,
    TrendingVideo, ViralAnalysis,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::classify::Says;
use crate::http::{self, CallKind, RateLimiter, RetryPolicy};
use jilo_core::config;

/// Gemini's API.
pub const DEFAULT_API_URL: &str = "https://generativelanguage.googleapis.com";
/// The model used unless `GEMINI_MODEL` or [`GeminiModel::with_model`] says otherwise.
pub const DEFAULT_MODEL: &str = "gemini-3.5-flash";
/// The API version in the path.
pub const DEFAULT_API_VERSION: &str = "v1beta";
/// Calls a minute the client allows itself by default.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;

const SERVICE: &str = "gemini";

/// The instructions of the three tasks, in one place a host can read and override. `{…}`
/// placeholders are filled from the task's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreativePrompts {
    /// The system instruction of every call.
    pub system: String,
    /// Why a video works. Placeholders: `{platform}`, `{title}`, `{description}`, `{views}`,
    /// `{likes}`, `{comments}`, `{shares}`.
    pub analyze: String,
    /// A generation prompt from a trending video. Placeholders: `{title}`, `{description}`,
    /// `{hook}`, `{factors}`, `{duration}`.
    pub write_prompt: String,
    /// YouTube metadata. Placeholders: `{prompt}`, `{duration}`, `{keywords}`.
    pub metadata: String,
    /// The language to answer in.
    pub language: String,
}

impl Default for CreativePrompts {
    fn default() -> Self {
        Self {
            system: "You are a short-video strategist for creators on TikTok, YouTube Shorts \
                     and Instagram Reels. Answer only with JSON matching the schema."
                .to_owned(),
            analyze: "Explain why this {platform} video went viral.\nTitle: {title}\n\
                      Description: {description}\nStats: {views} views, {likes} likes, \
                      {comments} comments, {shares} shares.\nGive the hook in one or two \
                      sentences, 3 to 5 short success factors, and a recommendation score \
                      from 1 to 10."
                .to_owned(),
            write_prompt: "Write a prompt for an AI video model to make a new {duration}-second \
                           vertical video inspired by this trending video. Keep what makes it \
                           work (its structure, pacing and hook) but invent new subjects and \
                           wording: do not copy it.\nTitle: {title}\nDescription: \
                           {description}\nHook: {hook}\nSuccess factors: {factors}\nThe prompt \
                           must be 100 to 300 characters and describe visuals, camera and \
                           mood."
                .to_owned(),
            metadata: "Write YouTube metadata for a {duration}-second AI-generated video made \
                       from this prompt: {prompt}\nWork in these keywords: {keywords}.\nGive 3 \
                       title options of at most 100 characters each, a description, and 10 \
                       to 15 tags of at most 30 characters each."
                .to_owned(),
            language: "English".to_owned(),
        }
    }
}

fn fill(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (k, v)| {
        text.replace(&format!("{{{k}}}"), v)
    })
}

/// The Gemini creative model. Share it behind an `Arc`: its rate limit is per instance.
pub struct GeminiModel {
    key: SecretString,
    base: String,
    version: String,
    model: String,
    http: reqwest::Client,
    prompts: CreativePrompts,
    limit: RateLimiter,
    retries: RetryPolicy,
}

impl fmt::Debug for GeminiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiModel")
            .field("key", &"***")
            .field("base", &config::redact_url(&self.base))
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl GeminiModel {
    /// A model with this API key, [`DEFAULT_MODEL`] on [`DEFAULT_API_URL`], 60 calls a minute.
    /// A key with whitespace around it or a control character is refused
    /// ([`Error::InvalidInput`] on `GEMINI_API_KEY`), and so is a machine whose TLS roots
    /// cannot load.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = http::secret("GEMINI_API_KEY", key)?;
        let http = http::client(Duration::from_secs(120))?;
        Ok(Self {
            key,
            base: DEFAULT_API_URL.to_owned(),
            version: DEFAULT_API_VERSION.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            http,
            prompts: CreativePrompts::default(),
            limit: RateLimiter::per_minute(DEFAULT_REQUESTS_PER_MINUTE),
            retries: RetryPolicy::gemini(),
        })
    }

    /// `GEMINI_API_KEY` (required), `GEMINI_API_URL`, `GEMINI_MODEL`; a bad value is
    /// [`Error::InvalidInput`] naming its variable.
    pub fn from_env() -> Result<Self> {
        let var = http::env_var;
        let mut model = Self::new(http::required_env(
            "GEMINI_API_KEY",
            "set it to a Gemini API key",
        )?)?;
        if let Some(url) = var("GEMINI_API_URL") {
            model = model.with_base_url(url)?;
        }
        if let Some(id) = var("GEMINI_MODEL") {
            model = model.with_model(id)?;
        }
        Ok(model)
    }

    /// Another API base URL ([`Error::InvalidInput`] on `GEMINI_API_URL` when it is not an
    /// http(s) base URL).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Result<Self> {
        self.base = config::base_url("GEMINI_API_URL", &url.into())?;
        Ok(self)
    }

    /// Another model id (bare, e.g. `gemini-3.8-flash`, or with its `models/` prefix). It
    /// becomes part of the request's path, so anything but an id (`../../admin`) is
    /// [`Error::InvalidInput`] on `GEMINI_MODEL`.
    pub fn with_model(mut self, model: impl Into<String>) -> Result<Self> {
        let model = model.into();
        let model = model.strip_prefix("models/").unwrap_or(&model);
        config::model_id("GEMINI_MODEL", model)?;
        self.model = model.to_owned();
        Ok(self)
    }

    /// Other instructions.
    pub fn with_prompts(mut self, prompts: CreativePrompts) -> Self {
        self.prompts = prompts;
        self
    }

    /// The instructions in use.
    pub fn prompts(&self) -> &CreativePrompts {
        &self.prompts
    }

    /// Another rate limit: `limit` calls a minute.
    pub fn with_requests_per_minute(mut self, limit: u32) -> Self {
        self.limit = RateLimiter::per_minute(limit);
        self
    }

    /// Another retry policy.
    pub fn with_retries(mut self, retries: RetryPolicy) -> Self {
        self.retries = retries;
        self
    }

    /// Another HTTP client.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// One structured call: the task's text and its answer's JSON schema; the parsed answer.
    async fn ask(&self, task: &str, schema: Value) -> Result<Value> {
        let body = json!({
            "systemInstruction": {"parts": [{"text": format!(
                "{} Answer in {}.", self.prompts.system, self.prompts.language
            )}]},
            "contents": [{"role": "user", "parts": [{"text": task}]}],
            "generationConfig": {
                "temperature": 0.7,
                "responseMimeType": "application/json",
                "responseJsonSchema": schema,
            },
        });
        let url = format!(
            "{}/{}/models/{}:generateContent",
            self.base, self.version, self.model
        );
        let model = self.model.clone();
        let resp = http::send(
            SERVICE,
            CallKind::Read,
            &self.retries,
            |_| false,
            |failed| map_error(failed, &model),
            || {
                self.http
                    .post(&url)
                    .header("x-goog-api-key", self.key.expose_secret())
                    .json(&body)
            },
        );
        self.limit.acquire().await;
        let resp = resp.await?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| http::transport_error(SERVICE, CallKind::Read, e))?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| {
            protocol(
                format!("the answer is not JSON: {e}"),
                Some(HttpFailure::new(status, &text)),
            )
        })?;
        structured_output(&answer)
    }
}

fn protocol(reason: String, response: Option<HttpFailure>) -> Error {
    Error::Protocol {
        service: SERVICE.to_owned(),
        reason,
        response,
        source: None,
    }
}

/// Gemini's error answers: a rejected key answers 400; a retired model 404; a 429's delay is
/// in the body's `RetryInfo`.
fn map_error(failed: http::Failed, model: &str) -> Error {
    let body: Value = serde_json::from_str(&failed.body).unwrap_or(Value::Null);
    // The SDK unwraps a one-element array around the error.
    let error = match &body {
        Value::Array(items) => items.first().map(|e| &e["error"]).unwrap_or(&Value::Null),
        other => &other["error"],
    };
    let details = error["details"].as_array().cloned().unwrap_or_default();
    let reason_is = |r: &str| details.iter().any(|d| d["reason"].as_str() == Some(r));
    // Google's own fields decide, never the body's other text (a prompt may be echoed).
    let key_refused = reason_is("API_KEY_INVALID")
        || error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("API key not valid"));
    if failed.status == 400 && key_refused {
        return Error::Unauthorized {
            service: SERVICE.to_owned(),
            response: Some(failed.http()),
            source: None,
        };
    }
    if failed.status == 404 {
        return Error::invalid(
            "GEMINI_MODEL",
            format!("model `{model}` is not found for generateContent (retired or misspelt?)"),
        );
    }
    if failed.status == 429 {
        let delay = details
            .iter()
            .find_map(|d| d["retryDelay"].as_str())
            .and_then(proto_duration)
            .or(failed.retry_after);
        return Error::RateLimited {
            service: SERVICE.to_owned(),
            retry_after: delay,
            response: Some(failed.http()),
            source: None,
        };
    }
    let says = match error["status"].as_str() {
        Some("RESOURCE_EXHAUSTED") => Says::RateLimited,
        Some("UNAUTHENTICATED" | "PERMISSION_DENIED") => Says::KeyRejected,
        _ => Says::Nothing,
    };
    failed.into_error_saying(SERVICE, says)
}

/// A protobuf duration string: `"42s"`, `"57.238747106s"`.
fn proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The JSON the model wrote: the first candidate's text parts (thoughts skipped), fences
/// tolerated. Blocks and stops are typed errors.
fn structured_output(answer: &Value) -> Result<Value> {
    if let Some(reason) = answer["promptFeedback"]["blockReason"].as_str() {
        return Err(Error::Moderation {
            terms: vec![format!("prompt blocked: {reason}")],
        });
    }
    let candidate = answer["candidates"]
        .get(0)
        .ok_or_else(|| protocol("no candidate in the answer".to_owned(), None))?;
    let finish = candidate["finishReason"].as_str().unwrap_or("STOP");
    match finish {
        "STOP" => {}
        "SAFETY" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "RECITATION" => {
            return Err(Error::Moderation {
                terms: vec![format!("answer stopped: {finish}")],
            })
        }
        "MAX_TOKENS" => {
            return Err(protocol(
                "the answer was cut off at the token limit".to_owned(),
                None,
            ))
        }
        other => {
            return Err(protocol(format!("the answer finished with {other}"), None));
        }
    }
    let text: String = candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["thought"].as_bool() != Some(true))
        .filter_map(|p| p["text"].as_str())
        .collect();
    let trimmed = text
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    serde_json::from_str(trimmed)
        .map_err(|e| protocol(format!("the model's JSON does not parse: {e}"), None))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn video_values(video: &TrendingVideo) -> Vec<(&'static str, String)> {
    vec![
        ("platform", video.platform.as_str().to_owned()),
        ("title", video.title.clone()),
        ("description", video.description.clone().unwrap_or_default()),
        ("views", video.views.to_string()),
        ("likes", video.likes.to_string()),
        ("comments", video.comments.to_string()),
        ("shares", video.shares.to_string()),
    ]
}

#[async_trait]
impl CreativeModel for GeminiModel {
    async fn analyze(&self, video: &TrendingVideo) -> Result<ViralAnalysis> {
        http::redacted(self.key.expose_secret(), async {
            let schema = json!({
                "type": "object",
                "properties": {
                    "hook": {"type": "string"},
                    "success_factors": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5},
                    "score": {"type": "integer", "minimum": 1, "maximum": 10}
                },
                "required": ["hook", "success_factors", "score"]
            });
            let out = self
                .ask(&fill(&self.prompts.analyze, &video_values(video)), schema)
                .await?;
            let score = out["score"]
                .as_f64()
                .filter(|s| (1.0..=10.0).contains(s))
                .ok_or_else(|| protocol(format!("score {} is not 1 to 10", out["score"]), None))?;
            let mut factors = strings(&out["success_factors"]);
            factors.truncate(5);
            let hook = out["hook"].as_str().unwrap_or_default().trim().to_owned();
            if hook.is_empty() || factors.is_empty() {
                return Err(protocol(
                    "the analysis lacks a hook or factors".to_owned(),
                    None,
                ));
            }
            Ok(ViralAnalysis {
                hook,
                success_factors: factors,
                score: score.round() as u8,
            })
        })
        .await
    }

    async fn write_prompt(&self, brief: &PromptBrief) -> Result<String> {
        http::redacted(self.key.expose_secret(), async {
            let schema = json!({
                "type": "object",
                "properties": {"prompt": {"type": "string", "minLength": 100, "maxLength": 300}},
                "required": ["prompt"]
            });
            let mut values = video_values(&brief.video);
            let analysis = brief.analysis.as_ref();
            values.push(("hook", analysis.map(|a| a.hook.clone()).unwrap_or_default()));
            values.push((
                "factors",
                analysis
                    .map(|a| a.success_factors.join(", "))
                    .unwrap_or_default(),
            ));
            values.push(("duration", brief.duration_secs.to_string()));
            let out = self
                .ask(&fill(&self.prompts.write_prompt, &values), schema)
                .await?;
            let prompt = out["prompt"].as_str().unwrap_or_default().trim().to_owned();
            let chars = prompt.chars().count();
            if !(100..=300).contains(&chars) {
                return Err(protocol(
                    format!("the prompt has {chars} characters; 100 to 300 were asked"),
                    None,
                ));
            }
            Ok(prompt)
        })
        .await
    }

    async fn suggest_metadata(&self, brief: &MetadataBrief) -> Result<MetadataSuggestion> {
        http::redacted(self.key.expose_secret(), async {
            let schema = json!({
                "type": "object",
                "properties": {
                    "titles": {"type": "array", "items": {"type": "string", "maxLength": 100}, "minItems": 3, "maxItems": 3},
                    "description": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 10, "maxItems": 15}
                },
                "required": ["titles", "description", "tags"]
            });
            let values = [
                ("prompt", brief.prompt.clone()),
                ("duration", brief.duration_secs.to_string()),
                ("keywords", brief.keywords.join(", ")),
            ];
            let out = self
                .ask(&fill(&self.prompts.metadata, &values), schema)
                .await?;
            // Over-long titles and tags are cut at a character boundary, extra ones dropped.
            let titles: Vec<String> = strings(&out["titles"])
                .into_iter()
                .map(|t| t.chars().take(100).collect())
                .take(3)
                .collect();
            let tags: Vec<String> = strings(&out["tags"])
                .into_iter()
                .map(|t| t.chars().take(30).collect())
                .take(15)
                .collect();
            if titles.len() < 3 || tags.len() < 10 {
                return Err(protocol(
                    format!(
                        "asked 3 titles and 10-15 tags, got {} and {}",
                        titles.len(),
                        tags.len()
                    ),
                    None,
                ));
            }
            Ok(MetadataSuggestion {
                titles,
                description: out["description"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                tags,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_durations_parse() {
        assert_eq!(proto_duration("42s"), Some(Duration::from_secs(42)));
        assert_eq!(proto_duration("57.5s"), Some(Duration::from_millis(57_500)));
        assert_eq!(proto_duration("soon"), None);
    }

    #[test]
    fn templates_fill_their_placeholders() {
        let text = fill("{a} and {b}, {a}", &[("a", "x".into()), ("b", "y".into())]);
        assert_eq!(text, "x and y, x");
    }
}
