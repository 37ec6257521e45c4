//! Subscriptions: a plan's allowance granted once per month, expiring at the month's end.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{Timestamp, UserId};
use crate::ledger::GrantOutcome;
use crate::plans::{Plan, PlanPeriod};

use super::shared::Studio;

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

    /// One page of the user's credit history, newest first ([`crate::QuotaStore::history_page`]),
    /// with the credits that expired by now written first, so the page shows their expiry.
    ///
    /// ```no_run
    /// # async fn page(studio: jilo_core::Studio, user: jilo_core::UserId) -> jilo_core::Result<()> {
    /// use jilo_core::{EntryKind, HistoryQuery};
    /// let first = studio.credit_history(&user, &HistoryQuery::newest(20)).await?;
    /// if let Some(next) = first.next {
    ///     let query = HistoryQuery::newest(20).after(next).of_kinds([EntryKind::Settle]);
    ///     let _older = studio.credit_history(&user, &query).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn credit_history(
        &self,
        user: &UserId,
        query: &crate::ledger::HistoryQuery,
    ) -> Result<crate::ledger::HistoryPage> {
        let now = self.inner.clock.now();
        self.inner.quota.expire_user_credits(user, now).await?;
        self.inner.quota.history_page(user, query).await
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
