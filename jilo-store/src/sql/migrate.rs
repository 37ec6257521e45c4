//! Applying a backend's embedded migrations ([`super::SqlStore::migrate`]): the schema table,
//! the checksums, the refusal of a newer or edited schema.

use jilo_core::Error;

use crate::seam::errors::{StoreError, StoreResult};
use crate::seam::{args, Conn, Dialect};

/// The newest schema this build knows.
pub(crate) fn latest(dialect: &Dialect) -> i64 {
    dialect
        .migrations
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Advisory lock key serialising concurrent `migrate()` calls of many processes (where the
/// backend has such locks).
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

/// Applies the missing migrations inside the caller's write transaction; refuses a database
/// whose schema is newer than this build, or one whose applied migration differs from this
/// build's (its checksum, the SHA-256 of the SQL, is kept when it is applied; one applied by a
/// build that kept none is adopted). Returns the schema version after the call.
pub(crate) async fn run(c: &mut dyn Conn, now_ms: i64) -> StoreResult<i64> {
    let dialect = c.dialect();
    if let Some(lock) = dialect.migration_lock {
        c.exec(lock, &args![MIGRATION_LOCK]).await?;
    }
    c.batch(SCHEMA_TABLE).await?;
    // A schema table made by a build that kept no checksums gains the column.
    if c.fetch_one(dialect.has_checksum_column, &[])
        .await?
        .int(0)?
        == 0
    {
        c.exec("ALTER TABLE jilo_schema ADD COLUMN checksum TEXT", &[])
            .await?;
    }
    let current = c
        .fetch_one("SELECT MAX(version) FROM jilo_schema", &[])
        .await?
        .opt_int(0)?
        .unwrap_or(0);
    let known = latest(dialect);
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
    let applied = c
        .fetch(
            "SELECT version, checksum FROM jilo_schema ORDER BY version",
            &[],
        )
        .await?;
    for row in applied {
        let (version, kept) = (row.int(0)?, row.opt_text(1)?);
        let Some(m) = dialect.migrations.iter().find(|m| m.version == version) else {
            continue;
        };
        let sum = checksum(m.sql);
        match kept {
            Some(kept) if kept != sum => {
                return Err(StoreError::Rule(Error::storage(
                    format!(
                        "migration {version} ({}) applied to this database differs from this \
                         jilo build's (checksum {kept}, expected {sum}): the migration was edited \
                         after it ran; restore it, or bring the database in line by hand",
                        m.name
                    ),
                    false,
                    None,
                )));
            }
            Some(_) => {}
            None => {
                c.exec(
                    "UPDATE jilo_schema SET checksum = $1 WHERE version = $2",
                    &args![sum.as_str(), version],
                )
                .await?;
            }
        }
    }
    for m in dialect.migrations.iter().filter(|m| m.version > current) {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        c.batch(m.sql).await?;
        let sum = checksum(m.sql);
        c.exec(
            "INSERT INTO jilo_schema (version, name, applied_ms, checksum) VALUES ($1, $2, $3, $4)",
            &args![m.version, m.name, now_ms, sum.as_str()],
        )
        .await?;
    }
    Ok(known.max(current))
}
