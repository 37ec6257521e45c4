//! jilo: a Rust library for AI short-video products. Find what is trending, turn it into a
//! prompt, generate the video on a paid provider, store it and publish it, while every user's
//! credits are held, settled or refunded exactly.
//!
//! This facade re-exports the crates: [`jilo_core`] (types, traits, state machine, Studio,
//! in-memory store) at the root, and [`providers`] and [`store`] as modules whose backends are
//! cargo features, the way sqlx re-exports its drivers:
//!
//! | feature | what it adds |
//! |---|---|
//! | `fal`, `suchuang` | the video providers |
//! | `apify` | trending videos on TikTok, YouTube Shorts and Instagram Reels |
//! | `gemini` | the creative model (analyses, prompts, YouTube metadata) |
//! | `youtube` | Google OAuth and YouTube publishing |
//! | `email`, `chat` | admin alerts by SMTP and to a chat webhook |
//! | `sqlite`, `postgres` | the SQL ledger and job store |
//! | `media`, `s3` | media storage in a directory, or S3-compatible storage |
//! | `testing` | a simulated provider, the conformance suites |
//! | `test-utils` | `testing` and a mock of every trait |
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use jilo::testing::{SimProvider, SIM_MODEL};
//! use jilo::{Grant, InMemoryStore, QuotaStore, Studio, Timestamp, UserId, VideoRequest};
//!
//! let store = Arc::new(InMemoryStore::new());
//! let studio = Studio::builder()
//!     .provider(Arc::new(SimProvider::new("sim")))
//!     .store(store.clone())
//!     .build()?;
//! let user = UserId::new("u1");
//! store.grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0))).await?;
//! let job = studio
//!     .generate(&user, VideoRequest::new("Neon city at night, slow pan", SIM_MODEL, 5))
//!     .await?;
//! assert_eq!(studio.job(&job).await?.credits, 10);
//! # Ok::<(), jilo::Error>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use jilo_core::*;

/// Service clients (FAL, 速创, Apify, Gemini, YouTube) and the shared error mapping.
pub mod providers {
    pub use jilo_providers::*;
}

/// SQL stores and media storage.
pub mod store {
    pub use jilo_store::*;
}
