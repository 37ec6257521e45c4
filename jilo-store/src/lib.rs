//! jilo-store: the credit ledger and job store on SQL (features `sqlite` and `postgres`), and
//! media storage.
//!
//! - [`SqlStore`] (features `sqlite`, `postgres`): `QuotaStore`, `JobStore`, `AlertStore`,
//!   `TrendCache`, `ChannelStore` and `PublicationStore` on one database, a job and its credit
//!   hold written in one transaction. On SQLite every write goes through one writing connection of the
//!   store (reads on a small pool); on Postgres due jobs are claimed with `SKIP LOCKED` and
//!   job events travel by `LISTEN/NOTIFY` to every process. Migrations are embedded per
//!   backend and checked by checksum. A host's own SQL next to jilo's tables runs through
//!   [`SqlStore::query`], [`SqlStore::execute`] and [`SqlStore::execute_script`] (on SQLite,
//!   through the same one writer).
//! - `ObjectMediaStore` (feature `media`; `s3` for S3-compatible storage): finished videos
//!   streamed in from the provider, read back from any offset.
//! - [`StoreUrl`]: where a store comes from, read from `DATABASE_URL` (`sqlite://path`,
//!   `sqlite::memory:`, `postgres://…`), defaulting to an SQLite file.
//!
//! The in-memory store with the same contract is [`jilo_core::InMemoryStore`].
//!
//! ```
//! use jilo_store::StoreUrl;
//!
//! let url = StoreUrl::parse("postgres://jilo:secret@db.internal/jilo")?;
//! assert!(matches!(url, StoreUrl::Postgres(_)));
//! assert!(!format!("{url:?}").contains("secret"));
//! # Ok::<(), jilo_core::Error>(())
//! ```
//!
//! # How the SQL store is built
//!
//! Every transaction (a job created with its hold, a transition with its credit changes, a
//! grant, an expiry, a claim, a publication's change, a migration) is written once, in the
//! crate's `sql` module, over one seam: `Conn`, a connection that runs a statement with `$1 …
//! $n` arguments (integers and text) and returns rows of integers and text. The money in them
//! is not decided there either: each applies a plan of [`jilo_core::money`] (`plan_reserve`,
//! `plan_end_hold`, `plan_grant`, `plan_expiry`) to what it read, and writes what the plan
//! says. A backend is a wing beside `sql`: `sqlite` (the plain SQLite library) and `postgres`
//! (sqlx's Postgres driver).
//!
//! ## A new SQL backend, on paper
//!
//! A MySQL wing, say, would be a module `src/mysql/` and nothing else in the shared code:
//! 1. **A `Dialect`**: the SQL it spells its own way: the row lock appended to a locking read
//!    (`FOR UPDATE`, or nothing where a write transaction holds the database), the due-job
//!    claim's `SKIP LOCKED`, the statements taking the daily-cap and migration locks and
//!    announcing a job's event (or none), how to count the schema table's checksum column,
//!    how a write transaction and a snapshot read begin, how it explains a plan, and its
//!    migrations (`migrations/mysql/`, the same tables and checks as the others).
//! 2. **A `Conn` for its driver**: run a statement, fetch rows (integers of every width and
//!    booleans as integers, text as text), run a script.
//! 3. **Its connections**: an arm in `SqlStore::connect` (open, and answer at once with the
//!    cause when the database cannot be used), and in `SqlStore`'s `write` (one transaction
//!    begun as the dialect says, committed, retried while the driver reports it busy) and
//!    `read` (a reading connection, or a snapshot transaction).
//! 4. **Its errors, by the driver's codes** (never the message text): which are worth another
//!    try, and which are a unique key refusing the write.
//!
//! It applies no money rule itself: the shared transactions apply the four plans on its
//! `Conn`. It runs every conformance rule every store runs, through the suites of
//! `jilo_core::testing` (`quota_store_suite`, `credit_lots_suite` with
//! `StoreCapabilities::ALL`, `job_store_suite`, `alert_store_suite`, `trend_cache_suite`,
//! `channel_store_suite`, `publication_store_suite`; one rule each, by name, while it grows),
//! the ledger check of this crate's tests (every account equal to its lots, holds and ledger
//! rows) and the two-processes tests (two stores on one database racing for the same jobs,
//! holds and expiries).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "media")]
mod media;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod postgres;
#[cfg(feature = "s3")]
mod s3_client;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod seam;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sqlite;
#[cfg(feature = "media")]
mod tls;
mod url;

#[cfg(feature = "media")]
pub use media::{ObjectMediaStore, DEFAULT_MAX_BYTES, DEFAULT_MEDIA_DIR};
/// object_store's S3 configuration, for [`ObjectMediaStore::s3`].
#[cfg(feature = "s3")]
pub use object_store::aws::AmazonS3Builder;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use postgres::JOB_EVENTS_CHANNEL;
#[cfg(feature = "s3")]
pub use s3_client::RingS3Connector;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use seam::{SqlRow, SqlValue};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{Backend, SqlStore, SqlStoreOptions};
pub use url::{StoreUrl, DEFAULT_SQLITE_PATH};
