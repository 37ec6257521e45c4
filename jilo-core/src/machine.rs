//! The generation state machine: a pure function from a job's lifecycle and an input to the
//! next lifecycle and the effects the Studio must perform. No I/O, no clock.
//!
//! ```text
//! Queued ──Accepted──▶ Submitted ──Progress──▶ Running ──Succeeded──▶ Storing ──Stored──▶ Completed
//!   retryable failure: back to Queued and RetryLater, resubmitted on Resume, up to the attempt limit
//!   out of funds / key rejected: fail over to the next provider now, alert the admin
//!   attempts exhausted, no next provider, or a permanent failure: Failed, refund
//!   DeadlinePassed before a result: TimedOut, settle (no refund), one free retry granted
//!   CancelRequested: Cancelled; refund unless the provider had started (Running: settle)
//! ```
//! Terminal states absorb every input: the step is not applied and has no effects.

use serde::{Deserialize, Serialize};

use crate::job::JobState;
use crate::traits::FailureClass;

/// The part of a job the machine reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Where the job is.
    pub state: JobState,
    /// Submissions made so far.
    pub attempts: u32,
    /// Index of the provider in use in the job's route.
    pub provider_index: usize,
    /// Tries to store the finished video.
    pub store_attempts: u32,
}

impl Lifecycle {
    /// A new job: queued, nothing tried, first provider.
    pub fn new() -> Self {
        Self {
            state: JobState::Queued,
            attempts: 0,
            provider_index: 0,
            store_attempts: 0,
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// The limits the machine enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most submissions per job, all providers together (the seed: 3). Also the most tries to
    /// store the finished video.
    pub max_attempts: u32,
    /// How many providers the job's route has.
    pub providers: usize,
}

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A worker (or `generate`) takes up the job: submit when queued, poll when at the
    /// provider, store when storing.
    Resume,
    /// The provider accepted the submission.
    Accepted,
    /// The submission failed.
    SubmitFailed(FailureClass),
    /// The provider reports queue position or progress.
    Progress,
    /// The provider delivered the video.
    Succeeded,
    /// The provider reports the request failed.
    ProviderFailed(FailureClass),
    /// The video is in media storage.
    Stored,
    /// Copying the video into media storage failed.
    StoreFailed,
    /// The deadline passed.
    DeadlinePassed,
    /// The user asked to cancel.
    CancelRequested,
}

/// What the Studio must do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Submit to the provider at this route index now.
    Submit {
        /// Route index.
        provider_index: usize,
    },
    /// Look again after a back-off (schedule the next `Resume`).
    RetryLater,
    /// Ask the provider for the status.
    Poll,
    /// Copy the video into media storage.
    Store,
    /// Spend the hold.
    Settle,
    /// Return the hold.
    Refund,
    /// Grant the free retry of a timed-out job.
    GrantFreeRetry,
    /// Ask the provider to stop (best effort).
    CancelAtProvider,
    /// Tell the admin this provider is out of funds.
    AlertOutOfFunds {
        /// Route index.
        provider_index: usize,
    },
    /// Tell the admin this provider rejected our key.
    AlertKeyRejected {
        /// Route index.
        provider_index: usize,
    },
}

/// The result of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The lifecycle after the input.
    pub next: Lifecycle,
    /// What to do, in order.
    pub effects: Vec<Effect>,
    /// Whether the input did anything; absorbed and out-of-place inputs are not applied.
    pub applied: bool,
}

impl Step {
    fn ignored(current: &Lifecycle) -> Self {
        Step {
            next: *current,
            effects: Vec::new(),
            applied: false,
        }
    }

    fn to(next: Lifecycle, effects: Vec<Effect>) -> Self {
        Step {
            next,
            effects,
            applied: true,
        }
    }
}

/// Computes the next lifecycle and the effects for one input.
pub fn step(current: &Lifecycle, input: Input, limits: &Limits) -> Step {
    use JobState::*;
    let state = current.state;
    if state.is_terminal() {
        return Step::ignored(current);
    }
    let mut next = *current;
    match (state, input) {
        (Queued, Input::Resume) => {
            if current.attempts >= limits.max_attempts {
                next.state = Failed;
                return Step::to(next, vec![Effect::Refund]);
            }
            next.attempts += 1;
            Step::to(
                next,
                vec![Effect::Submit {
                    provider_index: current.provider_index,
                }],
            )
        }
        (Submitted | Running, Input::Resume) => Step::to(next, vec![Effect::Poll]),
        (Storing, Input::Resume) => {
            if current.store_attempts >= limits.max_attempts {
                next.state = Failed;
                return Step::to(next, vec![Effect::Refund]);
            }
            next.store_attempts += 1;
            Step::to(next, vec![Effect::Store])
        }
        (Queued, Input::Accepted) => {
            next.state = Submitted;
            Step::to(next, Vec::new())
        }
        (Queued, Input::SubmitFailed(class))
        | (Submitted | Running, Input::ProviderFailed(class)) => failure(current, class, limits),
        (Submitted | Running, Input::Progress) => {
            next.state = Running;
            Step::to(next, Vec::new())
        }
        (Submitted | Running, Input::Succeeded) => {
            next.state = Storing;
            next.store_attempts = 1;
            Step::to(next, vec![Effect::Store])
        }
        (Storing, Input::Stored) => {
            next.state = Completed;
            Step::to(next, vec![Effect::Settle])
        }
        (Storing, Input::StoreFailed) => Step::to(next, vec![Effect::RetryLater]),
        (Queued, Input::DeadlinePassed) => {
            next.state = TimedOut;
            Step::to(next, vec![Effect::Settle, Effect::GrantFreeRetry])
        }
        (Submitted | Running, Input::DeadlinePassed) => {
            next.state = TimedOut;
            Step::to(
                next,
                vec![
                    Effect::CancelAtProvider,
                    Effect::Settle,
                    Effect::GrantFreeRetry,
                ],
            )
        }
        (Queued, Input::CancelRequested) => {
            next.state = Cancelled;
            Step::to(next, vec![Effect::Refund])
        }
        (Submitted, Input::CancelRequested) => {
            next.state = Cancelled;
            Step::to(next, vec![Effect::CancelAtProvider, Effect::Refund])
        }
        (Running, Input::CancelRequested) => {
            next.state = Cancelled;
            Step::to(next, vec![Effect::CancelAtProvider, Effect::Settle])
        }
        _ => Step::ignored(current),
    }
}

fn failure(current: &Lifecycle, class: FailureClass, limits: &Limits) -> Step {
    let mut next = *current;
    next.state = JobState::Queued;
    let exhausted = current.attempts >= limits.max_attempts;
    match class {
        FailureClass::Retryable if !exhausted => Step::to(next, vec![Effect::RetryLater]),
        FailureClass::OutOfFunds | FailureClass::KeyRejected => {
            let alert = if class == FailureClass::OutOfFunds {
                Effect::AlertOutOfFunds {
                    provider_index: current.provider_index,
                }
            } else {
                Effect::AlertKeyRejected {
                    provider_index: current.provider_index,
                }
            };
            let next_provider = current.provider_index + 1;
            if next_provider < limits.providers && !exhausted {
                next.provider_index = next_provider;
                next.attempts += 1;
                Step::to(
                    next,
                    vec![
                        alert,
                        Effect::Submit {
                            provider_index: next_provider,
                        },
                    ],
                )
            } else {
                next.state = JobState::Failed;
                Step::to(next, vec![alert, Effect::Refund])
            }
        }
        _ => {
            next.state = JobState::Failed;
            Step::to(next, vec![Effect::Refund])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_attempts: 3,
        providers: 2,
    };

    fn run(inputs: &[Input]) -> (Lifecycle, Vec<Effect>) {
        let mut l = Lifecycle::new();
        let mut all = Vec::new();
        for i in inputs {
            let s = step(&l, *i, &LIMITS);
            l = s.next;
            all.extend(s.effects);
        }
        (l, all)
    }

    #[test]
    fn happy_path_settles_once() {
        let (l, effects) = run(&[
            Input::Resume,
            Input::Accepted,
            Input::Progress,
            Input::Progress,
            Input::Succeeded,
            Input::Stored,
        ]);
        assert_eq!(l.state, JobState::Completed);
        assert_eq!(
            effects,
            vec![
                Effect::Submit { provider_index: 0 },
                Effect::Store,
                Effect::Settle
            ]
        );
    }

    #[test]
    fn three_retryable_failures_fail_and_refund() {
        let f = Input::SubmitFailed(FailureClass::Retryable);
        let (l, effects) = run(&[
            Input::Resume,
            f,
            Input::Resume,
            f,
            Input::Resume,
            f,
            Input::Resume,
        ]);
        assert_eq!(l.state, JobState::Failed);
        assert_eq!(l.attempts, 3);
        assert_eq!(effects.last(), Some(&Effect::Refund));
        assert_eq!(
            effects
                .iter()
                .filter(|e| matches!(e, Effect::Submit { .. }))
                .count(),
            3
        );
    }

    #[test]
    fn out_of_funds_fails_over_and_alerts() {
        let (l, effects) = run(&[Input::Resume, Input::SubmitFailed(FailureClass::OutOfFunds)]);
        assert_eq!(l.provider_index, 1);
        assert_eq!(l.attempts, 2);
        assert_eq!(
            effects,
            vec![
                Effect::Submit { provider_index: 0 },
                Effect::AlertOutOfFunds { provider_index: 0 },
                Effect::Submit { provider_index: 1 }
            ]
        );
        let s = step(&l, Input::SubmitFailed(FailureClass::KeyRejected), &LIMITS);
        assert_eq!(s.next.state, JobState::Failed);
        assert_eq!(
            s.effects,
            vec![
                Effect::AlertKeyRejected { provider_index: 1 },
                Effect::Refund
            ]
        );
    }

    #[test]
    fn timeout_settles_and_grants_and_absorbs_late_events() {
        let (l, effects) = run(&[Input::Resume, Input::Accepted, Input::DeadlinePassed]);
        assert_eq!(l.state, JobState::TimedOut);
        assert!(effects.contains(&Effect::Settle) && effects.contains(&Effect::GrantFreeRetry));
        let late = step(&l, Input::Succeeded, &LIMITS);
        assert!(!late.applied);
        assert!(late.effects.is_empty());
        assert_eq!(late.next, l);
    }

    #[test]
    fn cancel_refunds_only_before_the_provider_starts() {
        let (_, e) = run(&[Input::Resume, Input::Accepted, Input::CancelRequested]);
        assert!(e.contains(&Effect::Refund));
        let (_, e) = run(&[
            Input::Resume,
            Input::Accepted,
            Input::Progress,
            Input::CancelRequested,
        ]);
        assert!(e.contains(&Effect::Settle) && !e.contains(&Effect::Refund));
        let (l, _) = run(&[Input::Resume, Input::Accepted, Input::Succeeded]);
        assert!(!step(&l, Input::CancelRequested, &LIMITS).applied);
    }

    #[test]
    fn storing_retries_then_fails() {
        let (l, e) = run(&[
            Input::Resume,
            Input::Accepted,
            Input::Succeeded,
            Input::StoreFailed,
            Input::Resume,
            Input::StoreFailed,
            Input::Resume,
            Input::StoreFailed,
            Input::Resume,
        ]);
        assert_eq!(l.state, JobState::Failed);
        assert_eq!(e.iter().filter(|x| **x == Effect::Store).count(), 3);
        assert_eq!(e.last(), Some(&Effect::Refund));
    }
}
