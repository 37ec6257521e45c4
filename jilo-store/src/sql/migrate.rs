//! Embedded migrations per backend, applied by [`super::SqlStore::migrate`].

use jilo_core::Error;
use sqlx::AnyPool;

use super::errors::{StoreError, StoreResult};
use super::Backend;

/// One schema step.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger_and_jobs",
        sql: include_str!("../../migrations/sqlite/0001_ledger_and_jobs.sql"),
    },
    Migration {
        version: 2,
        name: "job_requests",
        sql: include_str!("../../migrations/sqlite/0002_job_requests.sql"),
    },
    Migration {
        version: 3,
        name: "alerts_and_cooling",
        sql: include_str!("../../migrations/sqlite/0003_alerts_and_cooling.sql"),
    },
    Migration {
        version: 4,
        name: "trend_cache",
        sql: include_str!("../../migrations/sqlite/0004_trend_cache.sql"),
    },
    Migration {
        version: 5,
        name: "jobs_by_creation",
        sql: include_str!("../../migrations/sqlite/0005_jobs_by_creation.sql"),
    },
    Migration {
        version: 6,
        name: "publishing",
        sql: include_str!("../../migrations/sqlite/0006_publishing.sql"),
    },
    Migration {
        version: 7,
        name: "ledger_pages",
        sql: include_str!("../../migrations/sqlite/0007_ledger_pages.sql"),
    },
    Migration {
        version: 8,
        name: "credit_lots",
        sql: include_str!("../../migrations/sqlite/0008_credit_lots.sql"),
    },
    Migration {
        version: 9,
        name: "source_runs",
        sql: include_str!("../../migrations/sqlite/0009_source_runs.sql"),
    },
];

const POSTGRES: &[Migration] = &[
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

/// The newest schema this build knows.
pub(crate) fn latest(backend: Backend) -> i64 {
    migrations(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

fn migrations(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// Postgres advisory lock key serialising concurrent `migrate()` calls of many processes.
const MIGRATION_LOCK: i64 = 0x6a69_6c6f_0001;

const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS jilo_schema (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_ms BIGINT NOT NULL
)";

/// Applies the missing migrations; refuses a database whose schema is newer than this build.
/// Returns the schema version after the call.
pub(crate) async fn run(pool: &AnyPool, backend: Backend, now_ms: i64) -> StoreResult<i64> {
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            tx
        }
    };
    sqlx::query(SCHEMA_TABLE).execute(&mut *tx).await?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM jilo_schema")
        .fetch_one(&mut *tx)
        .await?;
    let current = current.unwrap_or(0);
    let known = latest(backend);
    if current > known {
        return Err(StoreError::Rule(Error::storage(
            format!(
                "the database schema is at version {current}, newer than this jilo build knows \
                 ({known}); upgrade jilo before using this database"
            ),
            false,
            None,
        )));
    }
    for m in migrations(backend).iter().filter(|m| m.version > current) {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO jilo_schema (version, name, applied_ms) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(known.max(current))
}
