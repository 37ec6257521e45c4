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

mod url;

pub use url::{StoreUrl, DEFAULT_SQLITE_PATH};
