//! Composing a [`Studio`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::notify::LogNotifier;
use crate::policy::Policy;
use crate::traits::{
    CreativeModel, JobStore, MediaStore, Moderator, Notifier, PublicationStore, Publisher,
    QuotaStore, TrendCache, TrendSource, VideoProvider,
};

use super::shared::{Inner, RegisteredProvider, Studio};

/// How many upload updates a watcher may fall behind before it skips some.
const UPLOAD_UPDATES_BUFFER: usize = 256;

/// Builds a [`Studio`]: providers in failover order, a store, and optional parts.
///
/// Required: at least one provider and a store. Defaults: no moderation, alerts to the log
/// ([`LogNotifier`]), videos kept at the provider's URL (no media store), the system clock,
/// [`Policy::default`].
#[derive(Default)]
pub struct StudioBuilder {
    providers: Vec<Arc<dyn VideoProvider>>,
    quota: Option<Arc<dyn QuotaStore>>,
    jobs: Option<Arc<dyn JobStore>>,
    alerts: Option<Arc<dyn crate::traits::AlertStore>>,
    trends: Option<Arc<dyn TrendCache>>,
    publications: Option<Arc<dyn PublicationStore>>,
    notifier: Option<Arc<dyn Notifier>>,
    moderator: Option<Arc<dyn Moderator>>,
    media: Option<Arc<dyn MediaStore>>,
    trend_sources: Vec<Arc<dyn TrendSource>>,
    creative: Option<Arc<dyn CreativeModel>>,
    publisher: Option<Arc<dyn Publisher>>,
    clock: Option<Arc<dyn Clock>>,
    policy: Policy,
    worker: Option<String>,
}

impl fmt::Debug for StudioBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StudioBuilder")
            .field(
                "providers",
                &self.providers.iter().map(|p| p.id()).collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl StudioBuilder {
    /// Adds a video provider. Providers are tried in the order added, unless
    /// [`Policy::failover_order`] says otherwise.
    pub fn provider(mut self, provider: Arc<dyn VideoProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// The store for credits, jobs, alerts, the trend cache and publications: one backend
    /// implementing the five traits, so a job and its hold are written in one transaction.
    pub fn store<S>(mut self, store: Arc<S>) -> Self
    where
        S: QuotaStore
            + JobStore
            + crate::traits::AlertStore
            + TrendCache
            + PublicationStore
            + 'static,
    {
        self.quota = Some(store.clone());
        self.alerts = Some(store.clone());
        self.publications = Some(store.clone());
        self.trends = Some(store.clone());
        self.jobs = Some(store);
        self
    }

    /// Where admin alerts go (default: the log).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Checks prompts before anything is charged (default: none).
    pub fn moderator(mut self, moderator: Arc<dyn Moderator>) -> Self {
        self.moderator = Some(moderator);
        self
    }

    /// Where finished videos are copied (default: none, the provider's URL is kept).
    pub fn media_store(mut self, media: Arc<dyn MediaStore>) -> Self {
        self.media = Some(media);
        self
    }

    /// Adds a source of trending videos.
    pub fn trend_source(mut self, source: Arc<dyn TrendSource>) -> Self {
        self.trend_sources.push(source);
        self
    }

    /// The language model for analyses, prompts and metadata.
    pub fn creative_model(mut self, model: Arc<dyn CreativeModel>) -> Self {
        self.creative = Some(model);
        self
    }

    /// Where videos are published.
    pub fn publisher(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// The clock (default: the system clock; use [`crate::TokioClock`] under paused time).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The policies.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// This process's worker name, written as the owner of job leases (default: random).
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker = Some(name.into());
        self
    }

    /// Checks the parts and builds the Studio.
    ///
    /// Fails with [`Error::InvalidInput`] when there is no provider or store, two providers
    /// share an id, the failover order names an unknown provider, the attempt limit is 0, or
    /// `webhook_base_url` is not an http(s) base URL.
    pub fn build(self) -> Result<Studio> {
        let (Some(quota), Some(jobs), Some(alerts), Some(trends), Some(publications)) = (
            self.quota,
            self.jobs,
            self.alerts,
            self.trends,
            self.publications,
        ) else {
            return Err(Error::invalid("store", "a store is required"));
        };
        if self.providers.is_empty() {
            return Err(Error::invalid(
                "providers",
                "at least one provider is required",
            ));
        }
        let mut plan_ids = HashSet::new();
        for plan in &self.policy.plans {
            plan.check()?;
            if !plan_ids.insert(plan.id.as_str()) {
                return Err(Error::invalid(
                    "plans",
                    format!("two plans have the id `{}`", plan.id),
                ));
            }
        }
        if let Some(base) = &self.policy.webhook_base_url {
            crate::config::base_url("webhook_base_url", base)?;
        }
        if self.policy.max_attempts == 0 {
            return Err(Error::invalid("max_attempts", "must be at least 1"));
        }
        if self.policy.worker_concurrency == 0 {
            return Err(Error::invalid("worker_concurrency", "must be at least 1"));
        }
        if self.policy.lease < std::time::Duration::from_millis(30) {
            return Err(Error::invalid("lease", "must be at least 30 ms"));
        }
        let mut seen = HashSet::new();
        for p in &self.providers {
            if !seen.insert(p.id()) {
                return Err(Error::invalid(
                    "providers",
                    format!("two providers are named `{}`", p.id()),
                ));
            }
        }
        for id in &self.policy.failover_order {
            if !seen.contains(id) {
                return Err(Error::invalid(
                    "failover_order",
                    format!("names `{id}`, which is not a registered provider"),
                ));
            }
        }
        let mut providers: Vec<RegisteredProvider> = self
            .providers
            .into_iter()
            .map(|p| RegisteredProvider {
                id: p.id(),
                models: p.models(),
                capabilities: p.capabilities(),
                provider: p,
            })
            .collect();
        let order = &self.policy.failover_order;
        providers.sort_by_key(|p| {
            order
                .iter()
                .position(|id| *id == p.id)
                .unwrap_or(order.len())
        });
        let worker = self
            .worker
            .unwrap_or_else(|| format!("studio-{}", uuid::Uuid::new_v4()));
        Ok(Studio {
            inner: Arc::new(Inner {
                providers,
                quota,
                jobs,
                alerts,
                trends,
                publications,
                notifier: self.notifier.unwrap_or_else(|| Arc::new(LogNotifier)),
                moderator: self.moderator,
                media: self.media,
                trend_sources: self.trend_sources,
                creative: self.creative,
                publisher: self.publisher,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                policy: self.policy,
                worker,
                wake: tokio::sync::Notify::new(),
                lease_counter: std::sync::atomic::AtomicU64::new(0),
                failures_in_a_row: std::sync::Mutex::new(std::collections::HashMap::new()),
                resuming_uploads: std::sync::atomic::AtomicBool::new(false),
                uploads: tokio::sync::broadcast::channel(UPLOAD_UPDATES_BUFFER).0,
                followed: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }
}

impl Studio {
    /// Starts composing a Studio.
    pub fn builder() -> StudioBuilder {
        StudioBuilder::default()
    }
}
