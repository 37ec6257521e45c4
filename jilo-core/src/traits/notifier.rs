use async_trait::async_trait;

use crate::alert::Alert;
use crate::error::Result;

/// Sends admin alerts: email, a chat webhook, the log.
///
/// The Studio already groups repeats (one alert per subject per cooldown), so a notifier sends
/// what it is given.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one alert.
    async fn notify(&self, alert: &Alert) -> Result<()>;
}
