//! YouTube publishing (feature `youtube`): channel OAuth with tokens sealed at rest, and a
//! [`Publisher`](jilo_core::Publisher) that uploads from media storage with the resumable protocol, journaling the
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

mod channels;
mod config;
mod errors;
mod oauth;
mod publisher;
mod session;
pub mod tokens;
mod upload;
mod wire;

pub use config::{
    UploadRetry, YouTubePublisher, DEFAULT_CHUNK_SIZE, MAX_THUMBNAIL_BYTES, YOUTUBE_API_URL,
    YOUTUBE_UPLOAD_URL,
};
pub use errors::next_pacific_midnight;
pub use oauth::{
    GoogleOAuth, LoopbackRedirect, OAuthTokens, PendingAuthorization, RedirectParams,
    GOOGLE_AUTH_URL, GOOGLE_REVOKE_URL, GOOGLE_TOKEN_URL, REFRESH_MARGIN, YOUTUBE_SCOPES,
};
pub use upload::CHUNK_UNIT;
pub use wire::video_resource;
