//! The [`JobStore`] rules, one function each, on a store that is also the [`QuotaStore`] it
//! takes holds on. [`job_store_suite`] runs them all.
//!
//! Each rule's jobs are dated on a random day of early 1970 and claimed with that day's
//! clock, so other data in the store is not disturbed; still, run the rules on a database no
//! live worker uses.

use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;

use crate::error::Error;
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::job::{
    ClaimRequest, DeliveryOutcome, DeliveryRecord, Job, JobState, JobUpdate, LeaseRenewal,
};
use crate::ledger::{Grant, GrantOutcome, HoldState};
use crate::traits::{JobStore, QuotaStore};

use super::fixtures::sample_job;
use super::support::{hold_for, read_job as read, rules, run_scope};

/// Checks the [`JobStore`] contract, every rule of this module in turn: the job and its hold
/// written together or not at all, compare-and-set updates that bump the version and carry
/// the hold's end and the free-retry grant in the same write, lookup by provider request,
/// newest-first listing, webhook deduplication, claims with leases that two workers never
/// share, and events for every write.
///
/// Prints each rule's name before it runs and panics naming the broken rule.
pub async fn job_store_suite<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    rules!(store, "jobs":
        a_job_and_its_hold_are_written_together,
        updates_compare_and_set_the_version,
        jobs_are_found_by_provider_request,
        a_delivery_is_remembered_with_its_transition,
        deliveries_are_remembered_once,
        a_terminal_update_ends_the_hold_and_grants_in_one_write,
        a_job_watcher_sees_its_job_only,
        jobs_list_newest_first_and_by_creation_time,
        claims_lease_due_jobs_to_one_worker,
    );
}

/// A queued job no worker is due to look at, before or after its deadline (a century on),
/// so no claim of another rule leases it.
fn idle_job(user: &UserId, credits: i64, at: Timestamp) -> Job {
    let mut job = sample_job(user, credits, at);
    job.next_check_at = None;
    job.deadline_at = at.plus(Duration::from_secs(100 * 365 * 86_400));
    job
}

/// A user of this run granted `credits`, and a watcher of every job opened before.
async fn watched_user<S>(
    store: &S,
    credits: i64,
) -> (
    String,
    Timestamp,
    UserId,
    futures::stream::BoxStream<'static, crate::JobEvent>,
)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let user = UserId::new(format!("{prefix}-bob"));
    let events = store
        .watch()
        .await
        .unwrap_or_else(|e| panic!("watch failed: {e}"));
    store
        .grant(&Grant::signup(user.clone(), credits, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    (prefix, at, user, events)
}

/// A job of 20 credits for `user`, created and read back (version 1).
async fn created<S>(store: &S, user: &UserId, at: Timestamp) -> Job
where
    S: JobStore + QuotaStore + ?Sized,
{
    let job = idle_job(user, 20, at);
    JobStore::create(store, &job, &hold_for(&job))
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    read(store, &job.id).await
}

/// `job` moved to `Submitted` with the provider request `{prefix}-req-1` (version 2).
async fn submitted<S>(store: &S, job: &Job, prefix: &str) -> Job
where
    S: JobStore + ?Sized,
{
    let mut submitted = job.clone();
    submitted.state = JobState::Submitted;
    submitted.provider_request_id = Some(format!("{prefix}-req-1"));
    submitted.attempts = 1;
    store
        .update(&JobUpdate::new(job, submitted))
        .await
        .unwrap_or_else(|e| panic!("a fresh update failed: {e}"))
}

/// A job and its hold are written together or not at all: a job reads back as written at
/// version 1 with an event; creating it twice is [`Error::AlreadyExists`]; a job past the
/// balance is [`Error::Insufficient`] and not written; a hold not matching its job is
/// [`Error::InvalidInput`]; refusals change nothing.
pub async fn a_job_and_its_hold_are_written_together<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (_, at, user, mut events) = watched_user(store, 50).await;
    let job = idle_job(&user, 20, at);
    let hold = JobStore::create(store, &job, &hold_for(&job))
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    assert_eq!((hold.state, hold.credits), (HoldState::Held, 20));
    let stored = read(store, &job.id).await;
    assert_eq!(stored.version, 1, "a created job is at version 1");
    assert_eq!(
        Job {
            version: 1,
            ..job.clone()
        },
        stored,
        "a job reads back as written"
    );
    let mut created = None;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        if e.job == job.id {
            created = Some(e);
            break;
        }
    }
    let created = created.unwrap_or_else(|| panic!("create published no event"));
    assert_eq!((created.job.clone(), created.version), (job.id.clone(), 1));

    match JobStore::create(store, &job, &hold_for(&job)).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("creating a job twice must be AlreadyExists, got {other:?}"),
    }
    let too_big = idle_job(&user, 31, at);
    match JobStore::create(store, &too_big, &hold_for(&too_big)).await {
        Err(Error::Insufficient {
            available: 30,
            needed: 31,
        }) => {}
        other => panic!("a job beyond the balance must be Insufficient, got {other:?}"),
    }
    match store.job(&too_big.id).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a refused job must not be written, got {other:?}"),
    }
    let mismatched = idle_job(&user, 5, at);
    let mut wrong = hold_for(&mismatched);
    wrong.credits = 4;
    match JobStore::create(store, &mismatched, &wrong).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("a hold not matching its job must be InvalidInput, got {other:?}"),
    }
    let b = store.balance(&user).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (b.available, b.held),
        (30, 20),
        "refused creates change nothing"
    );
}

/// Updates compare and set: a fresh one bumps the version and publishes an event; a stale
/// version, the wrong state, or the right state at a stale version is [`Error::LostRace`];
/// an unknown job is [`Error::NotFound`]; refused updates change nothing.
pub async fn updates_compare_and_set_the_version<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at, user, mut events) = watched_user(store, 50).await;
    let stored = created(store, &user, at).await;
    let v2 = submitted(store, &stored, &prefix).await;
    assert_eq!((v2.version, v2.state), (2, JobState::Submitted));
    match store.update(&JobUpdate::new(&stored, v2.clone())).await {
        Err(Error::LostRace { .. }) => {}
        other => panic!("an update from a stale version must be LostRace, got {other:?}"),
    }
    let mut wrong_state = JobUpdate::new(&v2, v2.clone());
    wrong_state.expected_state = JobState::Running;
    match store.update(&wrong_state).await {
        Err(Error::LostRace { .. }) => {}
        other => panic!("an update from the wrong state must be LostRace, got {other:?}"),
    }
    // The right state at a stale version: the version alone must refuse it.
    let mut stale_version = JobUpdate::new(&v2, v2.clone());
    stale_version.expected_version = 1;
    match store.update(&stale_version).await {
        Err(Error::LostRace { .. }) => {}
        other => panic!("the right state at a stale version must be LostRace, got {other:?}"),
    }
    let ghost = idle_job(&user, 1, at);
    match store.update(&JobUpdate::new(&ghost, ghost.clone())).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("updating an unknown job must be NotFound, got {other:?}"),
    }
    assert_eq!(
        read(store, &stored.id).await,
        v2,
        "refused updates change nothing"
    );
    let mut saw_v2 = false;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        if e.job == stored.id && e.version == 2 {
            assert_eq!(e.state, JobState::Submitted);
            saw_v2 = true;
            break;
        }
    }
    assert!(saw_v2, "an update publishes an event");
}

/// A job is found by its provider's request id, per provider; a resubmission's new request id
/// and the old one both find the job as it is now.
pub async fn jobs_are_found_by_provider_request<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at, user, _) = watched_user(store, 50).await;
    let job = created(store, &user, at).await;
    let v2 = submitted(store, &job, &prefix).await;
    let sim = ProviderId::new("sim");
    let found = store
        .job_by_provider_request(&sim, &format!("{prefix}-req-1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.map(|j| j.id), Some(job.id.clone()));
    let none = store
        .job_by_provider_request(&sim, &format!("{prefix}-req-unknown"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.is_none(), "an unknown request finds no job");
    // A resubmission gets a new request id; the old one still finds the job.
    let mut resubmitted = v2.clone();
    resubmitted.provider_request_id = Some(format!("{prefix}-req-2"));
    store
        .update(&JobUpdate::new(&v2, resubmitted))
        .await
        .unwrap_or_else(|e| panic!("changing the request id failed: {e}"));
    for rid in ["req-1", "req-2"] {
        let found = store
            .job_by_provider_request(&sim, &format!("{prefix}-{rid}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            found.map(|j| (j.id, j.version)),
            Some((job.id.clone(), 3)),
            "request {rid} finds the job as it is now"
        );
    }
    let other = store
        .job_by_provider_request(&ProviderId::new("other"), &format!("{prefix}-req-1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(other.is_none(), "request ids are per provider");
}

/// A delivery written with a transition is remembered with it; seen again, the whole update
/// is [`Error::AlreadyExists`] and nothing changes; the delivery of a failed transition is
/// not remembered.
pub async fn a_delivery_is_remembered_with_its_transition<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at, user, _) = watched_user(store, 50).await;
    let stored = created(store, &user, at).await;
    let v2 = submitted(store, &stored, &prefix).await;
    let with_delivery = DeliveryRecord {
        provider: ProviderId::new("sim"),
        delivery_id: format!("{prefix}-d0"),
        job: stored.id.clone(),
        at,
    };
    let mut progressed = v2.clone();
    progressed.state = JobState::Running;
    progressed.progress = 40;
    let mut u = JobUpdate::new(&v2, progressed.clone());
    u.delivery = Some(with_delivery.clone());
    let v3 = store
        .update(&u)
        .await
        .unwrap_or_else(|e| panic!("an update with a delivery failed: {e}"));
    assert_eq!((v3.version, v3.progress), (3, 40));
    let mut again = JobUpdate::new(&v3, v3.clone());
    again.delivery = Some(with_delivery.clone());
    match store.update(&again).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a transition with a seen delivery must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        read(store, &stored.id).await.version,
        3,
        "and changes nothing"
    );
    assert_eq!(
        store.record_delivery(&with_delivery).await.ok(),
        Some(DeliveryOutcome::Duplicate),
        "a delivery written with a transition is known to record_delivery"
    );
    let failed_write = DeliveryRecord {
        delivery_id: format!("{prefix}-d-failed"),
        ..with_delivery.clone()
    };
    let mut doomed = JobUpdate::new(&stored, v3.clone());
    doomed.delivery = Some(failed_write.clone());
    assert!(
        store.update(&doomed).await.is_err(),
        "a stale update with a delivery fails"
    );
    assert_eq!(
        store.record_delivery(&failed_write).await.ok(),
        Some(DeliveryOutcome::New),
        "the delivery of a failed transition is not remembered"
    );
}

/// A delivery is new once, then a duplicate; a delivery for an unknown job is
/// [`Error::NotFound`].
pub async fn deliveries_are_remembered_once<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at, user, _) = watched_user(store, 50).await;
    let job = created(store, &user, at).await;
    let delivery = DeliveryRecord {
        provider: ProviderId::new("sim"),
        delivery_id: format!("{prefix}-d1"),
        job: job.id.clone(),
        at,
    };
    assert_eq!(
        store.record_delivery(&delivery).await.ok(),
        Some(DeliveryOutcome::New)
    );
    assert_eq!(
        store.record_delivery(&delivery).await.ok(),
        Some(DeliveryOutcome::Duplicate)
    );
    let stray = DeliveryRecord {
        job: JobId::random(),
        delivery_id: format!("{prefix}-d2"),
        ..delivery.clone()
    };
    match store.record_delivery(&stray).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a delivery for an unknown job must be NotFound, got {other:?}"),
    }
}

/// A terminal update ends the hold and grants (a keyed free retry) in the same write; ending
/// a hold as `Held` is [`Error::InvalidInput`], a grant to an unknown user
/// [`Error::NotFound`], and both change nothing.
pub async fn a_terminal_update_ends_the_hold_and_grants_in_one_write<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at, user, _) = watched_user(store, 50).await;
    let job = created(store, &user, at).await;
    let v2 = submitted(store, &job, &prefix).await;
    let mut timed_out = v2.clone();
    timed_out.state = JobState::TimedOut;
    timed_out.next_check_at = None;
    let mut update = JobUpdate::new(&v2, timed_out);
    update.end_hold = Some(HoldState::Settled);
    update.grant = Some(Grant::free_retry(user.clone(), 20, &job.id, at));
    let v3 = store
        .update(&update)
        .await
        .unwrap_or_else(|e| panic!("a terminal update failed: {e}"));
    assert_eq!((v3.version, v3.state), (3, JobState::TimedOut));
    let hold = store.hold(&job.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hold.state,
        HoldState::Settled,
        "the hold ended with the transition"
    );
    let b = store.balance(&user).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((b.available, b.held, b.spent, b.granted), (50, 0, 20, 70));
    assert!(b.is_consistent());
    let again = Grant::free_retry(user.clone(), 20, &job.id, at);
    assert_eq!(
        store.grant(&again).await.ok(),
        Some(GrantOutcome::Duplicate),
        "the grant written with a transition is keyed"
    );
    let mut bad_end = JobUpdate::new(&v3, v3.clone());
    bad_end.end_hold = Some(HoldState::Held);
    match store.update(&bad_end).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("ending a hold as Held must be InvalidInput, got {other:?}"),
    }
    let mut stray_grant = JobUpdate::new(&v3, v3.clone());
    let nobody = UserId::new(format!("{prefix}-nobody"));
    stray_grant.grant = Some(Grant::free_retry(nobody.clone(), 5, &job.id, at));
    match store.update(&stray_grant).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a grant to an unknown user must be NotFound, got {other:?}"),
    }
    assert!(store.balance(&nobody).await.is_err(), "no account was made");
    assert_eq!(
        read(store, &job.id).await.version,
        3,
        "refused updates change nothing"
    );
}

/// A watcher of one job ([`JobStore::watch_job`]) sees that job's events, in order, and no
/// other job's.
pub async fn a_job_watcher_sees_its_job_only<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at, user, _) = watched_user(store, 50).await;
    let job = created(store, &user, at).await;
    let mut only = store
        .watch_job(&job.id)
        .await
        .unwrap_or_else(|e| panic!("watch_job failed: {e}"));
    let v2 = submitted(store, &job, &prefix).await;
    let mut running = v2.clone();
    running.state = JobState::Running;
    store
        .update(&JobUpdate::new(&v2, running))
        .await
        .unwrap_or_else(|e| panic!("an update failed: {e}"));
    let newer = idle_job(&user, 5, at.plus(Duration::from_secs(10)));
    JobStore::create(store, &newer, &hold_for(&newer))
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    let mut seen_by_one = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), only.next()).await {
        seen_by_one.push((e.job, e.version));
    }
    assert!(
        !seen_by_one.is_empty() && seen_by_one.iter().all(|(id, _)| id == &job.id),
        "a watcher of one job sees its events and no other job's: {seen_by_one:?}"
    );
    assert!(
        seen_by_one.windows(2).all(|w| w[0].1 < w[1].1),
        "in order: {seen_by_one:?}"
    );
}

/// A user's jobs list newest first, limited; every user's jobs created in a range list
/// oldest first, the range's end excluded.
pub async fn jobs_list_newest_first_and_by_creation_time<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (_, at, user, _) = watched_user(store, 50).await;
    let job = created(store, &user, at).await;
    let newer = idle_job(&user, 5, at.plus(Duration::from_secs(10)));
    JobStore::create(store, &newer, &hold_for(&newer))
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    let listed = store
        .jobs_for_user(&user, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&JobId> = listed.iter().map(|j| &j.id).collect();
    assert_eq!(ids, [&newer.id, &job.id], "newest first");
    assert_eq!(
        store.jobs_for_user(&user, 1).await.map(|j| j.len()).ok(),
        Some(1)
    );
    // A job created at the range's end is the next range's.
    let edge = idle_job(&user, 5, at.plus(Duration::from_secs(11)));
    JobStore::create(store, &edge, &hold_for(&edge))
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    let ours = |jobs: Vec<Job>| -> Vec<JobId> {
        jobs.into_iter()
            .filter(|j| j.user == user)
            .map(|j| j.id)
            .collect()
    };
    let in_range = store
        .jobs_created_between(at, at.plus(Duration::from_secs(11)))
        .await
        .unwrap_or_else(|e| panic!("listing jobs by creation failed: {e}"));
    assert_eq!(
        ours(in_range),
        [job.id.clone(), newer.id.clone()],
        "jobs created in the range, oldest first; the range's end is excluded"
    );
    let next = store
        .jobs_created_between(
            at.plus(Duration::from_secs(11)),
            at.plus(Duration::from_secs(20)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ours(next), vec![edge.id], "the range's start is included");
}

/// Claims: due and overdue jobs only, leased, never to two workers at once; a lease renewed
/// by its worker holds past its first end, another worker's renewal is refused; expired
/// leases are claimed again; terminal jobs never are. Closes its jobs after, refunding them.
pub async fn claims_lease_due_jobs_to_one_worker<S>(store: &S)
where
    S: JobStore + QuotaStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let claimer = UserId::new(format!("{prefix}-claims"));
    store
        .grant(&Grant::signup(claimer.clone(), 100, at))
        .await
        .unwrap_or_else(|e| panic!("grant failed: {e}"));
    let due = sample_job(&claimer, 1, at);
    let mut later = sample_job(&claimer, 1, at);
    later.next_check_at = Some(at.plus(Duration::from_secs(600)));
    let mut past_deadline = sample_job(&claimer, 1, at);
    past_deadline.next_check_at = None;
    past_deadline.deadline_at = at;
    for j in [&due, &later, &past_deadline] {
        JobStore::create(store, j, &hold_for(j))
            .await
            .unwrap_or_else(|e| panic!("create failed: {e}"));
    }
    let now = at.plus(Duration::from_secs(1));
    let claim = |worker: &str| ClaimRequest {
        worker: worker.to_owned(),
        now,
        lease: Duration::from_secs(30),
        limit: 100,
    };
    let ours =
        |jobs: Vec<Job>| -> Vec<Job> { jobs.into_iter().filter(|j| j.user == claimer).collect() };
    let (claim_a, claim_b) = (claim("worker-a"), claim("worker-b"));
    let (a, b) = futures::join!(store.claim_due(&claim_a), store.claim_due(&claim_b));
    let a = ours(a.unwrap_or_else(|e| panic!("claim failed: {e}")));
    let b = ours(b.unwrap_or_else(|e| panic!("claim failed: {e}")));
    let mut claimed: Vec<JobId> = a.iter().chain(b.iter()).map(|j| j.id.clone()).collect();
    claimed.sort();
    let mut expected = vec![due.id.clone(), past_deadline.id.clone()];
    expected.sort();
    assert_eq!(
        claimed, expected,
        "due and overdue jobs are claimed, each by one worker"
    );
    for j in a.iter() {
        assert_eq!(j.lease_owner.as_deref(), Some("worker-a"));
        assert_eq!(j.lease_until, Some(now.plus(Duration::from_secs(30))));
    }
    let again = ours(
        store
            .claim_due(&claim("worker-c"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(again.is_empty(), "leased jobs are not claimed again");
    let after_lease = ClaimRequest {
        now: now.plus(Duration::from_secs(31)),
        ..claim("worker-c")
    };
    // A lease renewed by its worker holds past its first end; another worker's renewal and a
    // renewal of a finished job are refused.
    let renewed = a.first().or(b.first()).cloned();
    let renewed = renewed.unwrap_or_else(|| panic!("nothing was claimed"));
    let holder = renewed.lease_owner.clone().unwrap_or_default();
    let renewal = LeaseRenewal {
        job: renewed.id.clone(),
        worker: holder.clone(),
        until: now.plus(Duration::from_secs(90)),
    };
    assert_eq!(store.renew_lease(&renewal).await.ok(), Some(true));
    let stranger = LeaseRenewal {
        worker: "worker-z".to_owned(),
        ..renewal.clone()
    };
    assert_eq!(
        store.renew_lease(&stranger).await.ok(),
        Some(false),
        "only the holder renews"
    );
    let renewed_read = read(store, &renewed.id).await;
    assert_eq!(
        (renewed_read.version, renewed_read.lease_until),
        (renewed.version, Some(now.plus(Duration::from_secs(90)))),
        "a renewal moves the lease, not the version"
    );
    let expired = ours(
        store
            .claim_due(&after_lease)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let mut expired_ids: Vec<&JobId> = expired.iter().map(|j| &j.id).collect();
    expired_ids.sort();
    assert_eq!(
        expired_ids,
        expected
            .iter()
            .filter(|id| **id != renewed.id)
            .collect::<Vec<_>>(),
        "expired leases are claimed again, renewed ones are not"
    );
    let after_renewal = ours(
        store
            .claim_due(&ClaimRequest {
                now: now.plus(Duration::from_secs(91)),
                ..claim("worker-c")
            })
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        after_renewal.iter().any(|j| j.id == renewed.id),
        "a renewed lease is claimable once it expires"
    );
    let read_later = read(store, &later.id).await;
    let mut finished = read_later.clone();
    finished.state = JobState::Completed;
    let mut u = JobUpdate::new(&read_later, finished);
    u.end_hold = Some(HoldState::Settled);
    store
        .update(&u)
        .await
        .unwrap_or_else(|e| panic!("completing a job failed: {e}"));
    let late_claim = ours(
        store
            .claim_due(&ClaimRequest {
                now: now.plus(Duration::from_secs(3600)),
                ..claim("worker-d")
            })
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        late_claim
            .iter()
            .all(|j| j.id != later.id && !j.state.is_terminal()),
        "terminal jobs are never claimed, even with a due check time"
    );

    // Close this run's jobs so no later claim finds them.
    let all = store
        .jobs_for_user(&claimer, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    join_all(
        all.into_iter()
            .filter(|j| !j.state.is_terminal())
            .map(|j| async move {
                let mut done = j.clone();
                done.state = JobState::Cancelled;
                done.next_check_at = None;
                done.lease_owner = None;
                done.lease_until = None;
                let mut u = JobUpdate::new(&j, done);
                u.end_hold = Some(HoldState::Refunded);
                store
                    .update(&u)
                    .await
                    .unwrap_or_else(|e| panic!("closing job {} failed: {e}", j.id));
            }),
    )
    .await;
    let b = store
        .balance(&claimer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (b.available, b.held, b.spent),
        (99, 0, 1),
        "refunds written with updates return credits"
    );
}
