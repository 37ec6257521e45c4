//! The language-model work of the flows: why a video went viral, a prompt from it, metadata.

use serde::{Deserialize, Serialize};

use crate::trend::TrendingVideo;

/// Why a trending video works, as the creative model explains it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViralAnalysis {
    /// The hook in one or two sentences.
    pub hook: String,
    /// Three to five success factors.
    pub success_factors: Vec<String>,
    /// A recommendation score from 1 to 10.
    pub score: u8,
}

/// A request to write a generation prompt from a trending video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptBrief {
    /// The video to take the idea from.
    pub video: TrendingVideo,
    /// Its analysis, when already made.
    pub analysis: Option<ViralAnalysis>,
    /// The length the new video will have.
    pub duration_secs: u32,
}

/// A request for YouTube metadata for a generated video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBrief {
    /// The prompt the video was made from.
    pub prompt: String,
    /// Its length.
    pub duration_secs: u32,
    /// Keywords to work in.
    pub keywords: Vec<String>,
}

/// Suggested YouTube metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataSuggestion {
    /// Three title options.
    pub titles: Vec<String>,
    /// A description.
    pub description: String,
    /// Ten to fifteen tags.
    pub tags: Vec<String>,
}
