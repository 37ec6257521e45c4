//! Following a job for its subscribers: one follower per job per process.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Error, Result};
use crate::ids::JobId;
use crate::job::JobEvent;

use super::follower::{Follower, FOLLOWER_BUFFER};
use super::shared::{Inner, Studio};

impl Studio {
    /// A stream of a job's events for a host's SSE or websocket: the job as it is now, then
    /// each change (state, progress %, stage), ending after a terminal state. On a shared
    /// Postgres store it sees changes made by other processes.
    ///
    /// A process follows each watched job once, however many subscribe to it (ten thousand
    /// browsers watching one job cost one follower): the store's events for the job, and a
    /// re-read of the job every [`Policy::poll_interval`](crate::policy::Policy::poll_interval), so an event lost on the way (a
    /// listener reconnecting) delays the subscribers at most that long and never leaves them
    /// waiting for a terminal state that already happened. Each subscriber gets every change
    /// from the latest on; one that falls more than 64 events behind skips what it missed
    /// (never the terminal state), and events are never repeated (only newer versions of the
    /// job pass). The follower stops after the terminal state, or when its last subscriber is
    /// gone.
    pub async fn subscribe(&self, id: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        if let Some(joined) = self.joined(id) {
            return Ok(joined);
        }
        // Watch first, then read, so no change between the two is missed.
        let live = self.inner.jobs.watch_job(id).await?;
        let current = self.inner.jobs.job(id).await?;
        let first = current.event();
        if current.state.is_terminal() {
            return Ok(stream::iter([first]).boxed());
        }
        let number = self
            .inner
            .lease_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let follower = Arc::new(Follower {
            events: tokio::sync::broadcast::channel(FOLLOWER_BUFFER).0,
            latest: std::sync::Mutex::new(first),
        });
        let joined = {
            let mut followed = self
                .inner
                .followed
                .lock()
                .map_err(|_| Error::storage("the followers' map is poisoned", false, None))?;
            // Another subscriber may have started a follower meanwhile: join it.
            match followed.get(id) {
                Some((_, existing)) => Some(existing.join()),
                None => {
                    followed.insert(id.clone(), (number, follower.clone()));
                    None
                }
            }
        };
        if let Some(joined) = joined {
            return Ok(joined);
        }
        let mine = follower.join();
        let jobs = self.inner.jobs.clone();
        let every = self.inner.policy.poll_interval;
        let reread_id = id.clone();
        let rereads = stream::unfold((), move |()| {
            let (jobs, id) = (jobs.clone(), reread_id.clone());
            async move {
                tokio::time::sleep(every).await;
                Some((jobs.job(&id).await.ok().map(|j| j.event()), ()))
            }
        })
        .filter_map(futures::future::ready);
        let filter_id = id.clone();
        let mut last_version = current.version;
        let changes = stream::select(live, rereads)
            .filter(move |e| {
                let keep = e.job == filter_id && e.version > last_version;
                if keep {
                    last_version = e.version;
                }
                futures::future::ready(keep)
            })
            .boxed();
        tokio::spawn(follow(
            Arc::downgrade(&self.inner),
            id.clone(),
            number,
            follower,
            changes,
        ));
        Ok(mine)
    }

    /// A stream from the process's live follower of `id`, if there is one.
    fn joined(&self, id: &JobId) -> Option<BoxStream<'static, JobEvent>> {
        let followed = self.inner.followed.lock().ok()?;
        followed.get(id).map(|(_, f)| f.join())
    }
}

/// Feeds a job's changes to its subscribers until a terminal state, the end of the changes,
/// or the last subscriber leaving; then forgets the follower. Leaving and joining happen under
/// the followers' lock, so a subscriber never joins a follower that is gone; and the follower
/// is forgotten however its task ends (a panic, a runtime shutting down), so no subscriber
/// joins a dead one.
async fn follow(
    inner: std::sync::Weak<Inner>,
    id: JobId,
    number: u64,
    follower: Arc<Follower>,
    mut changes: BoxStream<'static, JobEvent>,
) {
    let _forget = Forget {
        inner: inner.clone(),
        id,
        number,
    };
    loop {
        tokio::select! {
            event = changes.next() => match event {
                Some(event) => {
                    let terminal = event.state.is_terminal();
                    if let Ok(mut latest) = follower.latest.lock() {
                        *latest = event.clone();
                    }
                    let _ = follower.events.send(event);
                    if terminal {
                        return;
                    }
                }
                None => return,
            },
            () = follower.events.closed() => {
                let Some(inner) = inner.upgrade() else { return };
                let Ok(mut followed) = inner.followed.lock() else { return };
                // Nobody joined since the last one left: forgotten under the same lock.
                if follower.events.receiver_count() == 0 {
                    if followed.get(&_forget.id).is_some_and(|(n, _)| *n == number) {
                        followed.remove(&_forget.id);
                    }
                    return;
                }
            }
        }
    }
}

/// Forgets a follower when its task ends, however it ends.
struct Forget {
    inner: std::sync::Weak<Inner>,
    id: JobId,
    number: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            if let Ok(mut followed) = inner.followed.lock() {
                if followed
                    .get(&self.id)
                    .is_some_and(|(n, _)| *n == self.number)
                {
                    followed.remove(&self.id);
                }
            }
        }
    }
}
