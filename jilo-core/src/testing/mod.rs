//! Test utilities (feature `testing`): a simulated provider, fixtures, and conformance suites
//! that any implementation of [`crate::QuotaStore`], [`crate::JobStore`] and
//! [`crate::VideoProvider`] runs against itself; with `test-utils`, a mockall mock of every
//! trait as well (`MockVideoProvider`, …).
//!
//! The suites are plain async functions that panic with a message naming the broken rule, so
//! they run inside any test harness:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use jilo_core::{testing, InMemoryStore};
//!
//! let store = InMemoryStore::new();
//! testing::quota_store_suite(&store).await;
//! testing::job_store_suite(&store).await;
//! # });
//! ```

mod fixtures;
mod job_suite;
mod provider_suite;
mod publish_suite;
mod quota_suite;
mod sim;
mod trend_suite;

#[cfg(any(test, feature = "test-utils"))]
pub use crate::traits::{
    MockAlertStore, MockChannelStore, MockCreativeModel, MockJobStore, MockMediaStore,
    MockModerator, MockNotifier, MockPublicationStore, MockPublisher, MockQuotaStore,
    MockTrendCache, MockTrendSource, MockVideoProvider,
};
pub use fixtures::{sample_job, RecordingNotifier};
pub use job_suite::{alert_store_suite, job_store_suite};
pub use provider_suite::video_provider_suite;
pub use publish_suite::{channel_store_suite, publication_store_suite};
pub use quota_suite::{credit_lots_suite, end_hold, end_hold_at, quota_store_suite, take_hold};
pub use sim::{SimFailure, SimProvider, SIM_MODEL, SIM_TOKEN_HEADER};
pub use trend_suite::trend_cache_suite;
