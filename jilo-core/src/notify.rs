//! The log [`Notifier`]: alerts as `tracing` warnings.

use async_trait::async_trait;

use crate::alert::Alert;
use crate::error::Result;
use crate::traits::Notifier;

/// Writes each alert as a `tracing` warning. The Studio's default notifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, alert: &Alert) -> Result<()> {
        tracing::warn!(alert = %alert.kind, detail = %alert.detail, "admin alert");
        Ok(())
    }
}
