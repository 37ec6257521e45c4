//! Job events: in process on SQLite, by `LISTEN/NOTIFY` across processes on Postgres.

use futures::stream::BoxStream;
use jilo_core::{Job, JobEvent, Result};
use sqlx::{Any, Transaction};

use super::errors::StoreResult;
use super::{Backend, SqlStore};

/// The Postgres channel job events travel on.
pub const JOB_EVENTS_CHANNEL: &str = "jilo_job_events";

impl SqlStore {
    /// Queues a job's event inside the write transaction: Postgres delivers it to every
    /// listener when (and only if) the transaction commits.
    pub(crate) async fn notify_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: &Job,
    ) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            let payload = serde_json::to_string(&job.event())?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(JOB_EVENTS_CHANNEL)
                .bind(payload)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// After a commit: publishes a job's event to this process's watchers (SQLite).
    pub(crate) fn publish_local(&self, job: &Job) {
        if self.backend == Backend::Sqlite {
            // No receiver is not an error: nobody is watching.
            let _ = self.events.send(job.event());
        }
    }

    pub(crate) async fn watch_events(&self) -> Result<BoxStream<'static, JobEvent>> {
        match (&self.backend, &self.url) {
            #[cfg(feature = "postgres")]
            (Backend::Postgres, crate::StoreUrl::Postgres(url)) => listen(url).await,
            _ => Ok(jilo_core::job::broadcast_events(self.events.subscribe())),
        }
    }
}

#[cfg(feature = "postgres")]
async fn listen(url: &str) -> Result<BoxStream<'static, JobEvent>> {
    use futures::StreamExt;
    use sqlx::postgres::PgListener;

    let mut listener = PgListener::connect(url)
        .await
        .map_err(|e| super::errors::StoreError::from(e).into_error("listening for job events"))?;
    listener
        .listen(JOB_EVENTS_CHANNEL)
        .await
        .map_err(|e| super::errors::StoreError::from(e).into_error("listening for job events"))?;
    Ok(listener
        .into_stream()
        .filter_map(|notification| async move {
            match notification {
                Ok(n) => match serde_json::from_str::<JobEvent>(n.payload()) {
                    Ok(event) => Some(event),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable job event notification");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "job event listener failed; reconnecting");
                    None
                }
            }
        })
        .boxed())
}
