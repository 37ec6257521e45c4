//! Plans: a monthly allowance of credits at a price, granted once per calendar month (UTC)
//! and expiring at the month's end, so a new month's allowance replaces the last one instead
//! of adding to it (the seed's "本月剩余" and "等待下月刷新").
//!
//! ```
//! use jilo_core::plans::{Plan, PlanPeriod};
//! use jilo_core::{Timestamp, UserId};
//!
//! let basic = Plan::new("basic", "Basic", 50, 4_900, "CNY"); // 50 credits for ¥49
//! let period = PlanPeriod::containing(Timestamp::from_millis(1_796_137_200_000)); // 2026-12-01
//! assert_eq!(period.label(), "2026-12");
//! let grant = basic.allowance(&UserId::new("creator-1"), period, Timestamp::from_millis(1_796_137_200_000));
//! assert_eq!(grant.key, "monthly:creator-1:2026-12");
//! assert_eq!(grant.expires_at, Some(period.end()));
//! ```

use serde::{Deserialize, Serialize};

use crate::error::Error;
pub use crate::ids::PlanPeriod;
use crate::ids::{Timestamp, UserId};
use crate::ledger::Grant;

/// A plan a user subscribes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The host's id for it.
    pub id: String,
    /// The name users see.
    pub name: String,
    /// Credits granted each month.
    pub monthly_credits: i64,
    /// The price a month, in the currency's minor units (fen, cents).
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

impl Plan {
    /// A plan.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        monthly_credits: i64,
        price_minor: i64,
        currency: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            monthly_credits,
            price_minor,
            currency: currency.into(),
        }
    }

    /// Checks the plan: an id, positive credits, a price not below zero.
    pub fn check(&self) -> Result<(), Error> {
        if self.id.trim().is_empty() {
            return Err(Error::invalid("plan.id", "a plan needs an id"));
        }
        crate::ledger::check_amount(self.monthly_credits)
            .map_err(|_| Error::invalid("plan.monthly_credits", "must be positive"))?;
        if self.price_minor < 0 {
            return Err(Error::invalid("plan.price_minor", "cannot be negative"));
        }
        Ok(())
    }

    /// The grant of this plan's allowance for `period` ([`Grant::monthly`]): keyed by user
    /// and period (so it is granted once per period whatever plan the user is on: changing
    /// plan mid-period grants nothing more; proration is the host's), expiring at the
    /// period's end.
    pub fn allowance(&self, user: &UserId, period: PlanPeriod, at: Timestamp) -> Grant {
        Grant::monthly(user.clone(), self.monthly_credits, period, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i16, m: i8, d: i8, h: i8) -> i64 {
        jiff::civil::date(y, m, d)
            .at(h, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or_default()
    }

    fn at(y: i16, m: i8, d: i8) -> Timestamp {
        Timestamp::from_millis(utc(y, m, d, 12))
    }

    #[test]
    fn periods_are_utc_calendar_months() {
        let p = PlanPeriod::containing(at(2026, 12, 31));
        assert_eq!(p.label(), "2026-12");
        assert_eq!(
            p.end().as_millis(),
            utc(2027, 1, 1, 0),
            "December's allowance expires at the first instant of January"
        );
        assert_eq!(PlanPeriod::containing(at(2028, 2, 29)).label(), "2028-02");
        assert_eq!(
            PlanPeriod::containing(at(2028, 2, 29)).end().as_millis(),
            utc(2028, 3, 1, 0)
        );
        assert_eq!(
            PlanPeriod::containing(Timestamp::from_millis(0)).label(),
            "1970-01"
        );
        let start = PlanPeriod::containing(at(2026, 7, 15)).start();
        assert_eq!(PlanPeriod::containing(start).label(), "2026-07");
        assert_eq!(
            PlanPeriod::containing(Timestamp::from_millis(start.as_millis() - 1)).label(),
            "2026-06"
        );
    }

    #[test]
    fn periods_of_extreme_instants_do_not_panic() {
        assert_eq!(
            PlanPeriod::containing(Timestamp::from_millis(i64::MAX)).label(),
            "9999-12"
        );
        assert_eq!(
            PlanPeriod::containing(Timestamp::from_millis(i64::MIN)).label(),
            "-9999-01"
        );
        let last = PlanPeriod::containing(Timestamp::from_millis(i64::MAX));
        assert!(last.end() >= last.start());
    }

    #[test]
    fn plans_are_checked() {
        assert!(Plan::new("basic", "Basic", 50, 4_900, "CNY")
            .check()
            .is_ok());
        assert!(Plan::new("", "x", 50, 1, "CNY").check().is_err());
        assert!(Plan::new("p", "x", 0, 1, "CNY").check().is_err());
        assert!(Plan::new("p", "x", 5, -1, "CNY").check().is_err());
    }
}
