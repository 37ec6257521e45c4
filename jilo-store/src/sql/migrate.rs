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
    applied_ms BIGINT NOT NULL,
    checksum   TEXT
)";

/// A migration's checksum: the SHA-256 of its SQL, hex.
pub(crate) fn checksum(sql: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Adds the checksum column to a schema table made by a build that kept none.
async fn ensure_checksum_column(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
) -> StoreResult<()> {
    match backend {
        Backend::Postgres => {
            sqlx::query("ALTER TABLE jilo_schema ADD COLUMN IF NOT EXISTS checksum TEXT")
                .execute(&mut **tx)
                .await?;
        }
        Backend::Sqlite => {
            let has: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pragma_table_info('jilo_schema') WHERE name = 'checksum'",
            )
            .fetch_one(&mut **tx)
            .await?;
            if has == 0 {
                sqlx::query("ALTER TABLE jilo_schema ADD COLUMN checksum TEXT")
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Applies the missing migrations; refuses a database whose schema is newer than this build,
/// or one whose applied migration differs from this build's (its checksum, the SHA-256 of the
/// SQL, is kept when it is applied; one applied by a build that kept none is adopted).
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
    ensure_checksum_column(&mut tx, backend).await?;
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
    let applied: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT version, checksum FROM jilo_schema ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    for (version, kept) in applied {
        let Some(m) = migrations(backend).iter().find(|m| m.version == version) else {
            continue;
        };
        let sum = checksum(m.sql);
        match kept {
            Some(kept) if kept != sum => {
                return Err(StoreError::Rule(Error::storage(
                    format!(
                        "migration {version} ({}) applied to this database differs from this                          jilo build's (checksum {kept}, expected {sum}): the migration was edited                          after it ran; restore it, or bring the database in line by hand",
                        m.name
                    ),
                    false,
                    None,
                )));
            }
            Some(_) => {}
            None => {
                sqlx::query("UPDATE jilo_schema SET checksum = $1 WHERE version = $2")
                    .bind(&sum)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    for m in migrations(backend).iter().filter(|m| m.version > current) {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO jilo_schema (version, name, applied_ms, checksum) VALUES ($1, $2, $3, $4)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now_ms)
        .bind(checksum(m.sql))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(known.max(current))
}
