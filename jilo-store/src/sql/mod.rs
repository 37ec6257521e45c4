//! The SQL ledger and job store on SQLite and Postgres.
//!
//! One [`SqlStore`] implements both [`jilo_core::QuotaStore`] and [`jilo_core::JobStore`], so
//! a job and its credit hold are written in one transaction. The SQL is shared by both backends
//! (sqlx's `Any` driver, `$n` placeholders) except where a backend needs its own:
//! - SQLite writes with `BEGIN IMMEDIATE` under WAL, so a read-then-write transaction never
//!   fails to upgrade its lock; a busy database is waited on (busy timeout) and retried, never
//!   returned as `database is locked`. On an SQLite file the hot transactions (a job created
//!   with its hold, a job's transition with its credit changes) run whole on one connection of
//!   the plain SQLite library owned by a thread of the store: one hop per transaction instead of
//!   one per statement (see the `ledger` benchmark); the rest goes through the sqlx pool.
//! - Postgres claims due jobs with `FOR UPDATE SKIP LOCKED`, serialises daily-cap checks with
//!   an advisory lock, and publishes job events with `NOTIFY` so every process sees them.
//!
//! Every state change is one guarded statement (`… WHERE version = $v AND state = $s`,
//! `… WHERE available >= $n`) checked for the row it must change; the schema itself refuses a
//! negative balance or a broken `granted = available + held + spent`.

mod any;
pub(crate) mod conn;
pub(crate) mod errors;
mod events;
mod jobs;
mod ledger;
mod lots;
mod migrate;
mod publishing;
mod trends;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jilo_core::{Error, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::OnceCell;

use crate::StoreUrl;
use any::AnyConn;
use conn::{Conn, Dialect};
use errors::{StoreError, StoreResult};

/// A transaction's body over a connection: the shared SQL of every store operation.
pub(crate) type Tx<'c, T> = futures::future::BoxFuture<'c, StoreResult<T>>;

/// Which database engine a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: embedded, one file, one writer at a time.
    Sqlite,
    /// Postgres: shared by many processes.
    Postgres,
}

/// Connection settings beyond the URL.
#[derive(Clone, Debug)]
pub struct SqlStoreOptions {
    /// Most pooled connections (SQLite in memory always uses one).
    pub max_connections: u32,
    /// How long a busy SQLite database is waited on per statement, and how long transient
    /// failures (busy, Postgres serialization failures) are retried in all.
    pub busy_timeout: Duration,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// How long opening the first connection may take: a database that cannot be reached
    /// answers within it, with its cause.
    pub connect_timeout: Duration,
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            busy_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The SQLite settings every connection runs first.
fn sqlite_pragmas(busy_ms: i64) -> String {
    format!(
        "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    )
}

/// The credit ledger and job store on SQLite or Postgres.
///
/// Cheap to clone (a pool inside). Open it with [`SqlStore::open`] (connect and migrate) or
/// [`SqlStore::connect`] then [`SqlStore::migrate`].
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) url: StoreUrl,
    pub(crate) options: SqlStoreOptions,
    /// Job events for this process's watchers: published here after a commit on SQLite, fed
    /// by the shared `LISTEN` connection on Postgres.
    pub(crate) events: jilo_core::EventHub,
    /// The shared Postgres listener, started by the first watcher.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) listener: Arc<OnceCell<crate::postgres::ListenerTask>>,
    /// An SQLite file's writing connection for the hot transactions (jobs and their holds).
    #[cfg(feature = "sqlite")]
    pub(crate) writer: Option<Arc<crate::sqlite::writer::SqliteWriter>>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    jilo_core::Timestamp::from_system(std::time::SystemTime::now()).as_millis()
}

impl SqlStore {
    /// Connects and applies the migrations.
    pub async fn open(url: &StoreUrl) -> Result<Self> {
        let store = Self::connect(url, SqlStoreOptions::default()).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the store `DATABASE_URL` names (default: the SQLite file `jilo.db`) and migrates.
    pub async fn open_from_env() -> Result<Self> {
        Self::open(&StoreUrl::from_env()?).await
    }

    /// Connects without migrating.
    ///
    /// A backend this build lacks (feature `sqlite` or `postgres` off) is
    /// [`Error::InvalidInput`]; an unreachable database is [`Error::Storage`].
    pub async fn connect(url: &StoreUrl, options: SqlStoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, conn_url, max) = match url {
            StoreUrl::SqliteFile(_) => {
                let (path, params) = url.sqlite_path_and_params().unwrap_or_default();
                // Created when missing, unless the URL sets its own mode.
                let mode = if params.split('&').any(|p| p.starts_with("mode=")) {
                    String::new()
                } else {
                    "mode=rwc".to_owned()
                };
                let query = [mode.as_str(), params]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join("&");
                (
                    Backend::Sqlite,
                    format!("sqlite://{path}?{query}"),
                    options.max_connections,
                )
            }
            StoreUrl::SqliteMemory => (Backend::Sqlite, "sqlite::memory:".to_owned(), 1),
            StoreUrl::Postgres(u) => (Backend::Postgres, u.clone(), options.max_connections),
        };
        check_compiled(backend)?;
        let connect_options = AnyConnectOptions::from_str(&conn_url)
            .map_err(|e| StoreError::from(e).into_error("reading DATABASE_URL"))?;
        let busy_ms = i64::try_from(options.busy_timeout.as_millis()).unwrap_or(i64::MAX);
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max.max(1))
            .acquire_timeout(options.acquire_timeout);
        if url != &StoreUrl::SqliteMemory {
            probe(&connect_options, backend, url, &options).await?;
        }
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(sqlite_pragmas(busy_ms).as_str()).await?;
                    Ok(())
                })
            });
            if url == &StoreUrl::SqliteMemory {
                // One connection is the whole database: never let it go idle and close.
                pool_options = pool_options
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
        }
        let pool = pool_options
            .connect_with(connect_options)
            .await
            .map_err(|e| StoreError::from(e).into_error("connecting to the database"))?;
        let events = jilo_core::EventHub::new();
        #[cfg(feature = "sqlite")]
        let writer = match url.sqlite_path_and_params() {
            // A read-only URL keeps every write on the pool, which refuses them.
            Some((path, params)) if !params.contains("mode=ro") => Some(Arc::new(
                crate::sqlite::writer::SqliteWriter::open(path, options.busy_timeout)
                    .map_err(|e| e.into_error("opening the SQLite writer"))?,
            )),
            _ => None,
        };
        Ok(Self {
            pool,
            backend,
            url: url.clone(),
            options,
            events,
            listener: Arc::new(OnceCell::new()),
            #[cfg(feature = "sqlite")]
            writer,
        })
    }

    /// Applies the embedded migrations this build knows and returns the schema version.
    ///
    /// Safe to call from many processes at once. A database whose schema is newer than this
    /// build is refused with [`Error::Storage`] saying so, and left untouched.
    pub async fn migrate(&self) -> Result<i64> {
        self.write("migrating", |c| Box::pin(migrate::run(c, now_ms())))
            .await
    }

    /// The newest schema version this build knows.
    pub fn schema_version(&self) -> i64 {
        migrate::latest(self.dialect())
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for a host's own queries next to jilo's tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// This backend's own SQL.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        match self.backend {
            Backend::Sqlite => &crate::sqlite::DIALECT,
            Backend::Postgres => &crate::postgres::DIALECT,
        }
    }

    /// Runs `body` in one write transaction and commits, retried while the database is
    /// busy: on an SQLite file's writing connection when the store has one, else on the
    /// pool (`BEGIN IMMEDIATE` on SQLite). The only way the store writes.
    pub(crate) async fn write<T, F>(&self, what: &str, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut dyn Conn) -> Tx<'c, T> + Send + Sync + 'static,
    {
        #[cfg(feature = "sqlite")]
        if let Some(writer) = &self.writer {
            let body = Arc::new(body);
            return self
                .retry(what, || {
                    let body = Arc::clone(&body);
                    writer.run(move |conn| {
                        crate::sqlite::writer::transaction(conn, |c| {
                            futures::executor::block_on(body(c))
                        })
                    })
                })
                .await;
        }
        let dialect = self.dialect();
        self.retry(what, || async {
            let mut tx = self.pool.begin_with(dialect.begin_write).await?;
            let out = body(&mut AnyConn {
                conn: &mut tx,
                dialect,
            })
            .await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    /// Runs `body` on a pooled connection outside a transaction (each statement its own
    /// snapshot), or inside a read-only snapshot when `snapshot` is set.
    pub(crate) async fn read<T, F>(&self, what: &str, snapshot: bool, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut dyn Conn) -> Tx<'c, T> + Send + Sync + 'static,
    {
        let dialect = self.dialect();
        self.retry(what, || async {
            if snapshot {
                let mut tx = self.pool.begin_with(dialect.begin_snapshot).await?;
                let out = body(&mut AnyConn {
                    conn: &mut tx,
                    dialect,
                })
                .await?;
                tx.commit().await?;
                Ok(out)
            } else {
                let mut conn = self.pool.acquire().await?;
                body(&mut AnyConn {
                    conn: &mut conn,
                    dialect,
                })
                .await
            }
        })
        .await
    }

    /// Runs `op` until it succeeds, fails for good, or transient failures (a busy SQLite
    /// database, a Postgres serialization failure) have lasted the busy timeout. Each call is
    /// a `store` span (the operation, the backend, the tries, the latency) inside the caller's
    /// (the Studio's job, user and provider), ending with a debug event.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "store",
            operation = what,
            backend = ?self.backend,
            tries = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        let mut tries = 0u32;
        let outcome = async {
            loop {
                tries += 1;
                match op().await {
                    Ok(v) => return Ok(v),
                    Err(e) if e.is_transient() && started.elapsed() < self.options.busy_timeout => {
                        tracing::debug!("database busy; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                    Err(e) => return Err(e.into_error(what)),
                }
            }
        }
        .instrument(span.clone())
        .await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        span.record("tries", tries);
        span.record("latency_ms", latency_ms);
        span.in_scope(|| match &outcome {
            Ok(_) => tracing::debug!(tries, latency_ms, "done"),
            Err(e) => tracing::debug!(tries, latency_ms, error = %e, "failed"),
        });
        outcome
    }
}

/// Opens one connection (and on SQLite runs the settings, which read and write the file)
/// within `connect_timeout`, so a database that cannot be used answers at once with its cause
/// and where, not after the pool's wait as an opaque time-out: a read-only, missing or corrupt
/// SQLite file and refused credentials are not retryable; a server that cannot be reached is.
async fn probe(
    connect_options: &AnyConnectOptions,
    backend: Backend,
    url: &StoreUrl,
    options: &SqlStoreOptions,
) -> Result<()> {
    use sqlx::Connection;
    let target = match url.sqlite_path_and_params() {
        Some((path, _)) => format!("the SQLite database at {path}"),
        None => format!("the database at {url}"),
    };
    let busy_ms = i64::try_from(options.busy_timeout.as_millis()).unwrap_or(i64::MAX);
    let attempt = async {
        let mut conn = sqlx::AnyConnection::connect_with(connect_options).await?;
        if backend == Backend::Sqlite {
            conn.execute(sqlite_pragmas(busy_ms).as_str()).await?;
        }
        conn.close().await
    };
    // A local SQLite file only waits on another writer's lock: that is the busy time-out's.
    let limit = match backend {
        Backend::Sqlite => options.connect_timeout.max(options.busy_timeout),
        Backend::Postgres => options.connect_timeout,
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(errors::open_error(&target, e)),
        Err(_) => Err(Error::storage(
            format!(
                "connecting to {target} took more than {} s (SqlStoreOptions::connect_timeout)",
                limit.as_secs_f32()
            ),
            true,
            None,
        )),
    }
}

fn check_compiled(backend: Backend) -> Result<()> {
    let compiled = match backend {
        Backend::Sqlite => cfg!(feature = "sqlite"),
        Backend::Postgres => cfg!(feature = "postgres"),
    };
    if compiled {
        Ok(())
    } else {
        let feature = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        Err(Error::invalid(
            "DATABASE_URL",
            format!("this build of jilo-store lacks the `{feature}` feature"),
        ))
    }
}
