//! Property tests of the pure state machine over random input sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::machine::{step, Effect, Input, Lifecycle, Limits};
use jilo_core::{FailureClass, JobState};
use proptest::prelude::*;

fn class() -> impl Strategy<Value = FailureClass> {
    prop_oneof![
        Just(FailureClass::Retryable),
        Just(FailureClass::OutOfFunds),
        Just(FailureClass::KeyRejected),
        Just(FailureClass::Permanent),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => Just(Input::Resume),
        3 => Just(Input::Accepted),
        2 => class().prop_map(Input::SubmitFailed),
        3 => Just(Input::Progress),
        2 => Just(Input::Succeeded),
        2 => class().prop_map(Input::ProviderFailed),
        2 => Just(Input::Stored),
        2 => Just(Input::StoreFailed),
        1 => Just(Input::DeadlinePassed),
        1 => Just(Input::CancelRequested),
    ]
}

fn ends_hold(e: &Effect) -> bool {
    matches!(e, Effect::Settle | Effect::Refund)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn lifecycle_rules_hold_for_any_input_sequence(
        inputs in prop::collection::vec(input(), 0..60),
        max_attempts in 1u32..5,
        providers in 1usize..4,
    ) {
        let limits = Limits { max_attempts, providers };
        let mut life = Lifecycle::new();
        let mut hold_endings = 0;
        let mut free_retries = 0;
        let mut terminal_at: Option<JobState> = None;
        for i in inputs {
            let s = step(&life, i, &limits);
            if let Some(t) = terminal_at {
                // A terminal state never changes and absorbs everything.
                prop_assert_eq!(s.next.state, t);
                prop_assert!(s.effects.is_empty(), "terminal {t:?} produced {:?}", s.effects);
                prop_assert!(!s.applied);
            }
            if !s.applied {
                prop_assert_eq!(s.next, life);
                prop_assert!(s.effects.is_empty());
            }
            hold_endings += s.effects.iter().filter(|e| ends_hold(e)).count();
            free_retries += s.effects.iter().filter(|e| **e == Effect::GrantFreeRetry).count();
            if s.effects.contains(&Effect::GrantFreeRetry) {
                prop_assert_eq!(s.next.state, JobState::TimedOut);
            }
            // Submissions never exceed the limit; the provider is always on the route. A
            // billed video's copy is not bounded by tries: it ends at the deadline alone,
            // failed with a refund and the admin alerted, or stored.
            prop_assert!(s.next.provider_attempts <= max_attempts);
            prop_assert!(s.next.attempts <= max_attempts * providers as u32);
            // Every submission has a fresh attempt number (a fresh idempotency key).
            if s.effects.iter().any(|e| matches!(e, Effect::Submit { .. })) {
                prop_assert_eq!(s.next.attempts, life.attempts + 1);
            }
            // The job moves on only forward along its route, and only from a failure.
            prop_assert!(s.next.provider_index >= life.provider_index);
            if s.next.provider_index > life.provider_index {
                prop_assert_eq!(s.next.provider_index, life.provider_index + 1);
                prop_assert!(matches!(
                    i,
                    Input::SubmitFailed(_) | Input::ProviderFailed(_) | Input::Resume
                ));
                prop_assert!(!s.next.pending_submit, "nothing is left pending at the old provider");
            }
            if life.state == JobState::Storing && s.next.state == JobState::Failed {
                prop_assert_eq!(i, Input::DeadlinePassed);
                prop_assert!(s.effects.contains(&Effect::AlertCopyFailed));
            }
            prop_assert_eq!(
                s.effects.contains(&Effect::AlertCopyFailed),
                life.state == JobState::Storing && i == Input::DeadlinePassed
            );
            prop_assert!(s.next.provider_index < providers);
            for e in &s.effects {
                if let Effect::Submit { provider_index } = e {
                    prop_assert_eq!(*provider_index, s.next.provider_index);
                }
            }
            if s.next.state.is_terminal() && terminal_at.is_none() {
                terminal_at = Some(s.next.state);
                // Entering a terminal state ends the hold, exactly once.
                prop_assert_eq!(s.effects.iter().filter(|e| ends_hold(e)).count(), 1);
                let settles = s.effects.contains(&Effect::Settle);
                match s.next.state {
                    JobState::Completed | JobState::TimedOut => prop_assert!(settles),
                    JobState::Failed => prop_assert!(!settles),
                    _ => {}
                }
            } else if !s.next.state.is_terminal() {
                prop_assert!(!s.effects.iter().any(ends_hold), "a hold ended before a terminal state");
            }
            life = s.next;
        }
        // Each hold ends in exactly one settle or refund: once if terminal, never otherwise.
        prop_assert_eq!(hold_endings, usize::from(life.state.is_terminal()));
        prop_assert!(free_retries <= 1);
        prop_assert_eq!(free_retries == 1, life.state == JobState::TimedOut);
    }

    #[test]
    fn nothing_after_a_timeout_changes_credits(
        before in prop::collection::vec(input(), 0..10),
        after in prop::collection::vec(input(), 1..30),
    ) {
        let limits = Limits { max_attempts: 3, providers: 2 };
        let mut life = Lifecycle::new();
        for i in before {
            life = step(&life, i, &limits).next;
        }
        if life.state.awaits_result() {
            let timed = step(&life, Input::DeadlinePassed, &limits);
            prop_assert_eq!(timed.next.state, JobState::TimedOut);
            life = timed.next;
            for i in after {
                let s = step(&life, i, &limits);
                prop_assert!(s.effects.is_empty(), "late {i:?} after a timeout produced {:?}", s.effects);
                life = s.next;
            }
            prop_assert_eq!(life.state, JobState::TimedOut);
        }
    }
}
