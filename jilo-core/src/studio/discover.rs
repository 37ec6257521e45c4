//! Discovery: trending videos across platforms, analysed and scored (the seed's flow 3).

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::creative::{PromptBrief, ViralAnalysis};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::Timestamp;
use crate::score::ViralScore;
use crate::traits::{CachedSearch, SearchOutcome, TrendSource};
use crate::trend::{Platform, TrendQuery, TrendingVideo};

use super::shared::Studio;

/// The longest keyword a search takes, in characters.
pub const MAX_KEYWORD_CHARS: usize = 100;

/// A user's search for trending videos: a keyword, the platforms, a views range and a period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiscoverQuery {
    /// What to search for, e.g. `AI tools`.
    pub keyword: String,
    /// Where: each is searched at once.
    pub platforms: Vec<Platform>,
    /// Fewest views to keep.
    pub min_views: Option<u64>,
    /// Most views to keep.
    pub max_views: Option<u64>,
    /// Only videos published within this many days (unknown dates are kept).
    pub max_age_days: Option<u32>,
    /// How many results to ask each platform for (the seed: 50).
    pub per_platform: u32,
    /// How many of the best to analyse with the creative model (the rest are scored without
    /// the AI part).
    pub analyze_top: usize,
}

impl DiscoverQuery {
    /// A search for `keyword` on `platforms`: 50 results each, the top 30 analysed, no range.
    pub fn new(keyword: impl Into<String>, platforms: impl Into<Vec<Platform>>) -> Self {
        Self {
            keyword: keyword.into(),
            platforms: platforms.into(),
            min_views: None,
            max_views: None,
            max_age_days: None,
            per_platform: 50,
            analyze_top: 30,
        }
    }

    /// Keeps only videos with views in `min..=max`.
    pub fn with_views(mut self, min: Option<u64>, max: Option<u64>) -> Self {
        self.min_views = min;
        self.max_views = max;
        self
    }

    /// Keeps only videos published within `days`.
    pub fn within_days(mut self, days: u32) -> Self {
        self.max_age_days = Some(days);
        self
    }

    /// Analyses the best `n` (0: none).
    pub fn analyze_top(mut self, n: usize) -> Self {
        self.analyze_top = n;
        self
    }

    fn validate(&self) -> Result<()> {
        let chars = self.keyword.trim().chars().count();
        if chars == 0 || chars > MAX_KEYWORD_CHARS {
            return Err(Error::invalid(
                "keyword",
                format!("{chars} characters; 1 to {MAX_KEYWORD_CHARS} are needed"),
            ));
        }
        if self.platforms.is_empty() {
            return Err(Error::invalid("platforms", "name at least one platform"));
        }
        if let (Some(min), Some(max)) = (self.min_views, self.max_views) {
            if min > max {
                return Err(Error::invalid(
                    "views",
                    format!("the range {min}..{max} is empty"),
                ));
            }
        }
        if self.per_platform == 0 || self.per_platform > 1000 {
            return Err(Error::invalid(
                "per_platform",
                "1 to 1000 results a platform",
            ));
        }
        Ok(())
    }

    /// The query a source gets for one platform.
    fn for_platform(&self, platform: Platform) -> TrendQuery {
        TrendQuery {
            platform,
            keyword: self.keyword.trim().to_owned(),
            min_views: self.min_views,
            max_views: self.max_views,
            max_age_days: self.max_age_days,
            limit: self.per_platform,
        }
    }
}

/// One video of a discovery: as found, its analysis if made, and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoveredVideo {
    /// The video.
    pub video: TrendingVideo,
    /// Why it works, when analysed (`None`: not among the top, or the analysis failed).
    pub analysis: Option<ViralAnalysis>,
    /// Its viral score; `score.without_ai()` says when the AI part is missing.
    pub score: ViralScore,
}

/// A platform that gave nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformFailure {
    /// The platform.
    pub platform: Platform,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The error, for the page.
    pub message: String,
}

/// What a discovery found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    /// The videos, best score first.
    pub videos: Vec<DiscoveredVideo>,
    /// The platforms that failed (the others' videos are still here).
    pub failures: Vec<PlatformFailure>,
    /// When the oldest of the platform answers used was fetched.
    pub fetched_at: Timestamp,
    /// Whether every platform was answered from the cache (no paid search was made).
    pub from_cache: bool,
}

/// One platform's answer and whether it came from the cache.
struct PlatformAnswer {
    search: CachedSearch,
    cached: bool,
}

fn cache_key(query: &TrendQuery) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        query.platform.as_str(),
        query.keyword.to_lowercase(),
        query.min_views.map(|v| v.to_string()).unwrap_or_default(),
        query.max_views.map(|v| v.to_string()).unwrap_or_default(),
        query
            .max_age_days
            .map(|v| v.to_string())
            .unwrap_or_default(),
        query.limit
    )
}

impl Studio {
    /// Finds trending videos: searches the query's platforms at once (each through the first
    /// trend source that covers it), merges and dedupes, keeps the views range and period,
    /// analyses the best `analyze_top` with the creative model (at most
    /// [`crate::Policy::analysis_concurrency`] at a time), scores and sorts them.
    ///
    /// A platform that fails does not sink the search: its failure is reported in
    /// [`Discovery::failures`]; a failed analysis leaves that video scored without the AI
    /// part. A search repeated within [`crate::Policy::trend_cache_window`] is answered from
    /// the store without a new paid search (a failed one is retried after
    /// [`crate::Policy::trend_failure_window`]), and analyses are kept per video.
    /// A bad query is [`Error::InvalidInput`] and searches nothing.
    pub async fn discover(&self, query: &DiscoverQuery) -> Result<Discovery> {
        query.validate()?;
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut platforms = query.platforms.clone();
        let mut named = HashSet::new();
        platforms.retain(|p| named.insert(*p));
        let answers = futures::future::join_all(
            platforms
                .iter()
                .map(|p| self.search_platform(query.for_platform(*p), now)),
        )
        .await;
        let from_cache = answers.iter().all(|a| a.cached);
        let fetched_at = answers
            .iter()
            .map(|a| a.search.fetched_at)
            .min()
            .unwrap_or(now);
        let mut failures = Vec::new();
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for answer in answers {
            match answer.search.outcome {
                SearchOutcome::Found { videos } => {
                    for v in videos {
                        if seen.insert((v.platform, v.video_id.clone())) && keeps(query, &v, now) {
                            found.push(v);
                        }
                    }
                }
                SearchOutcome::Failed { kind, message } => failures.push(PlatformFailure {
                    platform: answer.search.platform,
                    kind,
                    message,
                }),
            }
        }
        // Rank without the AI part, analyse the best, then rank again with it.
        found.sort_by_key(|v| std::cmp::Reverse(ViralScore::of(v, None, now).total));
        let top = query.analyze_top.min(found.len());
        let concurrency = inner.policy.analysis_concurrency.max(1);
        // Owned videos and a cloned Studio: the future stays `Send` for any caller (an axum
        // handler, `tokio::spawn`), which a closure borrowing each video would not be.
        let analyses: Vec<Option<ViralAnalysis>> = stream::iter(found.iter().take(top).cloned())
            .map(|v| {
                let studio = self.clone();
                async move { studio.analysis_of(&v, now).await }
            })
            .buffered(concurrency)
            .collect()
            .await;
        let mut videos: Vec<DiscoveredVideo> = found
            .into_iter()
            .enumerate()
            .map(|(i, video)| {
                let analysis = analyses.get(i).cloned().flatten();
                let score = ViralScore::of(&video, analysis.as_ref(), now);
                DiscoveredVideo {
                    video,
                    analysis,
                    score,
                }
            })
            .collect();
        videos.sort_by(|a, b| {
            b.score
                .total
                .cmp(&a.score.total)
                .then(b.video.views.cmp(&a.video.views))
        });
        Ok(Discovery {
            videos,
            failures,
            fetched_at,
            from_cache,
        })
    }

    /// One platform's videos: from the cache while fresh, else from its source (and kept).
    async fn search_platform(&self, query: TrendQuery, now: Timestamp) -> PlatformAnswer {
        let inner = &self.inner;
        let key = cache_key(&query);
        match inner.trends.cached_search(&key).await {
            Ok(Some(search)) => {
                let window = match search.outcome {
                    SearchOutcome::Found { .. } => inner.policy.trend_cache_window,
                    SearchOutcome::Failed { .. } => inner.policy.trend_failure_window,
                };
                if now.since(search.fetched_at) < window {
                    return PlatformAnswer {
                        search,
                        cached: true,
                    };
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading the search cache failed; searching"),
        }
        let source: Option<&Arc<dyn TrendSource>> = inner
            .trend_sources
            .iter()
            .find(|s| s.platforms().contains(&query.platform));
        let outcome = match source {
            None => SearchOutcome::Failed {
                kind: ErrorKind::NotFound,
                message: format!("no trend source covers {}", query.platform.as_str()),
            },
            Some(source) => match source.search(&query).await {
                Ok(videos) => SearchOutcome::Found { videos },
                Err(e) => {
                    tracing::warn!(platform = query.platform.as_str(), error = %e, "a platform search failed");
                    SearchOutcome::Failed {
                        kind: e.kind(),
                        message: e.to_string(),
                    }
                }
            },
        };
        let search = CachedSearch {
            platform: query.platform,
            outcome,
            fetched_at: inner.clock.now(),
        };
        if source.is_some() {
            if let Err(e) = inner.trends.store_search(&key, &search).await {
                tracing::warn!(error = %e, "keeping a search failed");
            }
        }
        PlatformAnswer {
            search,
            cached: false,
        }
    }

    /// A video's analysis: kept from before, or asked of the creative model (and kept).
    async fn analysis_of(&self, video: &TrendingVideo, now: Timestamp) -> Option<ViralAnalysis> {
        let inner = &self.inner;
        match inner
            .trends
            .cached_analysis(video.platform, &video.video_id)
            .await
        {
            Ok(Some(kept)) => return Some(kept),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading a kept analysis failed"),
        }
        let model = inner.creative.as_ref()?;
        match model.analyze(video).await {
            Ok(analysis) => {
                if let Err(e) = inner
                    .trends
                    .store_analysis(video.platform, &video.video_id, &analysis, now)
                    .await
                {
                    tracing::warn!(error = %e, "keeping an analysis failed");
                }
                Some(analysis)
            }
            Err(e) => {
                tracing::warn!(video = %video.video_id, error = %e, "an analysis failed; scored without it");
                None
            }
        }
    }

    /// Writes a generation prompt from a trending video (and its analysis, when made) with
    /// the creative model, checked to fit [`Studio::generate`] (10 to 500 characters).
    /// Without a creative model: [`Error::InvalidInput`] on `creative_model`.
    pub async fn prompt_from(&self, found: &DiscoveredVideo, duration_secs: u32) -> Result<String> {
        let model =
            self.inner.creative.as_ref().ok_or_else(|| {
                Error::invalid("creative_model", "the Studio has no creative model")
            })?;
        let brief = PromptBrief {
            video: found.video.clone(),
            analysis: found.analysis.clone(),
            duration_secs,
        };
        let prompt = model.write_prompt(&brief).await?;
        let check = crate::video::VideoRequest::new(prompt.trim(), "-", duration_secs);
        check.validate_prompt().map_err(|e| Error::Protocol {
            service: "creative model".to_owned(),
            reason: format!("the prompt it wrote does not fit: {e}"),
            response: None,
            source: None,
        })?;
        Ok(prompt.trim().to_owned())
    }
}

/// Whether a found video fits the query's views range and period.
fn keeps(query: &DiscoverQuery, video: &TrendingVideo, now: Timestamp) -> bool {
    if query.min_views.is_some_and(|min| video.views < min)
        || query.max_views.is_some_and(|max| video.views > max)
    {
        return false;
    }
    match (query.max_age_days, video.published_at) {
        (Some(days), Some(published)) => {
            now.since(published) <= std::time::Duration::from_secs(u64::from(days) * 86_400)
        }
        _ => true,
    }
}
