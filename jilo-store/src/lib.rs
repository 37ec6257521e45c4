//! jilo-store: the credit ledger and job store on SQL (features `sqlite` and `postgres`), and
//! media storage.
//!
//! - `SqlStore` (features `sqlite`, `postgres`): the credit ledger, the job store and the
//!   channel and publication records on one database, a job and its hold written in one
//!   transaction; SQLite writes through one connection, Postgres notifies job events with
//!   `LISTEN/NOTIFY`; migrations are embedded per backend.
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

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "media")]
mod media;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod postgres;
#[cfg(feature = "s3")]
mod s3_client;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sqlite;
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
pub use sql::{Backend, SqlStore, SqlStoreOptions};
pub use url::{StoreUrl, DEFAULT_SQLITE_PATH};
