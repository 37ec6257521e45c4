//! What every flow of the Studio shares, at the bottom of `studio/`: the Studio itself, its
//! parts (`Inner`), the providers it was built with, and its accessors.

use std::fmt;
use std::sync::Arc;

use crate::clock::Clock;
use crate::ids::{JobId, ProviderId};
use crate::policy::Policy;
use crate::traits::{
    CreativeModel, JobStore, MediaStore, Moderator, Notifier, Publisher, QuotaStore, TrendSource,
    VideoProvider,
};
use crate::video::ModelSpec;

use super::follower::Follower;

/// A provider with the models it reported when the Studio was built.
pub(crate) struct RegisteredProvider {
    pub(crate) id: ProviderId,
    pub(crate) models: Vec<ModelSpec>,
    /// What it can do, read once when the Studio is built.
    pub(crate) capabilities: crate::traits::Capabilities,
    pub(crate) provider: Arc<dyn VideoProvider>,
}

pub(crate) struct Inner {
    pub(crate) providers: Vec<RegisteredProvider>,
    pub(crate) quota: Arc<dyn QuotaStore>,
    pub(crate) jobs: Arc<dyn JobStore>,
    pub(crate) alerts: Arc<dyn crate::traits::AlertStore>,
    pub(crate) trends: Arc<dyn crate::traits::TrendCache>,
    pub(crate) publications: Arc<dyn crate::traits::PublicationStore>,
    pub(crate) notifier: Arc<dyn Notifier>,
    pub(crate) moderator: Option<Arc<dyn Moderator>>,
    pub(crate) media: Option<Arc<dyn MediaStore>>,
    pub(crate) trend_sources: Vec<Arc<dyn TrendSource>>,
    pub(crate) creative: Option<Arc<dyn CreativeModel>>,
    pub(crate) publisher: Option<Arc<dyn Publisher>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Policy,
    pub(crate) worker: String,
    /// Wakes this process's [`Studio::run`] when a webhook left a job due at once.
    pub(crate) wake: tokio::sync::Notify,
    /// Numbers this process's lease tokens.
    pub(crate) lease_counter: std::sync::atomic::AtomicU64,
    /// Retryable submit failures in a row, per provider (the breaker's count).
    pub(crate) failures_in_a_row: std::sync::Mutex<std::collections::HashMap<ProviderId, u32>>,
    /// Whether this process is resuming stalled uploads now (one pass at a time).
    pub(crate) resuming_uploads: std::sync::atomic::AtomicBool,
    /// Every upload's progress in this process, for [`Studio::watch_uploads`].
    pub(crate) uploads: tokio::sync::broadcast::Sender<crate::publish::UploadUpdate>,
    /// The one follower of each job watched in this process ([`Studio::subscribe`]), shared
    /// by all its subscribers, with its number.
    pub(crate) followed: std::sync::Mutex<std::collections::HashMap<JobId, (u64, Arc<Follower>)>>,
}

/// Generates videos for users with exact credits: validates and moderates a request, holds the
/// credits, submits with failover, follows the job by webhook or polling, stores the video,
/// and settles or refunds the hold.
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`: share one across tasks and handlers.
/// Several processes can drive one shared store: every transition is a compare-and-set, and
/// workers claim jobs with leases.
#[derive(Clone)]
pub struct Studio {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Studio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Studio")
            .field(
                "providers",
                &self
                    .inner
                    .providers
                    .iter()
                    .map(|p| &p.id)
                    .collect::<Vec<_>>(),
            )
            .field("worker", &self.inner.worker)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Studio {
    /// The policies in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Every model on offer, with the provider offering it, in failover order.
    pub fn models(&self) -> Vec<(ProviderId, ModelSpec)> {
        self.inner
            .providers
            .iter()
            .flat_map(|p| p.models.iter().map(|m| (p.id.clone(), m.clone())))
            .collect()
    }

    /// The credit ledger.
    pub fn quota_store(&self) -> &Arc<dyn QuotaStore> {
        &self.inner.quota
    }

    /// The job store.
    pub fn job_store(&self) -> &Arc<dyn JobStore> {
        &self.inner.jobs
    }

    /// The store of alert claims and cooling providers.
    pub fn alert_store(&self) -> &Arc<dyn crate::traits::AlertStore> {
        &self.inner.alerts
    }

    /// The trend sources, for discovery.
    pub fn trend_sources(&self) -> &[Arc<dyn TrendSource>] {
        &self.inner.trend_sources
    }

    /// The creative model, if one was given.
    pub fn creative_model(&self) -> Option<&Arc<dyn CreativeModel>> {
        self.inner.creative.as_ref()
    }

    /// The publisher, if one was given.
    pub fn publisher(&self) -> Option<&Arc<dyn Publisher>> {
        self.inner.publisher.as_ref()
    }
}
