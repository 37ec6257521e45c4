//! Subscriptions: a plan's allowance granted once per month, expiring at the month's end.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{Timestamp, UserId};
use crate::ledger::GrantOutcome;
use crate::plans::{Plan, PlanPeriod};

use super::Studio;

/// What [`Studio::subscribe_plan`] granted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAllowance {
    /// The plan.
    pub plan: Plan,
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// Credits of the allowance.
    pub credits: i64,
    /// When they expire: the first instant of the next month.
    pub expires_at: Timestamp,
    /// `Granted`, or `Duplicate` when this month's allowance was granted already (a second
    /// call, a plan changed mid-month: proration is the host's).
    pub outcome: GrantOutcome,
}

impl Studio {
    /// The user's credits as a page shows them now: expiring credits by date, lasting ones,
    /// held, and what was spent this month (UTC), the period plans grant by.
    pub async fn credit_statement(&self, user: &UserId) -> Result<crate::ledger::CreditStatement> {
        let now = self.inner.clock.now();
        self.inner
            .quota
            .statement(user, now, PlanPeriod::containing(now).start())
            .await
    }

    /// The plans on offer ([`crate::Policy::plans`]).
    pub fn plans(&self) -> &[Plan] {
        &self.inner.policy.plans
    }

    /// Grants `plan`'s allowance for the current month (UTC) to `user`, once per month
    /// whatever the plan, expiring at the month's end so next month's allowance replaces it.
    /// A host calls it when a user subscribes or changes plan and when a subscription renews
    /// (e.g. from its payment webhook). An unknown plan is [`Error::NotFound`].
    pub async fn subscribe_plan(&self, user: &UserId, plan: &str) -> Result<PlanAllowance> {
        let inner = &self.inner;
        let plan = inner
            .policy
            .plans
            .iter()
            .find(|p| p.id == plan)
            .cloned()
            .ok_or_else(|| Error::not_found("plan", plan))?;
        let now = inner.clock.now();
        let period = PlanPeriod::containing(now);
        let grant = plan.allowance(user, period, now);
        let outcome = inner.quota.grant(&grant).await?;
        Ok(PlanAllowance {
            credits: plan.monthly_credits,
            plan,
            period: period.label(),
            expires_at: period.end(),
            outcome,
        })
    }
}
