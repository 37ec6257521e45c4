//! jilo-core: the domain types, traits, generation state machine, credit rules and the
//! [`Studio`] of jilo, a library for AI short-video products.
//!
//! A host composes a [`Studio`] from providers (in failover order), a store that is both the
//! credit ledger ([`QuotaStore`]) and the job store ([`JobStore`]), and optional parts
//! (moderator, notifier, media store, policies). This example runs as it is, on the
//! in-memory store and the simulated provider of the `testing` feature:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use jilo_core::testing::{SimProvider, SIM_MODEL};
//! use jilo_core::{
//!     Grant, InMemoryStore, JobState, Policy, Pricing, QuotaStore, Studio, Timestamp, UserId,
//!     VideoRequest, WordListModerator,
//! };
//!
//! let store = Arc::new(InMemoryStore::new());
//! let provider = Arc::new(SimProvider::new("sim"));
//! let studio = Studio::builder()
//!     .provider(provider.clone())
//!     .store(store.clone())
//!     .moderator(Arc::new(WordListModerator::new(["gore"])))
//!     .policy(Policy {
//!         pricing: Pricing::new().with_price(SIM_MODEL, 5, 15),
//!         ..Policy::default()
//!     })
//!     .build()?;
//!
//! // A new account's starting credits (the seed: 100), idempotent by key.
//! let alice = UserId::new("alice");
//! store.grant(&Grant::signup(alice.clone(), 100, Timestamp::from_millis(0))).await?;
//!
//! let job = studio
//!     .generate(&alice, VideoRequest::new("A fox running through snow at dusk", SIM_MODEL, 5))
//!     .await?;
//! assert_eq!(studio.balance(&alice).await?.held, 15);
//!
//! // The provider finishes and calls the webhook: the Studio records it and answers at once.
//! let request_id = studio.job(&job).await?.provider_request_id.unwrap();
//! let delivery = provider.succeeded(&request_id, "https://cdn.example/fox.mp4");
//! assert_eq!(studio.handle_webhook(&"sim".into(), &delivery).await?.state, JobState::Storing);
//!
//! // A worker (`studio.run(shutdown)` in a host) stores the video and settles the hold.
//! studio.tick().await?;
//!
//! assert_eq!(studio.job(&job).await?.state, JobState::Completed);
//! let balance = studio.balance(&alice).await?;
//! assert_eq!((balance.available, balance.spent), (85, 15));
//! # Ok::<(), jilo_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! The parts:
//! - [`machine`]: the pure state machine `(lifecycle, input) -> (lifecycle, effects)`.
//! - [`traits`]: what providers, stores, notifiers and moderators implement.
//! - [`money`]: every credit transaction (a hold, its end, a grant, an expiry) decided once,
//!   as a plan each store writes; [`lots`]: the credit-lot rules the plans apply.
//! - [`InMemoryStore`]: the in-memory ledger and job store.
//! - [`testing`] (feature `testing`): a simulated provider and conformance suites; with
//!   `test-utils`, mocks of every trait too.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod alert;
pub mod clock;
pub mod config;
pub mod creative;
pub mod error;
pub mod events;
pub mod ids;
pub mod job;
pub mod ledger;
pub mod lots;
pub mod machine;
pub mod memory;
pub mod moderation;
pub mod money;
pub mod notify;
pub mod plans;
pub mod policy;
pub mod publish;
mod redact;
pub mod score;
mod studio;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod traits;
pub mod trend;
pub mod video;

pub use alert::{Alert, AlertClaim, AlertKind, ProviderCooling};
pub use clock::{Clock, SystemClock, TokioClock};
pub use creative::{MetadataBrief, MetadataSuggestion, PromptBrief, ViralAnalysis};
pub use error::{Error, ErrorKind, HttpFailure, QuotaLimit, Result};
pub use events::EventHub;
pub use ids::{JobId, ProviderId, Timestamp, UserId};
pub use job::{
    ClaimRequest, DeliveryOutcome, DeliveryRecord, Job, JobEvent, JobState, JobUpdate,
    LeaseRenewal, PendingSubmit, StoredVideo, SERVICE_UNAVAILABLE,
};
pub use ledger::{
    Balance, CreditHold, CreditStatement, EntryKind, ExpiringCredits, Grant, GrantOutcome,
    GrantReason, HistoryCursor, HistoryPage, HistoryQuery, HoldOutcome, HoldState, LedgerEntry,
    LedgerEntryKind, Reservation,
};
pub use memory::InMemoryStore;
pub use moderation::WordListModerator;
pub use notify::LogNotifier;
pub use policy::{Backoff, Policy, Pricing};
pub use publish::{
    ChannelConnection, HeldPublication, Privacy, Publication, PublicationBegun, PublicationClaim,
    PublicationKey, PublicationLease, PublicationOutcome, PublicationState, PublishMetadata,
    PublishRequest, PublishedVideo, StatsReading, UploadCheckpoint, UploadProgress, UploadSession,
    UploadUpdate, VideoStats,
};
pub use score::{ViralScore, ViralSignals};
pub use studio::{
    CostLine, DiscoverQuery, DiscoveredVideo, Discovery, PlanAllowance, PlatformFailure, Studio,
    StudioBuilder, TickReport, WebhookOutcome,
};
pub use traits::{
    AlertStore, CachedSearch, CancelOutcome, Capabilities, ChannelStore, CreativeModel,
    FailureClass, JobStore, MediaInfo, MediaStore, MediaStream, ModerationVerdict, Moderator,
    NoJournal, Notifier, ProgressReporter, ProviderBalance, ProviderStatus, ProviderVideo,
    PublicationStore, Publisher, QuotaStore, SearchOutcome, SourceRunClaim, SourceRunState,
    StatusQuery, Submission, SubmissionKey, SubmissionSearch, SubmitRequest, TrendCache,
    TrendSource, UploadJournal, VideoProvider, VideoToStore, WebhookDelivery, WebhookEvent,
};
pub use trend::{Platform, TrendQuery, TrendingVideo};
pub use video::{AspectRatio, ModelPrice, ModelSpec, ProviderCost, StyleOptions, VideoRequest};
