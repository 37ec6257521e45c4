//! A process's one follower of a job, shared by all the job's subscribers (`Studio::subscribe`).

use futures::stream::{self, BoxStream, StreamExt};

use crate::job::JobEvent;

/// Events a follower keeps for subscribers that fall behind.
pub(super) const FOLLOWER_BUFFER: usize = 64;

/// A process's one follower of a job: its changes as they come, and the latest for those who
/// join later.
pub(crate) struct Follower {
    pub(super) events: tokio::sync::broadcast::Sender<JobEvent>,
    pub(super) latest: std::sync::Mutex<JobEvent>,
}

impl Follower {
    /// A subscriber's stream: the latest event, then each newer one, ending after a terminal
    /// state (or when the follower stops).
    pub(super) fn join(&self) -> BoxStream<'static, JobEvent> {
        // Subscribe first, then read the latest: nothing between the two is missed.
        let rx = self.events.subscribe();
        let latest = self.latest.lock().ok().map(|l| l.clone());
        let last = latest.as_ref().map(|e| e.version);
        let ended = latest.as_ref().is_some_and(|e| e.state.is_terminal());
        let later = stream::unfold((rx, last, ended), |(mut rx, last, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(event) if last.is_none_or(|v| event.version > v) => {
                        let terminal = event.state.is_terminal();
                        let version = event.version;
                        return Some((event, (rx, Some(version), terminal)));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a job subscriber fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        stream::iter(latest).chain(later).boxed()
    }
}
