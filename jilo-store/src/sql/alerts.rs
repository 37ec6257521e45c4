//! Alert claims and provider cooling in SQL: one row per subject and per provider, each
//! claimed or extended by one guarded statement.

use std::sync::Arc;

use async_trait::async_trait;
use jilo_core::{AlertClaim, AlertStore, ProviderCooling, ProviderId, Result, Timestamp};

use super::SqlStore;
use crate::seam::args;

#[async_trait]
impl AlertStore for SqlStore {
    async fn claim_alert(&self, claim: &AlertClaim) -> Result<bool> {
        let now = claim.now.as_millis();
        let window_start =
            now.saturating_sub(i64::try_from(claim.cooldown.as_millis()).unwrap_or(i64::MAX));
        let subject = claim.subject.clone();
        self.write("claiming an alert", move |c| {
            let subject = subject.clone();
            Box::pin(async move {
                // One statement: the insert, or the update only when the last alert is older
                // than the window. Concurrent claims serialise on the row.
                let admitted = c
                    .exec(
                        "INSERT INTO jilo_alerts (subject, last_ms) VALUES ($1, $2) \
                         ON CONFLICT (subject) DO UPDATE SET last_ms = excluded.last_ms \
                         WHERE jilo_alerts.last_ms <= $3",
                        &args![subject.as_str(), now, window_start],
                    )
                    .await?;
                Ok(admitted > 0)
            })
        })
        .await
    }

    async fn cool_provider(&self, cooling: &ProviderCooling) -> Result<()> {
        let cooling = Arc::new(cooling.clone());
        self.write("cooling a provider", move |c| {
            let cooling = Arc::clone(&cooling);
            Box::pin(async move {
                c.exec(
                    "INSERT INTO jilo_provider_cooling (provider, until_ms) VALUES ($1, $2) \
                     ON CONFLICT (provider) DO UPDATE SET until_ms = excluded.until_ms \
                     WHERE jilo_provider_cooling.until_ms < excluded.until_ms",
                    &args![cooling.provider.as_str(), cooling.until.as_millis()],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn cooling_providers(&self, now: Timestamp) -> Result<Vec<ProviderId>> {
        self.read("reading cooling providers", false, move |c| {
            Box::pin(async move {
                c.fetch(
                    "SELECT provider FROM jilo_provider_cooling WHERE until_ms > $1 \
                     ORDER BY provider",
                    &args![now.as_millis()],
                )
                .await?
                .iter()
                .map(|r| Ok(ProviderId::new(r.text(0)?)))
                .collect()
            })
        })
        .await
    }
}
