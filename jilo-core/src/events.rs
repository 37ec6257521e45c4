//! Fanning job events out to the watchers of one process: every job's, or one job's.
//!
//! A store publishes each committed change once to its [`EventHub`]; a watcher of all jobs
//! gets every event, a watcher of one job only that job's. So a thousand subscribers, each
//! following its own job, each see their job's few events instead of everyone's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use crate::ids::JobId;
use crate::job::{broadcast_events, JobEvent};

/// How many events a watcher of every job may fall behind before it skips some.
pub const ALL_JOBS_BUFFER: usize = 1024;
/// How many events a watcher of one job may fall behind before it skips some.
pub const ONE_JOB_BUFFER: usize = 64;

type PerJob = Arc<Mutex<HashMap<JobId, broadcast::Sender<JobEvent>>>>;

/// One process's job events, by job. Cheap to clone; clones share the watchers.
#[derive(Clone, Debug)]
pub struct EventHub {
    all: broadcast::Sender<JobEvent>,
    per_job: PerJob,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

/// One job's events; removes the job's channel when its last watcher goes.
struct JobWatch {
    events: Option<BoxStream<'static, JobEvent>>,
    per_job: PerJob,
    job: JobId,
}

impl futures::Stream for JobWatch {
    type Item = JobEvent;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<JobEvent>> {
        match self.get_mut().events.as_mut() {
            Some(events) => events.poll_next_unpin(cx),
            None => std::task::Poll::Ready(None),
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        // The receiver first, so the count below no longer includes it.
        self.events.take();
        let mut map = lock(&self.per_job);
        if map
            .get(&self.job)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.job);
        }
    }
}

fn lock(per_job: &PerJob) -> MutexGuard<'_, HashMap<JobId, broadcast::Sender<JobEvent>>> {
    // The map holds only senders; a panic elsewhere leaves it usable.
    per_job.lock().unwrap_or_else(|p| p.into_inner())
}

impl EventHub {
    /// A hub with no watchers.
    pub fn new() -> Self {
        let (all, _) = broadcast::channel(ALL_JOBS_BUFFER);
        Self {
            all,
            per_job: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Delivers an event to the watchers of every job and to those of its job.
    pub fn publish(&self, event: JobEvent) {
        let one = lock(&self.per_job).get(&event.job).cloned();
        if let Some(tx) = one {
            // No receiver left is not an error: the last one is going away.
            let _ = tx.send(event.clone());
        }
        let _ = self.all.send(event);
    }

    /// Every job's events from now on.
    pub fn watch_all(&self) -> BoxStream<'static, JobEvent> {
        broadcast_events(self.all.subscribe())
    }

    /// One job's events from now on. The job's channel lives while a watcher does.
    pub fn watch_job(&self, job: &JobId) -> BoxStream<'static, JobEvent> {
        let rx = {
            let mut map = lock(&self.per_job);
            map.entry(job.clone())
                .or_insert_with(|| broadcast::channel(ONE_JOB_BUFFER).0)
                .subscribe()
        };
        JobWatch {
            events: Some(broadcast_events(rx)),
            per_job: self.per_job.clone(),
            job: job.clone(),
        }
        .boxed()
    }

    /// How many jobs have a watcher now.
    pub fn watched_jobs(&self) -> usize {
        lock(&self.per_job).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Timestamp, UserId};
    use crate::job::JobState;

    fn event(job: &str, version: u64) -> JobEvent {
        JobEvent {
            job: JobId::new(job),
            user: UserId::new("u"),
            version,
            state: JobState::Running,
            progress: 0,
            stage: None,
            at: Timestamp::from_millis(0),
        }
    }

    #[tokio::test]
    async fn one_jobs_watchers_see_only_it_and_leave_nothing_behind() {
        let hub = EventHub::new();
        let mut a = hub.watch_job(&JobId::new("a"));
        let mut all = hub.watch_all();
        hub.publish(event("b", 1));
        hub.publish(event("a", 1));
        hub.publish(event("a", 2));
        assert_eq!(
            a.next().await.map(|e| (e.job, e.version)),
            Some(("a".into(), 1))
        );
        assert_eq!(a.next().await.map(|e| e.version), Some(2));
        assert_eq!(all.next().await.map(|e| e.job), Some("b".into()));
        assert_eq!(hub.watched_jobs(), 1);
        drop(a);
        assert_eq!(
            hub.watched_jobs(),
            0,
            "the last watcher takes the channel with it"
        );
    }
}
