//! Job events: in process on SQLite, by `LISTEN/NOTIFY` across processes on Postgres.

use super::SqlStore;
use futures::stream::BoxStream;
use jilo_core::{Job, JobEvent, JobId, Result};

/// The Postgres channel job events travel on.
pub const JOB_EVENTS_CHANNEL: &str = "jilo_job_events";

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
                .get_or_try_init(|| listen(url, self.events.clone()))
                .await?;
        }
        Ok(events)
    }
}

/// Stops the shared listener when the last clone of the store is dropped.
#[derive(Debug)]
pub(crate) struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One `LISTEN` connection per store, fanned out to the process's watchers: each event goes
/// to the watchers of every job and to those of its own job only.
#[cfg(feature = "postgres")]
async fn listen(url: &str, events: jilo_core::EventHub) -> Result<ListenerTask> {
    use sqlx::postgres::PgListener;

    let fail =
        |e: sqlx::Error| super::errors::StoreError::from(e).into_error("listening for job events");
    let mut listener = PgListener::connect(url).await.map_err(fail)?;
    listener.listen(JOB_EVENTS_CHANNEL).await.map_err(fail)?;
    Ok(ListenerTask(tokio::spawn(async move {
        loop {
            // `recv` reconnects by itself after a lost connection.
            match listener.recv().await {
                Ok(n) => match serde_json::from_str::<JobEvent>(n.payload()) {
                    Ok(event) => events.publish(event),
                    Err(e) => tracing::warn!(error = %e, "unreadable job event notification"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "job event listener failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    })))
}
