//! YouTube publishing (feature `youtube`): channel OAuth with tokens sealed at rest, and a
//! [`Publisher`] that uploads from media storage with the resumable protocol, journaling the
//! session and the confirmed bytes so another process can resume, then sets the thumbnail
//! and the playlist, and reads statistics.
//!
//! ```no_run
//! use std::sync::Arc;
//! use jilo_core::{InMemoryStore, Timestamp, UserId};
//! use jilo_providers::tokens::TokenCipher;
//! use jilo_providers::youtube::{GoogleOAuth, LoopbackRedirect, YouTubePublisher};
//!
//! # async fn demo() -> jilo_core::Result<()> {
//! let channels = Arc::new(InMemoryStore::new()); // or an SqlStore
//! let youtube = YouTubePublisher::new(GoogleOAuth::from_env()?, channels, TokenCipher::from_env()?)?;
//! let redirect = LoopbackRedirect::bind().await?;
//! let pending = youtube.oauth().authorize(&redirect.uri())?;
//! println!("open {}", pending.url);
//! let back = redirect.wait(std::time::Duration::from_secs(300)).await?;
//! let user = UserId::new("creator-1");
//! let channel = youtube.connect_channel(&user, &pending, &back.state, &back.code).await?;
//! println!("connected {} ({})", channel.channel_name, channel.channel_id);
//! # Ok(()) }
//! ```

mod errors;
mod oauth;
mod upload;

use crate::http::TracedSend;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jilo_core::{
    ChannelConnection, ChannelStore, Clock, Error, MediaStore, Privacy, ProgressReporter,
    PublishRequest, PublishedVideo, Publisher, Result, SystemClock, Timestamp, UploadJournal,
    UploadProgress, UploadSession, UserId, VideoStats,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::http::{env_var, retry_after, transport_error, CallKind};
use crate::tokens::TokenCipher;
use errors::{youtube_error, SERVICE};
use upload::{backoff, held_from_range, ChunkReader, Step};

pub use errors::next_pacific_midnight;
pub use oauth::{
    GoogleOAuth, LoopbackRedirect, OAuthTokens, PendingAuthorization, RedirectParams,
    GOOGLE_AUTH_URL, GOOGLE_REVOKE_URL, GOOGLE_TOKEN_URL, REFRESH_MARGIN, YOUTUBE_SCOPES,
};
pub use upload::CHUNK_UNIT;

/// YouTube's API host.
pub const YOUTUBE_API_URL: &str = "https://www.googleapis.com";
/// YouTube's upload host.
pub const YOUTUBE_UPLOAD_URL: &str = "https://www.googleapis.com";
/// The default chunk: 8 MiB (32 units).
pub const DEFAULT_CHUNK_SIZE: usize = 32 * CHUNK_UNIT;
/// How often a running upload checks that its access token has [`REFRESH_MARGIN`] left.
const TOKEN_RECHECK: Duration = Duration::from_secs(60);

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

/// Publishes to YouTube channels users connected. Holds the OAuth client, the channel store
/// (sealed tokens) and the cipher; `Debug` shows no secret.
pub struct YouTubePublisher {
    oauth: GoogleOAuth,
    channels: Arc<dyn ChannelStore>,
    cipher: Arc<TokenCipher>,
    api_url: String,
    upload_url: String,
    http: reqwest::Client,
    chunk_size: usize,
    retry: UploadRetry,
    clock: Arc<dyn Clock>,
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

fn upload_client() -> Result<reqwest::Client> {
    // No whole-call time-out (each chunk sets its own); redirects off: a session URI is
    // never followed elsewhere with the bearer token.
    crate::http::build_client(
        crate::http::client_builder()?.redirect(reqwest::redirect::Policy::none()),
    )
}

/// A chunk's time-out: 30 s plus 4 s a MiB (a 256 KiB/s floor).
fn chunk_timeout(len: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis((len as u64 * 4_000) / (1024 * 1024))
}

fn protocol(reason: impl Into<String>) -> Error {
    Error::Protocol {
        service: SERVICE.to_owned(),
        reason: reason.into(),
        response: None,
        source: None,
    }
}

fn privacy_str(p: Privacy) -> &'static str {
    match p {
        Privacy::Public => "public",
        Privacy::Unlisted => "unlisted",
        Privacy::Private => "private",
    }
}

/// An RFC 3339 UTC time (`2026-12-01T15:00:00Z`).
fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system()).to_string()
}

/// The `video` resource sent to start the session. jilo's videos are AI-generated, so the
/// altered-or-synthetic disclosure is set.
pub fn video_resource(request: &PublishRequest) -> Value {
    let m = &request.metadata;
    let mut snippet = json!({
        "title": m.title.trim(),
        "description": m.description,
        "tags": m.tags,
    });
    if let Some(category) = &m.category_id {
        snippet["categoryId"] = json!(category);
    }
    let mut status = json!({
        "privacyStatus": privacy_str(m.privacy),
        "selfDeclaredMadeForKids": false,
        "containsSyntheticMedia": true,
    });
    if let Some(at) = m.publish_at {
        status["publishAt"] = json!(rfc3339(at));
    }
    json!({ "snippet": snippet, "status": status })
}

/// YouTube asked for a pause longer than the back-off allows: this try ends, and the record
/// is left alone until then ([`Error::retry_after`]).
fn asked_to_wait(asked: Duration) -> Error {
    Error::RateLimited {
        service: SERVICE.to_owned(),
        retry_after: Some(asked),
        response: None,
        source: None,
    }
}

/// What one call's failure means for the upload loop.
enum Failure {
    /// Try again after a back-off (at least what the server asked for), asking the server
    /// what it holds first.
    Transient(Error, Option<Duration>),
    /// The access token was refused: refresh it, then ask what the server holds.
    Auth(Error),
    /// Stop.
    Fatal(Error),
}

impl Failure {
    fn transient(e: Error) -> Self {
        Failure::Transient(e, None)
    }
}

fn failure(status: u16, body: &str, retry_after: Option<Duration>, now: Timestamp) -> Failure {
    let e = youtube_error(status, body, retry_after, now);
    match (status, &e) {
        (401, Error::Unauthorized { .. }) => Failure::Auth(e),
        // The resumable failures; `Retry-After` is honoured on them too.
        (500 | 502 | 503 | 504, _) => Failure::Transient(e, retry_after),
        (_, Error::RateLimited { .. }) => Failure::transient(e),
        _ => Failure::Fatal(e),
    }
}

impl YouTubePublisher {
    /// A publisher on Google's hosts, or on `YOUTUBE_API_URL` and `YOUTUBE_UPLOAD_URL` when
    /// they are set (each an http(s) base URL, else [`Error::InvalidInput`] naming it).
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
    /// [`Error::InvalidInput`] on `YOUTUBE_API_URL` or `YOUTUBE_UPLOAD_URL`.
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

    fn owner(user: &UserId, channel_id: &str) -> String {
        format!("{user}/{channel_id}")
    }

    /// Whom an upload session belongs to: one job on one user's channel.
    fn session_owner(request: &PublishRequest) -> String {
        format!(
            "{}/{}/upload/{}",
            request.user, request.channel_id, request.job
        )
    }

    /// A session URI as the journal keeps it: sealed like the channel's tokens, since whoever
    /// holds the URI can send bytes into the upload (a video on the user's channel).
    fn seal_session(&self, request: &PublishRequest, uri: &str) -> Result<String> {
        let uri = SecretString::from(uri.to_owned());
        Ok(self
            .cipher
            .seal(&uri, &Self::session_owner(request))?
            .to_string())
    }

    /// The session URI of a journaled session, as [`Self::seal_session`] sealed it for this
    /// job and channel. One that does not open (altered, sealed for another job, or by a key
    /// no longer configured) never will: the try ends with that cause ([`Error::InvalidInput`]
    /// on `upload session`), and the bearer token is never sent to an address not sealed here.
    fn open_session_uri(&self, request: &PublishRequest, kept: &str) -> Result<String> {
        kept.parse::<crate::tokens::SealedToken>()
            .and_then(|sealed| {
                self.cipher
                    .open(&sealed, &Self::session_owner(request))
                    .map(|uri| uri.expose_secret().to_owned())
            })
            .map_err(|e| {
                Error::invalid(
                    "upload session",
                    format!("the journaled upload session cannot be opened: {e}"),
                )
            })
    }

    /// Finishes a channel connection: exchanges the redirect's code (state checked), reads
    /// the channel the account owns (`channels.list?mine=true`), seals both tokens for that
    /// user and channel, and keeps them. Connecting the same channel again replaces its tokens.
    pub async fn connect_channel(
        &self,
        user: &UserId,
        pending: &PendingAuthorization,
        returned_state: &str,
        code: &str,
    ) -> Result<ChannelConnection> {
        let now = self.clock.now();
        let tokens = self
            .oauth
            .exchange(pending, returned_state, code, now)
            .await?;
        let refresh = tokens
            .refresh_token
            .clone()
            .ok_or_else(|| protocol("the grant has no refresh token"))?;
        // A fresh token refused by the channel lookup (revoked a moment ago, a clock that ran
        // ahead) is refreshed and the lookup tried once more, as an upload does.
        let (tokens, (channel_id, channel_name)) = match self.my_channel(&tokens.access_token).await
        {
            Err(Error::Unauthorized { .. }) => {
                let fresh = self.oauth.refresh(&user.to_string(), &refresh, now).await?;
                let found = self.my_channel(&fresh.access_token).await?;
                (fresh, found)
            }
            found => (tokens, found?),
        };
        let refresh = tokens.refresh_token.as_ref().unwrap_or(&refresh);
        let owner = Self::owner(user, &channel_id);
        let connection = ChannelConnection {
            user: user.clone(),
            channel_id: channel_id.clone(),
            channel_name,
            access_token: self.cipher.seal(&tokens.access_token, &owner)?.to_string(),
            access_expires_at: tokens.expires_at,
            refresh_token: self.cipher.seal(refresh, &owner)?.to_string(),
            scopes: tokens.scopes.clone(),
            connected_at: now,
            updated_at: now,
        };
        self.channels.save_channel(&connection).await?;
        tracing::info!(user = %user, channel = %channel_id, "channel connected");
        Ok(connection)
    }

    /// Revokes a channel's grant at Google and forgets its tokens.
    pub async fn disconnect_channel(&self, user: &UserId, channel_id: &str) -> Result<()> {
        let connection = self.connection(user, channel_id).await?;
        let owner = Self::owner(user, channel_id);
        let refresh = self
            .cipher
            .open(&connection.refresh_token.parse()?, &owner)?;
        self.oauth.revoke(&refresh).await?;
        self.channels.remove_channel(user, channel_id).await?;
        Ok(())
    }

    async fn connection(&self, user: &UserId, channel_id: &str) -> Result<ChannelConnection> {
        self.channels
            .channel(user, channel_id)
            .await?
            .ok_or_else(|| Error::not_found("channel", Self::owner(user, channel_id)))
    }

    /// A valid access token for the user's channel: the kept one while it has more than
    /// [`REFRESH_MARGIN`] left (and `force` is off), else a refreshed one, sealed and kept.
    /// A revoked or expired grant is [`Error::ReconnectRequired`].
    pub async fn access_token(
        &self,
        user: &UserId,
        channel_id: &str,
        force: bool,
    ) -> Result<SecretString> {
        let connection = self.connection(user, channel_id).await?;
        let owner = Self::owner(user, channel_id);
        let now = self.clock.now();
        if !force && connection.access_expires_at > now.plus(REFRESH_MARGIN) {
            return self.cipher.open(&connection.access_token.parse()?, &owner);
        }
        let refresh = self
            .cipher
            .open(&connection.refresh_token.parse()?, &owner)?;
        let tokens = self.oauth.refresh(channel_id, &refresh, now).await?;
        let refresh = tokens.refresh_token.as_ref().unwrap_or(&refresh);
        let updated = ChannelConnection {
            access_token: self.cipher.seal(&tokens.access_token, &owner)?.to_string(),
            access_expires_at: tokens.expires_at,
            refresh_token: self.cipher.seal(refresh, &owner)?.to_string(),
            updated_at: now,
            ..connection
        };
        self.channels.save_channel(&updated).await?;
        tracing::debug!(channel = %channel_id, "access token refreshed");
        Ok(tokens.access_token)
    }

    async fn my_channel(&self, token: &SecretString) -> Result<(String, String)> {
        let url = format!(
            "{}/youtube/v3/channels?part=snippet&mine=true",
            self.api_url
        );
        let body = self.get_json(&url, token).await?;
        let item = body
            .get("items")
            .and_then(|i| i.get(0))
            .ok_or_else(|| Error::NotAllowed {
                reason: "the Google account has no YouTube channel; create one and connect again"
                    .to_owned(),
            })?;
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("channels.list gave a channel without an id"))?;
        let name = item
            .pointer("/snippet/title")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok((id.to_owned(), name.to_owned()))
    }

    async fn get_json(&self, url: &str, token: &SecretString) -> Result<Value> {
        let response = self
            .http
            .get(url)
            .bearer_auth(token.expose_secret())
            .timeout(Duration::from_secs(30))
            .traced_send(SERVICE)
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        if !(200..300).contains(&status) {
            return Err(youtube_error(status, &text, wait, self.clock.now()));
        }
        serde_json::from_str(&text).map_err(|e| protocol(format!("unreadable answer: {e}")))
    }

    /// Starts an upload session; its URI comes back in `Location`.
    async fn open_session(
        &self,
        request: &PublishRequest,
        token: &SecretString,
    ) -> std::result::Result<String, Failure> {
        let url = format!(
            "{}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status",
            self.upload_url
        );
        let body = video_resource(request).to_string();
        let sent = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .header("content-type", "application/json; charset=UTF-8")
            .header("x-upload-content-length", request.total_bytes.to_string())
            .header("x-upload-content-type", request.content_type.as_str())
            .timeout(Duration::from_secs(60))
            .body(body)
            .traced_send(SERVICE)
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(Failure::transient(transport_error(
                    SERVICE,
                    CallKind::Read,
                    e,
                )))
            }
        };
        let status = response.status().as_u16();
        if status == 200 || status == 201 {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| Failure::Fatal(protocol("the session start has no Location")))?;
            let uri = match url::Url::parse(&url).and_then(|base| base.join(&location)) {
                Ok(u) => u.to_string(),
                Err(_) => return Err(Failure::Fatal(protocol("the session URI is not a URL"))),
            };
            return Ok(uri);
        }
        let wait = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(failure(status, &text, wait, self.clock.now()))
    }

    /// Reads an upload request's answer.
    async fn step(&self, response: reqwest::Response) -> std::result::Result<Step, Failure> {
        let status = response.status().as_u16();
        match status {
            308 => {
                let range = response
                    .headers()
                    .get(reqwest::header::RANGE)
                    .and_then(|r| r.to_str().ok());
                let wait = retry_after(response.headers());
                held_from_range(range)
                    .map(|held| Step::Incomplete(held, wait))
                    .map_err(Failure::Fatal)
            }
            200 | 201 => {
                let text = response
                    .text()
                    .await
                    .map_err(|e| Failure::transient(transport_error(SERVICE, CallKind::Read, e)))?;
                // The video exists: an unreadable answer is asked for again (a status query
                // returns the same final answer), never taken as a failure.
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| {
                        v.get("id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| !id.is_empty())
                    })
                    .map(Step::Done)
                    .ok_or_else(|| {
                        Failure::transient(Error::Unavailable {
                            service: SERVICE.to_owned(),
                            reason: "the finished upload's answer names no video".to_owned(),
                            response: Some(jilo_core::HttpFailure::new(status, &text)),
                            source: None,
                        })
                    })
            }
            404 | 410 => Ok(Step::Expired),
            _ => {
                let wait = retry_after(response.headers());
                let text = response.text().await.unwrap_or_default();
                Err(failure(status, &text, wait, self.clock.now()))
            }
        }
    }

    /// `PUT` with no body and `Content-Range: bytes */TOTAL`: what the server holds.
    async fn status_query(
        &self,
        session: &str,
        total: u64,
        token: &SecretString,
    ) -> std::result::Result<Step, Failure> {
        let sent = self
            .http
            .put(session)
            .bearer_auth(token.expose_secret())
            .header("content-length", "0")
            .header("content-range", format!("bytes */{total}"))
            .timeout(Duration::from_secs(30))
            .traced_send(SERVICE)
            .await;
        match sent {
            Ok(r) => self.step(r).await,
            Err(e) => Err(Failure::transient(transport_error(
                SERVICE,
                CallKind::Read,
                e,
            ))),
        }
    }

    async fn put_chunk(
        &self,
        session: &str,
        offset: u64,
        len: usize,
        body: reqwest::Body,
        request: &PublishRequest,
        token: &SecretString,
    ) -> std::result::Result<Step, Failure> {
        let last = offset + len as u64 - 1;
        let sent = self
            .http
            .put(session)
            .bearer_auth(token.expose_secret())
            .header("content-type", request.content_type.as_str())
            .header("content-length", len.to_string())
            .header(
                "content-range",
                format!("bytes {offset}-{last}/{}", request.total_bytes),
            )
            .timeout(chunk_timeout(len))
            .body(body)
            .traced_send(SERVICE)
            .await;
        match sent {
            Ok(r) => self.step(r).await,
            Err(e) => Err(Failure::transient(transport_error(
                SERVICE,
                CallKind::Read,
                e,
            ))),
        }
    }

    /// Checks what can be checked before any call: the metadata, the size, the thumbnail.
    async fn check(&self, request: &PublishRequest, media: &dyn MediaStore) -> Result<()> {
        request.metadata.validate()?;
        if request.total_bytes == 0 {
            return Err(Error::invalid(
                "total_bytes",
                "an empty video cannot be uploaded",
            ));
        }
        if !(request.content_type.starts_with("video/")
            || request.content_type == "application/octet-stream")
        {
            return Err(Error::invalid(
                "content_type",
                format!("`{}` is not a video type", request.content_type),
            ));
        }
        let info = media.info(&request.media_key).await?;
        if info.bytes != request.total_bytes {
            return Err(Error::invalid(
                "total_bytes",
                format!(
                    "the request says {} bytes but media storage holds {}",
                    request.total_bytes, info.bytes
                ),
            ));
        }
        if let Some(key) = &request.metadata.thumbnail_key {
            let thumb = media.info(key).await?;
            if thumb.bytes > MAX_THUMBNAIL_BYTES {
                return Err(Error::invalid(
                    "thumbnail_key",
                    format!(
                        "the thumbnail is {} bytes; at most {MAX_THUMBNAIL_BYTES}",
                        thumb.bytes
                    ),
                ));
            }
            if !matches!(
                thumb.content_type.as_deref(),
                Some("image/jpeg" | "image/png")
            ) {
                return Err(Error::invalid(
                    "thumbnail_key",
                    "a thumbnail is a JPEG or PNG (`.jpg`, `.png`)",
                ));
            }
        }
        Ok(())
    }

    /// The resumable upload: returns the video resource.
    async fn upload(
        &self,
        request: &PublishRequest,
        media: &dyn MediaStore,
        journal: &dyn UploadJournal,
        progress: &ProgressReporter,
    ) -> Result<Value> {
        let total = request.total_bytes;
        let mut token = self
            .access_token(&request.user, &request.channel_id, false)
            .await?;
        let mut token_checked = self.clock.now();
        let mut reader = ChunkReader::new(media, &request.media_key, total);
        let mut failures = 0u32;
        let mut restarts = 0u32;
        let mut refreshed = false;
        let (mut session, mut confirmed, mut ask) = match &request.session {
            Some(s) => (
                Some(self.open_session_uri(request, &s.uri)?),
                s.confirmed,
                true,
            ),
            None => (None, 0, false),
        };
        loop {
            // A long upload outlives its access token: refresh it before it expires rather
            // than lose a chunk to a 401.
            let now = self.clock.now();
            if now >= token_checked.plus(TOKEN_RECHECK) {
                token_checked = now;
                match self
                    .access_token(&request.user, &request.channel_id, false)
                    .await
                {
                    Ok(fresh) => token = fresh,
                    // The token in hand has up to the margin left and may finish the upload;
                    // a 401 refreshes it then (and a revoked grant ends the upload there).
                    Err(e) => {
                        tracing::warn!(job = %request.job, error = %e, "refreshing the access token mid-upload failed")
                    }
                }
            }
            let outcome = match &session {
                None => match self.open_session(request, &token).await {
                    Ok(uri) => {
                        journal
                            .session_opened(&UploadSession {
                                uri: self.seal_session(request, &uri)?,
                                confirmed: 0,
                            })
                            .await?;
                        tracing::info!(job = %request.job, channel = %request.channel_id, bytes = total, "upload session opened");
                        session = Some(uri);
                        confirmed = 0;
                        ask = false;
                        continue;
                    }
                    Err(f) => Err(f),
                },
                // Asked to, or the server holds every byte but has not answered with the video.
                Some(uri) if ask || confirmed >= total => {
                    self.status_query(uri, total, &token).await
                }
                Some(uri) => {
                    // The body streams as media storage is read: a chunk is never held
                    // whole, and reading overlaps sending.
                    let len = reader.chunk_len(confirmed, self.chunk_size);
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    let body = reqwest::Body::wrap_stream(futures::stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) },
                    ));
                    let put = self.put_chunk(uri, confirmed, len, body, request, &token);
                    let feed = reader.feed(confirmed, len, tx);
                    tokio::pin!(put);
                    tokio::pin!(feed);
                    let mut fed = None;
                    // The answer ends the chunk, even one that came before the whole body
                    // was read (the feed is then dropped; the next chunk reads afresh).
                    let sent = loop {
                        tokio::select! {
                            sent = &mut put => break sent,
                            done = &mut feed, if fed.is_none() => fed = Some(done),
                        }
                    };
                    match (fed, sent) {
                        // Media storage failing for good (the media is shorter than declared).
                        (Some(Err(e)), _) if !e.is_retryable() => return Err(e),
                        // A read that failed cut the chunk: back off, ask, go on.
                        (Some(Err(e)), Err(_)) => Err(Failure::transient(e)),
                        (_, sent) => sent,
                    }
                }
            };
            match outcome {
                Ok(Step::Done(video)) => {
                    progress.report(UploadProgress {
                        uploaded: total,
                        total,
                    });
                    return Ok(video);
                }
                Ok(Step::Incomplete(held, asked)) => {
                    if held > total {
                        return Err(protocol(format!(
                            "the server says it holds {held} of {total} bytes"
                        )));
                    }
                    let moved = held != confirmed || ask;
                    ask = false;
                    if held > confirmed {
                        failures = 0;
                        refreshed = false;
                    } else if !moved || held < confirmed {
                        // Nothing taken: count it, so a server that takes nothing ends.
                        failures += 1;
                    }
                    confirmed = held;
                    if session.is_some() {
                        journal.confirmed(held).await?;
                    }
                    progress.report(UploadProgress {
                        uploaded: held,
                        total,
                    });
                    // A 308 with `Retry-After`: no more bytes before then. A long wait ends
                    // this try (the record resumes later from what the server holds).
                    if let Some(asked) = asked.filter(|d| *d > self.retry.max_delay) {
                        return Err(asked_to_wait(asked));
                    }
                    if failures == 0 {
                        if let Some(asked) = asked {
                            tokio::time::sleep(asked).await;
                        }
                    } else {
                        if failures >= self.retry.max_failures {
                            return Err(Error::Unavailable {
                                service: SERVICE.to_owned(),
                                reason: format!(
                                    "the upload server took no bytes {failures} times in a row"
                                ),
                                response: None,
                                source: None,
                            });
                        }
                        tokio::time::sleep(backoff(
                            failures,
                            self.retry.base,
                            self.retry.max_delay,
                            asked,
                        ))
                        .await;
                    }
                }
                Ok(Step::Expired) => {
                    restarts += 1;
                    if restarts > self.retry.max_restarts {
                        return Err(Error::Unavailable {
                            service: SERVICE.to_owned(),
                            reason: format!("the upload session expired {restarts} times"),
                            response: None,
                            source: None,
                        });
                    }
                    tracing::warn!(job = %request.job, "upload session expired; starting a new one");
                    session = None;
                    confirmed = 0;
                }
                Err(Failure::Auth(e)) => {
                    if refreshed {
                        return Err(e);
                    }
                    refreshed = true;
                    token = self
                        .access_token(&request.user, &request.channel_id, true)
                        .await?;
                    ask = session.is_some();
                }
                Err(Failure::Transient(e, asked)) => {
                    failures += 1;
                    if failures >= self.retry.max_failures {
                        return Err(e);
                    }
                    let asked = asked.or(e.retry_after());
                    // A long Retry-After ends this try instead (the record resumes later,
                    // not before the time asked).
                    if let Some(asked) = asked.filter(|d| *d > self.retry.max_delay) {
                        return Err(match e {
                            Error::RateLimited { .. } => e,
                            _ => asked_to_wait(asked),
                        });
                    }
                    let wait = backoff(failures, self.retry.base, self.retry.max_delay, asked);
                    tracing::debug!(job = %request.job, failures, wait_ms = wait.as_millis() as u64, error = %e, "upload interrupted; asking the server what it holds");
                    tokio::time::sleep(wait).await;
                    ask = session.is_some();
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }

    /// `Ok` for a 2xx answer, else YouTube's error read from it.
    async fn succeeded(&self, response: reqwest::Response) -> Result<()> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let wait = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(youtube_error(status, &text, wait, self.clock.now()))
    }

    async fn set_thumbnail(
        &self,
        video_id: &str,
        key: &str,
        media: &dyn MediaStore,
        token: &SecretString,
    ) -> Result<()> {
        use futures::StreamExt;
        let info = media.info(key).await?;
        let mut stream = media.read_from(key, 0).await?;
        let mut image = Vec::with_capacity(usize::try_from(info.bytes).unwrap_or(0));
        while let Some(piece) = stream.next().await {
            image.extend_from_slice(&piece?);
        }
        let url = format!(
            "{}/upload/youtube/v3/thumbnails/set?videoId={video_id}&uploadType=media",
            self.upload_url
        );
        let response = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .header(
                "content-type",
                info.content_type.as_deref().unwrap_or("image/jpeg"),
            )
            .timeout(Duration::from_secs(60))
            .body(image)
            .traced_send(SERVICE)
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        self.succeeded(response).await
    }

    async fn add_to_playlist(
        &self,
        video_id: &str,
        playlist_id: &str,
        token: &SecretString,
    ) -> Result<()> {
        let url = format!("{}/youtube/v3/playlistItems?part=snippet", self.api_url);
        let body = json!({
            "snippet": {
                "playlistId": playlist_id,
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
            }
        });
        let response = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .json(&body)
            .timeout(Duration::from_secs(30))
            .traced_send(SERVICE)
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        self.succeeded(response).await
    }
}

fn video_from(resource: &Value, request: &PublishRequest) -> Result<PublishedVideo> {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| protocol("the finished upload names no video id"))?;
    let upload_status = resource
        .pointer("/status/uploadStatus")
        .and_then(Value::as_str)
        .unwrap_or("uploaded");
    if matches!(upload_status, "failed" | "rejected" | "deleted") {
        let why = resource
            .pointer("/status/failureReason")
            .or_else(|| resource.pointer("/status/rejectionReason"))
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(Error::NotAllowed {
            reason: format!("YouTube {upload_status} the video {id}: {why}"),
        });
    }
    let kept_private = resource
        .pointer("/status/privacyStatus")
        .and_then(Value::as_str)
        == Some("private");
    let locked_private = kept_private
        && request.metadata.privacy != Privacy::Private
        && request.metadata.publish_at.is_none();
    let mut warnings = Vec::new();
    if locked_private {
        warnings.push(
            "YouTube kept the video private: uploads from API projects that have not passed \
             YouTube's audit are locked private"
                .to_owned(),
        );
    }
    Ok(PublishedVideo {
        video_id: id.to_owned(),
        url: format!("https://www.youtube.com/watch?v={id}"),
        locked_private,
        warnings,
    })
}

#[async_trait]
impl Publisher for YouTubePublisher {
    async fn publish(
        &self,
        request: &PublishRequest,
        media: Arc<dyn MediaStore>,
        journal: Arc<dyn UploadJournal>,
        progress: ProgressReporter,
    ) -> Result<PublishedVideo> {
        self.check(request, media.as_ref()).await?;
        let resource = self
            .upload(request, media.as_ref(), journal.as_ref(), &progress)
            .await?;
        let mut video = video_from(&resource, request)?;
        journal.uploaded(&video).await?;
        tracing::info!(job = %request.job, video = %video.video_id, "video uploaded");
        let wants_extras =
            request.metadata.thumbnail_key.is_some() || request.metadata.playlist_id.is_some();
        if !wants_extras {
            return Ok(video);
        }
        // The video is published whatever happens from here: failures are warnings.
        let token = match self
            .access_token(&request.user, &request.channel_id, false)
            .await
        {
            Ok(token) => token,
            Err(e) => {
                video
                    .warnings
                    .push(format!("the thumbnail and playlist were not set: {e}"));
                return Ok(video);
            }
        };
        if let Some(key) = &request.metadata.thumbnail_key {
            if let Err(e) = self
                .set_thumbnail(&video.video_id, key, media.as_ref(), &token)
                .await
            {
                tracing::warn!(video = %video.video_id, error = %e, "thumbnail not set");
                video
                    .warnings
                    .push(format!("the thumbnail was not set: {e}"));
            }
        }
        if let Some(playlist) = &request.metadata.playlist_id {
            if let Err(e) = self
                .add_to_playlist(&video.video_id, playlist, &token)
                .await
            {
                tracing::warn!(video = %video.video_id, error = %e, "not added to the playlist");
                video.warnings.push(format!(
                    "the video was not added to playlist {playlist}: {e}"
                ));
            }
        }
        Ok(video)
    }

    async fn stats(
        &self,
        user: &UserId,
        channel_id: &str,
        video_ids: &[String],
    ) -> Result<Vec<(String, VideoStats)>> {
        if video_ids.is_empty() {
            return Ok(Vec::new());
        }
        if video_ids.len() > 50 {
            return Err(Error::invalid("video_ids", "at most 50 ids a call"));
        }
        let url = format!(
            "{}/youtube/v3/videos?part=statistics&id={}",
            self.api_url,
            video_ids.join(",")
        );
        let token = self.access_token(user, channel_id, false).await?;
        let body = match self.get_json(&url, &token).await {
            // A token revoked or expired early: refresh once.
            Err(Error::Unauthorized { .. }) => {
                let token = self.access_token(user, channel_id, true).await?;
                self.get_json(&url, &token).await?
            }
            other => other?,
        };
        let count = |item: &Value, field: &str| -> u64 {
            item.pointer(&format!("/statistics/{field}"))
                .and_then(|v| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| v.as_u64())
                })
                .unwrap_or(0)
        };
        Ok(body
            .get("items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let id = item.get("id")?.as_str()?.to_owned();
                        Some((
                            id,
                            VideoStats {
                                views: count(item, "viewCount"),
                                likes: count(item, "likeCount"),
                                comments: count(item, "commentCount"),
                            },
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_796_137_200_000)),
            "2026-12-01T15:00:00Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(951_782_400_999)),
            "2000-02-29T00:00:00Z",
            "whole seconds"
        );
    }
}
