//! Reports for the operator: what each provider cost, and the providers' balances.

use serde::{Deserialize, Serialize};

use crate::alert::AlertKind;
use crate::error::Result;
use crate::ids::{ProviderId, Timestamp};
use crate::job::JobState;

use super::shared::Studio;

/// One provider's costs on one UTC day ([`Studio::cost_report`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostLine {
    /// The provider the jobs ended on.
    pub provider: ProviderId,
    /// The UTC day the jobs were created on, as days since 1970-01-01.
    pub utc_day: i64,
    /// Jobs that ended on this provider.
    pub jobs: u64,
    /// Of those, jobs whose video was delivered.
    pub delivered: u64,
    /// Credits settled for them.
    pub credits_charged: i64,
    /// What the provider charged, in its currency's minor units.
    pub provider_cost_minor: i64,
    /// The provider's currency (ISO 4217).
    pub currency: String,
}

impl Studio {
    /// What each provider cost per UTC day for the jobs created in `from..to`: jobs that
    /// ended there, those delivered, the credits charged (settled: delivered and timed-out
    /// jobs; a time-out's free retry is a separate grant) and what the provider charged for
    /// the jobs it ran to the end (delivered and timed out), in its currency's minor units.
    /// The margin the seed works out by hand (1.1 元 a video against 15 credits).
    pub async fn cost_report(&self, from: Timestamp, to: Timestamp) -> Result<Vec<CostLine>> {
        let jobs = self.inner.jobs.jobs_created_between(from, to).await?;
        let mut lines: std::collections::BTreeMap<(ProviderId, i64, String), CostLine> =
            std::collections::BTreeMap::new();
        for job in jobs.iter().filter(|j| j.state.is_terminal()) {
            let Some(provider) = job.provider().cloned() else {
                continue;
            };
            let currency = job
                .provider_cost
                .as_ref()
                .map(|c| c.currency.clone())
                .unwrap_or_default();
            let day = job.created_at.utc_day();
            let line = lines
                .entry((provider.clone(), day, currency.clone()))
                .or_insert_with(|| CostLine {
                    provider,
                    utc_day: day,
                    jobs: 0,
                    delivered: 0,
                    credits_charged: 0,
                    provider_cost_minor: 0,
                    currency,
                });
            line.jobs += 1;
            let ran = matches!(job.state, JobState::Completed | JobState::TimedOut);
            if job.state == JobState::Completed {
                line.delivered += 1;
            }
            if ran {
                line.credits_charged += job.credits;
                line.provider_cost_minor += job.provider_cost.as_ref().map_or(0, |c| c.minor);
            }
        }
        Ok(lines.into_values().collect())
    }

    /// Reads every provider's balance and alerts the admin for each one under its
    /// [`Policy::low_balance`](crate::policy::Policy::low_balance) threshold (once per [`Policy::alert_cooldown`](crate::policy::Policy::alert_cooldown), across
    /// processes). Returns the balances read; a provider without a balance endpoint gives
    /// `None`, one whose read failed is logged and left out. [`Studio::run`] calls it every
    /// [`Policy::balance_check_interval`](crate::policy::Policy::balance_check_interval).
    pub async fn check_balances(
        &self,
    ) -> Vec<(ProviderId, Option<crate::traits::ProviderBalance>)> {
        let inner = &self.inner;
        let mut read = Vec::new();
        for p in &inner.providers {
            if !p.capabilities.balance {
                read.push((p.id.clone(), None));
                continue;
            }
            let started = std::time::Instant::now();
            let balance = p.provider.balance().await;
            crate::telemetry::provider_call(&p.id, "balance", started.elapsed());
            match balance {
                Ok(balance) => {
                    if let (Some(b), Some(threshold)) =
                        (&balance, inner.policy.low_balance.get(&p.id))
                    {
                        if b.minor < *threshold {
                            let detail = format!(
                                "{} {} left ({} minor units), under the threshold of {}",
                                b.minor as f64 / 100.0,
                                b.currency,
                                b.minor,
                                threshold
                            );
                            inner
                                .alert(
                                    AlertKind::BalanceLow {
                                        provider: p.id.clone(),
                                        balance_minor: b.minor,
                                    },
                                    detail,
                                )
                                .await;
                        }
                    }
                    read.push((p.id.clone(), balance));
                }
                Err(e) => tracing::warn!(provider = %p.id, error = %e, "reading a balance failed"),
            }
        }
        read
    }
}
