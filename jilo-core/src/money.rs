//! The ledger's transactions, decided once.
//!
//! Every store reads what a money transaction needs (an account's totals, a user's open lots,
//! a hold and its parts, a grant key already seen), hands it to one of these pure functions,
//! and writes what the returned plan says: the account's change, the lots as they end up, the
//! hold and the ledger entries. The checks and their order live here and nowhere else, so the
//! in-memory store and each SQL backend refuse the same request with the same error:
//!
//! - [`plan_reserve`]: the amount and the user id; a hold the job already has; the daily cap;
//!   then the user's credits that expired by now are written off and the balance is checked
//!   (a user never granted has 0); the hold draws from the lots that expire soonest.
//! - [`plan_end_hold`]: a hold ends as settled or refunded; a missing hold is `NotFound`; one
//!   already ended the same way is left as it is; one ended the other way is `NotAllowed`.
//!   A refund returns each credit to its lot, or lapses it when the lot expired meanwhile.
//! - [`plan_grant`]: the grant's fields; a key seen before is a duplicate of the same grant or
//!   an error; the account's ceiling ([`MAX_CREDITS`](crate::ledger::MAX_CREDITS)).
//! - [`plan_expiry`]: each lot due by now expires its unheld credits once.
//!
//! A plan changes nothing by itself; an error from a planner means the store writes nothing.
//!
//! ```
//! use jilo_core::money::{plan_grant, plan_reserve, GrantRead, ReserveRead};
//! use jilo_core::{Grant, JobId, Reservation, Timestamp, UserId};
//!
//! let user = UserId::new("u1");
//! let at = Timestamp::from_millis(1_000);
//! let grant = Grant::signup(user.clone(), 10, at);
//! let granted = plan_grant(&grant, &GrantRead::default())?.expect("a new key");
//! assert_eq!(granted.account.available, 10);
//!
//! let read = ReserveRead {
//!     account: Some(granted.account.apply_to(Default::default())),
//!     lots: vec![granted.lot.clone()],
//!     holds_today: 0,
//!     hold_exists: false,
//! };
//! let reservation = Reservation {
//!     user,
//!     job: JobId::new("job-1"),
//!     credits: 4,
//!     at,
//!     daily_cap: None,
//! };
//! let plan = plan_reserve(&reservation, read)?;
//! assert_eq!(plan.account.available, -4);
//! assert_eq!(plan.account.held, 4);
//! # Ok::<(), jilo_core::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::ids::{JobId, Timestamp};
use crate::ledger::{
    check_account_ceiling, check_amount, check_grant, check_regrant, check_user, Balance,
    CreditHold, Grant, HoldOutcome, HoldState, KeptGrant, LedgerEntryKind, Reservation,
};
use crate::lots::{self, CreditLot, HoldPart};

/// A change to an account's totals, each a signed delta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// Change of the credits free to hold.
    pub available: i64,
    /// Change of the credits under open holds.
    pub held: i64,
    /// Change of the credits spent.
    pub spent: i64,
    /// Change of the credits granted.
    pub granted: i64,
    /// Change of the credits expired or lapsed.
    pub expired: i64,
}

impl AccountChange {
    /// The balance after this change.
    pub fn apply_to(&self, b: Balance) -> Balance {
        Balance {
            available: b.available + self.available,
            held: b.held + self.held,
            spent: b.spent + self.spent,
            granted: b.granted + self.granted,
            expired: b.expired + self.expired,
        }
    }

    fn plus(self, o: AccountChange) -> AccountChange {
        AccountChange {
            available: self.available + o.available,
            held: self.held + o.held,
            spent: self.spent + o.spent,
            granted: self.granted + o.granted,
            expired: self.expired + o.expired,
        }
    }
}

/// A ledger entry to write: the store gives it its sequence number and the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEntry {
    /// What happened.
    pub kind: LedgerEntryKind,
    /// How many credits.
    pub credits: i64,
    /// When.
    pub at: Timestamp,
}

/// What expiring a user's due lots writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpiryPlan {
    /// Every lot whose expiry is written now, as it ends up (a lot with nothing unheld left
    /// is only marked).
    pub lots: Vec<CreditLot>,
    /// The account's change.
    pub account: AccountChange,
    /// One `expire` entry per lot that lost credits.
    pub entries: Vec<PlannedEntry>,
    /// How many lots lost credits.
    pub lots_expired: u32,
}

impl ExpiryPlan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.lots.is_empty()
    }
}

/// Writes off, once per lot, the unheld credits of every lot in `lots` due by `at`. `lots`
/// are the user's lots whose expiry is not yet written; others are left alone.
pub fn plan_expiry(lots: &[CreditLot], at: Timestamp) -> ExpiryPlan {
    let mut due: Vec<CreditLot> = lots
        .iter()
        .filter(|l| !l.expiry_written && l.expired_at(at))
        .cloned()
        .collect();
    let gone = lots::expire(&mut due, at);
    let credits: i64 = gone.iter().map(|g| g.credits).sum();
    ExpiryPlan {
        lots: due,
        account: AccountChange {
            available: -credits,
            expired: credits,
            ..AccountChange::default()
        },
        lots_expired: u32::try_from(gone.len()).unwrap_or(u32::MAX),
        entries: gone
            .into_iter()
            .map(|g| PlannedEntry {
                kind: LedgerEntryKind::Expire { key: g.lot },
                credits: g.credits,
                at: g.at,
            })
            .collect(),
    }
}

/// What a store read, inside its transaction, to decide a reservation.
#[derive(Clone, Debug, Default)]
pub struct ReserveRead {
    /// The user's account; `None` when the user was never granted anything.
    pub account: Option<Balance>,
    /// The user's lots whose expiry is not yet written and that either have credits free or
    /// are due by the reservation's time (more lots are harmless: they are left alone).
    pub lots: Vec<CreditLot>,
    /// Holds of the reservation's UTC day that were not refunded (read only when the
    /// reservation has a daily cap; 0 otherwise).
    pub holds_today: u32,
    /// Whether the job already has a hold.
    pub hold_exists: bool,
}

/// What a reservation writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservePlan {
    /// The new hold.
    pub hold: CreditHold,
    /// Its UTC day (the daily cap's count).
    pub day: i64,
    /// The lots it drew from.
    pub parts: Vec<HoldPart>,
    /// Every lot changed (by the expiry or the draw), as it ends up.
    pub lots: Vec<CreditLot>,
    /// The account's change: the expiry's, then the hold's.
    pub account: AccountChange,
    /// The expiry's entries, then the hold's.
    pub entries: Vec<PlannedEntry>,
    /// How many lots the expiry wrote off.
    pub lots_expired: u32,
}

/// Decides a reservation; see the [module](self) for the order of its checks.
pub fn plan_reserve(r: &Reservation, read: ReserveRead) -> Result<ReservePlan> {
    check_amount(r.credits)?;
    check_user(&r.user)?;
    if read.hold_exists {
        return Err(Error::already_exists("hold", &r.job));
    }
    if let Some(cap) = r.daily_cap {
        if read.holds_today >= cap {
            return Err(Error::DailyCapReached { cap });
        }
    }
    let expiry = plan_expiry(&read.lots, r.at);
    let available = read.account.map_or(0, |b| b.available) + expiry.account.available;
    if available < r.credits {
        return Err(Error::Insufficient {
            available,
            needed: r.credits,
        });
    }
    // The lots as the expiry leaves them, then the draw; every lot either changed is written.
    let before = read.lots;
    let mut lots = before.clone();
    for lot in &expiry.lots {
        if let Some(l) = lots.iter_mut().find(|l| l.key == lot.key) {
            *l = lot.clone();
        }
    }
    let parts = lots::draw(&mut lots, r.credits, r.at).ok_or_else(|| {
        Error::storage(
            format!("the credit lots of {} do not add up to the account", r.user),
            false,
            None,
        )
    })?;
    let changed: Vec<CreditLot> = lots
        .into_iter()
        .zip(before)
        .filter(|(after, before)| after != before)
        .map(|(after, _)| after)
        .collect();
    let mut entries = expiry.entries;
    entries.push(PlannedEntry {
        kind: LedgerEntryKind::Hold { job: r.job.clone() },
        credits: r.credits,
        at: r.at,
    });
    Ok(ReservePlan {
        hold: CreditHold {
            user: r.user.clone(),
            job: r.job.clone(),
            credits: r.credits,
            state: HoldState::Held,
        },
        day: r.at.utc_day(),
        parts,
        lots: changed,
        account: expiry.account.plus(AccountChange {
            available: -r.credits,
            held: r.credits,
            ..AccountChange::default()
        }),
        entries,
        lots_expired: expiry.lots_expired,
    })
}

/// What a store found of a hold it is asked to end.
#[derive(Clone, Debug)]
pub enum HoldRead {
    /// The job has no hold.
    Missing,
    /// The hold already ended this way.
    Ended(HoldState),
    /// The hold is open: it, the lots it drew from and those lots as they are now.
    Held {
        /// The hold.
        hold: CreditHold,
        /// Its parts.
        parts: Vec<HoldPart>,
        /// The lots the parts name.
        lots: Vec<CreditLot>,
    },
}

/// What ending a hold writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndPlan {
    /// Already ended the asked way: nothing to write.
    AlreadyEnded(HoldState),
    /// The hold ends now.
    End(HoldEnd),
}

impl EndPlan {
    /// The outcome the store reports.
    pub fn outcome(&self) -> HoldOutcome {
        match self {
            EndPlan::AlreadyEnded(s) => HoldOutcome::AlreadyEnded(*s),
            EndPlan::End(end) => HoldOutcome::Ended(end.to),
        }
    }
}

/// The writes of a hold that ends now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldEnd {
    /// The hold's user.
    pub user: crate::ids::UserId,
    /// The job.
    pub job: JobId,
    /// How it ends.
    pub to: HoldState,
    /// The lots of its parts, as they end up.
    pub lots: Vec<CreditLot>,
    /// The account's change.
    pub account: AccountChange,
    /// `settle`; or `refund` (when any credit came back) and one `lapse` per part whose lot
    /// expired.
    pub entries: Vec<PlannedEntry>,
    /// Whether the hold stops counting toward its day's cap (a refund does).
    pub frees_daily_slot: bool,
}

/// Decides the end of a hold `to` at `at`; see the [module](self).
pub fn plan_end_hold(job: &JobId, read: HoldRead, to: HoldState, at: Timestamp) -> Result<EndPlan> {
    if to == HoldState::Held {
        return Err(Error::invalid(
            "end_hold",
            "a hold ends as settled or refunded",
        ));
    }
    let (hold, parts, mut lots) = match read {
        HoldRead::Missing => return Err(Error::not_found("hold", job)),
        HoldRead::Ended(s) if s == to => return Ok(EndPlan::AlreadyEnded(s)),
        HoldRead::Ended(s) => {
            return Err(Error::not_allowed(format!(
                "the hold of job {job} was already {}; it cannot be {} too",
                s.as_str(),
                to.as_str()
            )))
        }
        HoldRead::Held { hold, parts, lots } => (hold, parts, lots),
    };
    let credits = hold.credits;
    let (account, entries) = if to == HoldState::Settled {
        lots::settle(&mut lots, &parts);
        (
            AccountChange {
                held: -credits,
                spent: credits,
                ..AccountChange::default()
            },
            vec![PlannedEntry {
                kind: LedgerEntryKind::Settle { job: job.clone() },
                credits,
                at,
            }],
        )
    } else {
        let split = lots::refund(&mut lots, &parts, at);
        let mut entries = Vec::new();
        if split.returned > 0 {
            entries.push(PlannedEntry {
                kind: LedgerEntryKind::Refund { job: job.clone() },
                credits: split.returned,
                at,
            });
        }
        entries.extend(split.lapsed.into_iter().map(|part| PlannedEntry {
            kind: LedgerEntryKind::Lapse {
                job: job.clone(),
                key: part.lot,
            },
            credits: part.credits,
            at,
        }));
        (
            AccountChange {
                held: -credits,
                available: split.returned,
                expired: credits - split.returned,
                ..AccountChange::default()
            },
            entries,
        )
    };
    Ok(EndPlan::End(HoldEnd {
        user: hold.user,
        job: job.clone(),
        to,
        lots,
        account,
        entries,
        frees_daily_slot: to == HoldState::Refunded,
    }))
}

/// What a store read to decide a grant.
#[derive(Clone, Debug, Default)]
pub struct GrantRead {
    /// The grant kept under the same key, when the key was seen.
    pub kept: Option<KeptGrant>,
    /// Credits granted to the account so far (0 for a user never granted).
    pub granted: i64,
}

/// What a new grant writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantPlan {
    /// The lot it makes.
    pub lot: CreditLot,
    /// The account's change (created when missing).
    pub account: AccountChange,
    /// Its `grant` entry.
    pub entry: PlannedEntry,
}

/// Decides a grant: `Ok(None)` for a duplicate of a grant already applied (nothing to
/// write), an error for a bad grant or another grant under the same key, or the plan.
pub fn plan_grant(grant: &Grant, read: &GrantRead) -> Result<Option<GrantPlan>> {
    check_grant(grant)?;
    if let Some(kept) = &read.kept {
        // The same grant again, or an error naming the key.
        check_regrant(grant, kept)?;
        return Ok(None);
    }
    check_account_ceiling(read.granted, grant)?;
    Ok(Some(GrantPlan {
        lot: CreditLot::from_grant(grant),
        account: AccountChange {
            available: grant.credits,
            granted: grant.credits,
            ..AccountChange::default()
        },
        entry: PlannedEntry {
            kind: LedgerEntryKind::Grant {
                reason: grant.reason,
                key: grant.key.clone(),
            },
            credits: grant.credits,
            at: grant.at,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::ids::UserId;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn reservation(credits: i64, cap: Option<u32>) -> Reservation {
        Reservation {
            user: UserId::new("u"),
            job: JobId::new("j"),
            credits,
            at: at(1_000),
            daily_cap: cap,
        }
    }

    /// An account with one lot of `credits`, expiring at `expires` when given.
    fn read_with(credits: i64, expires: Option<i64>) -> Result<ReserveRead> {
        let mut grant = Grant::purchase(UserId::new("u"), credits, "p1", at(0));
        grant.expires_at = expires.map(at);
        let plan = plan_grant(&grant, &GrantRead::default())?
            .ok_or_else(|| Error::invalid("grant", "a new key is not a duplicate"))?;
        Ok(ReserveRead {
            account: Some(plan.account.apply_to(Balance::default())),
            lots: vec![plan.lot],
            holds_today: 0,
            hold_exists: false,
        })
    }

    fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn a_reservation_is_checked_in_one_order() -> Result<()> {
        // Bad amount before everything.
        let mut read = read_with(5, None)?;
        read.hold_exists = true;
        read.holds_today = 9;
        assert_eq!(
            kind(plan_reserve(&reservation(0, Some(1)), read.clone())),
            ErrorKind::InvalidInput
        );
        // A job's second hold before the cap.
        assert_eq!(
            kind(plan_reserve(&reservation(50, Some(1)), read.clone())),
            ErrorKind::AlreadyExists
        );
        // The cap before the balance: a short user on a capped day hears about the cap.
        read.hold_exists = false;
        assert_eq!(
            kind(plan_reserve(&reservation(50, Some(1)), read.clone())),
            ErrorKind::DailyCapReached
        );
        // Then the balance; a user never granted has 0.
        match plan_reserve(&reservation(50, None), read.clone()) {
            Err(Error::Insufficient { available, needed }) => {
                assert_eq!((available, needed), (5, 50))
            }
            other => panic!("{other:?}"),
        }
        match plan_reserve(&reservation(1, Some(3)), ReserveRead::default()) {
            Err(Error::Insufficient { available, needed }) => {
                assert_eq!((available, needed), (0, 1))
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn credits_expired_by_now_are_written_off_before_the_balance_is_checked() -> Result<()> {
        // 5 credits that expired at 500, asked for at 1000.
        let read = read_with(5, Some(500))?;
        match plan_reserve(&reservation(5, None), read.clone()) {
            Err(Error::Insufficient { available, .. }) => assert_eq!(available, 0),
            other => panic!("{other:?}"),
        }
        // The same lots with a lasting grant beside them: the hold goes through and the plan
        // writes the expiry too.
        let mut read = read;
        let lasting = Grant::purchase(UserId::new("u"), 10, "p2", at(10));
        let more = plan_grant(
            &lasting,
            &GrantRead {
                kept: None,
                granted: 5,
            },
        )?
        .ok_or_else(|| Error::invalid("grant", "new"))?;
        read.account = read.account.map(|b| more.account.apply_to(b));
        read.lots.push(more.lot);
        let plan = plan_reserve(&reservation(4, None), read)?;
        assert_eq!(plan.lots_expired, 1);
        assert_eq!(
            plan.account,
            AccountChange {
                available: -5 - 4,
                held: 4,
                expired: 5,
                ..AccountChange::default()
            }
        );
        assert_eq!(
            plan.lots.len(),
            2,
            "the expired lot and the drawn one: {plan:?}"
        );
        assert!(plan.lots.iter().all(CreditLot::is_consistent));
        assert_eq!(
            plan.entries
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>(),
            ["expire", "hold"]
        );
        Ok(())
    }

    #[test]
    fn a_hold_ends_once_and_only_one_way() -> Result<()> {
        let job = JobId::new("j");
        let plan = plan_reserve(&reservation(4, None), read_with(10, Some(5_000))?)?;
        let held = HoldRead::Held {
            hold: plan.hold.clone(),
            parts: plan.parts.clone(),
            lots: plan.lots.clone(),
        };
        assert_eq!(
            kind(plan_end_hold(
                &job,
                held.clone(),
                HoldState::Held,
                at(2_000)
            )),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(plan_end_hold(
                &job,
                HoldRead::Missing,
                HoldState::Settled,
                at(2_000)
            )),
            ErrorKind::NotFound
        );
        assert_eq!(
            plan_end_hold(
                &job,
                HoldRead::Ended(HoldState::Settled),
                HoldState::Settled,
                at(2_000)
            )?,
            EndPlan::AlreadyEnded(HoldState::Settled)
        );
        assert_eq!(
            kind(plan_end_hold(
                &job,
                HoldRead::Ended(HoldState::Settled),
                HoldState::Refunded,
                at(2_000)
            )),
            ErrorKind::NotAllowed
        );
        // Settled: spent.
        let EndPlan::End(settled) =
            plan_end_hold(&job, held.clone(), HoldState::Settled, at(2_000))?
        else {
            panic!("the hold was open");
        };
        assert_eq!((settled.account.held, settled.account.spent), (-4, 4));
        assert!(!settled.frees_daily_slot);
        // Refunded after the lot expired: the credits lapse, and the day's slot is freed.
        let EndPlan::End(refunded) = plan_end_hold(&job, held, HoldState::Refunded, at(6_000))?
        else {
            panic!("the hold was open");
        };
        assert_eq!(
            refunded.account,
            AccountChange {
                held: -4,
                expired: 4,
                ..AccountChange::default()
            }
        );
        assert_eq!(
            refunded
                .entries
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>(),
            ["lapse"]
        );
        assert!(refunded.frees_daily_slot);
        Ok(())
    }

    #[test]
    fn a_grant_is_new_a_duplicate_or_refused() -> Result<()> {
        let grant = Grant::purchase(UserId::new("u"), 10, "pay-1", at(0));
        let kept = KeptGrant::of(&grant);
        assert!(plan_grant(
            &grant,
            &GrantRead {
                kept: Some(kept.clone()),
                granted: 10
            }
        )?
        .is_none());
        let mut other = grant.clone();
        other.credits = 11;
        assert_eq!(
            kind(plan_grant(
                &other,
                &GrantRead {
                    kept: Some(kept),
                    granted: 10
                }
            )),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(plan_grant(
                &grant,
                &GrantRead {
                    kept: None,
                    granted: crate::ledger::MAX_CREDITS
                }
            )),
            ErrorKind::InvalidInput
        );
        let mut bad = grant;
        bad.credits = -1;
        assert_eq!(
            kind(plan_grant(&bad, &GrantRead::default())),
            ErrorKind::InvalidInput
        );
        Ok(())
    }
}
