use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::publish::{PublishRequest, PublishedVideo, UploadProgress, VideoStats};

/// Receives upload progress; cheap to clone. [`ProgressReporter::none`] drops it.
#[derive(Clone, Default)]
pub struct ProgressReporter(Option<Arc<dyn Fn(UploadProgress) + Send + Sync>>);

impl ProgressReporter {
    /// Calls `f` with each progress report.
    pub fn new(f: impl Fn(UploadProgress) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Drops progress reports.
    pub fn none() -> Self {
        Self(None)
    }

    /// Reports progress.
    pub fn report(&self, progress: UploadProgress) {
        if let Some(f) = &self.0 {
            f(progress);
        }
    }
}

impl fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressReporter(set)"
        } else {
            "ProgressReporter(none)"
        })
    }
}

/// Uploads stored videos to a platform (YouTube) and reads their statistics.
///
/// Uploads are resumable: an interrupted upload returns an error carrying no secret, and a
/// second call with [`PublishRequest::resume_session`] continues it.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Uploads a video with its metadata, thumbnail, playlist, schedule and privacy.
    async fn publish(
        &self,
        request: &PublishRequest,
        progress: ProgressReporter,
    ) -> Result<PublishedVideo>;

    /// Reads a published video's counts.
    async fn stats(&self, account: &str, video_id: &str) -> Result<VideoStats>;
}
