use async_trait::async_trait;

use crate::creative::{MetadataBrief, MetadataSuggestion, PromptBrief, ViralAnalysis};
use crate::error::Result;
use crate::trend::TrendingVideo;

/// The language-model work of the flows (Gemini).
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait CreativeModel: Send + Sync {
    /// Explains why a video went viral: hook, 3-5 success factors, a 1-10 score.
    async fn analyze(&self, video: &TrendingVideo) -> Result<ViralAnalysis>;

    /// Writes a text-to-video prompt inspired by a trending video.
    async fn write_prompt(&self, brief: &PromptBrief) -> Result<String>;

    /// Writes YouTube metadata: 3 titles, a description, 10-15 tags.
    async fn suggest_metadata(&self, brief: &MetadataBrief) -> Result<MetadataSuggestion>;
}
