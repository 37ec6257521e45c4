//! fal.ai's queue API as a [`VideoProvider`](jilo_core::VideoProvider) (feature `fal`): minimax video-01, Kling
//! text-to-video and Veo 3, submitted with the job-named webhook, followed by status, result
//! and cancel, and webhooks verified with Ed25519 against fal's published keys.
//!
//! ```no_run
//! # fn run() -> jilo_core::Result<()> {
//! use jilo_providers::fal::FalProvider;
//! // FAL_KEY, FAL_QUEUE_URL (default https://queue.fal.run), FAL_JWKS_URL.
//! let fal = FalProvider::from_env()?.with_user_id("my-fal-user-id");
//! # let _ = fal; Ok(()) }
//! ```
//!
//! The rules the spec gives, as implemented:
//! - Submit uses the model's full id; status, result and cancel use only `owner/app` (the
//!   `workflows` and `comfy` namespaces keep three segments). Durations are strings on the wire.
//! - A submit is paid: it is never retried after it may have reached fal. A refused connection
//!   goes to the backup host (`queue.falrun.com`); a 5xx without fal's `x-fal-request-id`
//!   header (an ingress error: nothing was queued) is retryable; a 5xx with it, a time-out or
//!   a connection cut after sending is [`Error::OutcomeUnknown`](jilo_core::Error::OutcomeUnknown): the Studio reconciles by the
//!   job-named webhook (fal has no lookup by key).
//! - There is no FAILED status: a failure is `COMPLETED` with `error`; an unknown status is a
//!   terminal failure, never polled forever.
//! - Webhooks: `X-Fal-Webhook-{Request-Id,User-Id,Timestamp,Signature}`; Ed25519 over
//!   `request_id \n user_id \n timestamp \n hex(sha256(raw body))`, a timestamp within 300 s,
//!   every key of the JWKS tried (cached; refetched once, at most once a minute, when none
//!   verifies). Set [`FalProvider::with_user_id`] so a delivery signed for another fal account
//!   is refused. The body is never re-serialised (seeds exceed `i64`).

mod config;
mod errors;
mod provider;
mod webhook;
mod wire;

pub use config::{
    FalProvider, BACKUP_QUEUE_URL, DEFAULT_JWKS_URL, DEFAULT_QUEUE_URL,
    DEFAULT_REQUESTS_PER_MINUTE, JWKS_REFETCH_GAP, WEBHOOK_TOLERANCE,
};
pub use wire::{app_of, catalog, model_input, KLING_T2V, MINIMAX_VIDEO_01, VEO3};
