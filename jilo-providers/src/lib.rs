//! jilo-providers: the service clients of jilo. Each service lives in its own module behind
//! a cargo feature (`fal`, `suchuang`, `apify`, `gemini`, `youtube`); all share one HTTP layer.
//!
//! It holds:
//! - [`classify`], the one mapping from a service's HTTP answer and its own error fields to a
//!   [`jilo_core::Error`], so that 401, 402, 429 and 5xx mean the same thing whichever provider
//!   answered, and no text the request put in a body (an echoed prompt) decides it;
//! - `http` (with any client feature): the shared retry loop, which retries only what is safe to
//!   send again (a paid start only when the service surely did not take it), with jittered
//!   back-off above each service's documented first wait and `Retry-After` as seconds or an
//!   HTTP date; every client's TLS on ring chosen explicitly (no process-wide default);
//! - `apify` (feature `apify`): trending videos on TikTok, YouTube Shorts and Instagram Reels;
//! - `gemini` (feature `gemini`): the creative model (analyses, prompts, YouTube metadata);
//! - `fal` (feature `fal`): fal.ai's queue as a video provider, webhooks verified with Ed25519;
//! - `suchuang` (feature `suchuang`): 速创's VEO, polled;
//! - `notify` (features `email`, `chat`): admin alerts by SMTP and to a chat webhook;
//! - `youtube` (feature `youtube`): Google OAuth with PKCE, channels, resumable uploads that
//!   survive drops and restarts, thumbnails, playlists and statistics;
//! - `tokens` (feature `youtube`): OAuth tokens sealed at rest with AES-256-GCM (it lives in
//!   `youtube/`, its one user here, and is re-exported at this path).
//!
//! A client of some size is a folder with one file per concern, and a provider a team writes
//! against jilo's traits reads best laid out the same way. `fal/` is the example:
//! - `mod.rs`: the module's documentation (the spec's rules as implemented), the client's
//!   struct and its `Debug` (no secret in it);
//! - `config.rs`: the service's hosts and limits, and the constructors (`new`, `from_env`,
//!   each `with_…`), every value checked into a typed error naming its variable;
//! - `wire.rs`: what goes over the wire and back (models, request bodies, answers read);
//! - `errors.rs`: the service's failures as [`jilo_core::Error`], through [`classify`];
//! - the trait's implementation (`provider.rs`), and what else the service has of its own
//!   (`webhook.rs` for fal's signed deliveries).
//!
//! `youtube/` keeps the same shape, with the OAuth client, the channel connections, the
//! upload protocol and the publisher's side of an upload in files of their own.
//!
//! ```
//! use jilo_core::ErrorKind;
//! use jilo_providers::classify::{self, Says};
//!
//! // 速创 answers HTTP 200 with its own code in the body and says in its `msg` that the
//! // balance is short: what the service says in its own words counts, an echo of the prompt
//! // does not.
//! let msg = "账户余额不足";
//! let says = classify::says_in_message(msg, &["a lantern festival at night"]);
//! let e = classify::error_from("suchuang", 400, msg, None, says);
//! assert_eq!(e.kind(), ErrorKind::ProviderOutOfFunds);
//! assert_eq!(classify::says_in_message("余额不足", &["a prompt about 余额"]), Says::Nothing);
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
pub mod youtube;
/// OAuth tokens sealed at rest (feature `youtube`); the module lives with YouTube's, its
/// only user in this crate.
#[cfg(feature = "youtube")]
pub use youtube::tokens;
