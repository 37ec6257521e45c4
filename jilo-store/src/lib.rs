//! jilo-store: the credit ledger and job store on SQL (features `sqlite` and `postgres`), and
//! media storage.
//!
//! This release holds where a store comes from: [`StoreUrl`], read from `DATABASE_URL`
//! (`sqlite://path`, `sqlite::memory:`, `postgres://…`), defaulting to an SQLite file. The
//! in-memory store with the same contract is [`jilo_core::InMemoryStore`].
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

#[cfg(feature = "media")]
mod media;
#[cfg(feature = "s3")]
mod s3_client;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod url;

#[cfg(feature = "media")]
pub use media::{ObjectMediaStore, DEFAULT_MAX_BYTES, DEFAULT_MEDIA_DIR};
/// object_store's S3 configuration, for [`ObjectMediaStore::s3`].
#[cfg(feature = "s3")]
pub use object_store::aws::AmazonS3Builder;
#[cfg(feature = "s3")]
pub use s3_client::RingS3Connector;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{Backend, SqlStore, SqlStoreOptions, JOB_EVENTS_CHANNEL};
pub use url::{StoreUrl, DEFAULT_SQLITE_PATH};
