use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

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
    /// Headers the download must carry ([`crate::ProviderVideo::headers`]).
    pub headers: Vec<(String, String)>,
}

/// What media storage knows of a kept object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaInfo {
    /// Its size in bytes.
    pub bytes: u64,
    /// Its MIME type, when the store knows it.
    pub content_type: Option<String>,
}

/// A kept object's bytes, in order, in chunks of the store's choosing.
pub type MediaStream = BoxStream<'static, Result<Bytes>>;

/// Where finished videos are kept (the Storing state) and read back for publishing.
/// `jilo-store` ships one on `object_store` (a local directory, S3-compatible storage, …);
/// without one the Studio keeps the provider's URL and cannot publish.
///
/// Storing the same job twice must give the same key (a retried store overwrites). Reading
/// from an offset must not read what lies before it: a resumed upload reads only from where
/// it resumes.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait MediaStore: Send + Sync + std::fmt::Debug {
    /// Downloads the video and keeps it; returns its stable key and location.
    async fn store(&self, video: &VideoToStore) -> Result<StoredVideo>;

    /// The size (and type) of what is kept under `key`; [`crate::Error::NotFound`] when
    /// nothing is.
    async fn info(&self, key: &str) -> Result<MediaInfo>;

    /// The bytes kept under `key` from `offset` to the end. An offset past the end is
    /// [`crate::Error::InvalidInput`]; an offset equal to the size gives an empty stream.
    async fn read_from(&self, key: &str, offset: u64) -> Result<MediaStream>;
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: MediaStore + ?Sized> MediaStore for std::sync::Arc<T> {
    async fn store(&self, video: &VideoToStore) -> Result<StoredVideo> {
        (**self).store(video).await
    }

    async fn info(&self, key: &str) -> Result<MediaInfo> {
        (**self).info(key).await
    }

    async fn read_from(&self, key: &str, offset: u64) -> Result<MediaStream> {
        (**self).read_from(key, offset).await
    }
}
