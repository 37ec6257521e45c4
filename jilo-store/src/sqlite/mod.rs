//! The SQLite wing: its dialect, its migrations, the plain SQLite library behind the [`Conn`]
//! seam, and the writing connection every write of an SQLite file goes through ([`writer`]).

#[cfg(feature = "sqlite")]
pub(crate) mod connections;
#[cfg(feature = "sqlite")]
pub(crate) mod lite;
#[cfg(feature = "sqlite")]
pub(crate) mod writer;

use crate::seam::{Dialect, Explain, Migration};

/// SQLite's own SQL: one writer at a time, so no row locks; events are published in process.
pub(crate) static DIALECT: Dialect = Dialect {
    row_lock: "",
    skip_locked: "",
    day_lock: None,
    migration_lock: None,
    notify: None,
    has_checksum_column: "SELECT COUNT(*) FROM pragma_table_info('jilo_schema') \
        WHERE name = 'checksum'",
    begin_write: "BEGIN IMMEDIATE",
    begin_snapshot: "BEGIN DEFERRED",
    explain: Explain::QueryPlan,
    migrations: MIGRATIONS,
};

/// SQLite's schema steps, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
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
