//! Property test of the whole Studio on the in-memory store: random interleavings of
//! generations, webhooks (progress, success, failure, duplicates, late ones), cancels, submit
//! failures and worker ticks under paused time, with credits from a lasting lot and a lot that
//! expires mid-run (balance reads and the worker writing the expiry). Afterwards every job
//! is finished and the ledger matches: each hold ended exactly once, the way its job's end
//! says, and the lots add up to the balance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jilo_core::testing::{SimFailure, SimProvider, SIM_MODEL};
use jilo_core::{
    Clock, FailureClass, Grant, GrantReason, HoldState, InMemoryStore, JobId, JobState,
    LedgerEntryKind, ProviderStatus, QuotaStore, Studio, Timestamp, TokioClock, UserId,
    VideoRequest, WebhookDelivery,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Generate,
    Progress(usize, u8),
    Succeed(usize),
    Fail(usize, FailureClass),
    Redeliver,
    Cancel(usize),
    FailNextSubmits(bool, usize),
    Wait(u64),
    ReadBalance,
    ExpireCredits,
}

fn op() -> impl Strategy<Value = Op> {
    let class = prop_oneof![
        Just(FailureClass::Retryable),
        Just(FailureClass::OutOfFunds),
        Just(FailureClass::Permanent),
    ];
    prop_oneof![
        3 => Just(Op::Generate),
        2 => (0usize..6, 0u8..=100).prop_map(|(j, p)| Op::Progress(j, p)),
        3 => (0usize..6).prop_map(Op::Succeed),
        2 => ((0usize..6), class).prop_map(|(j, c)| Op::Fail(j, c)),
        1 => Just(Op::Redeliver),
        1 => (0usize..6).prop_map(Op::Cancel),
        1 => (any::<bool>(), 1usize..4).prop_map(|(p, n)| Op::FailNextSubmits(p, n)),
        2 => (1u64..400).prop_map(Op::Wait),
        1 => Just(Op::ReadBalance),
        1 => Just(Op::ExpireCredits),
    ]
}

async fn scenario(ops: Vec<Op>) {
    let store = Arc::new(InMemoryStore::new());
    let primary = Arc::new(SimProvider::new("primary"));
    let backup = Arc::new(SimProvider::new("backup"));
    let clock = Arc::new(TokioClock::new());
    let studio = Studio::builder()
        .provider(primary.clone())
        .provider(backup.clone())
        .store(store.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let user = UserId::new("prop-user");
    store
        .grant(&Grant::signup(
            user.clone(),
            1_000,
            Timestamp::from_millis(0),
        ))
        .await
        .unwrap();
    // Drawn first: 30 credits that expire ten minutes in.
    let start = clock.now();
    store
        .grant(
            &Grant::purchase(user.clone(), 30, "expiring", start)
                .expiring_at(start.plus(Duration::from_secs(600))),
        )
        .await
        .unwrap();
    let mut jobs: Vec<JobId> = Vec::new();
    let mut last: Option<(String, WebhookDelivery)> = None;
    let deliver = |job: JobId, status: ProviderStatus| {
        let studio = studio.clone();
        let (primary, backup) = (primary.clone(), backup.clone());
        async move {
            let j = studio.job(&job).await.unwrap();
            let (Some(provider), Some(rid)) =
                (j.provider().cloned(), j.provider_request_id.clone())
            else {
                return None;
            };
            let sim = if provider.as_str() == "primary" {
                primary
            } else {
                backup
            };
            let d = sim.webhook(&rid, status);
            // Any outcome is allowed; what matters is what the ledger says at the end.
            let _ = studio.handle_webhook(&provider, &d).await;
            Some((provider.to_string(), d))
        }
    };
    for op in ops {
        match op {
            Op::Generate => {
                let req = VideoRequest::new("A kite over a windy beach at noon", SIM_MODEL, 5);
                if let Ok(id) = studio.generate(&user, req).await {
                    jobs.push(id);
                }
            }
            Op::Progress(j, p) if j < jobs.len() => {
                let s = ProviderStatus::Running {
                    progress: Some(p),
                    stage: None,
                };
                last = deliver(jobs[j].clone(), s).await.or(last);
            }
            Op::Succeed(j) if j < jobs.len() => {
                let s = ProviderStatus::Succeeded { video: None };
                last = deliver(jobs[j].clone(), s).await.or(last);
            }
            Op::Fail(j, class) if j < jobs.len() => {
                let s = ProviderStatus::Failed {
                    reason: "model error".into(),
                    class,
                };
                last = deliver(jobs[j].clone(), s).await.or(last);
            }
            Op::Redeliver => {
                if let Some((p, d)) = &last {
                    let _ = studio.handle_webhook(&p.as_str().into(), d).await;
                }
            }
            Op::Cancel(j) if j < jobs.len() => {
                let _ = studio.cancel(&user, &jobs[j]).await;
            }
            Op::FailNextSubmits(on_primary, n) => {
                let sim = if on_primary { &primary } else { &backup };
                sim.fail_next_submits(SimFailure::Unavailable, n);
            }
            Op::Wait(secs) => {
                tokio::time::advance(Duration::from_secs(secs)).await;
                studio.tick().await.unwrap();
            }
            Op::ReadBalance => {
                let b = studio.balance(&user).await.unwrap();
                assert!(b.is_consistent(), "{b:?}");
            }
            Op::ExpireCredits => {
                store.expire_credits(clock.now()).await.unwrap();
            }
            _ => {}
        }
    }
    // Let everything finish: retries, polls, deadlines.
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(60)).await;
        studio.tick().await.unwrap();
    }
    let b = studio.balance(&user).await.unwrap();
    assert!(b.is_consistent(), "{b:?}");
    assert_eq!(b.held, 0, "every hold ended: {b:?}");
    // The lots add up to the balance: what is left of the expiring lot, and the lasting one.
    let statement = store
        .statement(&user, clock.now(), Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(
        statement.expiring.iter().map(|e| e.credits).sum::<i64>() + statement.lasting,
        b.available,
        "{statement:?}"
    );
    assert!(
        statement.expiring.is_empty(),
        "the expiring lot is gone after the run: {statement:?}"
    );
    let history = store.history(&user).await.unwrap();
    let mut timed_out = 0;
    for id in &jobs {
        let job = studio.job(id).await.unwrap();
        assert!(
            job.state.is_terminal(),
            "job {id} is {} after the deadline",
            job.state
        );
        // At most 3 attempts at each of the two providers, each with its own number.
        assert!(job.provider_attempts <= 3);
        assert!(job.attempts <= 6, "{id}: {} attempts", job.attempts);
        let hold = store.hold(id).await.unwrap();
        let expected = match job.state {
            JobState::Completed | JobState::TimedOut => vec![HoldState::Settled],
            JobState::Failed => vec![HoldState::Refunded],
            JobState::Cancelled => vec![HoldState::Refunded, HoldState::Settled],
            other => panic!("{other}"),
        };
        assert!(
            expected.contains(&hold.state),
            "{}: hold {:?}",
            job.state,
            hold.state
        );
        // A refund returns credits (a refund entry) or lapses them (a lapse entry: their lot
        // expired while held), or both for a hold drawn from two lots.
        let of = |pick: fn(&LedgerEntryKind) -> Option<&JobId>| {
            history.iter().filter(|e| pick(&e.kind) == Some(id)).count()
        };
        let settles = of(|k| match k {
            LedgerEntryKind::Settle { job } => Some(job),
            _ => None,
        });
        let refunds = of(|k| match k {
            LedgerEntryKind::Refund { job } => Some(job),
            _ => None,
        });
        let lapses = of(|k| match k {
            LedgerEntryKind::Lapse { job, .. } => Some(job),
            _ => None,
        });
        assert!(
            refunds <= 1 && settles <= 1,
            "job {id}: {settles} settles, {refunds} refunds"
        );
        let ends = settles + usize::from(refunds + lapses > 0);
        assert_eq!(ends, 1, "job {id} ({}) has one hold end", job.state);
        if settles == 1 {
            assert_eq!(refunds + lapses, 0, "job {id}: settled and refunded");
        }
        if job.state == JobState::TimedOut {
            timed_out += 1;
        }
    }
    let free_retries = history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                LedgerEntryKind::Grant {
                    reason: GrantReason::FreeRetry,
                    ..
                }
            )
        })
        .count();
    assert_eq!(free_retries, timed_out, "one free retry per timed-out job");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_ledger_matches_every_job_whatever_happens(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(scenario(ops));
    }
}
