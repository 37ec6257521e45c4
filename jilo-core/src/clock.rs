//! Where the Studio reads the time, so deadlines can be tested under paused tokio time.

use std::fmt::Debug;
use std::time::SystemTime;

use crate::ids::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock. The Studio's default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }
}

/// Wall time anchored when made and advanced by tokio's clock, so `tokio::time::pause` and
/// `advance` move it: use it in tests of deadlines.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    wall: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Anchors at the current wall time and tokio instant.
    pub fn new() -> Self {
        Self {
            wall: SystemClock.now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.wall.plus(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(16 * 60)).await;
        assert_eq!(clock.now().since(t0), Duration::from_secs(16 * 60));
    }
}
