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

/// Where searches and analyses are kept between discoveries (trend sources cost money per
/// run, creative-model calls per request). Keys are opaque to the store.
///
/// Contract (checked by [`crate::testing::trend_cache_suite`]): the last search stored under a
/// key is returned as stored; an analysis is kept per platform and video, the last one winning.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait TrendCache: Send + Sync {
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
}
