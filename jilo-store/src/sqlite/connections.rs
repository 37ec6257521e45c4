//! Where an SQLite store's connections come from: the source (the file, or memory, and the
//! settings every connection runs first), the one writing connection, and the pool of reading
//! connections of a file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jilo_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};

use super::writer::SqliteWriter;
use crate::seam::errors::{StoreError, StoreResult};
use crate::StoreUrl;

/// How to open one more connection to the store's database.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// An SQLite URI (`file:…?mode=rwc`), or `:memory:`.
    uri: String,
    busy_timeout: Duration,
}

/// The SQLite settings every connection runs first: WAL (readers never wait for the writer),
/// `synchronous = NORMAL` (durable at each checkpoint, safe in WAL), foreign keys on.
const PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

impl Source {
    /// The source a store URL names; `None` for another backend's URL.
    pub(crate) fn of(url: &StoreUrl, busy_timeout: Duration) -> Option<Self> {
        let uri = match url {
            StoreUrl::SqliteMemory => ":memory:".to_owned(),
            StoreUrl::SqliteFile(_) => {
                let (path, query) = url.sqlite_open_params()?;
                format!("file:{}?{query}", uri_path(path))
            }
            StoreUrl::Postgres(_) => return None,
        };
        Some(Self { uri, busy_timeout })
    }

    /// Whether the database lives in one connection's memory (so every read goes to the
    /// writer, which holds it).
    pub(crate) fn in_memory(&self) -> bool {
        self.uri == ":memory:"
    }

    /// Opens a connection and runs the settings.
    pub(crate) fn open(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.uri, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.execute_batch(PRAGMAS)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }
}

/// A path as the path of a `file:` URI: the characters a URI reads otherwise escaped.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            _ => out.push(c),
        }
    }
    out
}

/// An SQLite store's connections.
#[derive(Debug)]
pub(crate) struct SqliteConnections {
    /// The one connection that writes (and, in memory, the only one).
    pub(crate) writer: SqliteWriter,
    /// A file's reading connections; `None` in memory.
    pub(crate) readers: Option<Readers>,
}

/// Opens the writer, which creates the file and sets WAL, within the busy time-out (a local
/// file only ever waits on another writer's lock), so a file that cannot be used answers at
/// once with its cause and where: read-only, missing or corrupt files are not retryable.
pub(crate) async fn open(
    url: &StoreUrl,
    max_readers: u32,
    limit: Duration,
) -> Result<Arc<SqliteConnections>> {
    let source = Source::of(url, limit)
        .ok_or_else(|| Error::invalid("DATABASE_URL", "not an SQLite URL"))?;
    let target = match url.sqlite_path_and_params() {
        Some((path, _)) => format!("the SQLite database at {path}"),
        None => "the in-memory SQLite database".to_owned(),
    };
    let opening = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || source.open())
    };
    let conn = match tokio::time::timeout(limit, opening).await {
        Ok(Ok(Ok(conn))) => conn,
        Ok(Ok(Err(e))) => return Err(open_error(&target, e)),
        Ok(Err(e)) => {
            return Err(Error::storage(
                format!("opening {target} stopped"),
                false,
                Some(Box::new(e) as jilo_core::error::BoxError),
            ))
        }
        Err(_) => {
            return Err(Error::storage(
                format!(
                    "opening {target} took more than {} s (SqlStoreOptions::busy_timeout)",
                    limit.as_secs_f32()
                ),
                true,
                None,
            ))
        }
    };
    let writer =
        SqliteWriter::start(conn).map_err(|e| e.into_error("starting the SQLite writer"))?;
    let readers = (!source.in_memory()).then(|| Readers::new(source, max_readers));
    Ok(Arc::new(SqliteConnections { writer, readers }))
}

/// Why a file could not be opened, from SQLite's result code.
fn open_error(target: &str, e: StoreError) -> Error {
    use rusqlite::ErrorCode;
    let code = match &e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => Some(f.code),
        _ => None,
    };
    let (cause, retryable) = match code {
        Some(ErrorCode::ReadOnly) => (
            "is read-only (a read-only file, directory or mount, or mode=ro)",
            false,
        ),
        Some(ErrorCode::CannotOpen) => (
            "cannot be opened (a missing directory, or no permission)",
            false,
        ),
        Some(ErrorCode::NotADatabase) => (
            "is not a database (another kind of file, or corrupt)",
            false,
        ),
        Some(ErrorCode::DatabaseCorrupt) => ("is corrupt", false),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ("is busy", true),
        _ => ("could not be opened", false),
    };
    let source = match e {
        StoreError::Sqlite(e) => Some(Box::new(e) as jilo_core::error::BoxError),
        StoreError::Rule(e) => Some(Box::new(e) as jilo_core::error::BoxError),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    Error::storage(format!("{target} {cause}"), retryable, source)
}

/// A file's reading connections: opened when first needed, at most `max` at once, each read
/// run whole on a blocking thread.
#[derive(Debug)]
pub(crate) struct Readers {
    source: Source,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn new(source: Source, max: u32) -> Self {
        Self {
            source,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(usize::try_from(max.max(1)).unwrap_or(1)),
        }
    }

    /// Runs `f` on a reading connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| {
            StoreError::from(Error::storage("the SQLite readers are closed", false, None))
        })?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let source = self.source.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = match idle {
                Some(conn) => conn,
                None => source.open()?,
            };
            let out = f(&mut conn);
            Ok::<_, StoreError>((conn, out))
        })
        .await;
        match joined {
            Ok(Ok((conn, out))) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
                out
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(Error::storage(
                "a read of the SQLite database stopped",
                false,
                Some(Box::new(e) as jilo_core::error::BoxError),
            )
            .into()),
        }
    }
}
