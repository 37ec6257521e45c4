//! The generation state machine: a pure function from a job's lifecycle and an input to the
//! next lifecycle and the effects the Studio must perform. No I/O, no clock.
//!
//! ```text
//! Queued ──Resume: Submit──▶ (attempt written) ──Accepted──▶ Submitted ──Progress──▶ Running
//!   Running/Submitted ──Succeeded──▶ Storing ──Resume: Store──▶ ──Stored──▶ Completed (settle)
//!   retryable failure known not to have reached the provider: Queued, RetryLater
//!   unknown outcome (time-out after sending, crash mid-call): Queued with the attempt pending,
//!     ReconcileLater; Resume then Reconciles (webhook or provider lookup) and resubmits only on
//!     SubmissionLost
//!   out of funds / key rejected: next provider, ResumeNow, alert the admin
//!   the attempt limit of retryable failures at one provider: next provider, ResumeNow
//!   attempts exhausted at the last provider, or a permanent failure: Failed, refund
//!   DeadlinePassed before a result: TimedOut, settle (no refund), one free retry granted
//!   a copy that fails: Storing, RetryLater (the provider billed: it is tried until the
//!     deadline); DeadlinePassed while storing: Failed, refund, alert the admin (AlertCopyFailed)
//!   CancelRequested (queued, nothing at a provider) or CancelConfirmed (the provider stopped
//!     the request): Cancelled, refund
//! ```
//! Effects that call a service (`Submit`, `Reconcile`, `Poll`, `Store`) come only from
//! [`Input::Resume`]; other inputs that need one next ask for [`Effect::ResumeNow`]. So a
//! transition made inside a webhook request can leave the slow work to a worker, and every
//! paid submit is preceded by the write of its attempt.
//!
//! Terminal states absorb every input: the step is not applied and has no effects.

use serde::{Deserialize, Serialize};

use crate::job::JobState;
use crate::traits::FailureClass;

/// The part of a job the machine reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Where the job is.
    pub state: JobState,
    /// Submissions made so far, every provider together (each attempt's number names its
    /// idempotency key and webhook URL, so it only grows).
    pub attempts: u32,
    /// Submissions made to the current provider: at the attempt limit of retryable failures
    /// the job moves to the next provider offering its model.
    pub provider_attempts: u32,
    /// Index of the provider in use in the job's route.
    pub provider_index: usize,
    /// Tries to store the finished video.
    pub store_attempts: u32,
    /// Whether the last attempt was written but its outcome is not known yet (in flight, cut
    /// off, or its process died mid-call).
    pub pending_submit: bool,
}

impl Lifecycle {
    /// A new job: queued, nothing tried, first provider.
    pub fn new() -> Self {
        Self {
            state: JobState::Queued,
            attempts: 0,
            provider_attempts: 0,
            provider_index: 0,
            store_attempts: 0,
            pending_submit: false,
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
    /// Most submissions per job to one provider (the seed: 3); a job that spends them on
    /// retryable failures moves to the next provider of its route before it fails.
    pub max_attempts: u32,
    /// How many providers the job's route has.
    pub providers: usize,
}

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A worker (or `generate`) takes up the job: submit (or reconcile a pending attempt)
    /// when queued, poll when at the provider, store when storing.
    Resume,
    /// The provider accepted the pending submission.
    Accepted,
    /// The pending submission failed this way.
    SubmitFailed(FailureClass),
    /// Reconciling found the pending submission never reached the provider.
    SubmissionLost,
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
    /// The user asked to cancel a job that nothing is running for at a provider.
    CancelRequested,
    /// The provider confirmed it stopped the request and will not bill it.
    CancelConfirmed,
}

/// What the Studio must do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Submit to the provider at this route index now (its attempt is written first).
    Submit {
        /// Route index.
        provider_index: usize,
    },
    /// Find out what became of the pending submission: ask the provider where it can, else
    /// keep waiting for its webhook.
    Reconcile,
    /// Resume the job at once (a worker does, when the step was made in a webhook request).
    ResumeNow,
    /// Look again after a back-off (schedule the next `Resume`).
    RetryLater,
    /// Look again after the grace window a lost answer's webhook is waited for.
    ReconcileLater,
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
    /// Tell the admin the provider's finished video could not be copied: the provider billed
    /// for it and the user was refunded.
    AlertCopyFailed,
}

impl Effect {
    /// Whether the effect calls a service and so holds the job's lease while it runs.
    pub fn calls_service(self) -> bool {
        matches!(
            self,
            Effect::Submit { .. } | Effect::Reconcile | Effect::Poll | Effect::Store
        )
    }
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
        (Queued, Input::Resume) if current.pending_submit => {
            Step::to(next, vec![Effect::Reconcile])
        }
        (Queued, Input::Resume) => {
            if current.provider_attempts >= limits.max_attempts {
                // Its attempts here are spent (the last one known lost): the next provider
                // offering the model, or the end.
                if current.provider_index + 1 < limits.providers {
                    next.provider_index += 1;
                    next.provider_attempts = 0;
                } else {
                    next.state = Failed;
                    return Step::to(next, vec![Effect::Refund]);
                }
            }
            next.attempts += 1;
            next.provider_attempts += 1;
            next.pending_submit = true;
            Step::to(
                next,
                vec![Effect::Submit {
                    provider_index: next.provider_index,
                }],
            )
        }
        (Submitted | Running, Input::Resume) => Step::to(next, vec![Effect::Poll]),
        // The provider made (and billed) the video: its copy is tried, with back-off, until
        // the deadline, however many tries that takes.
        (Storing, Input::Resume) => {
            next.store_attempts = next.store_attempts.saturating_add(1);
            Step::to(next, vec![Effect::Store])
        }
        (Storing, Input::DeadlinePassed) => {
            next.state = Failed;
            Step::to(next, vec![Effect::Refund, Effect::AlertCopyFailed])
        }
        (Queued, Input::Accepted) if current.pending_submit => {
            next.state = Submitted;
            next.pending_submit = false;
            Step::to(next, Vec::new())
        }
        (Queued, Input::SubmitFailed(FailureClass::Unknown)) if current.pending_submit => {
            Step::to(next, vec![Effect::ReconcileLater])
        }
        (Queued, Input::SubmitFailed(class)) if current.pending_submit => {
            next.pending_submit = false;
            failure(&next, class, limits)
        }
        (Queued, Input::SubmissionLost) if current.pending_submit => {
            next.pending_submit = false;
            Step::to(next, vec![Effect::ResumeNow])
        }
        (Submitted | Running, Input::ProviderFailed(class)) => failure(current, class, limits),
        (Submitted | Running, Input::Progress) => {
            next.state = Running;
            Step::to(next, Vec::new())
        }
        (Submitted | Running, Input::Succeeded) => {
            next.state = Storing;
            next.store_attempts = 0;
            Step::to(next, vec![Effect::ResumeNow])
        }
        (Storing, Input::Stored) => {
            next.state = Completed;
            Step::to(next, vec![Effect::Settle])
        }
        (Storing, Input::StoreFailed) => Step::to(next, vec![Effect::RetryLater]),
        (Queued, Input::DeadlinePassed) => {
            next.state = TimedOut;
            next.pending_submit = false;
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
        (Queued, Input::CancelRequested) if !current.pending_submit => {
            next.state = Cancelled;
            Step::to(next, vec![Effect::Refund])
        }
        (Submitted | Running, Input::CancelConfirmed) => {
            next.state = Cancelled;
            Step::to(next, vec![Effect::Refund])
        }
        _ => Step::ignored(current),
    }
}

/// A failure of the request at the provider (from a submit or a status): back to the queue,
/// to the next provider, or failed.
fn failure(current: &Lifecycle, class: FailureClass, limits: &Limits) -> Step {
    let mut next = *current;
    next.state = JobState::Queued;
    next.pending_submit = false;
    let exhausted = current.provider_attempts >= limits.max_attempts;
    let next_provider = current.provider_index + 1;
    match class {
        // A request the provider reports failed is over: an unknown class there is retryable.
        FailureClass::Retryable | FailureClass::Unknown if !exhausted => {
            Step::to(next, vec![Effect::RetryLater])
        }
        // A provider that keeps failing hands the job to the next one offering its model
        // (its earlier attempts are over: none is pending, so none is sent twice).
        FailureClass::Retryable | FailureClass::Unknown if next_provider < limits.providers => {
            next.provider_index = next_provider;
            next.provider_attempts = 0;
            Step::to(next, vec![Effect::ResumeNow])
        }
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
            if next_provider < limits.providers {
                next.provider_index = next_provider;
                next.provider_attempts = 0;
                Step::to(next, vec![alert, Effect::ResumeNow])
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
            Input::Resume,
            Input::Stored,
        ]);
        assert_eq!(l.state, JobState::Completed);
        assert_eq!(
            effects,
            vec![
                Effect::Submit { provider_index: 0 },
                Effect::ResumeNow,
                Effect::Store,
                Effect::Settle
            ]
        );
    }

    #[test]
    fn three_retryable_failures_move_to_the_next_provider_then_fail_and_refund() {
        let f = Input::SubmitFailed(FailureClass::Retryable);
        let mut inputs = Vec::new();
        for _ in 0..3 {
            inputs.extend([Input::Resume, f]);
        }
        let (l, effects) = run(&inputs);
        assert_eq!(
            l.state,
            JobState::Queued,
            "not failed while a provider is left"
        );
        assert_eq!(
            (l.provider_index, l.provider_attempts, l.attempts),
            (1, 0, 3)
        );
        assert_eq!(effects.last(), Some(&Effect::ResumeNow));
        for _ in 0..3 {
            inputs.extend([Input::Resume, f]);
        }
        inputs.push(Input::Resume);
        let (l, effects) = run(&inputs);
        assert_eq!(l.state, JobState::Failed);
        assert_eq!(
            l.attempts, 6,
            "every attempt has its own number (its own key)"
        );
        assert_eq!(effects.last(), Some(&Effect::Refund));
        let submits: Vec<usize> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Submit { provider_index } => Some(*provider_index),
                _ => None,
            })
            .collect();
        assert_eq!(submits, [0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn a_last_attempt_known_lost_moves_on_to_the_next_provider() {
        let f = Input::SubmitFailed(FailureClass::Retryable);
        let (l, effects) = run(&[
            Input::Resume,
            f,
            Input::Resume,
            f,
            Input::Resume,
            Input::SubmitFailed(FailureClass::Unknown),
            Input::SubmissionLost,
            Input::Resume,
        ]);
        assert_eq!(l.state, JobState::Queued);
        assert_eq!(
            (l.provider_index, l.provider_attempts, l.attempts),
            (1, 1, 4)
        );
        assert_eq!(effects.last(), Some(&Effect::Submit { provider_index: 1 }));
    }

    #[test]
    fn an_unknown_outcome_is_reconciled_never_resubmitted_blindly() {
        let unknown = Input::SubmitFailed(FailureClass::Unknown);
        let (l, effects) = run(&[Input::Resume, unknown]);
        assert_eq!(
            (l.state, l.attempts, l.pending_submit),
            (JobState::Queued, 1, true)
        );
        assert_eq!(effects.last(), Some(&Effect::ReconcileLater));
        // A worker (or the restarted process) resumes: it reconciles, it does not submit.
        let s = step(&l, Input::Resume, &LIMITS);
        assert_eq!(s.effects, vec![Effect::Reconcile]);
        assert_eq!(s.next.attempts, 1);
        // Found at the provider (or its webhook came): the same attempt goes on.
        let found = step(&l, Input::Accepted, &LIMITS);
        assert_eq!(
            (found.next.state, found.next.pending_submit),
            (JobState::Submitted, false)
        );
        assert_eq!(found.next.attempts, 1);
        // Known lost: only then the next attempt.
        let lost = step(&l, Input::SubmissionLost, &LIMITS);
        assert_eq!(lost.effects, vec![Effect::ResumeNow]);
        let again = step(&lost.next, Input::Resume, &LIMITS);
        assert_eq!(again.effects, vec![Effect::Submit { provider_index: 0 }]);
        assert_eq!(again.next.attempts, 2);
        // Without a pending attempt, answers about one are out of place.
        let fresh = Lifecycle::new();
        for input in [Input::Accepted, Input::SubmissionLost, unknown] {
            assert!(!step(&fresh, input, &LIMITS).applied, "{input:?}");
        }
    }

    #[test]
    fn out_of_funds_fails_over_and_alerts() {
        let (l, effects) = run(&[Input::Resume, Input::SubmitFailed(FailureClass::OutOfFunds)]);
        assert_eq!((l.provider_index, l.attempts), (1, 1));
        assert_eq!(
            effects,
            vec![
                Effect::Submit { provider_index: 0 },
                Effect::AlertOutOfFunds { provider_index: 0 },
                Effect::ResumeNow
            ]
        );
        let s = step(&l, Input::Resume, &LIMITS);
        assert_eq!(s.effects, vec![Effect::Submit { provider_index: 1 }]);
        let s = step(
            &s.next,
            Input::SubmitFailed(FailureClass::KeyRejected),
            &LIMITS,
        );
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
    fn cancel_refunds_only_when_nothing_runs_or_the_provider_stopped() {
        let (l, e) = run(&[Input::CancelRequested]);
        assert_eq!(l.state, JobState::Cancelled);
        assert_eq!(e, vec![Effect::Refund]);
        // A submission in flight or in doubt: a plain cancel cannot know; it does not apply.
        let (l, _) = run(&[Input::Resume]);
        assert!(!step(&l, Input::CancelRequested, &LIMITS).applied);
        // At the provider, only the provider's confirmation cancels (and refunds).
        let (l, _) = run(&[Input::Resume, Input::Accepted, Input::Progress]);
        assert!(!step(&l, Input::CancelRequested, &LIMITS).applied);
        let s = step(&l, Input::CancelConfirmed, &LIMITS);
        assert_eq!(
            (s.next.state, s.effects),
            (JobState::Cancelled, vec![Effect::Refund])
        );
        let (l, _) = run(&[Input::Resume, Input::Accepted, Input::Succeeded]);
        assert!(!step(&l, Input::CancelConfirmed, &LIMITS).applied);
    }

    #[test]
    fn storing_retries_until_the_deadline_then_fails_and_alerts() {
        let mut inputs = vec![Input::Resume, Input::Accepted, Input::Succeeded];
        for _ in 0..10 {
            inputs.extend([Input::Resume, Input::StoreFailed]);
        }
        let (l, e) = run(&inputs);
        assert_eq!(
            l.state,
            JobState::Storing,
            "a billed video's copy is not given up"
        );
        assert_eq!(e.iter().filter(|x| **x == Effect::Store).count(), 10);
        let step = step(&l, Input::DeadlinePassed, &LIMITS);
        assert_eq!(step.next.state, JobState::Failed);
        assert_eq!(step.effects, vec![Effect::Refund, Effect::AlertCopyFailed]);
    }

    #[test]
    fn service_calls_come_only_from_resume() {
        let inputs = [
            Input::Resume,
            Input::Accepted,
            Input::SubmitFailed(FailureClass::Retryable),
            Input::SubmitFailed(FailureClass::OutOfFunds),
            Input::SubmitFailed(FailureClass::Unknown),
            Input::SubmissionLost,
            Input::Progress,
            Input::Succeeded,
            Input::ProviderFailed(FailureClass::KeyRejected),
            Input::Stored,
            Input::StoreFailed,
            Input::DeadlinePassed,
            Input::CancelRequested,
            Input::CancelConfirmed,
        ];
        for state in JobState::ALL {
            for pending_submit in [false, true] {
                let l = Lifecycle {
                    state,
                    attempts: 1,
                    pending_submit,
                    ..Lifecycle::new()
                };
                for input in inputs.into_iter().filter(|i| *i != Input::Resume) {
                    let s = step(&l, input, &LIMITS);
                    assert!(
                        !s.effects.iter().any(|e| e.calls_service()),
                        "{state:?} {input:?} calls a service: {:?}",
                        s.effects
                    );
                }
            }
        }
    }
}
