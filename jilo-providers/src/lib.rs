//! jilo-providers: the service clients of jilo. Each service lives in its own module behind
//! a cargo feature (`fal`, `suchuang`, `apify`, `gemini`, `youtube`); all share one HTTP layer.
//!
//! This release holds:
//! - [`classify`], the one mapping from a service's HTTP answer to a [`jilo_core::Error`], so
//!   that 401, 402, 429 and 5xx mean the same thing whichever provider answered;
//! - `http` (with any client feature): the shared retry loop, which retries only what is safe to
//!   send again (a paid start only when the service surely did not take it), with full-jitter
//!   back-off and `Retry-After` as seconds or an HTTP date;
//! - `apify` (feature `apify`): trending videos on TikTok, YouTube Shorts and Instagram Reels;
//! - `gemini` (feature `gemini`): the creative model (analyses, prompts, YouTube metadata);
//! - `fal` (feature `fal`): fal.ai's queue as a video provider, webhooks verified with Ed25519;
//! - `suchuang` (feature `suchuang`): 速创's VEO, polled;
//! - `notify` (features `email`, `chat`): admin alerts by SMTP and to a chat webhook;
//! - `tokens` (feature `youtube`): OAuth tokens sealed at rest with AES-256-GCM.
//!
//! ```
//! use jilo_core::ErrorKind;
//! use jilo_providers::classify;
//!
//! // 速创 answers HTTP 200 with its own code in the body: classify by that code.
//! let e = classify::http_error("suchuang", 400, r#"{"code":400,"msg":"账户余额不足"}"#, None);
//! assert_eq!(e.kind(), ErrorKind::ProviderOutOfFunds);
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "apify")]
pub mod apify;
pub mod classify;
#[cfg(feature = "fal")]
pub mod fal;
#[cfg(feature = "gemini")]
pub mod gemini;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "email", feature = "chat"))]
pub mod notify;
#[cfg(feature = "suchuang")]
pub mod suchuang;
#[cfg(feature = "youtube")]
pub mod tokens;
#[cfg(feature = "youtube")]
pub mod youtube;
