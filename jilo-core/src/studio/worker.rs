//! The worker: claiming due jobs and driving them until they rest, once or until shutdown.

use std::future::Future;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error::Result;
use crate::job::{ClaimRequest, Job, JobState};
use crate::machine::Input;

use super::driver::Mode;
use super::observation::Observation;
use super::shared::Studio;

/// What one [`Studio::tick`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickReport {
    /// Jobs claimed.
    pub claimed: usize,
    /// Jobs that changed.
    pub advanced: usize,
    /// Jobs whose handling failed (logged; they are retried when their lease expires).
    pub errors: usize,
}

impl Studio {
    /// One pass of the worker: claims due jobs (polls jobs without webhooks, resubmits after
    /// back-off, reconciles submits whose answer was lost, stores finished videos, resumes
    /// jobs a crashed process left mid-flight, times out jobs past their deadline) and works
    /// on them, at most [`Policy::worker_concurrency`](crate::policy::Policy::worker_concurrency) at once, until each rests.
    pub async fn tick(&self) -> Result<TickReport> {
        let inner = &self.inner;
        // No more than it works on at once: a claimed job waiting for a place would see its
        // lease expire and be taken by another worker.
        let places = inner.policy.worker_concurrency.max(1);
        let claimed = self.claim(inner.policy.claim_batch.min(places)).await?;
        let mut report = TickReport {
            claimed: claimed.len(),
            ..TickReport::default()
        };
        let results: Vec<Option<bool>> = stream::iter(claimed)
            .map(|job| self.work(job))
            .buffer_unordered(inner.policy.worker_concurrency.max(1))
            .collect()
            .await;
        for r in results {
            match r {
                Some(true) => report.advanced += 1,
                Some(false) => {}
                None => report.errors += 1,
            }
        }
        Ok(report)
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Job>> {
        let inner = &self.inner;
        inner
            .jobs
            .claim_due(&ClaimRequest {
                worker: inner.lease_token(),
                now: inner.clock.now(),
                lease: inner.policy.lease,
                limit,
            })
            .await
    }

    /// Drives one claimed job until it rests. `Some(advanced)`, or `None` on an error (logged;
    /// the job is retried when its lease expires).
    async fn work(&self, job: Job) -> Option<bool> {
        let inner = &self.inner;
        let now = inner.clock.now();
        // A job waiting for its result times out; a storing job's copy gives up.
        let input = if job.deadline_at <= now
            && (job.state.awaits_result() || job.state == JobState::Storing)
        {
            Input::DeadlinePassed
        } else {
            Input::Resume
        };
        let span = tracing::info_span!("tick", job = %job.id, user = %job.user, provider = %job.provider().map(|p| p.as_str()).unwrap_or("-"));
        let before = (job.version, job.state);
        // The claim's lease token is this drive's.
        let token = job
            .lease_owner
            .clone()
            .unwrap_or_else(|| inner.lease_token());
        match inner
            .drive(job, input, Observation::Nothing, Mode::Worker, &token)
            .instrument(span)
            .await
        {
            Ok(after) => Some((after.version, after.state) != before),
            Err(e) => {
                tracing::warn!(error = %e, "worker could not advance a job");
                None
            }
        }
    }

    /// Works until `shutdown` completes: claims due jobs whenever a place is free (at most
    /// [`Policy::worker_concurrency`](crate::policy::Policy::worker_concurrency) at once, each in its own task, its lease renewed while
    /// it runs), looking every [`Policy::tick_interval`](crate::policy::Policy::tick_interval) and at once when a webhook in this
    /// process left a job due. A failing claim is logged and the loop goes on.
    ///
    /// On shutdown it claims nothing more and returns when the jobs in hand rest, waiting at
    /// most [`Policy::shutdown_grace`](crate::policy::Policy::shutdown_grace); jobs still running then (or when the future is
    /// dropped) are stopped mid-effect and resumed by another worker once their leases expire
    /// (a submit cut off that way is reconciled, not sent twice).
    pub async fn run<F>(&self, shutdown: F)
    where
        F: Future<Output = ()>,
    {
        let concurrency = self.inner.policy.worker_concurrency.max(1);
        let places = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut balances_due = tokio::time::Instant::now();
        let mut uploads_due = tokio::time::Instant::now();
        let mut stats_due = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            if tokio::time::Instant::now() >= balances_due {
                balances_due += self.inner.policy.balance_check_interval;
                self.check_balances().await;
                // Credits whose lot expired: one ledger entry per lot, whoever gets there.
                if let Err(e) = self
                    .inner
                    .quota
                    .expire_credits(self.inner.clock.now())
                    .await
                {
                    tracing::warn!(error = %e, "writing credit expiries failed");
                }
            }
            if self.inner.publisher.is_some() {
                let now = tokio::time::Instant::now();
                if now >= uploads_due {
                    uploads_due = now + self.inner.policy.publish_check_interval;
                    let studio = self.clone();
                    // Uploads are long: they run beside the jobs, one pass at a time.
                    tasks.spawn(async move {
                        studio.resume_publications().await;
                    });
                }
                if now >= stats_due {
                    stats_due = now + self.inner.policy.stats_interval;
                    let studio = self.clone();
                    tasks.spawn(async move {
                        if let Err(e) = studio.sync_stats().await {
                            tracing::warn!(error = %e, "syncing video statistics failed");
                        }
                    });
                }
            }
            let free = places.available_permits();
            if free > 0 {
                match self.claim(free.min(self.inner.policy.claim_batch)).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let Ok(place) = places.clone().try_acquire_owned() else {
                                break;
                            };
                            let studio = self.clone();
                            tasks.spawn(async move {
                                studio.work(job).await;
                                drop(place);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming due jobs failed"),
                }
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.policy.tick_interval) => {}
            }
        }
        let drained = tokio::time::timeout(self.inner.policy.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "jobs still running at shutdown are stopped; other workers resume them after \
                 their leases"
            );
            tasks.abort_all();
        }
    }
}
