//! An in-memory [`QuotaStore`] and [`JobStore`] with the same contract as the SQL stores.
//!
//! One mutex guards the ledger and the jobs together, which is what makes a job and its hold
//! one atomic write and every reservation exact under any number of tasks. It is for tests,
//! examples and single-process hosts that need no durability.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::alert::{AlertClaim, ProviderCooling};
use crate::creative::ViralAnalysis;
use crate::error::{Error, Result};
use crate::events::EventHub;
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::job::{
    ClaimRequest, DeliveryOutcome, DeliveryRecord, Job, JobEvent, JobUpdate, LeaseRenewal,
};
use crate::ledger::{
    check_grant, Balance, CreditHold, Grant, GrantOutcome, HistoryPage, HistoryQuery, HoldState,
    KeptGrant, LedgerEntry, LedgerEntryKind, Reservation,
};
use crate::lots::{CreditLot, HoldPart};
use crate::money::{
    self, AccountChange, EndPlan, GrantPlan, GrantRead, HoldRead, PlannedEntry, ReserveRead,
};
use crate::publish::{
    ChannelConnection, HeldPublication, Publication, PublicationBegun, PublicationClaim,
    PublicationKey, PublicationOutcome, PublicationState, StatsReading, UploadCheckpoint,
};
use crate::traits::{
    decide_source_run, CachedSearch, ChannelStore, KeptSourceRun, PublicationStore, SourceRunClaim,
    SourceRunState, TrendCache,
};
use crate::traits::{AlertStore, JobStore, QuotaStore};
use crate::trend::Platform;

#[derive(Debug)]
struct HoldRow {
    hold: CreditHold,
    day: i64,
    /// The lots it drew from.
    parts: Vec<HoldPart>,
}

#[derive(Debug, Default)]
struct State {
    balances: HashMap<UserId, Balance>,
    lots: HashMap<UserId, Vec<CreditLot>>,
    grant_keys: HashMap<String, KeptGrant>,
    holds: HashMap<JobId, HoldRow>,
    holds_per_day: HashMap<i64, u32>,
    ledger: Vec<LedgerEntry>,
    jobs: HashMap<JobId, Job>,
    by_request: HashMap<(ProviderId, String), JobId>,
    deliveries: HashSet<(ProviderId, String)>,
    alerts: HashMap<String, Timestamp>,
    cooling: HashMap<ProviderId, Timestamp>,
    searches: HashMap<String, CachedSearch>,
    source_runs: HashMap<String, KeptSourceRun>,
    analyses: HashMap<(Platform, String), ViralAnalysis>,
    channels: HashMap<(UserId, String), ChannelConnection>,
    publications: HashMap<(JobId, String), Publication>,
}

impl State {
    fn push(&mut self, user: &UserId, kind: LedgerEntryKind, credits: i64, at: Timestamp) {
        let seq = i64::try_from(self.ledger.len()).unwrap_or(i64::MAX) + 1;
        self.ledger.push(LedgerEntry {
            seq,
            user: user.clone(),
            kind,
            credits,
            at,
        });
    }

    /// Applies an account change (the account is made when missing).
    fn change_account(&mut self, user: &UserId, change: AccountChange) {
        let b = self.balances.entry(user.clone()).or_default();
        *b = change.apply_to(*b);
    }

    /// Stores each lot as a plan left it.
    fn save_lots(&mut self, user: &UserId, changed: &[CreditLot]) {
        let lots = self.lots.entry(user.clone()).or_default();
        for lot in changed {
            match lots.iter_mut().find(|l| l.key == lot.key) {
                Some(l) => *l = lot.clone(),
                None => lots.push(lot.clone()),
            }
        }
    }

    fn push_entries(&mut self, user: &UserId, entries: Vec<PlannedEntry>) {
        for e in entries {
            self.push(user, e.kind, e.credits, e.at);
        }
    }

    fn plan_grant(&self, grant: &Grant) -> Result<Option<GrantPlan>> {
        money::plan_grant(
            grant,
            &GrantRead {
                kept: self.grant_keys.get(&grant.key).cloned(),
                granted: self.balances.get(&grant.user).map_or(0, |b| b.granted),
            },
        )
    }

    fn grant(&mut self, grant: &Grant) -> Result<GrantOutcome> {
        let Some(plan) = self.plan_grant(grant)? else {
            return Ok(GrantOutcome::Duplicate);
        };
        self.apply_grant(grant, plan);
        Ok(GrantOutcome::Granted)
    }

    fn apply_grant(&mut self, grant: &Grant, plan: GrantPlan) {
        self.grant_keys
            .insert(grant.key.clone(), KeptGrant::of(grant));
        self.change_account(&grant.user, plan.account);
        self.save_lots(&grant.user, &[plan.lot]);
        self.push_entries(&grant.user, vec![plan.entry]);
    }

    /// Writes the expiry of the user's lots due by `at`; returns how many lots expired credits.
    fn expire_lots(&mut self, user: &UserId, at: Timestamp) -> u32 {
        let Some(lots) = self.lots.get(user) else {
            return 0;
        };
        let plan = money::plan_expiry(lots, at);
        if plan.is_empty() {
            return 0;
        }
        self.change_account(user, plan.account);
        self.save_lots(user, &plan.lots);
        self.push_entries(user, plan.entries);
        plan.lots_expired
    }

    fn reserve(&mut self, r: &Reservation) -> Result<CreditHold> {
        let day = r.at.utc_day();
        let read = ReserveRead {
            account: self.balances.get(&r.user).copied(),
            lots: self.lots.get(&r.user).cloned().unwrap_or_default(),
            holds_today: self.holds_per_day.get(&day).copied().unwrap_or(0),
            hold_exists: self.holds.contains_key(&r.job),
        };
        let plan = money::plan_reserve(r, read)?;
        *self.holds_per_day.entry(plan.day).or_insert(0) += 1;
        self.change_account(&r.user, plan.account);
        self.save_lots(&r.user, &plan.lots);
        self.holds.insert(
            r.job.clone(),
            HoldRow {
                hold: plan.hold.clone(),
                day: plan.day,
                parts: plan.parts,
            },
        );
        self.push_entries(&r.user, plan.entries);
        Ok(plan.hold)
    }

    fn plan_end_hold(&self, job: &JobId, to: HoldState, at: Timestamp) -> Result<EndPlan> {
        let read = match self.holds.get(job) {
            None => HoldRead::Missing,
            Some(row) if row.hold.state != HoldState::Held => HoldRead::Ended(row.hold.state),
            Some(row) => HoldRead::Held {
                hold: row.hold.clone(),
                lots: self
                    .lots
                    .get(&row.hold.user)
                    .map(|lots| {
                        lots.iter()
                            .filter(|l| row.parts.iter().any(|p| p.lot == l.key))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
                parts: row.parts.clone(),
            },
        };
        money::plan_end_hold(job, read, to, at)
    }

    fn apply_end(&mut self, job: &JobId, plan: EndPlan) {
        let EndPlan::End(end) = plan else {
            return;
        };
        let Some(row) = self.holds.get_mut(job) else {
            return;
        };
        row.hold.state = end.to;
        let day = row.day;
        if end.frees_daily_slot {
            if let Some(n) = self.holds_per_day.get_mut(&day) {
                *n = n.saturating_sub(1);
            }
        }
        self.change_account(&end.user, end.account);
        self.save_lots(&end.user, &end.lots);
        self.push_entries(&end.user, end.entries);
    }
}

/// The in-memory store. Cheap to clone? No: share it behind an `Arc`.
#[derive(Debug)]
pub struct InMemoryStore {
    state: Mutex<State>,
    events: EventHub,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            events: EventHub::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every write checks before it mutates, so a poisoned lock holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, job: &Job) {
        self.events.publish(job.event());
    }
}

#[async_trait]
impl QuotaStore for InMemoryStore {
    async fn grant(&self, grant: &Grant) -> Result<GrantOutcome> {
        check_grant(grant)?;
        self.lock().grant(grant)
    }

    async fn hold(&self, job: &JobId) -> Result<CreditHold> {
        self.lock()
            .holds
            .get(job)
            .map(|r| r.hold.clone())
            .ok_or_else(|| Error::not_found("hold", job))
    }

    async fn balance(&self, user: &UserId) -> Result<Balance> {
        self.lock()
            .balances
            .get(user)
            .copied()
            .ok_or_else(|| Error::not_found("user", user))
    }

    async fn history(&self, user: &UserId) -> Result<Vec<LedgerEntry>> {
        let s = self.lock();
        if !s.balances.contains_key(user) {
            return Err(Error::not_found("user", user));
        }
        Ok(s.ledger
            .iter()
            .filter(|e| &e.user == user)
            .cloned()
            .collect())
    }

    async fn statement(
        &self,
        user: &UserId,
        at: Timestamp,
        period_start: Timestamp,
    ) -> Result<crate::ledger::CreditStatement> {
        let mut s = self.lock();
        if !s.balances.contains_key(user) {
            return Err(Error::not_found("user", user));
        }
        s.expire_lots(user, at);
        let balance = s.balances.get(user).copied().unwrap_or_default();
        let mut by_date: std::collections::BTreeMap<Timestamp, i64> = Default::default();
        let mut lasting = 0;
        for lot in s.lots.get(user).map(Vec::as_slice).unwrap_or_default() {
            match lot.expires_at {
                Some(when) if lot.available > 0 => {
                    *by_date.entry(when).or_insert(0) += lot.available
                }
                Some(_) => {}
                None => lasting += lot.available,
            }
        }
        let spent_this_period = s
            .ledger
            .iter()
            .filter(|e| {
                &e.user == user
                    && e.at >= period_start
                    && matches!(e.kind, LedgerEntryKind::Settle { .. })
            })
            .map(|e| e.credits)
            .sum();
        Ok(crate::ledger::CreditStatement {
            balance,
            expiring: by_date
                .into_iter()
                .map(|(expires_at, credits)| crate::ledger::ExpiringCredits {
                    credits,
                    expires_at,
                })
                .collect(),
            lasting,
            spent_this_period,
            period_start,
        })
    }

    async fn expire_credits(&self, now: Timestamp) -> Result<u32> {
        let mut s = self.lock();
        let users: Vec<UserId> = s.lots.keys().cloned().collect();
        Ok(users.iter().map(|u| s.expire_lots(u, now)).sum())
    }

    async fn expire_user_credits(&self, user: &UserId, now: Timestamp) -> Result<u32> {
        let mut s = self.lock();
        if !s.balances.contains_key(user) {
            return Err(Error::not_found("user", user));
        }
        Ok(s.expire_lots(user, now))
    }

    async fn history_page(&self, user: &UserId, query: &HistoryQuery) -> Result<HistoryPage> {
        query.check()?;
        let s = self.lock();
        if !s.balances.contains_key(user) {
            return Err(Error::not_found("user", user));
        }
        let below = query.before.map_or(i64::MAX, |c| c.seq());
        let entries: Vec<LedgerEntry> = s
            .ledger
            .iter()
            .rev()
            .filter(|e| &e.user == user && e.seq < below && query.shows(&e.kind))
            .take(query.limit as usize + 1)
            .cloned()
            .collect();
        Ok(HistoryPage::from_overfetch(entries, query.limit))
    }
}

#[async_trait]
impl JobStore for InMemoryStore {
    async fn create(&self, job: &Job, hold: &Reservation) -> Result<CreditHold> {
        job.check_hold(hold)?;
        let stored = {
            let mut s = self.lock();
            if s.jobs.contains_key(&job.id) {
                return Err(Error::already_exists("job", &job.id));
            }
            let taken = s.reserve(hold)?;
            let mut stored = job.clone();
            stored.version = 1;
            if let (Some(p), Some(r)) = (stored.provider(), &stored.provider_request_id) {
                let key = (p.clone(), r.clone());
                s.by_request.insert(key, stored.id.clone());
            }
            s.jobs.insert(stored.id.clone(), stored.clone());
            (taken, stored)
        };
        self.publish(&stored.1);
        Ok(stored.0)
    }

    async fn job(&self, id: &JobId) -> Result<Job> {
        self.lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("job", id))
    }

    async fn update(&self, update: &JobUpdate) -> Result<Job> {
        let stored = {
            let mut s = self.lock();
            let current = s
                .jobs
                .get(&update.job.id)
                .ok_or_else(|| Error::not_found("job", &update.job.id))?;
            if current.version != update.expected_version || current.state != update.expected_state
            {
                return Err(Error::lost_race(format!(
                    "job {} is at version {} ({}), not {} ({})",
                    current.id,
                    current.version,
                    current.state,
                    update.expected_version,
                    update.expected_state
                )));
            }
            // Every change planned first; nothing is written unless all of them can be.
            let end = match update.end_hold {
                Some(to) => Some(s.plan_end_hold(&update.job.id, to, update.job.updated_at)?),
                None => None,
            };
            let grant = match &update.grant {
                Some(g) => {
                    check_grant(g)?;
                    if !s.balances.contains_key(&g.user) {
                        return Err(Error::not_found("user", &g.user));
                    }
                    s.plan_grant(g)?.map(|plan| (g, plan))
                }
                None => None,
            };
            if let Some(d) = &update.delivery {
                if s.deliveries
                    .contains(&(d.provider.clone(), d.delivery_id.clone()))
                {
                    return Err(Error::already_exists("delivery", &d.delivery_id));
                }
            }
            // Checks done: the hold, the grant, the delivery and the job change together.
            if let Some(d) = &update.delivery {
                s.deliveries
                    .insert((d.provider.clone(), d.delivery_id.clone()));
            }
            if let Some(end) = end {
                s.apply_end(&update.job.id, end);
            }
            if let Some((g, plan)) = grant {
                s.apply_grant(g, plan);
            }
            let mut next = update.job.clone();
            next.version = update.expected_version + 1;
            if let (Some(p), Some(r)) = (next.provider(), &next.provider_request_id) {
                let key = (p.clone(), r.clone());
                s.by_request.insert(key, next.id.clone());
            }
            s.jobs.insert(next.id.clone(), next.clone());
            next
        };
        self.publish(&stored);
        Ok(stored)
    }

    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Job>> {
        let s = self.lock();
        let found = s
            .by_request
            .get(&(provider.clone(), request_id.to_owned()))
            .and_then(|id| s.jobs.get(id))
            .cloned();
        Ok(found)
    }

    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>> {
        let s = self.lock();
        let mut jobs: Vec<Job> = s
            .jobs
            .values()
            .filter(|j| &j.user == user)
            .cloned()
            .collect();
        jobs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn jobs_created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Job>> {
        let s = self.lock();
        let mut jobs: Vec<Job> = s
            .jobs
            .values()
            .filter(|j| j.created_at >= from && j.created_at < to)
            .cloned()
            .collect();
        jobs.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome> {
        let mut s = self.lock();
        if !s.jobs.contains_key(&delivery.job) {
            return Err(Error::not_found("job", &delivery.job));
        }
        let key = (delivery.provider.clone(), delivery.delivery_id.clone());
        Ok(if s.deliveries.insert(key) {
            DeliveryOutcome::New
        } else {
            DeliveryOutcome::Duplicate
        })
    }

    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>> {
        let now = claim.now;
        let mut s = self.lock();
        let mut due: Vec<&mut Job> = s
            .jobs
            .values_mut()
            .filter(|j| {
                !j.state.is_terminal()
                    && (j.next_check_at.is_some_and(|t| t <= now)
                        || (j.deadline_at <= now && j.state.awaits_result()))
                    && j.lease_until.is_none_or(|t| t <= now)
            })
            .collect();
        due.sort_by_key(|j| j.next_check_at.unwrap_or(j.deadline_at));
        due.truncate(claim.limit);
        Ok(due
            .into_iter()
            .map(|j| {
                j.lease_owner = Some(claim.worker.clone());
                j.lease_until = Some(now.plus(claim.lease));
                j.clone()
            })
            .collect())
    }

    async fn renew_lease(&self, renewal: &LeaseRenewal) -> Result<bool> {
        let mut s = self.lock();
        let job = s
            .jobs
            .get_mut(&renewal.job)
            .ok_or_else(|| Error::not_found("job", &renewal.job))?;
        if job.state.is_terminal() || job.lease_owner.as_deref() != Some(renewal.worker.as_str()) {
            return Ok(false);
        }
        job.lease_until = Some(renewal.until);
        Ok(true)
    }

    async fn watch(&self) -> Result<BoxStream<'static, JobEvent>> {
        Ok(self.events.watch_all())
    }

    async fn watch_job(&self, job: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        Ok(self.events.watch_job(job))
    }
}

#[async_trait]
impl AlertStore for InMemoryStore {
    async fn claim_alert(&self, claim: &AlertClaim) -> Result<bool> {
        let mut s = self.lock();
        match s.alerts.get(&claim.subject) {
            Some(last) if claim.now.since(*last) < claim.cooldown => Ok(false),
            _ => {
                s.alerts.insert(claim.subject.clone(), claim.now);
                Ok(true)
            }
        }
    }

    async fn cool_provider(&self, cooling: &ProviderCooling) -> Result<()> {
        let mut s = self.lock();
        let until = s
            .cooling
            .entry(cooling.provider.clone())
            .or_insert(cooling.until);
        *until = (*until).max(cooling.until);
        Ok(())
    }

    async fn cooling_providers(&self, now: Timestamp) -> Result<Vec<ProviderId>> {
        let s = self.lock();
        let mut cooling: Vec<ProviderId> = s
            .cooling
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(p, _)| p.clone())
            .collect();
        cooling.sort();
        Ok(cooling)
    }
}

#[async_trait]
impl TrendCache for InMemoryStore {
    async fn cached_search(&self, key: &str) -> Result<Option<CachedSearch>> {
        Ok(self.lock().searches.get(key).cloned())
    }

    async fn store_search(&self, key: &str, search: &CachedSearch) -> Result<()> {
        self.lock().searches.insert(key.to_owned(), search.clone());
        Ok(())
    }

    async fn cached_analysis(
        &self,
        platform: Platform,
        video_id: &str,
    ) -> Result<Option<ViralAnalysis>> {
        Ok(self
            .lock()
            .analyses
            .get(&(platform, video_id.to_owned()))
            .cloned())
    }

    async fn store_analysis(
        &self,
        platform: Platform,
        video_id: &str,
        analysis: &ViralAnalysis,
        _at: Timestamp,
    ) -> Result<()> {
        self.lock()
            .analyses
            .insert((platform, video_id.to_owned()), analysis.clone());
        Ok(())
    }

    async fn claim_source_run(&self, claim: &SourceRunClaim) -> Result<SourceRunState> {
        let mut s = self.lock();
        let (state, write) = decide_source_run(s.source_runs.get(&claim.key), claim);
        if let Some(record) = write {
            s.source_runs.insert(claim.key.clone(), record);
        }
        Ok(state)
    }

    async fn record_source_run(
        &self,
        key: &str,
        owner: &str,
        run_id: &str,
        until: Timestamp,
    ) -> Result<()> {
        let mut s = self.lock();
        match s.source_runs.get_mut(key) {
            Some(kept) if kept.owner == owner && kept.run_id.is_none() => {
                kept.run_id = Some(run_id.to_owned());
                kept.until = until;
                Ok(())
            }
            _ => Err(Error::lost_race(format!(
                "the claim on the run of `{key}` was taken over"
            ))),
        }
    }

    async fn end_source_run(&self, key: &str, owner: &str, run_id: Option<String>) -> Result<()> {
        let mut s = self.lock();
        let ours = s.source_runs.get(key).is_some_and(|k| match run_id {
            Some(id) => k.run_id.as_deref() == Some(id.as_str()),
            None => k.owner == owner && k.run_id.is_none(),
        });
        if ours {
            s.source_runs.remove(key);
        }
        Ok(())
    }
}

#[async_trait]
impl ChannelStore for InMemoryStore {
    async fn save_channel(&self, channel: &ChannelConnection) -> Result<()> {
        let mut state = self.lock();
        let key = (channel.user.clone(), channel.channel_id.clone());
        let mut record = channel.clone();
        if let Some(earlier) = state.channels.get(&key) {
            record.connected_at = earlier.connected_at;
        }
        state.channels.insert(key, record);
        Ok(())
    }

    async fn channel(&self, user: &UserId, channel_id: &str) -> Result<Option<ChannelConnection>> {
        Ok(self
            .lock()
            .channels
            .get(&(user.clone(), channel_id.to_owned()))
            .cloned())
    }

    async fn channels(&self, user: &UserId) -> Result<Vec<ChannelConnection>> {
        let mut found: Vec<ChannelConnection> = self
            .lock()
            .channels
            .values()
            .filter(|c| &c.user == user)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
        Ok(found)
    }

    async fn remove_channel(&self, user: &UserId, channel_id: &str) -> Result<bool> {
        Ok(self
            .lock()
            .channels
            .remove(&(user.clone(), channel_id.to_owned()))
            .is_some())
    }
}

fn publication_mut<'a>(state: &'a mut State, key: &PublicationKey) -> Result<&'a mut Publication> {
    state
        .publications
        .get_mut(&(key.job.clone(), key.channel_id.clone()))
        .ok_or_else(|| Error::not_found("publication", key.to_string()))
}

fn held_by<'a>(state: &'a mut State, held: &HeldPublication) -> Result<&'a mut Publication> {
    let record = publication_mut(state, &held.key)?;
    if !record.held_by(&held.token) {
        return Err(Error::lost_race(format!(
            "the upload lease of {} is held by another process or has ended",
            held.key
        )));
    }
    Ok(record)
}

#[async_trait]
impl PublicationStore for InMemoryStore {
    async fn begin_publication(&self, publication: &Publication) -> Result<PublicationBegun> {
        let mut state = self.lock();
        let key = (publication.job.clone(), publication.channel_id.clone());
        let (publication, written) = match state.publications.get_mut(&key) {
            None => {
                state.publications.insert(key, publication.clone());
                (publication.clone(), true)
            }
            Some(earlier) if earlier.state == PublicationState::Failed => {
                *earlier = earlier.restarted_with(publication);
                (earlier.clone(), true)
            }
            Some(earlier) => (earlier.clone(), false),
        };
        Ok(PublicationBegun {
            publication,
            written,
        })
    }

    async fn claim_publication(&self, claim: &PublicationClaim) -> Result<Option<Publication>> {
        let mut state = self.lock();
        let record = publication_mut(&mut state, &claim.key)?;
        if !record.claimable_at(claim.now) {
            return Ok(None);
        }
        record.lease = Some(claim.lease.clone());
        record.attempts += 1;
        record.updated_at = claim.now;
        Ok(Some(record.clone()))
    }

    async fn save_upload(&self, checkpoint: &UploadCheckpoint) -> Result<()> {
        let mut state = self.lock();
        let record = held_by(&mut state, &checkpoint.held)?;
        record.keep_session(&checkpoint.session);
        if let Some(lease) = record.lease.as_mut() {
            lease.until = checkpoint.until;
        }
        Ok(())
    }

    async fn renew_publication(&self, held: &HeldPublication, until: Timestamp) -> Result<()> {
        let mut state = self.lock();
        let record = held_by(&mut state, held)?;
        if let Some(lease) = record.lease.as_mut() {
            lease.until = until;
        }
        Ok(())
    }

    async fn finish_publication(
        &self,
        held: &HeldPublication,
        outcome: &PublicationOutcome,
    ) -> Result<Publication> {
        let mut state = self.lock();
        let record = held_by(&mut state, held)?;
        record.end(outcome);
        Ok(record.clone())
    }

    async fn note_publication(&self, key: &PublicationKey, notes: &[String]) -> Result<()> {
        let mut state = self.lock();
        publication_mut(&mut state, key)?.add_notes(notes);
        Ok(())
    }

    async fn release_publication(&self, held: &HeldPublication) -> Result<()> {
        let mut state = self.lock();
        if let Ok(record) = publication_mut(&mut state, &held.key) {
            if record.lease.as_ref().is_some_and(|l| l.token == held.token) {
                record.lease = None;
            }
        }
        Ok(())
    }

    async fn publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        Ok(self
            .lock()
            .publications
            .get(&(key.job.clone(), key.channel_id.clone()))
            .cloned())
    }

    async fn publications_of(&self, job: &JobId) -> Result<Vec<Publication>> {
        let mut found: Vec<Publication> = self
            .lock()
            .publications
            .values()
            .filter(|p| &p.job == job)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
        Ok(found)
    }

    async fn stalled_publications(&self, now: Timestamp, limit: u32) -> Result<Vec<Publication>> {
        let mut found: Vec<Publication> = self
            .lock()
            .publications
            .values()
            .filter(|p| p.claimable_at(now))
            .cloned()
            .collect();
        found.sort_by_key(|p| p.created_at);
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn publications_due_for_stats(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Publication>> {
        let mut found: Vec<Publication> = self
            .lock()
            .publications
            .values()
            .filter(|p| {
                p.state == PublicationState::Published
                    && p.stats.as_ref().is_none_or(|(_, at)| *at < before)
            })
            .cloned()
            .collect();
        found.sort_by_key(|p| p.stats.as_ref().map(|(_, at)| *at));
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn record_stats(&self, reading: &StatsReading) -> Result<()> {
        let mut state = self.lock();
        let record = publication_mut(&mut state, &reading.key)?;
        if record.state != PublicationState::Published {
            return Err(Error::not_allowed("only a published video has statistics"));
        }
        record.stats = Some((reading.stats, reading.at));
        Ok(())
    }
}
