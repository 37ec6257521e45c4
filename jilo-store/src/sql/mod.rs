//! The SQL ledger and job store on SQLite and Postgres.
//!
//! One [`SqlStore`] implements both [`jilo_core::QuotaStore`] and [`jilo_core::JobStore`], so
//! a job and its credit hold are written in one transaction. Every transaction is written once
//! here, over the `Conn` seam (`crate::seam`) (`$n` placeholders); a backend is a wing beside this
//! module that implements `Conn` for its driver and fills a `Dialect` with the few
//! pieces of SQL it spells its own way:
//! - `crate::sqlite`: the plain SQLite library. Every write (jobs and holds, grants, expiry,
//!   claims, publications, migrations) runs whole on one writing connection owned by a thread
//!   of the store (one hop per transaction, `BEGIN IMMEDIATE` under WAL, a busy database
//!   waited on and retried, never returned as `database is locked`); reads run on a small pool
//!   of reading connections (in memory, on the writer).
//! - `crate::postgres`: sqlx's Postgres driver. Due jobs are claimed with `FOR UPDATE SKIP
//!   LOCKED`, daily-cap checks serialise on an advisory lock, and job events travel by
//!   `NOTIFY` so every process sees them.
//!
//! Every state change is one guarded statement (`… WHERE version = $v AND state = $s`,
//! `… WHERE available >= $n`) checked for the row it must change; the schema itself refuses a
//! negative balance or a broken `granted = available + held + spent`.

mod alerts;
mod events;
mod jobs;
mod ledger;
mod lots;
mod migrate;
mod publishing;
mod trends;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jilo_core::{Error, Result};
use tokio::sync::OnceCell;

use crate::seam::errors::StoreResult;
use crate::seam::{Arg, Conn, Dialect, SqlRow, SqlValue};
use crate::StoreUrl;

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

/// The credit ledger and job store on SQLite or Postgres.
///
/// Cheap to clone (a pool inside). Open it with [`SqlStore::open`] (connect and migrate) or
/// [`SqlStore::connect`] then [`SqlStore::migrate`].
#[derive(Clone)]
pub struct SqlStore {
    engine: Engine,
    pub(crate) backend: Backend,
    pub(crate) url: StoreUrl,
    pub(crate) options: SqlStoreOptions,
    /// Job events for this process's watchers: published here after a commit on SQLite, fed
    /// by the shared `LISTEN` connection on Postgres.
    pub(crate) events: jilo_core::EventHub,
    /// The shared Postgres listener, started by the first watcher.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) listener: Arc<OnceCell<crate::postgres::ListenerTask>>,
}

/// A store's connections, by backend.
#[derive(Clone)]
enum Engine {
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<crate::sqlite::connections::SqliteConnections>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
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
    /// [`Error::InvalidInput`]; a database that cannot be used is [`Error::Storage`] at once,
    /// with its cause and where: a read-only, missing or corrupt SQLite file and refused
    /// credentials are not retryable; a server that cannot be reached is.
    pub async fn connect(url: &StoreUrl, options: SqlStoreOptions) -> Result<Self> {
        let backend = match url {
            StoreUrl::SqliteFile(_) | StoreUrl::SqliteMemory => Backend::Sqlite,
            StoreUrl::Postgres(_) => Backend::Postgres,
        };
        check_compiled(backend)?;
        let engine = match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => Engine::Sqlite(
                crate::sqlite::connections::open(
                    url,
                    options.max_connections,
                    // A local file only waits on another writer's lock: the busy time-out's.
                    options.connect_timeout.max(options.busy_timeout),
                )
                .await?,
            ),
            #[cfg(feature = "postgres")]
            Backend::Postgres => Engine::Postgres(
                crate::postgres::open(
                    url,
                    options.max_connections,
                    options.acquire_timeout,
                    options.connect_timeout,
                )
                .await?,
            ),
            #[allow(unreachable_patterns)]
            _ => return Err(Error::invalid("DATABASE_URL", "this backend is not built")),
        };
        Ok(Self {
            engine,
            backend,
            url: url.clone(),
            options,
            events: jilo_core::EventHub::new(),
            listener: Arc::new(OnceCell::new()),
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

    /// Postgres's connection pool, for a host's own queries next to jilo's tables with sqlx;
    /// `None` on SQLite (use [`SqlStore::query`] and [`SqlStore::execute`] there, which keep to
    /// the store's one writer).
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.engine {
            Engine::Postgres(pool) => Some(pool),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Runs a host's own query next to jilo's tables and returns its rows, on a reading
    /// connection (placeholders `$1 … $n`, one per argument).
    ///
    /// ```
    /// # async fn demo() -> jilo_core::Result<()> {
    /// use jilo_store::{SqlStore, SqlValue, StoreUrl};
    ///
    /// let store = SqlStore::open(&StoreUrl::SqliteMemory).await?;
    /// store.execute("CREATE TABLE notes (id BIGINT, body TEXT)", &[]).await?;
    /// store
    ///     .execute("INSERT INTO notes VALUES ($1, $2)", &[SqlValue::Int(1), "hello".into()])
    ///     .await?;
    /// let rows = store.query("SELECT body FROM notes WHERE id = $1", &[1.into()]).await?;
    /// assert_eq!(rows[0].text(0)?, "hello");
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn query(&self, sql: &str, args: &[SqlValue]) -> Result<Vec<SqlRow>> {
        let input = Arc::new((sql.to_owned(), args.to_vec()));
        self.read("running a host's query", false, move |c| {
            let input = Arc::clone(&input);
            Box::pin(async move {
                let args: Vec<Arg<'_>> = input.1.iter().map(Arg::from).collect();
                c.fetch(&input.0, &args).await
            })
        })
        .await
    }

    /// Runs a host's own statement next to jilo's tables in a write transaction of its own
    /// (on SQLite, through the store's one writer) and returns how many rows it changed.
    pub async fn execute(&self, sql: &str, args: &[SqlValue]) -> Result<u64> {
        let input = Arc::new((sql.to_owned(), args.to_vec()));
        self.write("running a host's statement", move |c| {
            let input = Arc::clone(&input);
            Box::pin(async move {
                let args: Vec<Arg<'_>> = input.1.iter().map(Arg::from).collect();
                c.exec(&input.0, &args).await
            })
        })
        .await
    }

    /// Runs a host's script of several statements without arguments (a schema of its own,
    /// say) in one write transaction.
    pub async fn execute_script(&self, sql: &str) -> Result<()> {
        let sql = Arc::new(sql.to_owned());
        self.write("running a host's script", move |c| {
            let sql = Arc::clone(&sql);
            Box::pin(async move { c.batch(&sql).await })
        })
        .await
    }

    /// Closes the connections (Postgres's pool; an SQLite store's close when it is dropped).
    pub async fn close(&self) {
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)] // Postgres alone.
        if let Engine::Postgres(pool) = &self.engine {
            pool.close().await;
        }
    }

    /// This backend's own SQL.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        match self.backend {
            Backend::Sqlite => &crate::sqlite::DIALECT,
            Backend::Postgres => &crate::postgres::DIALECT,
        }
    }

    /// Runs `body` in one write transaction and commits, retried while the database is
    /// busy: on an SQLite store's writing connection, or a pooled Postgres connection. The
    /// only way the store writes.
    pub(crate) async fn write<T, F>(&self, what: &str, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut dyn Conn) -> Tx<'c, T> + Send + Sync + 'static,
    {
        let begin = self.dialect().begin_write;
        match &self.engine {
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(connections) => {
                let body = Arc::new(body);
                self.retry(what, || {
                    let body = Arc::clone(&body);
                    connections.writer.run(move |conn| {
                        crate::sqlite::writer::transaction(conn, begin, |c| {
                            futures::executor::block_on(body(c))
                        })
                    })
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Engine::Postgres(pool) => {
                self.retry(what, || pg_transaction(pool, begin, &body))
                    .await
            }
        }
    }

    /// Runs `body` on a reading connection outside a transaction (each statement its own
    /// snapshot), or inside a read-only transaction that sees one snapshot when `snapshot` is
    /// set.
    pub(crate) async fn read<T, F>(&self, what: &str, snapshot: bool, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut dyn Conn) -> Tx<'c, T> + Send + Sync + 'static,
    {
        let begin = self.dialect().begin_snapshot;
        match &self.engine {
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(connections) => {
                let body = Arc::new(body);
                self.retry(what, || {
                    let body = Arc::clone(&body);
                    let work = move |conn: &mut rusqlite::Connection| {
                        let run = |c: &mut dyn Conn| futures::executor::block_on(body(c));
                        if snapshot {
                            crate::sqlite::writer::transaction(conn, begin, run)
                        } else {
                            run(&mut crate::sqlite::lite::LiteConn(conn))
                        }
                    };
                    async move {
                        match &connections.readers {
                            Some(readers) => readers.run(work).await,
                            None => connections.writer.run(work).await,
                        }
                    }
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Engine::Postgres(pool) => {
                self.retry(what, || async {
                    if snapshot {
                        pg_transaction(pool, begin, &body).await
                    } else {
                        let mut conn = pool.acquire().await?;
                        body(&mut crate::postgres::conn::PgConn(&mut conn)).await
                    }
                })
                .await
            }
        }
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

/// Runs `body` in one Postgres transaction begun with `begin`, committed when it returns `Ok`
/// (dropped, so rolled back, otherwise).
#[cfg(feature = "postgres")]
async fn pg_transaction<T, F>(pool: &sqlx::PgPool, begin: &'static str, body: &F) -> StoreResult<T>
where
    F: for<'c> Fn(&'c mut dyn Conn) -> Tx<'c, T>,
{
    let mut tx = pool.begin_with(begin).await?;
    let out = body(&mut crate::postgres::conn::PgConn(&mut tx)).await?;
    tx.commit().await?;
    Ok(out)
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
