//! Trending short videos found on the platforms, and how the Studio scores them.

use serde::{Deserialize, Serialize};

use crate::ids::Timestamp;

/// A short-video platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Platform {
    /// TikTok.
    // Serialised as `as_str` names it; the derived names of earlier releases still read.
    #[serde(rename = "tiktok", alias = "tik_tok")]
    TikTok,
    /// YouTube Shorts.
    #[serde(rename = "youtube_shorts", alias = "you_tube_shorts")]
    YouTubeShorts,
    /// Instagram Reels.
    InstagramReels,
}

impl Platform {
    /// The platform's name as stores and URLs keep it: `tiktok`, `youtube_shorts`,
    /// `instagram_reels`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::TikTok => "tiktok",
            Platform::YouTubeShorts => "youtube_shorts",
            Platform::InstagramReels => "instagram_reels",
        }
    }
}

/// A search for trending videos on one platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendQuery {
    /// The platform to search.
    pub platform: Platform,
    /// The keyword, e.g. `AI tools`.
    pub keyword: String,
    /// Fewest views to keep.
    pub min_views: Option<u64>,
    /// Most views to keep.
    pub max_views: Option<u64>,
    /// Only videos published within this many days.
    pub max_age_days: Option<u32>,
    /// The most results to ask for.
    pub limit: u32,
}

/// One trending video as a source reports it. Counts are integers; missing counts are 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendingVideo {
    /// Where it was found.
    pub platform: Platform,
    /// The platform's id.
    pub video_id: String,
    /// The public page.
    pub url: String,
    /// Title or caption.
    pub title: String,
    /// Description, when separate from the title.
    pub description: Option<String>,
    /// The author's handle.
    pub author: Option<String>,
    /// Views.
    pub views: u64,
    /// Likes.
    pub likes: u64,
    /// Comments.
    pub comments: u64,
    /// Shares.
    pub shares: u64,
    /// When it was published, when known.
    pub published_at: Option<Timestamp>,
    /// A thumbnail URL.
    pub thumbnail_url: Option<String>,
    /// A direct video URL, when the source exposes one.
    pub video_url: Option<String>,
    /// Length in seconds, when known.
    #[serde(default)]
    pub duration_secs: Option<u32>,
}

impl TrendingVideo {
    /// `(likes + comments + shares) / views`, 0 when there are no views.
    pub fn engagement_rate(&self) -> f64 {
        if self.views == 0 {
            return 0.0;
        }
        (self.likes + self.comments + self.shares) as f64 / self.views as f64
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn platforms_serialise_as_their_names_and_read_the_old_ones() {
        for p in [
            Platform::TikTok,
            Platform::YouTubeShorts,
            Platform::InstagramReels,
        ] {
            assert_eq!(
                serde_json::to_value(p).unwrap_or_default(),
                serde_json::Value::from(p.as_str())
            );
            let back: Option<Platform> = serde_json::from_value(p.as_str().into()).ok();
            assert_eq!(back, Some(p));
        }
        for (old, p) in [
            ("tik_tok", Platform::TikTok),
            ("you_tube_shorts", Platform::YouTubeShorts),
        ] {
            let read: Option<Platform> = serde_json::from_value(old.into()).ok();
            assert_eq!(read, Some(p));
        }
    }
}
