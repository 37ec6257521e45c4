//! Publishing a stored video to a platform account.

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, Timestamp, UserId};

/// Who can see a published video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    /// Anyone.
    Public,
    /// Anyone with the link.
    Unlisted,
    /// Only the owner.
    Private,
}

/// Title, description, tags and the rest of what a platform shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishMetadata {
    /// At most 100 characters.
    pub title: String,
    /// At most 5000 characters.
    pub description: String,
    /// At most 15 tags of at most 30 characters.
    pub tags: Vec<String>,
    /// The platform's category id (YouTube: `28` is Science & Technology).
    pub category_id: Option<String>,
    /// Who can see it.
    pub privacy: Privacy,
    /// Publish later at this time (the video stays private until then).
    pub publish_at: Option<Timestamp>,
    /// A playlist to add it to.
    pub playlist_id: Option<String>,
    /// A thumbnail image on disk.
    pub thumbnail_path: Option<String>,
}

/// A request to upload one stored video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The user publishing.
    pub user: UserId,
    /// The job whose video is published.
    pub job: JobId,
    /// The connected platform account (e.g. a YouTube channel) to publish to.
    pub account: String,
    /// The video on disk.
    pub video_path: String,
    /// What to show.
    pub metadata: PublishMetadata,
    /// A resumable upload session from an earlier, interrupted try.
    pub resume_session: Option<String>,
}

/// How far an upload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// Bytes sent.
    pub uploaded: u64,
    /// Bytes in all.
    pub total: u64,
}

impl UploadProgress {
    /// 0 to 100.
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        u8::try_from((self.uploaded.min(self.total) * 100) / self.total).unwrap_or(100)
    }
}

/// A published video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedVideo {
    /// The platform's id.
    pub video_id: String,
    /// Its public page.
    pub url: String,
}

/// A published video's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoStats {
    /// Views.
    pub views: u64,
    /// Likes.
    pub likes: u64,
    /// Comments.
    pub comments: u64,
}
