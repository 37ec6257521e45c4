//! The publisher and its settings: the hosts, the chunk size, how uploads retry, the HTTP
//! client uploads run on, and the constructors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jilo_core::{ChannelStore, Clock, Result, SystemClock};

use crate::http::env_var;

use super::oauth::GoogleOAuth;
#[cfg(doc)]
use super::oauth::REFRESH_MARGIN;
use super::tokens::TokenCipher;
use super::upload::CHUNK_UNIT;

/// YouTube's API host.
pub const YOUTUBE_API_URL: &str = "https://www.googleapis.com";
/// YouTube's upload host.
pub const YOUTUBE_UPLOAD_URL: &str = "https://www.googleapis.com";
/// The default chunk: 8 MiB (32 units).
pub const DEFAULT_CHUNK_SIZE: usize = 32 * CHUNK_UNIT;
/// How often a running upload checks that its access token has [`REFRESH_MARGIN`] left.
pub(super) const TOKEN_RECHECK: Duration = Duration::from_secs(60);

/// The largest thumbnail sent (YouTube's older documented limit; the newer says 50 MB).
pub const MAX_THUMBNAIL_BYTES: u64 = 2 * 1024 * 1024;

/// How an upload retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadRetry {
    /// Failures in a row without progress before the upload stops (it can be resumed).
    pub max_failures: u32,
    /// The first back-off's ceiling; it doubles each failure.
    pub base: Duration,
    /// The largest back-off.
    pub max_delay: Duration,
    /// New sessions after expired ones before the upload stops.
    pub max_restarts: u32,
}

impl Default for UploadRetry {
    fn default() -> Self {
        Self {
            max_failures: 10,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(64),
            max_restarts: 3,
        }
    }
}

pub(super) fn upload_client() -> Result<reqwest::Client> {
    // No whole-call time-out (each chunk sets its own); redirects off: a session URI is
    // never followed elsewhere with the bearer token.
    crate::http::build_client(
        crate::http::client_builder()?.redirect(reqwest::redirect::Policy::none()),
    )
}

/// A chunk's time-out: 30 s plus 4 s a MiB (a 256 KiB/s floor).
pub(super) fn chunk_timeout(len: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis((len as u64 * 4_000) / (1024 * 1024))
}

/// Publishes to YouTube channels users connected. Holds the OAuth client, the channel store
/// (sealed tokens) and the cipher; `Debug` shows no secret.
pub struct YouTubePublisher {
    pub(super) oauth: GoogleOAuth,
    pub(super) channels: Arc<dyn ChannelStore>,
    pub(super) cipher: Arc<TokenCipher>,
    pub(super) api_url: String,
    pub(super) upload_url: String,
    pub(super) http: reqwest::Client,
    pub(super) chunk_size: usize,
    pub(super) retry: UploadRetry,
    pub(super) clock: Arc<dyn Clock>,
}

impl fmt::Debug for YouTubePublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YouTubePublisher")
            .field("oauth", &self.oauth)
            .field("cipher", &self.cipher)
            .field("api_url", &jilo_core::config::redact_url(&self.api_url))
            .field(
                "upload_url",
                &jilo_core::config::redact_url(&self.upload_url),
            )
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

impl YouTubePublisher {
    /// A publisher on Google's hosts, or on `YOUTUBE_API_URL` and `YOUTUBE_UPLOAD_URL` when
    /// they are set (each an http(s) base URL, else [`Error::InvalidInput`](jilo_core::Error::InvalidInput) naming it).
    pub fn new(
        oauth: GoogleOAuth,
        channels: Arc<dyn ChannelStore>,
        cipher: TokenCipher,
    ) -> Result<Self> {
        let base = |name: &str, default: &str| match env_var(name) {
            Some(url) => jilo_core::config::base_url(name, &url),
            None => Ok(default.to_owned()),
        };
        Ok(Self {
            oauth,
            channels,
            cipher: Arc::new(cipher),
            api_url: base("YOUTUBE_API_URL", YOUTUBE_API_URL)?,
            upload_url: base("YOUTUBE_UPLOAD_URL", YOUTUBE_UPLOAD_URL)?,
            http: upload_client()?,
            chunk_size: DEFAULT_CHUNK_SIZE,
            retry: UploadRetry::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Other API and upload hosts (a proxy, a test server): http(s) base URLs, else
    /// [`Error::InvalidInput`](jilo_core::Error::InvalidInput) on `YOUTUBE_API_URL` or `YOUTUBE_UPLOAD_URL`.
    pub fn with_urls(
        mut self,
        api_url: impl Into<String>,
        upload_url: impl Into<String>,
    ) -> Result<Self> {
        self.api_url = jilo_core::config::base_url("YOUTUBE_API_URL", &api_url.into())?;
        self.upload_url = jilo_core::config::base_url("YOUTUBE_UPLOAD_URL", &upload_url.into())?;
        Ok(self)
    }

    /// The chunk size, rounded up to a multiple of [`CHUNK_UNIT`] (256 KiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        let units = bytes.div_ceil(CHUNK_UNIT).max(1);
        self.chunk_size = units * CHUNK_UNIT;
        self
    }

    /// How uploads retry.
    pub fn with_retry(mut self, retry: UploadRetry) -> Self {
        self.retry = retry;
        self
    }

    /// The HTTP client for API and upload calls.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The clock that dates tokens (a test's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The OAuth client (for [`GoogleOAuth::authorize`]).
    pub fn oauth(&self) -> &GoogleOAuth {
        &self.oauth
    }
}
