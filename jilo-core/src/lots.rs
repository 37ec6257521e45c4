//! Credit lots: each grant is a lot that may expire. Holds draw from the lots that expire
//! soonest (lasting lots last); settling spends what each lot gave; a refund returns each
//! credit to its lot, and a credit whose lot expired while it was held lapses instead. A lot's
//! unheld credits expire once, at its expiry.
//!
//! These are the rules as pure functions over a user's lots, so every store applies the same
//! ones. Every lot keeps `granted = available + held + spent + expired`.

use serde::{Deserialize, Serialize};

use crate::ids::{Timestamp, UserId};
use crate::ledger::Grant;

/// One grant's credits and where they are now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditLot {
    /// The grant's idempotency key.
    pub key: String,
    /// Whose.
    pub user: UserId,
    /// Credits granted.
    pub granted: i64,
    /// Free to hold.
    pub available: i64,
    /// Under open holds.
    pub held: i64,
    /// Spent by settled holds.
    pub spent: i64,
    /// Expired unused, or lapsed when refunded after the expiry.
    pub expired: i64,
    /// When the lot expires; `None` lasts.
    pub expires_at: Option<Timestamp>,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// Whether its expiry was written (once per lot).
    pub expiry_written: bool,
}

impl CreditLot {
    /// The lot a grant makes.
    pub fn from_grant(grant: &Grant) -> Self {
        Self {
            key: grant.key.clone(),
            user: grant.user.clone(),
            granted: grant.credits,
            available: grant.credits,
            held: 0,
            spent: 0,
            expired: 0,
            expires_at: grant.expires_at,
            granted_at: grant.at,
            expiry_written: false,
        }
    }

    /// Whether the lot has expired at `at`.
    pub fn expired_at(&self, at: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= at)
    }

    /// `granted = available + held + spent + expired`, nothing negative.
    pub fn is_consistent(&self) -> bool {
        crate::ledger::credits_add_up(
            self.granted,
            [self.available, self.held, self.spent, self.expired],
        )
    }
}

/// Credits a hold took from one lot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HoldPart {
    /// The lot's key.
    pub lot: String,
    /// How many.
    pub credits: i64,
}

/// The order holds draw in: soonest expiry first, lasting lots last, older first.
fn draw_order(a: &CreditLot, b: &CreditLot) -> std::cmp::Ordering {
    let expiry = |l: &CreditLot| (l.expires_at.is_none(), l.expires_at);
    expiry(a)
        .cmp(&expiry(b))
        .then(a.granted_at.cmp(&b.granted_at))
        .then(a.key.cmp(&b.key))
}

/// Credits live (not expired) at `at`.
pub fn available_at(lots: &[CreditLot], at: Timestamp) -> i64 {
    lots.iter()
        .filter(|l| !l.expired_at(at))
        .map(|l| l.available)
        .sum()
}

/// Takes `credits` from the live lots, soonest expiry first; `None` (changing nothing) when
/// they hold fewer.
pub fn draw(lots: &mut [CreditLot], credits: i64, at: Timestamp) -> Option<Vec<HoldPart>> {
    if credits <= 0 || available_at(lots, at) < credits {
        return None;
    }
    let mut order: Vec<usize> = (0..lots.len())
        .filter(|&i| !lots[i].expired_at(at) && lots[i].available > 0)
        .collect();
    order.sort_by(|&a, &b| draw_order(&lots[a], &lots[b]));
    let mut left = credits;
    let mut parts = Vec::new();
    for i in order {
        if left == 0 {
            break;
        }
        let take = lots[i].available.min(left);
        lots[i].available -= take;
        lots[i].held += take;
        left -= take;
        parts.push(HoldPart {
            lot: lots[i].key.clone(),
            credits: take,
        });
    }
    Some(parts)
}

/// Spends a hold's parts.
pub fn settle(lots: &mut [CreditLot], parts: &[HoldPart]) {
    for part in parts {
        if let Some(lot) = lots.iter_mut().find(|l| l.key == part.lot) {
            lot.held -= part.credits;
            lot.spent += part.credits;
        }
    }
}

/// What a refund did: credits returned to their lots, and the parts that lapsed because
/// their lot had expired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefundSplit {
    /// Back to available.
    pub returned: i64,
    /// Gone with their expired lot.
    pub lapsed: Vec<HoldPart>,
}

/// Returns a hold's parts to their lots at `at`; a part whose lot has expired lapses, as does
/// one whose lot's expiry was already written (a refund dated before the expiry but applied
/// after it: the lot is closed).
pub fn refund(lots: &mut [CreditLot], parts: &[HoldPart], at: Timestamp) -> RefundSplit {
    let mut split = RefundSplit::default();
    for part in parts {
        if let Some(lot) = lots.iter_mut().find(|l| l.key == part.lot) {
            lot.held -= part.credits;
            if lot.expired_at(at) || lot.expiry_written {
                lot.expired += part.credits;
                split.lapsed.push(part.clone());
            } else {
                lot.available += part.credits;
                split.returned += part.credits;
            }
        }
    }
    split
}

/// Credits one lot lost to its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    /// The lot's key.
    pub lot: String,
    /// How many.
    pub credits: i64,
    /// When they expired (the lot's expiry, whenever the entry is written).
    pub at: Timestamp,
}

/// Expires, once per lot, the unheld credits of every lot whose expiry is at or before `at`;
/// returns what each expired (lots with nothing left unheld are marked without a part).
pub fn expire(lots: &mut [CreditLot], at: Timestamp) -> Vec<Expired> {
    let mut gone = Vec::new();
    for lot in lots.iter_mut() {
        if lot.expiry_written || !lot.expired_at(at) {
            continue;
        }
        lot.expiry_written = true;
        if lot.available > 0 {
            gone.push(Expired {
                lot: lot.key.clone(),
                credits: lot.available,
                at: lot.expires_at.unwrap_or(at),
            });
            lot.expired += lot.available;
            lot.available = 0;
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lot(key: &str, credits: i64, expires: Option<i64>, granted: i64) -> CreditLot {
        let mut g = Grant::purchase(
            UserId::new("u"),
            credits,
            key,
            Timestamp::from_millis(granted),
        );
        g.key = key.to_owned();
        g.expires_at = expires.map(Timestamp::from_millis);
        CreditLot::from_grant(&g)
    }

    #[test]
    fn holds_take_the_soonest_expiring_credits_first() {
        let mut lots = vec![
            lot("lasting", 100, None, 0),
            lot("december", 5, Some(2_000), 10),
            lot("november", 3, Some(1_000), 20),
        ];
        let at = Timestamp::from_millis(500);
        let parts = draw(&mut lots, 10, at).unwrap_or_default();
        assert_eq!(
            parts,
            vec![
                HoldPart {
                    lot: "november".into(),
                    credits: 3
                },
                HoldPart {
                    lot: "december".into(),
                    credits: 5
                },
                HoldPart {
                    lot: "lasting".into(),
                    credits: 2
                },
            ]
        );
        assert!(draw(&mut lots, 99, at).is_none(), "98 left");
        assert!(lots.iter().all(CreditLot::is_consistent));
        // November has expired by the refund: its 3 lapse, the rest come back.
        let split = refund(&mut lots, &parts, Timestamp::from_millis(1_500));
        assert_eq!(split.returned, 7);
        assert_eq!(
            split.lapsed,
            vec![HoldPart {
                lot: "november".into(),
                credits: 3
            }]
        );
        assert_eq!(lots[2].expired, 3);
        assert!(lots.iter().all(CreditLot::is_consistent));
        // Expiry: once per lot.
        let gone = expire(&mut lots, Timestamp::from_millis(2_000));
        assert_eq!(
            gone,
            vec![Expired {
                lot: "december".into(),
                credits: 5,
                at: Timestamp::from_millis(2_000),
            }],
            "november had nothing unheld left; december's 5 expire"
        );
        assert!(
            expire(&mut lots, Timestamp::from_millis(9_000)).is_empty(),
            "once"
        );
        assert!(lots
            .iter()
            .all(|l| l.expired_at(Timestamp::from_millis(2_000)) == l.expiry_written));
        assert!(
            draw(&mut lots, 100, Timestamp::from_millis(2_000)).is_some(),
            "the lasting 100"
        );
    }

    #[test]
    fn a_refund_applied_after_the_expiry_was_written_lapses() {
        let mut lots = vec![lot("month", 10, Some(500), 0), lot("lasting", 10, None, 0)];
        let parts = draw(&mut lots, 12, Timestamp::from_millis(100)).unwrap_or_default();
        // Another process wrote the month's expiry at 900 ...
        assert_eq!(
            expire(&mut lots, Timestamp::from_millis(900)).len(),
            0,
            "all of it held"
        );
        assert!(lots[0].expiry_written);
        // ... then a refund dated 400 arrives: the month's part lapses all the same.
        let split = refund(&mut lots, &parts, Timestamp::from_millis(400));
        assert_eq!(split.returned, 2);
        assert_eq!(split.lapsed.iter().map(|p| p.credits).sum::<i64>(), 10);
        assert_eq!(available_at(&lots, Timestamp::from_millis(600)), 10);
        assert!(lots.iter().all(CreditLot::is_consistent));
    }

    proptest! {
        /// Any sequence of grants, holds, settles, refunds and expiries keeps every lot
        /// consistent, never draws from an expired lot, and the totals add up.
        #[test]
        fn lots_stay_consistent(
            grants in proptest::collection::vec((1i64..50, proptest::option::of(0i64..100)), 1..6),
            ops in proptest::collection::vec((0u8..4, 1i64..30, 0i64..120), 0..40),
        ) {
            let mut lots: Vec<CreditLot> = grants
                .iter()
                .enumerate()
                .map(|(i, (c, e))| lot(&format!("l{i}"), *c, *e, i as i64))
                .collect();
            let total: i64 = lots.iter().map(|l| l.granted).sum();
            let mut holds: Vec<Vec<HoldPart>> = Vec::new();
            let mut now = 0i64;
            for (op, n, dt) in ops {
                now += dt;
                let at = Timestamp::from_millis(now);
                match op {
                    0 => {
                        let live_before = available_at(&lots, at);
                        match draw(&mut lots, n, at) {
                            Some(parts) => {
                                for p in &parts {
                                    let l = lots.iter().find(|l| l.key == p.lot);
                                    prop_assert!(l.is_some_and(|l| !l.expired_at(at)));
                                }
                                prop_assert_eq!(parts.iter().map(|p| p.credits).sum::<i64>(), n);
                                holds.push(parts);
                            }
                            None => prop_assert!(live_before < n),
                        }
                    }
                    1 if !holds.is_empty() => {
                        let parts = holds.remove(0);
                        settle(&mut lots, &parts);
                    }
                    2 if !holds.is_empty() => {
                        let parts = holds.remove(0);
                        refund(&mut lots, &parts, at);
                    }
                    _ => {
                        expire(&mut lots, at);
                    }
                }
                prop_assert!(lots.iter().all(CreditLot::is_consistent));
                let sum: i64 = lots.iter().map(|l| l.available + l.held + l.spent + l.expired).sum();
                prop_assert_eq!(sum, total);
            }
        }
    }
}
