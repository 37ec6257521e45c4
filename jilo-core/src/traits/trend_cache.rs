use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::creative::ViralAnalysis;
use crate::error::{ErrorKind, Result};
use crate::ids::Timestamp;
use crate::trend::{Platform, TrendingVideo};

/// What one platform's search gave: its videos, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SearchOutcome {
    /// The videos found.
    Found {
        /// In the source's order.
        videos: Vec<TrendingVideo>,
    },
    /// The search failed.
    Failed {
        /// What kind of failure.
        kind: ErrorKind,
        /// The error, for the page (never a token).
        message: String,
    },
}

/// A platform search as the Studio keeps it, so a repeat within the window makes no paid call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedSearch {
    /// The platform searched.
    pub platform: Platform,
    /// What it gave.
    pub outcome: SearchOutcome,
    /// When the source answered.
    pub fetched_at: Timestamp,
}

/// A caller's claim on starting the paid source run of one search (an Apify actor run), so
/// that across every process sharing the store one run is started and every caller follows
/// it ([`TrendCache::claim_source_run`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRunClaim {
    /// The search's key (the actor and its input).
    pub key: String,
    /// Who claims: one id per source instance (a process).
    pub owner: String,
    /// Now, by the caller's clock.
    pub now: Timestamp,
    /// How long the claim holds while its run is being started; after that, with no run
    /// recorded, another caller may claim.
    pub claim_until: Timestamp,
}

/// What a store keeps of a search's source run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptSourceRun {
    /// Who claimed it.
    pub owner: String,
    /// The run started, once recorded.
    pub run_id: Option<String>,
    /// Until when the claim, or the recorded run, is followed rather than started anew.
    pub until: Timestamp,
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRunState {
    /// The caller holds the claim: it starts the run and records it.
    Claimed,
    /// A run was started for this search: follow it, never start another.
    Started {
        /// The run to follow.
        run_id: String,
    },
    /// Another caller claimed and is starting the run: ask again shortly.
    Pending {
        /// When that claim lapses.
        until: Timestamp,
    },
}

/// The one rule every store applies to a claim: what the claim finds, and the record to
/// write when it takes the claim. A recorded run is followed until its `until`; a claim
/// without a run holds until its own; a lapsed one is taken over.
pub fn decide_source_run(
    kept: Option<&KeptSourceRun>,
    claim: &SourceRunClaim,
) -> (SourceRunState, Option<KeptSourceRun>) {
    let taken = || {
        Some(KeptSourceRun {
            owner: claim.owner.clone(),
            run_id: None,
            until: claim.claim_until,
        })
    };
    match kept {
        Some(k) if k.until > claim.now => match &k.run_id {
            Some(run_id) => (
                SourceRunState::Started {
                    run_id: run_id.clone(),
                },
                None,
            ),
            None if k.owner == claim.owner => (SourceRunState::Claimed, taken()),
            None => (SourceRunState::Pending { until: k.until }, None),
        },
        _ => (SourceRunState::Claimed, taken()),
    }
}

/// Where searches and analyses are kept between discoveries (trend sources cost money per
/// run, creative-model calls per request). Keys are opaque to the store.
///
/// Contract (checked by [`crate::testing::trend_cache_suite`]): the last search stored under a
/// key is returned as stored; an analysis is kept per platform and video, the last one winning;
/// a source run is claimed by one caller at a time across every process
/// ([`decide_source_run`], applied atomically), its id kept before anyone waits on it and
/// followed by every later claim until its `until` (a run read stays readable: its dataset is
/// free), forgotten when it ends for good.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait TrendCache: Send + Sync + std::fmt::Debug {
    /// The last search stored under `key`, however old; the Studio judges freshness.
    async fn cached_search(&self, key: &str) -> Result<Option<CachedSearch>>;

    /// Keeps a search under `key`, replacing the one before.
    async fn store_search(&self, key: &str, search: &CachedSearch) -> Result<()>;

    /// The analysis kept for a video, if any.
    async fn cached_analysis(
        &self,
        platform: Platform,
        video_id: &str,
    ) -> Result<Option<ViralAnalysis>>;

    /// Keeps a video's analysis, replacing the one before.
    async fn store_analysis(
        &self,
        platform: Platform,
        video_id: &str,
        analysis: &ViralAnalysis,
        at: Timestamp,
    ) -> Result<()>;

    /// Claims the start of a search's paid source run, or finds the run another caller
    /// started: [`decide_source_run`] applied atomically, so of many callers in many processes
    /// one gets [`SourceRunState::Claimed`].
    async fn claim_source_run(&self, claim: &SourceRunClaim) -> Result<SourceRunState>;

    /// Keeps the run the claim started, to be followed until `until`, before anyone waits on
    /// it. A claim another caller has taken over is [`crate::Error::LostRace`].
    async fn record_source_run(
        &self,
        key: &str,
        owner: &str,
        run_id: &str,
        until: Timestamp,
    ) -> Result<()>;

    /// Forgets a search's run that ended for good (failed, or outlived its deadline), so the
    /// next search starts anew. With `run_id`, only that run (a newer claim is left alone);
    /// without, the caller's own claim that started nothing.
    async fn end_source_run(&self, key: &str, owner: &str, run_id: Option<String>) -> Result<()>;
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: TrendCache + ?Sized> TrendCache for std::sync::Arc<T> {
    async fn cached_search(&self, key: &str) -> Result<Option<CachedSearch>> {
        (**self).cached_search(key).await
    }

    async fn store_search(&self, key: &str, search: &CachedSearch) -> Result<()> {
        (**self).store_search(key, search).await
    }

    async fn cached_analysis(
        &self,
        platform: Platform,
        video_id: &str,
    ) -> Result<Option<ViralAnalysis>> {
        (**self).cached_analysis(platform, video_id).await
    }

    async fn store_analysis(
        &self,
        platform: Platform,
        video_id: &str,
        analysis: &ViralAnalysis,
        at: Timestamp,
    ) -> Result<()> {
        (**self)
            .store_analysis(platform, video_id, analysis, at)
            .await
    }

    async fn claim_source_run(&self, claim: &SourceRunClaim) -> Result<SourceRunState> {
        (**self).claim_source_run(claim).await
    }

    async fn record_source_run(
        &self,
        key: &str,
        owner: &str,
        run_id: &str,
        until: Timestamp,
    ) -> Result<()> {
        (**self).record_source_run(key, owner, run_id, until).await
    }

    async fn end_source_run(&self, key: &str, owner: &str, run_id: Option<String>) -> Result<()> {
        (**self).end_source_run(key, owner, run_id).await
    }
}
