//! The Postgres wing: its dialect (row locks, skipped locked rows, advisory locks, `NOTIFY`),
//! its migrations, and the shared `LISTEN` connection that feeds a process's watchers.

#[cfg(feature = "postgres")]
pub(crate) mod conn;

use crate::seam::{Dialect, Explain, Migration};

/// The Postgres channel job events travel on (`NOTIFY` after each committed change of a job).
pub const JOB_EVENTS_CHANNEL: &str = "jilo_job_events";

/// Postgres's own SQL: row locks, skipped locked rows, advisory locks and `NOTIFY`.
pub(crate) static DIALECT: Dialect = Dialect {
    row_lock: " FOR UPDATE",
    skip_locked: " FOR UPDATE SKIP LOCKED",
    day_lock: Some("SELECT pg_advisory_xact_lock(CAST($1 AS INTEGER), CAST($2 AS INTEGER))"),
    migration_lock: Some("SELECT pg_advisory_xact_lock($1)"),
    notify: Some("SELECT pg_notify('jilo_job_events', $1)"),
    has_checksum_column: "SELECT COUNT(*) FROM information_schema.columns \
        WHERE table_schema = current_schema() AND table_name = 'jilo_schema' \
        AND column_name = 'checksum'",
    begin_write: "BEGIN",
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    explain: Explain::Literal,
    migrations: MIGRATIONS,
};

/// Postgres's schema steps, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger_and_jobs",
        sql: include_str!("../../migrations/postgres/0001_ledger_and_jobs.sql"),
    },
    Migration {
        version: 2,
        name: "job_requests",
        sql: include_str!("../../migrations/postgres/0002_job_requests.sql"),
    },
    Migration {
        version: 3,
        name: "alerts_and_cooling",
        sql: include_str!("../../migrations/postgres/0003_alerts_and_cooling.sql"),
    },
    Migration {
        version: 4,
        name: "trend_cache",
        sql: include_str!("../../migrations/postgres/0004_trend_cache.sql"),
    },
    Migration {
        version: 5,
        name: "jobs_by_creation",
        sql: include_str!("../../migrations/postgres/0005_jobs_by_creation.sql"),
    },
    Migration {
        version: 6,
        name: "publishing",
        sql: include_str!("../../migrations/postgres/0006_publishing.sql"),
    },
    Migration {
        version: 7,
        name: "ledger_pages",
        sql: include_str!("../../migrations/postgres/0007_ledger_pages.sql"),
    },
    Migration {
        version: 8,
        name: "credit_lots",
        sql: include_str!("../../migrations/postgres/0008_credit_lots.sql"),
    },
    Migration {
        version: 9,
        name: "source_runs",
        sql: include_str!("../../migrations/postgres/0009_source_runs.sql"),
    },
];

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
pub(crate) async fn listen(
    url: &str,
    events: jilo_core::EventHub,
) -> jilo_core::Result<ListenerTask> {
    use sqlx::postgres::PgListener;

    let fail = |e: sqlx::Error| {
        crate::seam::errors::StoreError::from(e).into_error("listening for job events")
    };
    let mut listener = PgListener::connect(url).await.map_err(fail)?;
    listener.listen(JOB_EVENTS_CHANNEL).await.map_err(fail)?;
    Ok(ListenerTask(tokio::spawn(async move {
        loop {
            // `recv` reconnects by itself after a lost connection.
            match listener.recv().await {
                Ok(n) => match serde_json::from_str::<jilo_core::JobEvent>(n.payload()) {
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

/// Opens the pool, after one connection made within `connect_timeout`, so a server that cannot
/// be used answers at once with its cause and where (never with the password), not after the
/// pool's wait as an opaque time-out: refused credentials are not retryable; a server that
/// cannot be reached is.
#[cfg(feature = "postgres")]
pub(crate) async fn open(
    url: &crate::StoreUrl,
    max_connections: u32,
    acquire_timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
) -> jilo_core::Result<sqlx::PgPool> {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::Connection;

    use crate::seam::errors::{open_error, StoreError};

    let crate::StoreUrl::Postgres(text) = url else {
        return Err(jilo_core::Error::invalid(
            "DATABASE_URL",
            "not a Postgres URL",
        ));
    };
    let target = format!("the database at {url}");
    let connect = PgConnectOptions::from_str(text)
        .map_err(|e| StoreError::from(e).into_error("reading DATABASE_URL"))?;
    let attempt = async {
        let conn = sqlx::PgConnection::connect_with(&connect).await?;
        conn.close().await
    };
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(open_error(&target, e)),
        Err(_) => {
            return Err(jilo_core::Error::storage(
                format!(
                    "connecting to {target} took more than {} s (SqlStoreOptions::connect_timeout)",
                    connect_timeout.as_secs_f32()
                ),
                true,
                None,
            ))
        }
    }
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| StoreError::from(e).into_error("connecting to the database"))
}
