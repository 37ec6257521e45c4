//! The writing connection of an SQLite file store: every write transaction (jobs and their
//! holds, grants, expiry, claims, publications, migrations) runs on one connection of the
//! plain SQLite library, owned by a thread of its own.
//!
//! Through sqlx every statement is a round trip to the connection's worker thread; a job's
//! credit life is a dozen statements. Here a whole transaction is one closure sent to the
//! thread: one hop each way, the statements prepared once and cached. SQLite has one writer at
//! a time anyway, so one writing connection per store loses nothing, and in-process writers
//! never meet each other in SQLite's busy handler. Other processes still coordinate through
//! SQLite's locks (`BEGIN IMMEDIATE`, the busy timeout); reads stay on the pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use jilo_core::Error;
use rusqlite::Connection;

use super::lite::LiteConn;
use crate::seam::errors::{StoreError, StoreResult};
use crate::seam::Conn;

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writing connection's thread. Dropping it ends the thread once queued work is done.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    work: mpsc::Sender<Work>,
    /// Transactions sent and not yet answered.
    in_flight: AtomicUsize,
}

impl SqliteWriter {
    /// Starts the thread that owns `conn`, opened and set up by the store's connection source.
    pub(crate) fn start(conn: Connection) -> StoreResult<Self> {
        let (work, queue) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("jilo-sqlite-writer".to_owned())
            .spawn(move || {
                let mut conn = conn;
                while let Some(job) = next_work(&queue) {
                    job(&mut conn);
                }
            })
            .map_err(|e| {
                Error::storage(
                    "starting the SQLite writer thread",
                    false,
                    Some(Box::new(e) as jilo_core::error::BoxError),
                )
            })?;
        Ok(Self {
            work,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the writing connection and waits for its answer.
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let _ = answer.send(f(conn));
        });
        let gone = || -> StoreError {
            Error::storage("the SQLite writer thread has stopped", false, None).into()
        };
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        // Counted down however this call ends, a dropped caller included.
        let _counted = InFlight(&self.in_flight);
        let sent = self.work.send(work);
        let answer = match sent {
            Err(_) => Err(gone()),
            Ok(()) => {
                let mut answered = answered;
                // The writer's only client looks for the answer a moment before it sleeps:
                // the transaction takes about that long, and the wake-up is saved. Callers that
                // wait behind others just sleep, leaving the CPU to the writer.
                let started = std::time::Instant::now();
                loop {
                    match answered.try_recv() {
                        Ok(v) => break v,
                        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => break Err(gone()),
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                            if alone && started.elapsed() < STAY_AWAKE =>
                        {
                            tokio::task::yield_now().await;
                        }
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                            break answered.await.unwrap_or_else(|_| Err(gone()));
                        }
                    }
                }
            }
        };
        answer
    }
}

/// Counts a caller down when its call ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the writer keeps looking for more work before it sleeps (and its only caller for
/// the answer): a transaction and a caller's next one usually follow within this, and finding
/// the other side awake saves a thread wake-up.
const STAY_AWAKE: Duration = Duration::from_micros(200);

/// The next piece of work, `None` once the store is gone.
fn next_work(queue: &mpsc::Receiver<Work>) -> Option<Work> {
    let started = std::time::Instant::now();
    loop {
        match queue.try_recv() {
            Ok(work) => return Some(work),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < STAY_AWAKE => {
                std::thread::yield_now();
            }
            Err(mpsc::TryRecvError::Empty) => return queue.recv().ok(),
        }
    }
}

/// Runs `body` in one transaction begun with `begin` (`BEGIN IMMEDIATE` for a write, `BEGIN
/// DEFERRED` for a read that sees one snapshot): committed when it returns `Ok`, rolled back
/// otherwise.
pub(crate) fn transaction<T>(
    conn: &mut Connection,
    begin: &str,
    body: impl FnOnce(&mut dyn Conn) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.execute_batch(begin)?;
    let out = body(&mut LiteConn(conn)).and_then(|v| {
        conn.execute_batch("COMMIT")?;
        Ok(v)
    });
    if out.is_err() && !conn.is_autocommit() {
        // The error is the caller's news; a failed rollback leaves nothing more to say.
        let _ = conn.execute_batch("ROLLBACK");
    }
    out
}
