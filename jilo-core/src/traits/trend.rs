use async_trait::async_trait;

use crate::error::Result;
use crate::trend::{Platform, TrendQuery, TrendingVideo};

/// Finds trending short videos on one or more platforms (Apify for TikTok, Shorts, Reels).
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait TrendSource: Send + Sync {
    /// The platforms this source can search.
    fn platforms(&self) -> Vec<Platform>;

    /// Searches one platform. Filters the source cannot apply server-side are applied by the
    /// caller.
    async fn search(&self, query: &TrendQuery) -> Result<Vec<TrendingVideo>>;
}
