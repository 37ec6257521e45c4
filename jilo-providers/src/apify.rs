//! Trending short videos from Apify's actors (feature `apify`): TikTok
//! (`clockworks~tiktok-scraper`), YouTube Shorts (`streamers~youtube-scraper`) and Instagram
//! Reels (`apify~instagram-hashtag-scraper`), mapped into [`TrendingVideo`].
//!
//! ```no_run
//! # async fn run() -> jilo_core::Result<()> {
//! use jilo_core::{Platform, TrendQuery, TrendSource};
//! use jilo_providers::apify::ApifySource;
//!
//! let apify = ApifySource::from_env()?; // APIFY_TOKEN, APIFY_API_URL
//! let videos = apify
//!     .search(&TrendQuery {
//!         platform: Platform::TikTok,
//!         keyword: "AI tools".into(),
//!         min_views: Some(100_000),
//!         max_views: None,
//!         max_age_days: Some(7),
//!         limit: 50,
//!     })
//!     .await?;
//! # let _ = videos; Ok(()) }
//! ```
//!
//! Runs cost money and can take minutes, so a search is never paid twice, across processes:
//! the source claims the search's run in a store ([`TrendCache::claim_source_run`]; in this
//! process by default, a shared SQL store with [`ApifySource::with_run_store`]), starts the
//! actor asynchronously (`POST …/runs` answers the run id at once), keeps the run id in the
//! store before it waits, and follows the run (`GET /v2/actor-runs/{id}`, long-polled) to its
//! dataset. Any caller, in any process, that asks for the same search meanwhile follows that
//! run; one whose caller gave up is followed by the next. A start whose answer was lost is
//! looked for among the actor's runs before anything is started again.
//! Actor outputs change without notice: every field is optional, error items are dropped, and
//! counts and dates are read in every form the actors are known to use.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jilo_core::{
    Error, Platform, Result, SourceRunClaim, SourceRunState, Timestamp, TrendCache, TrendQuery,
    TrendSource, TrendingVideo,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::classify::Says;
use crate::http::{self, CallKind, RetryPolicy};
use jilo_core::config;

/// Apify's API.
pub const DEFAULT_API_URL: &str = "https://api.apify.com";
/// The TikTok actor.
pub const TIKTOK_ACTOR: &str = "clockworks~tiktok-scraper";
/// The YouTube actor (Shorts only are asked for).
pub const YOUTUBE_ACTOR: &str = "streamers~youtube-scraper";
/// The Instagram actor (reels of the keyword's hashtag).
pub const INSTAGRAM_ACTOR: &str = "apify~instagram-hashtag-scraper";

const SERVICE: &str = "apify";
/// How long a followed run is waited for in all (and followed by later searches).
const RUN_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// How long a claim holds while its run is being started: longer than a start call with its
/// retries (about 150 s at worst) and a lookup of a lost answer (as long again) can take, so
/// no second run is started beside a slow first one.
const START_CLAIM: Duration = Duration::from_secs(6 * 60);
/// A run begun this long before our call started is not ours.
const CLOCK_SLACK: Duration = Duration::from_secs(10);

/// The Apify trend source. Cheap to share behind an `Arc`.
pub struct ApifySource {
    token: SecretString,
    base: String,
    http: reqwest::Client,
    actors: HashMap<Platform, String>,
    reads: RetryPolicy,
    starts: RetryPolicy,
    /// Where each search's run is claimed and kept (see the module docs).
    runs: Arc<dyn TrendCache>,
    /// This source's name; each search claims as `{owner}/{a fresh id}`, so two searches in
    /// one process are two callers.
    owner: String,
}

impl fmt::Debug for ApifySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApifySource")
            .field("token", &"***")
            .field("base", &config::redact_url(&self.base))
            .field("actors", &self.actors)
            .finish_non_exhaustive()
    }
}

impl ApifySource {
    /// A source with this API token, on [`DEFAULT_API_URL`] and the default actors, its runs
    /// claimed in this process (see [`ApifySource::with_run_store`]). The HTTP client waits up
    /// to 90 s per call (a run's status is long-polled for 60 s). A token
    /// with whitespace around it or a control character is refused ([`Error::InvalidInput`]
    /// on `APIFY_TOKEN`), and so is a machine whose TLS roots cannot load.
    pub fn new(token: impl Into<String>) -> Result<Self> {
        let token = http::secret("APIFY_TOKEN", token)?;
        let http = http::client(Duration::from_secs(90))?;
        Ok(Self {
            token,
            base: DEFAULT_API_URL.to_owned(),
            http,
            actors: HashMap::from([
                (Platform::TikTok, TIKTOK_ACTOR.to_owned()),
                (Platform::YouTubeShorts, YOUTUBE_ACTOR.to_owned()),
                (Platform::InstagramReels, INSTAGRAM_ACTOR.to_owned()),
            ]),
            reads: RetryPolicy::apify(),
            starts: RetryPolicy::apify(),
            runs: Arc::new(jilo_core::InMemoryStore::new()),
            owner: format!("apify-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// `APIFY_TOKEN` (required) and `APIFY_API_URL` (default [`DEFAULT_API_URL`]). A missing
    /// or malformed value is [`Error::InvalidInput`] naming the variable.
    pub fn from_env() -> Result<Self> {
        let token = http::required_env("APIFY_TOKEN", "set it to an Apify API token")?;
        let source = Self::new(token)?;
        match http::env_var("APIFY_API_URL") {
            Some(url) => source.with_base_url(url),
            None => Ok(source),
        }
    }

    /// Another API base URL (a proxy, a local server in tests); [`Error::InvalidInput`] on
    /// `APIFY_API_URL` when it is not an http(s) base URL.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Result<Self> {
        self.base = config::base_url("APIFY_API_URL", &url.into())?;
        Ok(self)
    }

    /// Where searches' runs are claimed and kept: the host's store shared by every process
    /// (an `SqlStore`), so a search running in one process is followed, not paid again, by
    /// another.
    pub fn with_run_store(mut self, runs: Arc<dyn TrendCache>) -> Self {
        self.runs = runs;
        self
    }

    /// Another HTTP client (proxies, timeouts; keep its timeout above 60 s).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Another actor for a platform (`username~actor-name` or an actor id); one that could
    /// not be one path segment is [`Error::InvalidInput`] on `actor`.
    pub fn with_actor(mut self, platform: Platform, actor: impl Into<String>) -> Result<Self> {
        let actor = actor.into();
        config::path_segment("actor", &actor)?;
        self.actors.insert(platform, actor);
        Ok(self)
    }

    /// Other retry policies for reads (run status, datasets) and run starts (retried only on
    /// a refused connection or a 429).
    pub fn with_retries(mut self, reads: RetryPolicy, starts: RetryPolicy) -> Self {
        self.reads = reads;
        self.starts = starts;
        self
    }

    fn authed(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder.bearer_auth(self.token.expose_secret())
    }

    async fn json(&self, resp: reqwest::Response) -> Result<Value> {
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| http::transport_error(SERVICE, CallKind::Read, e))?;
        serde_json::from_str(&body).map_err(|e| Error::Protocol {
            service: SERVICE.to_owned(),
            reason: format!("the answer is not JSON: {e}"),
            response: Some(jilo_core::HttpFailure::new(status, &body)),
            source: Some(Box::new(e)),
        })
    }

    /// A read of Apify's API (retried as reads are) and its JSON answer.
    async fn read(&self, url: &str, query: &[(&str, &str)]) -> Result<Value> {
        let resp = http::send(
            SERVICE,
            CallKind::Read,
            &self.reads,
            |_| false,
            map_error,
            || self.authed(self.http.get(url).query(query)),
        )
        .await?;
        self.json(resp).await
    }

    /// Reads a run until it ends, then its dataset. A run over for good (it ended badly, or
    /// outlived [`RUN_DEADLINE`]) is forgotten for `key`, so the next search starts anew; one
    /// read, or whose status or dataset could not be read, stays kept for the next caller.
    async fn follow(&self, key: &str, run: &str, limit: u32) -> Result<Vec<Value>> {
        let started = tokio::time::Instant::now();
        let data = loop {
            let url = format!("{}/v2/actor-runs/{run}", self.base);
            let data = self.read(&url, &[("waitForFinish", "60")]).await?["data"].take();
            let status = data["status"].as_str().unwrap_or_default().to_owned();
            match status.as_str() {
                "SUCCEEDED" => break data,
                "FAILED" | "TIMED-OUT" | "ABORTED" => {
                    self.forget(key, run).await;
                    return Err(Error::Unavailable {
                        service: SERVICE.to_owned(),
                        reason: format!("actor run {run} ended {status}"),
                        response: None,
                        source: None,
                    });
                }
                _ if started.elapsed() > RUN_DEADLINE => {
                    // Given up: stop the run so it bills no longer, and let the next search
                    // start anew.
                    let abort = format!("{}/v2/actor-runs/{run}/abort", self.base);
                    if let Err(e) =
                        http::traced(SERVICE, 1, self.authed(self.http.post(&abort))).await
                    {
                        tracing::warn!(run, error = %e.without_url(), "aborting a run given up failed");
                    }
                    self.forget(key, run).await;
                    return Err(Error::Timeout {
                        service: SERVICE.to_owned(),
                        response: None,
                        source: None,
                    });
                }
                _ => {}
            }
        };
        let dataset = data["defaultDatasetId"].as_str().unwrap_or_default();
        let url = format!("{}/v2/datasets/{dataset}/items", self.base);
        let limit = limit.to_string();
        let answer = self
            .read(
                &url,
                &[
                    ("format", "json"),
                    ("clean", "true"),
                    ("limit", limit.as_str()),
                ],
            )
            .await?;
        // A run read stays kept until its deadline: a caller that was waiting on the claim,
        // or the same search again meanwhile, reads the same dataset (free) instead of paying
        // for another run.
        items(answer)
    }

    /// Forgets a search's run that ended for good.
    async fn forget(&self, key: &str, run: &str) {
        if let Err(e) = self
            .runs
            .end_source_run(key, &self.owner, Some(run.to_owned()))
            .await
        {
            tracing::warn!(run, error = %e, "forgetting a finished run failed");
        }
    }

    /// The run a start whose answer was lost began: among the actor's runs begun since the
    /// call (and not ended badly), the newest whose input is this search's, read from the
    /// run's `INPUT` record, so another search's run on the same actor is never taken for it.
    async fn run_started_since(
        &self,
        actor: &str,
        since: SystemTime,
        input: &Value,
    ) -> Result<Option<String>> {
        let url = format!("{}/v2/acts/{actor}/runs", self.base);
        let listed = self.read(&url, &[("desc", "1"), ("limit", "10")]).await?;
        let since = Timestamp::from_system(since - CLOCK_SLACK);
        let candidates = listed["data"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|run| {
                !matches!(
                    run["status"].as_str(),
                    Some("FAILED" | "TIMED-OUT" | "ABORTED")
                )
            })
            .filter(|run| {
                run["startedAt"]
                    .as_str()
                    .and_then(parse_instant)
                    .is_some_and(|at| at >= since)
            });
        for run in candidates {
            let (Some(id), Some(store)) =
                (run["id"].as_str(), run["defaultKeyValueStoreId"].as_str())
            else {
                continue;
            };
            let url = format!("{}/v2/key-value-stores/{store}/records/INPUT", self.base);
            if self.read(&url, &[]).await? == *input {
                return Ok(Some(id.to_owned()));
            }
        }
        Ok(None)
    }
}

/// Apify's error answers (`{"error": {"type", "message"}}`) through the shared mapping; a
/// paid actor the account cannot afford is out of funds whatever the status.
fn map_error(failed: http::Failed) -> Error {
    let kind = serde_json::from_str::<Value>(&failed.body)
        .ok()
        .and_then(|v| v["error"]["type"].as_str().map(str::to_owned))
        .unwrap_or_default();
    // Apify's `error.type` decides beside the status; its message (which may quote the
    // query) never does.
    let says = match kind.as_str() {
        // 402s that clear by themselves when other runs end: not a matter of money.
        "actor-memory-limit-exceeded"
        | "concurrent-runs-limit-exceeded"
        | "rate-limit-exceeded" => Says::RateLimited,
        "not-enough-usage-to-run-paid-actor" | "x402-payment-required" => Says::OutOfFunds,
        "invalid-token" | "token-not-provided" | "insufficient-permissions" => Says::KeyRejected,
        // A run that ended badly is the actor's failure, not the user's query.
        t if t.ends_with("run-failed") || t.ends_with("-aborted") || t.ends_with("-timed-out") => {
            Says::ServiceFailed
        }
        _ => Says::Nothing,
    };
    failed.into_error_saying(SERVICE, says)
}

/// The dataset items of an answer: a bare array.
fn items(answer: Value) -> Result<Vec<Value>> {
    match answer {
        Value::Array(items) => Ok(items),
        other => Err(Error::Protocol {
            service: SERVICE.to_owned(),
            reason: format!(
                "expected an array of dataset items, got {}",
                truncate(&other.to_string())
            ),
            response: None,
            source: None,
        }),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The actor input for a query.
fn input(query: &TrendQuery) -> Value {
    let keyword = query.keyword.trim();
    match query.platform {
        Platform::TikTok => {
            let mut input = json!({
                "searchQueries": [keyword],
                "resultsPerPage": query.limit,
                "searchSection": "/video",
                "shouldDownloadVideos": false,
                "shouldDownloadCovers": false,
                "shouldDownloadSubtitles": false,
                "shouldDownloadSlideshowImages": false,
            });
            if let Some(days) = query.max_age_days {
                input["oldestPostDateUnified"] = json!(format!("{days} days"));
            }
            input
        }
        Platform::YouTubeShorts => {
            let mut input = json!({
                "searchQueries": [keyword],
                "maxResults": 0,
                "maxResultsShorts": query.limit,
                "maxResultStreams": 0,
            });
            // Only the values seen in use; the Studio filters finer.
            match query.max_age_days {
                Some(d) if d <= 31 => input["dateFilter"] = json!("month"),
                Some(d) if d <= 366 => input["dateFilter"] = json!("year"),
                _ => {}
            }
            input
        }
        _ => {
            let tag: String = keyword
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut input = json!({
                "hashtags": [tag.to_lowercase()],
                "resultsType": "reels",
                "resultsLimit": query.limit,
            });
            if let Some(days) = query.max_age_days {
                input["onlyPostsNewerThan"] = json!(format!("{days} days"));
            }
            input
        }
    }
}

fn search_key(actor: &str, query: &TrendQuery) -> String {
    format!("{actor}|{}", input(query))
}

#[async_trait]
impl TrendSource for ApifySource {
    fn platforms(&self) -> Vec<Platform> {
        let mut platforms: Vec<Platform> = self.actors.keys().copied().collect();
        platforms.sort_by_key(|p| p.as_str());
        platforms
    }

    async fn search(&self, query: &TrendQuery) -> Result<Vec<TrendingVideo>> {
        http::redacted(self.token.expose_secret(), async {
            let actor = self
                .actors
                .get(&query.platform)
                .cloned()
                .ok_or_else(|| Error::invalid("platform", "no actor for this platform"))?;
            if query.keyword.trim().is_empty() || query.limit == 0 {
                return Err(Error::invalid(
                    "query",
                    "a keyword and a positive limit are needed",
                ));
            }
            let key = search_key(&actor, query);
            let run = self.run_for(&actor, query, &key).await?;
            let raw = self.follow(&key, &run, query.limit).await?;
            let now = Timestamp::from_system(SystemTime::now());
            Ok(raw
                .iter()
                .filter_map(|item| to_video(query.platform, item, now))
                .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
                .collect())
        })
        .await
    }
}

impl ApifySource {
    /// The run of this search: the one a caller (here or in another process) started, or one
    /// started now under the search's claim. A claim another caller holds is waited on, at
    /// most as long as it holds.
    async fn run_for(&self, actor: &str, query: &TrendQuery, key: &str) -> Result<String> {
        let waiting_since = tokio::time::Instant::now();
        let owner = format!("{}/{}", self.owner, uuid::Uuid::new_v4().simple());
        loop {
            let now = Timestamp::from_system(SystemTime::now());
            let claim = SourceRunClaim {
                key: key.to_owned(),
                owner: owner.clone(),
                now,
                claim_until: now.plus(START_CLAIM),
            };
            match self.runs.claim_source_run(&claim).await? {
                SourceRunState::Started { run_id } => {
                    tracing::info!(run = %run_id, "following the run started for this search");
                    return Ok(run_id);
                }
                SourceRunState::Claimed => return self.start_run(actor, query, key, &owner).await,
                SourceRunState::Pending { until } => {
                    if waiting_since.elapsed() > START_CLAIM {
                        return Err(Error::Timeout {
                            service: SERVICE.to_owned(),
                            response: None,
                            source: None,
                        });
                    }
                    let left = Duration::from_millis(
                        u64::try_from(until.as_millis() - now.as_millis()).unwrap_or(0),
                    );
                    tokio::time::sleep(
                        left.clamp(Duration::from_millis(50), Duration::from_secs(1)),
                    )
                    .await;
                }
            }
        }
    }

    /// Starts the actor asynchronously under this caller's claim and keeps the run's id before
    /// anyone waits on it. A start refused (or known not sent) frees the claim; one whose
    /// answer was lost is looked for among the actor's runs, and while it is not found the
    /// claim is kept until it lapses, so nobody pays for a second run meanwhile.
    async fn start_run(
        &self,
        actor: &str,
        query: &TrendQuery,
        key: &str,
        owner: &str,
    ) -> Result<String> {
        let body = input(query);
        let limit = query.limit.to_string();
        let url = format!("{}/v2/acts/{actor}/runs", self.base);
        let sent_at = SystemTime::now();
        let answer = http::send(
            SERVICE,
            CallKind::PaidStart,
            &self.starts,
            |_| false,
            map_error,
            || {
                self.authed(
                    self.http
                        .post(&url)
                        .json(&body)
                        .query(&[("maxItems", limit.as_str())]),
                )
            },
        )
        .await;
        let started = match answer {
            // Once the start was answered 2xx, an answer that cannot be read leaves a run that
            // may exist: never a "not started".
            Ok(resp) => self
                .json(resp)
                .await
                .map_err(|e| Error::OutcomeUnknown {
                    service: SERVICE.to_owned(),
                    reason: format!("the start was accepted but its answer could not be read: {e}"),
                    source: None,
                })
                .and_then(|v| {
                    v["data"]["id"].as_str().map(str::to_owned).ok_or_else(|| {
                        Error::OutcomeUnknown {
                            service: SERVICE.to_owned(),
                            reason: "a started run has no id".to_owned(),
                            source: None,
                        }
                    })
                }),
            Err(e) => Err(e),
        };
        // Whether the start may have been taken: its answer was lost or unreadable, or a 5xx
        // came back (the run may have begun before the server failed).
        let maybe_started = |e: &Error| {
            matches!(
                e,
                Error::OutcomeUnknown { .. } | Error::Timeout { .. } | Error::Protocol { .. }
            ) || matches!(e, Error::Unavailable { response: Some(r), .. } if r.status >= 500)
        };
        let run = match started {
            Ok(run) => run,
            Err(e) if maybe_started(&e) => {
                match self.run_started_since(actor, sent_at, &body).await {
                    Ok(Some(run)) => {
                        tracing::info!(run = %run, "the start's answer was lost; its run was found");
                        run
                    }
                    // Kept claimed until it lapses: the run may exist all the same.
                    _ => return Err(e),
                }
            }
            Err(e) => {
                if let Err(free) = self.runs.end_source_run(key, owner, None).await {
                    tracing::warn!(error = %free, "freeing the search's claim failed");
                }
                return Err(e);
            }
        };
        let until = Timestamp::from_system(SystemTime::now()).plus(RUN_DEADLINE);
        // A run is paid for: it is followed even if keeping it failed (the claim lapsed, the
        // store is down); others may then start their own, but this one is not thrown away.
        if let Err(e) = self.runs.record_source_run(key, owner, &run, until).await {
            tracing::warn!(run = %run, error = %e, "keeping the started run failed; following it anyway");
        }
        Ok(run)
    }
}

/// A count in any form the actors use: a number, a float, a numeric string; hidden (-1) or
/// missing is 0.
fn count(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f > 0.0).map(|f| f as u64))
            .unwrap_or(0),
        Value::String(s) => s.trim().replace(',', "").parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// An RFC 3339 instant, or a plain date (midnight UTC).
fn parse_instant(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
        .ok()
        .map(Timestamp::from_system)
}

/// "5 days ago", "1 year ago", "Streamed 3 weeks ago" (months as 30 days, years as 365).
fn parse_relative(s: &str, now: Timestamp) -> Option<Timestamp> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let ago = words.iter().position(|w| w.eq_ignore_ascii_case("ago"))?;
    if ago < 2 {
        return None;
    }
    let n: u64 = words[ago - 2].parse().ok()?;
    let unit = words[ago - 1].trim_end_matches('s').to_ascii_lowercase();
    let secs = match unit.as_str() {
        "second" => 1,
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        "month" => 30 * 86_400,
        "year" => 365 * 86_400,
        _ => return None,
    };
    let back = i64::try_from(n.saturating_mul(secs).saturating_mul(1000)).ok()?;
    Some(Timestamp::from_millis(now.as_millis().saturating_sub(back)))
}

fn when(v: &Value, now: Timestamp) -> Option<Timestamp> {
    let s = v.as_str()?;
    parse_instant(s).or_else(|| parse_relative(s, now))
}

/// "1:02:03", "13:48" or "48" as seconds.
fn clock_duration(s: &str) -> Option<u32> {
    s.trim().split(':').try_fold(0u32, |acc, part| {
        Some(acc * 60 + part.trim().parse::<u32>().ok()?)
    })
}

fn seconds(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u32),
        Value::String(s) => clock_duration(s),
        _ => None,
    }
}

/// One dataset item as a video, or `None` for an error item or one without an id and URL.
fn to_video(platform: Platform, item: &Value, now: Timestamp) -> Option<TrendingVideo> {
    if !item["error"].is_null() || !item["errorCode"].is_null() {
        return None;
    }
    let video = match platform {
        Platform::TikTok => {
            let stats = &item["stats"];
            let pick = |k: &str| {
                let direct = count(&item[k]);
                if direct > 0 {
                    direct
                } else {
                    count(&stats[k])
                }
            };
            TrendingVideo {
                platform,
                video_id: text(&item["id"])?,
                url: text(&item["webVideoUrl"])?,
                title: text(&item["text"]).unwrap_or_default(),
                description: None,
                author: text(&item["authorMeta"]["name"])
                    .or_else(|| text(&item["authorMeta"]["nickName"])),
                views: pick("playCount"),
                likes: pick("diggCount"),
                comments: pick("commentCount"),
                shares: pick("shareCount"),
                published_at: when(&item["createTimeISO"], now).or_else(|| {
                    item["createTime"]
                        .as_i64()
                        .map(|s| Timestamp::from_millis(s.saturating_mul(1000)))
                }),
                thumbnail_url: text(&item["videoMeta"]["coverUrl"]),
                video_url: item["mediaUrls"].get(0).and_then(text),
                duration_secs: seconds(&item["videoMeta"]["duration"]),
            }
        }
        Platform::YouTubeShorts => TrendingVideo {
            platform,
            video_id: text(&item["id"])?,
            url: text(&item["url"])?,
            title: text(&item["title"]).unwrap_or_default(),
            description: text(&item["text"]),
            author: text(&item["channelName"]),
            views: count(&item["viewCount"]),
            likes: count(&item["likes"]),
            comments: count(&item["commentsCount"]),
            shares: 0,
            published_at: when(&item["date"], now),
            thumbnail_url: text(&item["thumbnailUrl"]),
            video_url: None,
            duration_secs: seconds(&item["duration"]),
        },
        _ => {
            let views = match count(&item["videoViewCount"]) {
                0 => count(&item["videoPlayCount"]),
                v => v,
            };
            TrendingVideo {
                platform,
                video_id: text(&item["shortCode"]).or_else(|| text(&item["id"]))?,
                url: text(&item["url"])?,
                title: text(&item["caption"]).unwrap_or_default(),
                description: None,
                author: text(&item["ownerUsername"]),
                views,
                likes: count(&item["likesCount"]),
                comments: count(&item["commentsCount"]),
                shares: 0,
                published_at: when(&item["timestamp"], now),
                thumbnail_url: text(&item["displayUrl"]),
                video_url: text(&item["videoUrl"]),
                duration_secs: seconds(&item["videoDuration"]),
            }
        }
    };
    Some(video)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn relative_and_absolute_dates_parse() {
        let day = 86_400_000;
        assert_eq!(
            parse_relative("5 days ago", NOW),
            Some(Timestamp::from_millis(NOW.as_millis() - 5 * day))
        );
        assert_eq!(
            parse_relative("Streamed 1 year ago", NOW),
            Some(Timestamp::from_millis(NOW.as_millis() - 365 * day))
        );
        assert_eq!(
            parse_relative("2 weeks ago", NOW),
            Some(Timestamp::from_millis(NOW.as_millis() - 14 * day))
        );
        assert_eq!(parse_relative("yesterday", NOW), None);
        assert_eq!(
            parse_instant("2024-05-01"),
            Some(Timestamp::from_millis(1_714_521_600_000))
        );
        assert_eq!(
            parse_instant("2024-05-01T10:00:00.000Z"),
            Some(Timestamp::from_millis(1_714_557_600_000))
        );
    }

    #[test]
    fn counts_and_durations_in_every_form() {
        assert_eq!(count(&json!(1200)), 1200);
        assert_eq!(count(&json!(-1)), 0, "hidden likes");
        assert_eq!(count(&json!("3,400")), 3400);
        assert_eq!(count(&json!(12.7)), 12);
        assert_eq!(count(&Value::Null), 0);
        assert_eq!(clock_duration("1:02:03"), Some(3723));
        assert_eq!(clock_duration("0:59"), Some(59));
        assert_eq!(seconds(&json!(14.6)), Some(15));
    }
}
