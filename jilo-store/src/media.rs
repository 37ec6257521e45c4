//! Media storage for finished videos on `object_store`: a local directory by default.
//!
//! [`ObjectMediaStore`] implements [`jilo_core::MediaStore`], which the Studio calls in the
//! Storing state. It streams the provider's video straight into the object store in parts, so
//! memory stays flat whatever the size; it checks the size (declared and actual) and the
//! content type, and keys each video by user and job, so storing a job again overwrites the
//! same object.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use jilo_core::{
    Error, HttpFailure, MediaInfo, MediaStore, MediaStream, Result, StoredVideo, VideoToStore,
};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart,
};

/// Where media goes when `JILO_MEDIA_DIR` is not set.
pub const DEFAULT_MEDIA_DIR: &str = "./jilo-media";

/// The largest video accepted unless [`ObjectMediaStore::with_max_bytes`] says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Part size of the streamed upload; with [`MAX_PARTS_IN_FLIGHT`] it bounds the memory used.
const PART_SIZE: usize = 8 * 1024 * 1024;
const MAX_PARTS_IN_FLIGHT: usize = 2;

const SERVICE: &str = "media download";

/// Keeps finished videos in an [`ObjectStore`].
#[derive(Clone)]
pub struct ObjectMediaStore {
    store: Arc<dyn ObjectStore>,
    location_base: String,
    local_root: Option<PathBuf>,
    client: reqwest::Client,
    max_bytes: u64,
}

impl fmt::Debug for ObjectMediaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectMediaStore")
            .field("store", &self.store.to_string())
            .field("location_base", &self.location_base)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The client that downloads providers' videos: rustls on ring chosen here, not through the
/// process default, with the platform's verifier; an error (not a panic) when no CA
/// certificates load.
fn default_client() -> Result<reqwest::Client> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::invalid("TLS", format!("no HTTP client could be made: {e}"))
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::ring_tls().map_err(|e| failed(&e))?)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| failed(&e))
}

/// A path segment safe on every object store and file system.
fn segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('.').to_owned();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        _ => "mp4",
    }
}

/// Whether the first bytes look like a video container: ISO media (mp4, mov: `ftyp` at 4) or
/// Matroska/WebM (EBML magic).
fn looks_like_video(head: &[u8]) -> bool {
    (head.len() >= 8 && &head[4..8] == b"ftyp") || head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
}

fn download_error(e: reqwest::Error) -> Error {
    // The URL may carry a signed token: it never goes into the error.
    let e = e.without_url();
    if e.is_timeout() {
        Error::Timeout {
            service: SERVICE.to_owned(),
            response: None,
            source: Some(Box::new(e)),
        }
    } else {
        Error::Unavailable {
            service: SERVICE.to_owned(),
            reason: e.to_string(),
            response: None,
            source: Some(Box::new(e)),
        }
    }
}

/// The MIME type a key's extension names.
fn content_type_of(key: &str) -> Option<&'static str> {
    let ext = key.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => return None,
    })
}

/// A key as the object store takes it; keys that climb out (`..`) are refused.
fn object_key(key: &str) -> Result<ObjectPath> {
    ObjectPath::parse(key)
        .map_err(|e| Error::invalid("key", format!("`{key}` is not a media storage key: {e}")))
}

/// How much one read of a local file takes.
const FILE_READ: u64 = 1024 * 1024;

/// The bytes of `range` of an open file, read on the blocking pool a mebibyte at a time.
fn file_stream(file: std::fs::File, range: std::ops::Range<u64>) -> MediaStream {
    let read_error = |e: std::io::Error| {
        Error::storage(
            "media storage: reading a video",
            true,
            Some(Box::new(e) as _),
        )
    };
    Box::pin(futures::stream::try_unfold(
        (file, range.start, range.end),
        move |(mut file, at, end)| async move {
            if at >= end {
                return Ok(None);
            }
            let want = (end - at).min(FILE_READ);
            let (file, piece) = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(at))?;
                let mut piece = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
                (&mut file).take(want).read_to_end(&mut piece)?;
                Ok::<_, std::io::Error>((file, piece))
            })
            .await
            .map_err(|e| {
                Error::storage(
                    "media storage: reading a video",
                    true,
                    Some(Box::new(e) as _),
                )
            })?
            .map_err(read_error)?;
            if piece.is_empty() {
                return Err(Error::storage(
                    format!("media storage: the file ended at byte {at} of {end}"),
                    false,
                    None,
                ));
            }
            let next = at + piece.len() as u64;
            Ok(Some((bytes::Bytes::from(piece), (file, next, end))))
        },
    ))
}

fn object_error(what: &str, e: object_store::Error) -> Error {
    if let object_store::Error::NotFound { path, .. } = &e {
        return Error::not_found("media", path);
    }
    Error::storage(
        format!("media storage: {what}"),
        true,
        Some(Box::new(e) as _),
    )
}

impl ObjectMediaStore {
    /// Videos in a local directory, created if missing.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::storage(
                format!("creating the media directory {}", dir.display()),
                false,
                Some(Box::new(e) as _),
            )
        })?;
        let root = dir.canonicalize().map_err(|e| {
            Error::storage(
                "resolving the media directory",
                false,
                Some(Box::new(e) as _),
            )
        })?;
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| object_error("opening the media directory", e))?;
        Ok(Self {
            store: Arc::new(fs),
            location_base: root.to_string_lossy().into_owned(),
            local_root: Some(root),
            client: default_client()?,
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    /// Videos in S3-compatible storage (AWS S3, Supabase Storage, MinIO, Cloudflare R2 …),
    /// configured by `builder` (bucket, endpoint, region, credentials; path-style requests
    /// suit most S3-compatible services). Feature `s3`.
    ///
    /// With no process-wide rustls provider installed, the builder connects through
    /// [`RingS3Connector`](crate::RingS3Connector) (replacing a connector set on it); install a
    /// provider first to keep object_store's own client and every option it takes.
    ///
    /// ```no_run
    /// use jilo_store::{AmazonS3Builder, ObjectMediaStore};
    /// let media = ObjectMediaStore::s3(
    ///     AmazonS3Builder::from_env() // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION …
    ///         .with_bucket_name("videos")
    ///         .with_endpoint("https://project.supabase.co/storage/v1/s3")
    ///         .with_virtual_hosted_style_request(false),
    /// )?;
    /// # Ok::<(), jilo_core::Error>(())
    /// ```
    #[cfg(feature = "s3")]
    pub fn s3(builder: object_store::aws::AmazonS3Builder) -> Result<Self> {
        use object_store::aws::AmazonS3ConfigKey;
        // object_store's own client needs a process-wide rustls provider; without one, the
        // client carries ring's configuration instead of jilo installing it for the process.
        let builder = if rustls::crypto::CryptoProvider::get_default().is_some() {
            builder
        } else {
            builder.with_http_connector(crate::RingS3Connector)
        };
        let bucket = builder
            .get_config_value(&AmazonS3ConfigKey::Bucket)
            .unwrap_or_default();
        let s3 = builder
            .build()
            .map_err(|e| object_error("configuring S3 storage", e))?;
        Self::new(Arc::new(s3), format!("s3://{bucket}"))
    }

    /// Media storage as the environment says: S3-compatible storage when
    /// `JILO_MEDIA_S3_BUCKET` is set (feature `s3`; `JILO_MEDIA_S3_ENDPOINT` for a service
    /// other than AWS, credentials and region from the usual `AWS_*` variables), else the
    /// directory `JILO_MEDIA_DIR`, default [`DEFAULT_MEDIA_DIR`].
    pub fn from_env() -> Result<Self> {
        #[cfg(feature = "s3")]
        if let Some(bucket) = std::env::var("JILO_MEDIA_S3_BUCKET")
            .ok()
            .filter(|b| !b.trim().is_empty())
        {
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = std::env::var("JILO_MEDIA_S3_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
            {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            return Self::s3(builder);
        }
        let dir = std::env::var("JILO_MEDIA_DIR")
            .ok()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_MEDIA_DIR.to_owned());
        Self::local(dir)
    }

    /// Videos in any object store (S3, GCS, Azure, memory …); locations are
    /// `{location_base}/{key}`.
    pub fn new(store: Arc<dyn ObjectStore>, location_base: impl Into<String>) -> Result<Self> {
        Ok(Self {
            store,
            location_base: location_base.into(),
            local_root: None,
            client: default_client()?,
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    /// Keeps `bytes` under `key` (a thumbnail a user uploaded, a file a host made), replacing
    /// what was there. Keys are `/`-separated and may not climb out (`..`).
    pub async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<()> {
        let path = object_key(key)?;
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|e| object_error("keeping a file", e))?;
        Ok(())
    }

    /// Downloads with this client (proxies, timeouts, a test's TLS roots).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Refuses videos larger than this.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The key a job's video is kept under.
    pub fn key_for(&self, video: &VideoToStore, content_type: &str) -> String {
        format!(
            "videos/{}/{}.{}",
            segment(video.user.as_str()),
            segment(video.job.as_str()),
            extension(content_type)
        )
    }

    fn location(&self, key: &ObjectPath) -> Result<String> {
        match &self.local_root {
            Some(root) => Ok(root.join(key.as_ref()).to_string_lossy().into_owned()),
            None => Ok(format!(
                "{}/{}",
                self.location_base.trim_end_matches('/'),
                key
            )),
        }
    }
}

#[async_trait]
impl MediaStore for ObjectMediaStore {
    async fn store(&self, video: &VideoToStore) -> Result<StoredVideo> {
        // The headers the provider said its CDN checks (速创's `Referer`, a browser agent).
        let mut request = self.client.get(&video.url);
        for (name, value) in &video.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(download_error)?;
        let status = response.status();
        if !status.is_success() {
            let code = status.as_u16();
            let body = response.text().await.unwrap_or_default();
            let failure = Some(HttpFailure::new(code, &body));
            return Err(if status.is_server_error() {
                Error::Unavailable {
                    service: SERVICE.to_owned(),
                    reason: format!("HTTP {code}"),
                    response: failure,
                    source: None,
                }
            } else {
                Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!("the video URL answered HTTP {code}"),
                    response: failure,
                    source: None,
                }
            });
        }
        let declared_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let is_video_type = declared_type
            .as_deref()
            .is_some_and(|t| t.starts_with("video/"));
        let generic = declared_type
            .as_deref()
            .is_none_or(|t| t == "application/octet-stream" || t == "binary/octet-stream");
        if !is_video_type && !generic {
            return Err(Error::Protocol {
                service: SERVICE.to_owned(),
                reason: format!(
                    "expected a video, got content type {}",
                    declared_type.unwrap_or_default()
                ),
                response: None,
                source: None,
            });
        }
        if let Some(len) = response.content_length() {
            if len > self.max_bytes {
                return Err(Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!(
                        "the video is {len} bytes; at most {} are accepted",
                        self.max_bytes
                    ),
                    response: None,
                    source: None,
                });
            }
        }
        let content_type = declared_type
            .filter(|_| is_video_type)
            .unwrap_or_else(|| "video/mp4".to_owned());
        let key = ObjectPath::from(self.key_for(video, &content_type));
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| object_error("starting the upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut body = response.bytes_stream();
        let mut written: u64 = 0;
        let mut head: Vec<u8> = Vec::with_capacity(16);
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => break Some(download_error(e)),
            };
            if head.len() < 16 {
                let take = (16 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            written += chunk.len() as u64;
            if written > self.max_bytes {
                break Some(Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!("the video exceeds {} bytes", self.max_bytes),
                    response: None,
                    source: None,
                });
            }
            if let Err(e) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                break Some(object_error("writing", e));
            }
            writer.put(chunk);
        };
        let failure = failure.or_else(|| {
            (!is_video_type && !looks_like_video(&head)).then(|| Error::Protocol {
                service: SERVICE.to_owned(),
                reason: "the download is not a video (no mp4/mov/webm signature)".to_owned(),
                response: None,
                source: None,
            })
        });
        if let Some(e) = failure {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "aborting a failed media upload");
            }
            return Err(e);
        }
        writer
            .finish()
            .await
            .map_err(|e| object_error("finishing the upload", e))?;
        tracing::info!(job = %video.job, bytes = written, key = %key, "video stored");
        Ok(StoredVideo {
            location: self.location(&key)?,
            key: key.to_string(),
            bytes: Some(written),
            content_type: Some(content_type),
        })
    }

    async fn info(&self, key: &str) -> Result<MediaInfo> {
        let path = object_key(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| object_error("reading a video's size", e))?;
        Ok(MediaInfo {
            bytes: meta.size,
            content_type: content_type_of(key).map(str::to_owned),
        })
    }

    async fn read_from(&self, key: &str, offset: u64) -> Result<MediaStream> {
        let size = self.info(key).await?.bytes;
        if offset > size {
            return Err(Error::invalid(
                "offset",
                format!("{offset} is past the end of `{key}` ({size} bytes)"),
            ));
        }
        if offset == size {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&object_key(key)?, options)
            .await
            .map_err(|e| object_error("reading a video", e))?;
        match got.payload {
            // A local file: read in large pieces (object_store's own stream reads 8 KiB at a
            // time, each on the blocking pool, which caps an upload's speed).
            GetResultPayload::File(file, _) => Ok(file_stream(file, got.range)),
            GetResultPayload::Stream(stream) => {
                Ok(Box::pin(stream.map(|chunk| {
                    chunk.map_err(|e| object_error("reading a video", e))
                })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_and_stable() {
        assert_eq!(segment("../etc/passwd"), "_etc_passwd");
        assert_eq!(segment("用户"), "__");
        assert_eq!(segment(""), "_");
        assert!(looks_like_video(b"\0\0\0\x18ftypmp42"));
        assert!(looks_like_video(&[0x1A, 0x45, 0xDF, 0xA3, 1]));
        assert!(!looks_like_video(b"<html><body>"));
    }
}
