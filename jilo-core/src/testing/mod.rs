//! Test utilities (feature `testing`): a simulated provider, fixtures, and the conformance
//! rules that any implementation of the store traits and of [`crate::VideoProvider`] runs
//! against itself; with `test-utils`, a mockall mock of every trait as well
//! (`MockVideoProvider`, …).
//!
//! Each rule of a store trait is one public async function, named for what it checks, in the
//! module of its trait: [`quota`], [`lots`], [`jobs`], [`alerts`], [`trends`], [`channels`],
//! [`publications`]. A rule panics with a message naming what broke, so it runs inside any
//! test harness; each uses fresh random ids and days, so rules share one store in any order.
//! A module's suite (`quota_store_suite`, …) runs all its rules, printing each rule's name
//! first (the harness shows it beside a failure). A rule that depends on what a store
//! supports takes [`StoreCapabilities`]: a store without expiring credits passes the lot
//! rules by refusing them.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use jilo_core::{testing, InMemoryStore};
//! use jilo_core::testing::StoreCapabilities;
//!
//! let store = InMemoryStore::new();
//! // Every rule, as every store of this workspace runs them:
//! testing::quota_store_suite(&store).await;
//! testing::job_store_suite(&store).await;
//! testing::credit_lots_suite(&store, StoreCapabilities::ALL).await;
//! // Or one rule, say while a new backend grows:
//! testing::quota::concurrent_holds_never_exceed_the_balance(&store).await;
//! # });
//! ```

mod fixtures;
mod provider_suite;
mod sim;
mod support;

pub mod alerts;
pub mod channels;
pub mod jobs;
pub mod lots;
pub mod publications;
pub mod quota;
pub mod trends;

#[cfg(any(test, feature = "test-utils"))]
pub use crate::traits::{
    MockAlertStore, MockChannelStore, MockCreativeModel, MockJobStore, MockMediaStore,
    MockModerator, MockNotifier, MockPublicationStore, MockPublisher, MockQuotaStore,
    MockTrendCache, MockTrendSource, MockVideoProvider,
};
pub use alerts::alert_store_suite;
pub use channels::channel_store_suite;
pub use fixtures::{sample_job, RecordingNotifier};
pub use jobs::job_store_suite;
pub use lots::{credit_lots_suite, StoreCapabilities};
pub use provider_suite::video_provider_suite;
pub use publications::publication_store_suite;
pub use quota::quota_store_suite;
pub use sim::{SimFailure, SimProvider, SIM_MODEL, SIM_TOKEN_HEADER};
pub use support::{end_hold, end_hold_at, take_hold};
pub use trends::trend_cache_suite;
