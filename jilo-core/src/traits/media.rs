use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{JobId, UserId};
use crate::job::StoredVideo;

/// A finished video to copy into media storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoToStore {
    /// The job.
    pub job: JobId,
    /// Its owner.
    pub user: UserId,
    /// The provider's URL.
    pub url: String,
}

/// Where finished videos are kept (the Storing state). `jilo-store` ships one on
/// `object_store`; without one the Studio keeps the provider's URL.
///
/// Storing the same job twice must give the same key (a retried store overwrites).
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Downloads the video and keeps it; returns its stable key and location.
    async fn store(&self, video: &VideoToStore) -> Result<StoredVideo>;
}
