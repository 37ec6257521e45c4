//! The traits host applications and provider authors implement.
//!
//! Every trait is object safe (`#[async_trait]`, `Send + Sync`) so hosts hold
//! `Arc<dyn Trait>`. Arguments and replies are structs, so fields can be added without breaking
//! implementers. With the `test-utils` feature each trait has a mockall mock (`MockVideoProvider`,
//! …) and, for the stores and providers, a conformance suite in [`crate::testing`].

mod alerts;
mod creative;
mod jobs;
mod media;
mod moderator;
mod notifier;
mod provider;
mod publications;
mod publisher;
mod quota;
mod trend;
mod trend_cache;

pub use alerts::AlertStore;
pub use creative::CreativeModel;
pub use jobs::JobStore;
pub use media::{MediaInfo, MediaStore, MediaStream, VideoToStore};
pub use moderator::{ModerationVerdict, Moderator};
pub use notifier::Notifier;
pub use provider::{
    CancelOutcome, Capabilities, FailureClass, ProviderBalance, ProviderStatus, ProviderVideo,
    StatusQuery, Submission, SubmissionKey, SubmissionSearch, SubmitRequest, VideoProvider,
    WebhookDelivery, WebhookEvent,
};
pub use publications::{ChannelStore, PublicationStore};
pub use publisher::{NoJournal, ProgressReporter, Publisher, UploadJournal};
pub use quota::QuotaStore;
pub use trend::TrendSource;
pub use trend_cache::{
    decide_source_run, CachedSearch, KeptSourceRun, SearchOutcome, SourceRunClaim, SourceRunState,
    TrendCache,
};

#[cfg(any(test, feature = "test-utils"))]
pub use alerts::MockAlertStore;
#[cfg(any(test, feature = "test-utils"))]
pub use creative::MockCreativeModel;
#[cfg(any(test, feature = "test-utils"))]
pub use jobs::MockJobStore;
#[cfg(any(test, feature = "test-utils"))]
pub use media::MockMediaStore;
#[cfg(any(test, feature = "test-utils"))]
pub use moderator::MockModerator;
#[cfg(any(test, feature = "test-utils"))]
pub use notifier::MockNotifier;
#[cfg(any(test, feature = "test-utils"))]
pub use provider::MockVideoProvider;
#[cfg(any(test, feature = "test-utils"))]
pub use publications::{MockChannelStore, MockPublicationStore};
#[cfg(any(test, feature = "test-utils"))]
pub use publisher::MockPublisher;
#[cfg(any(test, feature = "test-utils"))]
pub use quota::MockQuotaStore;
#[cfg(any(test, feature = "test-utils"))]
pub use trend::MockTrendSource;
#[cfg(any(test, feature = "test-utils"))]
pub use trend_cache::MockTrendCache;
