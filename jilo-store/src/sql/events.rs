//! Job events: published in process after a commit where the backend has no notifications
//! (SQLite), fed by the Postgres wing's shared `LISTEN` connection otherwise.

use futures::stream::BoxStream;
use jilo_core::{Job, JobEvent, JobId, Result};

use super::SqlStore;

impl SqlStore {
    /// After a commit: publishes a job's event to this process's watchers, where the backend
    /// does not announce it across processes itself (SQLite).
    pub(crate) fn publish_local(&self, job: &Job) {
        if self.dialect().notify.is_none() {
            self.events.publish(job.event());
        }
    }

    /// Every job's events (`job` `None`) or one job's, from now on.
    pub(crate) async fn watch_events(
        &self,
        job: Option<&JobId>,
    ) -> Result<BoxStream<'static, JobEvent>> {
        // Subscribe first, then make sure the shared listener runs: nothing is missed between
        // the two.
        let events = match job {
            Some(job) => self.events.watch_job(job),
            None => self.events.watch_all(),
        };
        #[cfg(feature = "postgres")]
        if let crate::StoreUrl::Postgres(url) = &self.url {
            self.listener
                .get_or_try_init(|| crate::postgres::listen(url, self.events.clone()))
                .await?;
        }
        Ok(events)
    }
}
