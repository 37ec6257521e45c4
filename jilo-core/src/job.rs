//! Generation jobs as stores keep them, and the events a job emits.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::Error;
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::ledger::{Grant, HoldState};
use crate::video::VideoRequest;

/// Where a generation job is. The three last are terminal and absorb every later event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Credits are held; the job waits to be submitted (or resubmitted after a failure).
    Queued,
    /// A provider accepted the job.
    Submitted,
    /// The provider reports progress.
    Running,
    /// The provider delivered; the video is being copied into media storage.
    Storing,
    /// The video is stored and the hold settled.
    Completed,
    /// The provider failed for good; the hold was refunded.
    Failed,
    /// No result before the deadline; the hold was settled and one free retry granted.
    TimedOut,
    /// The user cancelled.
    Cancelled,
}

impl JobState {
    /// All states, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Submitted,
        JobState::Running,
        JobState::Storing,
        JobState::Completed,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    /// Whether no event can move the job any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::TimedOut | JobState::Cancelled
        )
    }

    /// Whether the job still waits for the provider's result, so its deadline applies:
    /// queued, submitted or running. A storing job has its result and does not time out.
    pub fn awaits_result(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Submitted | JobState::Running
        )
    }

    /// The name stores keep.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Submitted => "submitted",
            JobState::Running => "running",
            JobState::Storing => "storing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::invalid("state", format!("unknown job state `{s}`")))
    }
}

/// Where a stored video lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVideo {
    /// The media store's stable key, or the provider URL when no media store is configured.
    pub key: String,
    /// A location a host can serve or read: a path or URL.
    pub location: String,
    /// Size in bytes, when known.
    pub bytes: Option<u64>,
    /// MIME type, when known.
    pub content_type: Option<String>,
}

/// A submission written to the store before its call: which attempt, to which provider of
/// the route, since when. It stays on the job until the call's outcome is written; a job found
/// with one after its lease expired (a crash mid-call) or after an unknown outcome is
/// reconciled, never resubmitted blindly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSubmit {
    /// The attempt, 1-based.
    pub attempt: u32,
    /// The provider's index in the job's route.
    pub provider_index: usize,
    /// When the attempt was written, just before the call.
    pub since: Timestamp,
}

/// A durable generation job: the request, the route of providers, the lifecycle counters the
/// state machine reads, and the worker's scheduling fields.
///
/// Stores keep it as a document; fields added in later versions carry `#[serde(default)]`,
/// so a job written by an earlier version still reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id; also the id of its credit hold.
    pub id: JobId,
    /// Whose job.
    pub user: UserId,
    /// What was asked.
    pub request: VideoRequest,
    /// Credits held for it.
    pub credits: i64,
    /// Where it is.
    pub state: JobState,
    /// Bumped by every change; stores move a job only from the version the writer read.
    pub version: u64,
    /// Providers in failover order, all offering the model.
    pub route: Vec<ProviderId>,
    /// Index in `route` of the provider in use.
    pub provider_index: usize,
    /// The provider's id for the current submission, once accepted.
    pub provider_request_id: Option<String>,
    /// Submissions made so far, every provider together.
    pub attempts: u32,
    /// Submissions made to the current provider (never above the attempt limit).
    #[serde(default)]
    pub provider_attempts: u32,
    /// The submission in flight or whose outcome is unknown, if any.
    #[serde(default)]
    pub pending_submit: Option<PendingSubmit>,
    /// Tries to copy the finished video into media storage.
    pub store_attempts: u32,
    /// 0 to 100.
    pub progress: u8,
    /// A short human-readable stage, e.g. `generating frames`.
    pub stage: Option<String>,
    /// What the provider in use charges for this video (from its catalog), recorded when it
    /// accepts the submission.
    #[serde(default)]
    pub provider_cost: Option<crate::video::ProviderCost>,
    /// The provider's video URL once it succeeded.
    pub video_url: Option<String>,
    /// The headers its download must carry ([`crate::ProviderVideo::headers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video_headers: Vec<(String, String)>,
    /// The stored video once completed.
    pub output: Option<StoredVideo>,
    /// Why the job failed, timed out or was cancelled, in words a user can read.
    pub failure: Option<String>,
    /// How the last provider failure was classed. A failed job whose class is
    /// [`crate::FailureClass::OutOfFunds`] or [`crate::FailureClass::KeyRejected`] failed
    /// because no provider could serve it (the service is down for now, the admin alerted),
    /// not because of the request.
    #[serde(default)]
    pub failure_class: Option<crate::traits::FailureClass>,
    /// Whether the provider was given a webhook URL; otherwise the worker polls.
    pub webhook: bool,
    /// Created at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
    /// After this, a job still without a result times out.
    pub deadline_at: Timestamp,
    /// When the worker should next look at the job (poll, resubmit, resume); `None` when
    /// terminal.
    pub next_check_at: Option<Timestamp>,
    /// The worker (or Studio) holding the job's lease.
    pub lease_owner: Option<String>,
    /// Until when that lease holds.
    pub lease_until: Option<Timestamp>,
}

/// What a job failed for lack of any provider tells its user (the seed's wording).
pub const SERVICE_UNAVAILABLE: &str =
    "The video service is temporarily unavailable; the admin has been alerted and your credits \
     were returned. Please try again later.";

impl Job {
    /// Whether the job failed because no provider could serve it (every one out of funds or
    /// rejecting its key): a host shows [`SERVICE_UNAVAILABLE`] and a maintenance banner
    /// rather than a plain failure.
    pub fn failed_for_service(&self) -> bool {
        self.state == JobState::Failed
            && matches!(
                self.failure_class,
                Some(crate::traits::FailureClass::OutOfFunds)
                    | Some(crate::traits::FailureClass::KeyRejected)
            )
    }
    /// The provider currently in use.
    pub fn provider(&self) -> Option<&ProviderId> {
        self.route.get(self.provider_index)
    }

    /// The key of the submission in flight, if one is.
    pub fn pending_key(&self) -> Option<crate::traits::SubmissionKey> {
        self.pending_submit
            .as_ref()
            .map(|p| crate::traits::SubmissionKey::new(self.id.clone(), p.attempt))
    }

    /// Checks that a reservation is this job's hold: same job id, user and credits, a user id
    /// and an amount the ledger takes ([`crate::ledger::check_user`],
    /// [`crate::ledger::check_amount`]). Stores call it in [`crate::JobStore::create`] before
    /// writing anything.
    pub fn check_hold(&self, hold: &crate::ledger::Reservation) -> Result<(), Error> {
        if hold.job != self.id || hold.user != self.user || hold.credits != self.credits {
            return Err(Error::invalid(
                "hold",
                "the reservation must name the job's id, user and credits",
            ));
        }
        crate::ledger::check_user(&hold.user)?;
        crate::ledger::check_amount(hold.credits)
    }

    /// The event that describes the job as it is now.
    pub fn event(&self) -> JobEvent {
        JobEvent {
            job: self.id.clone(),
            user: self.user.clone(),
            version: self.version,
            state: self.state,
            progress: self.progress,
            stage: self.stage.clone(),
            at: self.updated_at,
        }
    }
}

/// What a subscriber sees of a job: one per change of state, progress or stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub job: JobId,
    /// Its owner.
    pub user: UserId,
    /// The job's version after the change.
    pub version: u64,
    /// Its state after the change.
    pub state: JobState,
    /// 0 to 100.
    pub progress: u8,
    /// A short stage description.
    pub stage: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A stream of the events sent on a broadcast channel, for stores that publish in process.
/// A receiver that falls behind skips what it missed rather than ending.
pub fn broadcast_events(rx: broadcast::Receiver<JobEvent>) -> BoxStream<'static, JobEvent> {
    stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a job event watcher fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// A compare-and-set write of a job: applied only when the stored job still has
/// `expected_version` and `expected_state`; the stored version becomes `expected_version + 1`.
///
/// The credit side of a transition travels with it: `end_hold` settles or refunds the job's
/// hold and `grant` adds credits (the free retry) in the same transaction as the job write, so a
/// crash can never leave a terminal job with an open hold, nor end a hold twice. So does the
/// webhook delivery that caused it: the delivery is remembered only if the transition commits,
/// so a failed write leaves the provider's retry to apply it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUpdate {
    /// The version the writer read.
    pub expected_version: u64,
    /// The state the writer read.
    pub expected_state: JobState,
    /// The new contents (its `version` field is ignored and set by the store).
    pub job: Job,
    /// End the job's hold this way ([`HoldState::Settled`] or [`HoldState::Refunded`]).
    /// A hold already ended the same way is left as it is; one ended the other way refuses the
    /// whole update with [`Error::NotAllowed`].
    pub end_hold: Option<HoldState>,
    /// Credits to grant with the transition (idempotent by its key).
    pub grant: Option<Grant>,
    /// The webhook delivery this transition applies, remembered in the same write; a delivery
    /// seen before refuses the whole update with [`Error::AlreadyExists`].
    pub delivery: Option<DeliveryRecord>,
}

impl JobUpdate {
    /// A plain write of `job` over the version and state it was read at.
    pub fn new(read: &Job, job: Job) -> Self {
        Self {
            expected_version: read.version,
            expected_state: read.state,
            job,
            end_hold: None,
            grant: None,
            delivery: None,
        }
    }
}

/// A worker's renewal of its lease on a job while a long effect (a video copy) runs. It
/// changes only the lease, not the job's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// The job.
    pub job: JobId,
    /// The worker that holds the lease.
    pub worker: String,
    /// The new end of the lease.
    pub until: Timestamp,
}

/// A worker's request for jobs that need attention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The worker's name; written as the lease owner.
    pub worker: String,
    /// Now, by the caller's clock.
    pub now: Timestamp,
    /// How long the lease holds.
    pub lease: Duration,
    /// The most jobs to claim.
    pub limit: usize,
}

/// A verified webhook delivery to remember, so the same delivery is applied once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Which provider sent it.
    pub provider: ProviderId,
    /// The provider's delivery id (or a digest of the body when it has none).
    pub delivery_id: String,
    /// The job it concerns.
    pub job: JobId,
    /// When it arrived.
    pub at: Timestamp,
}

/// Whether a delivery was new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// First time seen; apply it.
    New,
    /// Seen before; ignore it.
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_know_terminality() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![
                JobState::Completed,
                JobState::Failed,
                JobState::TimedOut,
                JobState::Cancelled
            ]
        );
        assert!("done".parse::<JobState>().is_err());
    }
}
