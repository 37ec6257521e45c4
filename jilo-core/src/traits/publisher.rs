use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::UserId;
use crate::publish::{PublishRequest, PublishedVideo, UploadProgress, UploadSession, VideoStats};
use crate::traits::MediaStore;

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

/// Where a [`Publisher`] writes what it learns as an upload goes, before it goes on: the
/// Studio keeps it in the publication record, so another process can resume the upload.
/// An error from the journal stops the upload (it is resumed later from what was kept).
#[async_trait]
pub trait UploadJournal: Send + Sync {
    /// The platform opened an upload session; called before any byte is sent.
    async fn session_opened(&self, session: &UploadSession) -> Result<()>;

    /// The platform confirmed holding the first `confirmed` bytes.
    async fn confirmed(&self, confirmed: u64) -> Result<()>;

    /// The upload completed and the platform named the video; called before the thumbnail
    /// and the playlist.
    async fn uploaded(&self, video: &PublishedVideo) -> Result<()>;
}

/// An [`UploadJournal`] that keeps nothing (a one-off upload nobody will resume).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoJournal;

#[async_trait]
impl UploadJournal for NoJournal {
    async fn session_opened(&self, _session: &UploadSession) -> Result<()> {
        Ok(())
    }

    async fn confirmed(&self, _confirmed: u64) -> Result<()> {
        Ok(())
    }

    async fn uploaded(&self, _video: &PublishedVideo) -> Result<()> {
        Ok(())
    }
}

/// Uploads stored videos to a platform (YouTube) and reads their statistics.
///
/// The video is read from media storage as a stream, never from a local path. Uploads are
/// resumable: a request carrying [`PublishRequest::session`] continues that session from the
/// byte the platform confirmed, reading the media only from there.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Uploads a video with its metadata, then its thumbnail and playlist, reporting
    /// progress and journaling the session and confirmed bytes as it goes.
    async fn publish(
        &self,
        request: &PublishRequest,
        media: Arc<dyn MediaStore>,
        journal: Arc<dyn UploadJournal>,
        progress: ProgressReporter,
    ) -> Result<PublishedVideo>;

    /// Reads published videos' counts (at most 50 ids a call); videos the platform no
    /// longer has are left out.
    async fn stats(
        &self,
        user: &UserId,
        channel_id: &str,
        video_ids: &[String],
    ) -> Result<Vec<(String, VideoStats)>>;
}
