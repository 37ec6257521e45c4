//! The credit ledger's records: holds, grants, balances and entries.
//!
//! Credits are `i64` so every backend stores them exactly; amounts passed in must be positive
//! and at most [`MAX_CREDITS`], ids must be ids, and are checked by [`check_amount`],
//! [`check_user`] and [`check_grant`], which every store calls before changing anything.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{JobId, Timestamp, UserId};

/// The most credits one grant adds, and the most an account is ever granted in all (10^15).
/// Every part of a balance is at most what was granted, so no sum a store makes of an
/// account's credits, nor one grant more, can overflow an `i64` (about 9.2 × 10^18).
pub const MAX_CREDITS: i64 = 1_000_000_000_000_000;

/// The longest user id, idempotency key or payment id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Checks that an amount of credits is positive and at most [`MAX_CREDITS`].
pub fn check_amount(credits: i64) -> Result<(), Error> {
    if credits <= 0 {
        return Err(Error::invalid(
            "credits",
            format!("{credits} is not a positive amount"),
        ));
    }
    if credits > MAX_CREDITS {
        return Err(Error::invalid(
            "credits",
            format!("{credits} is more than the most one grant or hold may carry ({MAX_CREDITS})"),
        ));
    }
    Ok(())
}

/// Checks an id the ledger keys rows by: not blank, no control characters (a NUL is refused
/// by Postgres and kept by SQLite: the same id must mean the same on every store), at most
/// [`MAX_ID_BYTES`].
fn check_id(field: &str, id: &str) -> Result<(), Error> {
    if id.trim().is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(field, "contains a control character"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a user id as every store takes it (not blank, no control characters, under `user`).
pub fn check_user(user: &UserId) -> Result<(), Error> {
    check_id("user", user.as_str())
}

/// Checks a grant before it is applied: a positive amount of at most [`MAX_CREDITS`], a user
/// id and an idempotency key that are ids ([`check_user`]), a key that is not jilo's own
/// (`jilo:`, the lots of credits granted before lots), a purchase's payment id, and an expiry
/// after the grant. Every store calls it before changing anything.
pub fn check_grant(grant: &Grant) -> Result<(), Error> {
    check_amount(grant.credits)?;
    check_user(&grant.user)?;
    if grant.key.trim().is_empty() {
        return Err(Error::invalid("key", "an idempotency key is required"));
    }
    check_id("key", &grant.key)?;
    if grant.key.starts_with("jilo:") {
        return Err(Error::invalid(
            "key",
            "keys starting with `jilo:` are jilo's own (the lots of credits granted before lots)",
        ));
    }
    if grant.reason == GrantReason::Purchase {
        let payment = grant.key.strip_prefix("payment:").unwrap_or(&grant.key);
        check_id("payment_id", payment)?;
    }
    if let Some(expires) = grant.expires_at {
        if expires <= grant.at {
            return Err(Error::invalid(
                "expires_at",
                "credits cannot expire before they are granted",
            ));
        }
    }
    Ok(())
}

/// Checks that an account granted `granted` so far may take this grant too (at most
/// [`MAX_CREDITS`] in all).
pub fn check_account_ceiling(granted: i64, grant: &Grant) -> Result<(), Error> {
    if granted > MAX_CREDITS - grant.credits {
        return Err(Error::invalid(
            "credits",
            format!(
                "the account of `{}` would be granted more than {MAX_CREDITS} credits in all",
                grant.user
            ),
        ));
    }
    Ok(())
}

/// A grant as a store keeps it under its key, to tell a repeat from another grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptGrant {
    /// Whose.
    pub user: String,
    /// How many credits.
    pub credits: i64,
    /// Why, as [`GrantReason::as_str`] writes it.
    pub reason: String,
}

impl KeptGrant {
    /// What a store keeps of this grant.
    pub fn of(grant: &Grant) -> Self {
        Self {
            user: grant.user.as_str().to_owned(),
            credits: grant.credits,
            reason: grant.reason.as_str().to_owned(),
        }
    }
}

/// The answer to a grant whose key a store has seen: [`GrantOutcome::Duplicate`] when it is
/// the same grant again (user, credits and reason; its time and an expiry reckoned from it
/// may differ, as a webhook delivered twice arrives twice), and [`Error::InvalidInput`] on
/// `key` when the key names another grant: a key names one grant, so a reused payment id
/// never credits silently nothing. A monthly allowance's key names the user's allowance for that month whatever the
/// plan: another amount under it (a plan changed mid-month) is a duplicate, not an error.
pub fn check_regrant(grant: &Grant, kept: &KeptGrant) -> Result<GrantOutcome, Error> {
    let same_amount =
        kept.credits == grant.credits || grant.reason == GrantReason::MonthlyAllowance;
    let same =
        kept.user == grant.user.as_str() && same_amount && kept.reason == grant.reason.as_str();
    if same {
        Ok(GrantOutcome::Duplicate)
    } else {
        Err(Error::invalid(
            "key",
            format!(
                "`{}` was already used for another grant (another user, amount or reason); a \
                 key names one grant",
                grant.key
            ),
        ))
    }
}

/// A request to hold credits for a job before the provider is called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Whose credits.
    pub user: UserId,
    /// The job the hold pays for; a job has at most one hold.
    pub job: JobId,
    /// How many credits, positive.
    pub credits: i64,
    /// When, which also names the UTC day the daily cap counts against.
    pub at: Timestamp,
    /// The global cap on holds taken per UTC day, checked in the same transaction.
    pub daily_cap: Option<u32>,
}

/// A hold taken on a user's credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditHold {
    /// Whose credits.
    pub user: UserId,
    /// The job it pays for.
    pub job: JobId,
    /// How many credits are held.
    pub credits: i64,
    /// Where the hold is now.
    pub state: HoldState,
}

/// Where a hold is: held, or ended exactly once by a settle or a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Taken, waiting for the job to end.
    Held,
    /// The credits were spent: the video was delivered (or the deadline passed).
    Settled,
    /// The credits went back to the user: the provider failed or the job was cancelled early.
    Refunded,
}

impl HoldState {
    /// The name stores keep.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Settled => "settled",
            HoldState::Refunded => "refunded",
        }
    }
}

/// What a settle or refund did. Both are idempotent: the second call is a no-op and says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldOutcome {
    /// This call ended the hold.
    Ended(HoldState),
    /// The hold had already ended this way; nothing changed.
    AlreadyEnded(HoldState),
}

impl HoldOutcome {
    /// The state the hold is in after the call.
    pub fn state(self) -> HoldState {
        match self {
            HoldOutcome::Ended(s) | HoldOutcome::AlreadyEnded(s) => s,
        }
    }

    /// Whether this call changed the ledger.
    pub fn changed(self) -> bool {
        matches!(self, HoldOutcome::Ended(_))
    }
}

/// Why credits are granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrantReason {
    /// A new account's starting credits (the seed: 100).
    Signup,
    /// A plan's monthly allowance; key it by user and month.
    MonthlyAllowance,
    /// A purchase; key it by the payment id.
    Purchase,
    /// The free retry after a timed-out job; keyed by the job.
    FreeRetry,
    /// An operator's manual correction.
    Adjustment,
}

impl GrantReason {
    /// The name stores keep.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantReason::Signup => "signup",
            GrantReason::MonthlyAllowance => "monthly_allowance",
            GrantReason::Purchase => "purchase",
            GrantReason::FreeRetry => "free_retry",
            GrantReason::Adjustment => "adjustment",
        }
    }

    /// Parses [`GrantReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "signup" => GrantReason::Signup,
            "monthly_allowance" => GrantReason::MonthlyAllowance,
            "purchase" => GrantReason::Purchase,
            "free_retry" => GrantReason::FreeRetry,
            "adjustment" => GrantReason::Adjustment,
            _ => return None,
        })
    }
}

/// Credits added to a user's balance under an idempotency key: the same key twice adds once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Whose balance.
    pub user: UserId,
    /// How many credits, positive.
    pub credits: i64,
    /// Why.
    pub reason: GrantReason,
    /// The idempotency key, unique across all grants: `signup:<user>`, `monthly:<user>:2026-11`,
    /// `payment:<id>`, `free-retry:<job>`.
    pub key: String,
    /// When.
    pub at: Timestamp,
    /// When the credits expire, if they do (a plan's allowance at the end of its period);
    /// `None`: they last.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

impl Grant {
    /// The same grant, expiring at `at`.
    pub fn expiring_at(mut self, at: Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// A new account's starting credits, keyed so a second call adds nothing.
    pub fn signup(user: UserId, credits: i64, at: Timestamp) -> Self {
        let key = format!("signup:{user}");
        Self {
            user,
            credits,
            reason: GrantReason::Signup,
            key,
            at,
            expires_at: None,
        }
    }

    /// A monthly allowance for one calendar month (UTC), keyed by user and month (a refresh
    /// run twice grants once) and expiring at the month's end, so next month's allowance
    /// replaces what is left instead of adding to it. [`crate::plans::Plan::allowance`] makes
    /// the same grant from a plan.
    ///
    /// ```
    /// use jilo_core::plans::PlanPeriod;
    /// use jilo_core::{Grant, Timestamp, UserId};
    ///
    /// let now = Timestamp::from_millis(1_797_336_000_000); // 2026-12-15T12:00:00Z
    /// let december = PlanPeriod::containing(now);
    /// let grant = Grant::monthly(UserId::new("creator-1"), 50, december, now);
    /// assert_eq!(grant.key, "monthly:creator-1:2026-12");
    /// assert_eq!(grant.expires_at, Some(december.end())); // 2027-01-01T00:00:00Z
    /// ```
    pub fn monthly(
        user: UserId,
        credits: i64,
        month: crate::ids::PlanPeriod,
        at: Timestamp,
    ) -> Self {
        let key = format!("monthly:{user}:{}", month.label());
        Self {
            user,
            credits,
            reason: GrantReason::MonthlyAllowance,
            key,
            at,
            expires_at: Some(month.end()),
        }
    }

    /// A purchase, keyed by the payment id so a payment webhook delivered twice credits once.
    pub fn purchase(user: UserId, credits: i64, payment_id: &str, at: Timestamp) -> Self {
        Self {
            user,
            credits,
            reason: GrantReason::Purchase,
            key: format!("payment:{payment_id}"),
            at,
            expires_at: None,
        }
    }

    /// The free retry after a timed-out job, keyed by the job.
    pub fn free_retry(user: UserId, credits: i64, job: &JobId, at: Timestamp) -> Self {
        Self {
            user,
            credits,
            reason: GrantReason::FreeRetry,
            key: format!("free-retry:{job}"),
            at,
            expires_at: None,
        }
    }
}

/// What a grant did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantOutcome {
    /// The credits were added.
    Granted,
    /// The key was seen before; nothing changed.
    Duplicate,
}

/// A user's balance. Always `granted = available + held + spent + expired`, nothing negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Credits free to hold.
    pub available: i64,
    /// Credits under open holds.
    pub held: i64,
    /// Credits settled (spent).
    pub spent: i64,
    /// All credits ever granted.
    pub granted: i64,
    /// Credits that expired unused, or lapsed (held when their lot expired, then refunded).
    #[serde(default)]
    pub expired: i64,
}

impl Balance {
    /// Whether `granted = available + held + spent + expired` with nothing negative.
    pub fn is_consistent(&self) -> bool {
        credits_add_up(
            self.granted,
            [self.available, self.held, self.spent, self.expired],
        )
    }
}

/// Whether credits granted are exactly the sum of where they are now (available, held,
/// spent, expired), none negative: the ledger's invariant, for accounts and lots alike.
pub fn credits_add_up(granted: i64, parts: [i64; 4]) -> bool {
    parts.iter().all(|p| *p >= 0) && granted == parts.iter().sum::<i64>()
}

/// Credits that expire together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringCredits {
    /// How many.
    pub credits: i64,
    /// When they expire.
    pub expires_at: Timestamp,
}

/// A balance as a page shows it: the available credits split into those that expire (soonest
/// first, with their dates) and those that last, and what was spent since the period began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditStatement {
    /// The account.
    pub balance: Balance,
    /// Available credits that expire, soonest first.
    pub expiring: Vec<ExpiringCredits>,
    /// Available credits that do not expire.
    pub lasting: i64,
    /// Credits spent (settled) since `period_start`.
    pub spent_this_period: i64,
    /// Where the period began.
    pub period_start: Timestamp,
}

/// What one ledger row records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum LedgerEntryKind {
    /// Credits added.
    Grant {
        /// Why.
        reason: GrantReason,
        /// The idempotency key.
        key: String,
    },
    /// Credits held for a job.
    Hold {
        /// The job.
        job: JobId,
    },
    /// A hold spent.
    Settle {
        /// The job.
        job: JobId,
    },
    /// A hold returned.
    Refund {
        /// The job.
        job: JobId,
    },
    /// A lot's unheld credits expired (once per lot).
    Expire {
        /// The lot (its grant's key).
        key: String,
    },
    /// Credits a refund could not return: their lot expired while they were held.
    Lapse {
        /// The job refunded.
        job: JobId,
        /// The lot.
        key: String,
    },
}

impl LedgerEntryKind {
    /// The kind's name as stores keep it: `grant`, `hold`, `settle`, `refund`, `expire` or
    /// `lapse`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LedgerEntryKind::Grant { .. } => "grant",
            LedgerEntryKind::Hold { .. } => "hold",
            LedgerEntryKind::Settle { .. } => "settle",
            LedgerEntryKind::Refund { .. } => "refund",
            LedgerEntryKind::Expire { .. } => "expire",
            LedgerEntryKind::Lapse { .. } => "lapse",
        }
    }

    /// The job the entry is about (holds, settles, refunds, lapses).
    pub fn job(&self) -> Option<&JobId> {
        match self {
            LedgerEntryKind::Hold { job }
            | LedgerEntryKind::Settle { job }
            | LedgerEntryKind::Refund { job }
            | LedgerEntryKind::Lapse { job, .. } => Some(job),
            LedgerEntryKind::Grant { .. } | LedgerEntryKind::Expire { .. } => None,
        }
    }

    /// The grant key (the lot) the entry is about (grants, expiries, lapses).
    pub fn grant_key(&self) -> Option<&str> {
        match self {
            LedgerEntryKind::Grant { key, .. }
            | LedgerEntryKind::Expire { key }
            | LedgerEntryKind::Lapse { key, .. } => Some(key),
            LedgerEntryKind::Hold { .. }
            | LedgerEntryKind::Settle { .. }
            | LedgerEntryKind::Refund { .. } => None,
        }
    }

    /// A grant's reason.
    pub fn reason(&self) -> Option<GrantReason> {
        match self {
            LedgerEntryKind::Grant { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// A kind of ledger entry, to filter a history page by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// Credits added.
    Grant,
    /// Credits held for a job.
    Hold,
    /// A hold spent.
    Settle,
    /// A hold returned.
    Refund,
    /// A lot's credits expired.
    Expire,
    /// Held credits that lapsed with their lot.
    Lapse,
}

impl EntryKind {
    /// Every kind.
    pub const ALL: [EntryKind; 6] = [
        EntryKind::Grant,
        EntryKind::Hold,
        EntryKind::Settle,
        EntryKind::Refund,
        EntryKind::Expire,
        EntryKind::Lapse,
    ];

    /// The name stores keep ([`LedgerEntryKind::as_str`]).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Grant => "grant",
            EntryKind::Hold => "hold",
            EntryKind::Settle => "settle",
            EntryKind::Refund => "refund",
            EntryKind::Expire => "expire",
            EntryKind::Lapse => "lapse",
        }
    }

    /// The kind of an entry.
    pub fn of(kind: &LedgerEntryKind) -> Self {
        match kind {
            LedgerEntryKind::Grant { .. } => EntryKind::Grant,
            LedgerEntryKind::Hold { .. } => EntryKind::Hold,
            LedgerEntryKind::Settle { .. } => EntryKind::Settle,
            LedgerEntryKind::Refund { .. } => EntryKind::Refund,
            LedgerEntryKind::Expire { .. } => EntryKind::Expire,
            LedgerEntryKind::Lapse { .. } => EntryKind::Lapse,
        }
    }
}

/// The most entries one history page holds.
pub const MAX_PAGE: u32 = 500;

/// Where a history page ends: the next page starts after it. Shown as `h{seq}` (safe in a
/// URL); only the store that made it reads it meaningfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HistoryCursor(i64);

impl HistoryCursor {
    /// The cursor that continues below entry `seq`.
    pub fn before_seq(seq: i64) -> Self {
        Self(seq)
    }

    /// The entries of the next page have a `seq` below this.
    pub fn seq(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "h{}", self.0)
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        s.strip_prefix('h')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(HistoryCursor)
            .ok_or_else(|| Error::invalid("cursor", format!("`{s}` is not a history cursor")))
    }
}

/// One page of a user's history, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Continue below this cursor (the previous page's [`HistoryPage::next`]); `None` for the
    /// newest entries.
    pub before: Option<HistoryCursor>,
    /// How many entries, 1 to [`MAX_PAGE`].
    pub limit: u32,
    /// Only these kinds; empty for all.
    pub kinds: Vec<EntryKind>,
}

impl HistoryQuery {
    /// The newest `limit` entries of every kind.
    pub fn newest(limit: u32) -> Self {
        Self {
            before: None,
            limit,
            kinds: Vec::new(),
        }
    }

    /// The same query continued below `cursor`.
    pub fn after(mut self, cursor: HistoryCursor) -> Self {
        self.before = Some(cursor);
        self
    }

    /// Only entries of these kinds.
    pub fn of_kinds(mut self, kinds: impl IntoIterator<Item = EntryKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Checks the page size.
    pub fn check(&self) -> Result<(), Error> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(Error::invalid(
                "limit",
                format!("{} entries a page; 1 to {MAX_PAGE} are allowed", self.limit),
            ));
        }
        Ok(())
    }

    /// Whether an entry of this kind is shown.
    pub fn shows(&self, kind: &LedgerEntryKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&EntryKind::of(kind))
    }
}

/// A page of history and where the next one starts (`None`: this was the oldest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Newest first.
    pub entries: Vec<LedgerEntry>,
    /// The cursor of the next (older) page, if there is one.
    pub next: Option<HistoryCursor>,
}

impl HistoryPage {
    /// A page from up to `limit + 1` entries read newest first: the extra one only says that
    /// another page follows.
    pub fn from_overfetch(mut entries: Vec<LedgerEntry>, limit: u32) -> Self {
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next = more
            .then(|| entries.last().map(|e| HistoryCursor(e.seq)))
            .flatten();
        Self { entries, next }
    }
}

/// One row of a user's ledger. Every credit change is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the store's ledger, increasing.
    pub seq: i64,
    /// Whose credits.
    pub user: UserId,
    /// What happened.
    pub kind: LedgerEntryKind,
    /// How many credits moved (positive).
    pub credits: i64,
    /// When.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive() {
        assert!(check_amount(1).is_ok());
        assert!(matches!(check_amount(0), Err(Error::InvalidInput { .. })));
        assert!(matches!(check_amount(-5), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn grant_keys_name_their_source() {
        let at = Timestamp::from_millis(0);
        assert_eq!(Grant::signup("u".into(), 100, at).key, "signup:u");
        let november = crate::ids::PlanPeriod::containing(Timestamp::from_millis(
            1_793_577_600_000, // 2026-11-02
        ));
        let monthly = Grant::monthly("u".into(), 50, november, at);
        assert_eq!(monthly.key, "monthly:u:2026-11");
        assert_eq!(monthly.expires_at, Some(november.end()));
        assert_eq!(
            Grant::purchase("u".into(), 50, "pi_1", at).key,
            "payment:pi_1"
        );
        assert_eq!(
            Grant::free_retry("u".into(), 15, &JobId::new("j"), at).key,
            "free-retry:j"
        );
        for r in [
            GrantReason::Signup,
            GrantReason::MonthlyAllowance,
            GrantReason::Purchase,
            GrantReason::FreeRetry,
            GrantReason::Adjustment,
        ] {
            assert_eq!(GrantReason::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn a_key_names_one_grant_and_the_ceiling_holds() {
        let at = Timestamp::from_millis(1_000);
        let alice = UserId::new("alice");
        let paid = Grant::purchase(alice.clone(), 50, "pi_1", at);
        let kept = KeptGrant::of(&paid);
        let later = Grant {
            at: Timestamp::from_millis(9_000),
            ..paid.clone()
        };
        assert!(matches!(
            check_regrant(&later, &kept),
            Ok(GrantOutcome::Duplicate)
        ));
        let bob = Grant::purchase(UserId::new("bob"), 50, "pi_1", at);
        assert!(
            matches!(check_regrant(&bob, &kept), Err(Error::InvalidInput { ref field, .. }) if field == "key")
        );
        let more = Grant::purchase(alice.clone(), 51, "pi_1", at);
        assert!(check_regrant(&more, &kept).is_err());
        // An expiry reckoned from the delivery's time may differ: still the same grant.
        let redelivered = paid.clone().expiring_at(Timestamp::from_millis(5_000));
        assert!(matches!(
            check_regrant(&redelivered, &kept),
            Ok(GrantOutcome::Duplicate)
        ));
        // A monthly allowance's key is the month's, whatever the plan's amount.
        let month = crate::ids::PlanPeriod::containing(at);
        let basic = Grant::monthly(alice.clone(), 50, month, at);
        let pro = Grant::monthly(alice.clone(), 200, month, at);
        assert!(matches!(
            check_regrant(&pro, &KeptGrant::of(&basic)),
            Ok(GrantOutcome::Duplicate)
        ));
        // The ceiling.
        assert!(check_account_ceiling(MAX_CREDITS - 50, &paid).is_ok());
        assert!(check_account_ceiling(MAX_CREDITS - 49, &paid).is_err());
        assert!(check_amount(MAX_CREDITS).is_ok());
        assert!(check_amount(MAX_CREDITS + 1).is_err());
        assert!(check_amount(i64::MAX).is_err());
        for bad in ["", " ", "a\0b", "tab\tbed"] {
            assert!(check_user(&UserId::new(bad)).is_err(), "{bad:?}");
        }
        assert!(check_user(&UserId::new("x".repeat(MAX_ID_BYTES + 1))).is_err());
        assert!(check_grant(&Grant::purchase(alice, 5, " ", at)).is_err());
    }
}
