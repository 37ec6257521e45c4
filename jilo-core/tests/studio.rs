//! The Studio against the seed's flows and every exception, on the in-memory store with
//! simulated and mocked providers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jilo_core::testing::{
    MockMediaStore, MockVideoProvider, RecordingNotifier, SimFailure, SimProvider, SIM_MODEL,
};
use jilo_core::{
    AlertKind, Error, Grant, GrantReason, HoldState, InMemoryStore, JobState, LedgerEntryKind,
    Policy, Pricing, ProviderId, ProviderStatus, QuotaStore, StoredVideo, Studio, Submission,
    Timestamp, TokioClock, UserId, VideoProvider, VideoRequest, WebhookDelivery, WordListModerator,
};

const PRICE: i64 = 15;

struct Harness {
    studio: Studio,
    store: Arc<InMemoryStore>,
    notifier: Arc<RecordingNotifier>,
    /// The Studio's own clock: a test dates what it writes by it, never by a clock of its own
    /// (two clocks anchor at two wall times, apart by however busy the machine is).
    clock: TokioClock,
}

fn policy() -> Policy {
    Policy {
        pricing: Pricing::new().with_price(SIM_MODEL, 5, PRICE).with_price(
            SIM_MODEL,
            10,
            2 * PRICE,
        ),
        ..Policy::default()
    }
}

fn harness(providers: Vec<Arc<SimProvider>>, policy: Policy) -> Harness {
    harness_with(providers, policy, |b| b)
}

/// A harness whose builder `extra` completes (a media store, …).
fn harness_with(
    providers: Vec<Arc<SimProvider>>,
    policy: Policy,
    extra: impl FnOnce(jilo_core::StudioBuilder) -> jilo_core::StudioBuilder,
) -> Harness {
    let store = Arc::new(InMemoryStore::new());
    let notifier = Arc::new(RecordingNotifier::new());
    let clock = TokioClock::new();
    let mut builder = Studio::builder()
        .store(store.clone())
        .notifier(notifier.clone())
        .moderator(Arc::new(WordListModerator::new(["gore", "暴力"])))
        .clock(Arc::new(clock))
        .policy(policy);
    for p in providers {
        builder = builder.provider(p);
    }
    Harness {
        studio: extra(builder).build().unwrap(),
        store,
        notifier,
        clock,
    }
}

async fn user_with(store: &InMemoryStore, name: &str, credits: i64) -> UserId {
    let user = UserId::new(name);
    store
        .grant(&Grant::signup(
            user.clone(),
            credits,
            Timestamp::from_millis(0),
        ))
        .await
        .unwrap();
    user
}

/// The provider request id of a submitted job.
async fn request_id(studio: &Studio, job: &jilo_core::JobId) -> String {
    studio
        .job(job)
        .await
        .unwrap()
        .provider_request_id
        .expect("the job was submitted")
}

fn request() -> VideoRequest {
    VideoRequest::new("A fox running through fresh snow at dusk", SIM_MODEL, 5)
}

fn ledger_kinds(entries: &[jilo_core::LedgerEntry]) -> Vec<&'static str> {
    entries
        .iter()
        .map(|e| match &e.kind {
            LedgerEntryKind::Grant {
                reason: GrantReason::FreeRetry,
                ..
            } => "free_retry",
            other => other.as_str(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn happy_path_by_webhook_stores_and_settles() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let alice = user_with(&h.store, "alice", 100).await;

    let job_id = h.studio.generate(&alice, request()).await.unwrap();
    let job = h.studio.job(&job_id).await.unwrap();
    assert_eq!(job.state, JobState::Submitted);
    assert_eq!(job.credits, PRICE);
    assert_eq!(job.attempts, 1);
    assert!(
        job.lease_owner.is_none(),
        "the lease is released once submitted"
    );
    let sent = sim.submissions();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].job, job_id);
    assert_eq!(sent[0].provider_model, "sim/sim-video-v1");
    assert_eq!(sent[0].request, request());

    let rid = job.provider_request_id.clone().unwrap();
    let running = sim.webhook(
        &rid,
        ProviderStatus::Running {
            progress: Some(40),
            stage: None,
        },
    );
    let out = h
        .studio
        .handle_webhook(&"sim".into(), &running)
        .await
        .unwrap();
    assert!(out.applied && !out.duplicate);
    assert_eq!(out.state, JobState::Running);
    let job = h.studio.job(&job_id).await.unwrap();
    assert_eq!(
        (job.progress, job.stage.as_deref()),
        (40, Some("generating frames"))
    );

    // The webhook stores the transition and returns; the copy and the settle are a worker's.
    let done = sim.succeeded(&rid, "https://cdn.example/fox.mp4");
    let out = h.studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    assert_eq!(out.state, JobState::Storing);
    assert_eq!(h.store.hold(&job_id).await.unwrap().state, HoldState::Held);
    let report = h.studio.tick().await.unwrap();
    assert_eq!((report.claimed, report.advanced), (1, 1));
    let job = h.studio.job(&job_id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(
        job.output.as_ref().map(|o| o.location.as_str()),
        Some("https://cdn.example/fox.mp4")
    );
    assert_eq!(job.progress, 100);
    let b = h.studio.balance(&alice).await.unwrap();
    assert_eq!((b.available, b.held, b.spent), (100 - PRICE, 0, PRICE));
    let history = h.store.history(&alice).await.unwrap();
    assert_eq!(ledger_kinds(&history), ["grant", "hold", "settle"]);
}

#[tokio::test(start_paused = true)]
async fn quota_short_is_a_clear_error_with_no_job_and_no_charge() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let bob = user_with(&h.store, "bob", 5).await;
    let err = h.studio.generate(&bob, request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Insufficient {
                available: 5,
                needed: PRICE
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "insufficient credits: 5 available, 15 needed"
    );
    assert!(h.studio.jobs_for_user(&bob, 10).await.unwrap().is_empty());
    assert!(
        sim.submissions().is_empty(),
        "the provider was never called"
    );
    let b = h.studio.balance(&bob).await.unwrap();
    assert_eq!((b.available, b.held), (5, 0));
    assert_eq!(
        ledger_kinds(&h.store.history(&bob).await.unwrap()),
        ["grant"]
    );
}

#[tokio::test(start_paused = true)]
async fn moderation_hit_names_the_terms_and_charges_nothing() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let carol = user_with(&h.store, "carol", 100).await;
    let req = VideoRequest::new(
        "A battle scene full of GORE and 暴力 at night",
        SIM_MODEL,
        5,
    );
    let err = h.studio.generate(&carol, req).await.unwrap_err();
    match &err {
        Error::Moderation { terms } => assert_eq!(terms, &["gore", "暴力"]),
        other => panic!("expected moderation, got {other:?}"),
    }
    assert!(err.to_string().contains("gore, 暴力"));
    assert!(sim.submissions().is_empty());
    assert!(h.studio.jobs_for_user(&carol, 10).await.unwrap().is_empty());
    assert_eq!(h.studio.balance(&carol).await.unwrap().available, 100);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_typed_errors_that_change_nothing() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let dan = user_with(&h.store, "dan", 100).await;
    let cases = [
        (VideoRequest::new("too short", SIM_MODEL, 5), "prompt"),
        (VideoRequest::new("x".repeat(501), SIM_MODEL, 5), "prompt"),
        (
            VideoRequest::new("A fox running through snow", "no-such-model", 5),
            "model",
        ),
        (
            VideoRequest::new("A fox running through snow", SIM_MODEL, 7),
            "duration_secs",
        ),
    ];
    for (req, field) in cases {
        match h.studio.generate(&dan, req).await {
            Err(Error::InvalidInput { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
            }
            other => panic!("expected InvalidInput on {field}, got {other:?}"),
        }
    }
    match h.studio.generate(&UserId::new(" "), request()).await {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "user"),
        other => panic!("{other:?}"),
    }
    for bad in ["a\0b", "line\nbreak"] {
        match h.studio.generate(&UserId::new(bad), request()).await {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "user"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A user never granted is short by the whole price, as documented, on every store.
    match h.studio.generate(&UserId::new("ghost"), request()).await {
        Err(Error::Insufficient { available: 0, .. }) => {}
        other => panic!("a user never granted must be Insufficient, got {other:?}"),
    }
    assert!(sim.submissions().is_empty());
    assert_eq!(h.store.history(&dan).await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn provider_5xx_three_times_fails_and_refunds() {
    let mut mock = MockVideoProvider::new();
    mock.expect_id().return_const(ProviderId::new("fal"));
    mock.expect_models()
        .return_const(SimProvider::new("fal").models());
    mock.expect_capabilities()
        .return_const(jilo_core::Capabilities::default());
    mock.expect_submit().times(3).returning(|_| {
        Err(Error::Unavailable {
            service: "fal".into(),
            reason: "upstream error".into(),
            response: Some(jilo_core::HttpFailure::new(502, "bad gateway")),
            source: None,
        })
    });
    let store = Arc::new(InMemoryStore::new());
    let studio = Studio::builder()
        .provider(Arc::new(mock))
        .store(store.clone())
        .clock(Arc::new(TokioClock::new()))
        .policy(policy())
        .build()
        .unwrap();
    let erin = user_with(&store, "erin", 100).await;
    let job_id = studio.generate(&erin, request()).await.unwrap();
    let job = studio.job(&job_id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Queued, 1));
    assert!(job.failure.as_deref().unwrap().contains("502"));
    assert_eq!(studio.balance(&erin).await.unwrap().held, PRICE);

    // The worker resubmits after the back-off, twice more.
    for attempt in 2..=3 {
        tokio::time::advance(studio.policy().retry_backoff.max).await;
        let report = studio.tick().await.unwrap();
        assert_eq!(report.claimed, 1, "attempt {attempt} is due");
        assert_eq!(studio.job(&job_id).await.unwrap().attempts, attempt);
    }
    let job = studio.job(&job_id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(!job.failed_for_service(), "a plain failure");
    assert_eq!(job.next_check_at, None);
    let b = studio.balance(&erin).await.unwrap();
    assert_eq!((b.available, b.held, b.spent), (100, 0, 0));
    assert_eq!(
        ledger_kinds(&store.history(&erin).await.unwrap()),
        ["grant", "hold", "refund"]
    );
    assert_eq!(
        store.hold(&job_id).await.unwrap().state,
        HoldState::Refunded
    );
    // Nothing is due any more: no fourth submit (the mock allows exactly three).
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(studio.tick().await.unwrap().claimed, 0);
}

#[tokio::test(start_paused = true)]
async fn out_of_funds_fails_over_with_one_alert_for_many_jobs() {
    let suchuang = Arc::new(SimProvider::new("suchuang"));
    suchuang.fail_all_submits(SimFailure::OutOfFunds);
    let fal = Arc::new(SimProvider::new("fal"));
    let h = harness(vec![suchuang.clone(), fal.clone()], policy());
    let frank = user_with(&h.store, "frank", 1000).await;

    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(h.studio.generate(&frank, request()).await.unwrap());
    }
    for id in &jobs {
        let job = h.studio.job(id).await.unwrap();
        assert_eq!(job.state, JobState::Submitted);
        assert_eq!(job.provider(), Some(&ProviderId::new("fal")));
        let rid = job.provider_request_id.unwrap();
        let out = h
            .studio
            .handle_webhook(
                &"fal".into(),
                &fal.succeeded(&rid, "https://cdn.example/v.mp4"),
            )
            .await
            .unwrap();
        assert_eq!(out.state, JobState::Storing);
    }
    assert_eq!(h.studio.tick().await.unwrap().advanced, 5);
    for id in &jobs {
        assert_eq!(h.studio.job(id).await.unwrap().state, JobState::Completed);
    }
    let alerts = h.notifier.alerts();
    assert_eq!(
        alerts.len(),
        1,
        "one admin alert, not one per job: {alerts:?}"
    );
    assert_eq!(
        alerts[0].kind,
        AlertKind::ProviderOutOfFunds {
            provider: "suchuang".into()
        }
    );
    assert!(
        alerts[0].detail.contains("余额不足"),
        "{}",
        alerts[0].detail
    );
    // The first job failed over; later jobs skipped the cooling provider.
    assert_eq!(suchuang.submissions().len(), 1);
    assert_eq!(fal.submissions().len(), 5);
    let b = h.studio.balance(&frank).await.unwrap();
    assert_eq!((b.spent, b.held), (5 * PRICE, 0));
}

#[tokio::test(start_paused = true)]
async fn every_provider_out_of_funds_fails_and_refunds() {
    let a = Arc::new(SimProvider::new("a"));
    let b = Arc::new(SimProvider::new("b"));
    a.fail_all_submits(SimFailure::OutOfFunds);
    b.fail_all_submits(SimFailure::KeyRejected);
    let h = harness(vec![a.clone(), b.clone()], policy());
    let gina = user_with(&h.store, "gina", 100).await;
    let id = h.studio.generate(&gina, request()).await.unwrap();
    let job = h.studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.failed_for_service(), "distinct from a plain failure");
    assert_eq!(job.failure.as_deref(), Some(jilo_core::SERVICE_UNAVAILABLE));
    assert_eq!(h.studio.balance(&gina).await.unwrap().available, 100);
    let kinds: Vec<AlertKind> = h.notifier.alerts().into_iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::ProviderOutOfFunds {
                provider: "a".into()
            },
            AlertKind::KeyRejected {
                provider: "b".into()
            }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_times_out_without_refund_and_grants_one_free_retry() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let hana = user_with(&h.store, "hana", 100).await;
    let id = h.studio.generate(&hana, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;

    tokio::time::advance(Duration::from_secs(14 * 60)).await;
    h.studio.tick().await.unwrap();
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::Submitted);

    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    let report = h.studio.tick().await.unwrap();
    assert_eq!(report.advanced, 1);
    let job = h.studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::TimedOut);
    assert!(job.failure.unwrap().contains("15 minutes"));
    assert_eq!(
        sim.cancels(),
        std::slice::from_ref(&rid),
        "the provider is told to stop"
    );
    let b = h.studio.balance(&hana).await.unwrap();
    assert_eq!(
        (b.available, b.held, b.spent, b.granted),
        (100, 0, PRICE, 100 + PRICE),
        "spent, not refunded; the free retry is granted"
    );
    let history = h.store.history(&hana).await.unwrap();
    assert_eq!(
        ledger_kinds(&history),
        ["grant", "hold", "settle", "free_retry"]
    );

    // A late success changes no credits.
    let late = sim.succeeded(&rid, "https://cdn.example/late.mp4");
    let out = h.studio.handle_webhook(&"sim".into(), &late).await.unwrap();
    assert!(!out.applied && !out.duplicate);
    assert_eq!(out.state, JobState::TimedOut);
    assert_eq!(h.store.history(&hana).await.unwrap(), history);
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::TimedOut);
    // Ticking again grants nothing more.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(h.studio.tick().await.unwrap().claimed, 0);
    assert_eq!(h.store.history(&hana).await.unwrap(), history);
}

#[tokio::test(start_paused = true)]
async fn cancel_refunds_only_when_the_provider_stops() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let ivan = user_with(&h.store, "ivan", 100).await;

    // Queued at the provider: it stops the request, the user is refunded.
    let early = h.studio.generate(&ivan, request()).await.unwrap();
    let rid = request_id(&h.studio, &early).await;
    let job = h.studio.cancel(&ivan, &early).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(sim.cancels(), [rid]);
    assert_eq!(
        h.store.hold(&early).await.unwrap().state,
        HoldState::Refunded
    );

    // Running: the provider answers too late, so it will finish and bill. The cancel is
    // refused, nothing is refunded, and the user gets (and pays for) the video.
    let late = h.studio.generate(&ivan, request()).await.unwrap();
    let rid = request_id(&h.studio, &late).await;
    let running = sim.webhook(
        &rid,
        ProviderStatus::Running {
            progress: Some(60),
            stage: None,
        },
    );
    h.studio
        .handle_webhook(&"sim".into(), &running)
        .await
        .unwrap();
    match h.studio.cancel(&ivan, &late).await {
        Err(Error::NotAllowed { reason }) => assert!(reason.contains("bill"), "{reason}"),
        other => panic!("a cancel the provider refuses must be NotAllowed, got {other:?}"),
    }
    assert_eq!(sim.cancels().len(), 2, "the provider was asked");
    assert_eq!(h.store.hold(&late).await.unwrap().state, HoldState::Held);
    assert_eq!(h.studio.job(&late).await.unwrap().state, JobState::Running);
    let done = sim.succeeded(&rid, "https://cdn.example/late.mp4");
    h.studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    h.studio.tick().await.unwrap();
    assert_eq!(
        h.studio.job(&late).await.unwrap().state,
        JobState::Completed
    );
    assert_eq!(h.store.hold(&late).await.unwrap().state, HoldState::Settled);

    let b = h.studio.balance(&ivan).await.unwrap();
    assert_eq!((b.available, b.spent, b.held), (100 - PRICE, PRICE, 0));

    // Finished jobs cannot be cancelled, and other users' jobs are not found.
    match h.studio.cancel(&ivan, &late).await {
        Err(Error::NotAllowed { .. }) => {}
        other => panic!("cancelling a finished job must be NotAllowed, got {other:?}"),
    }
    let judy = user_with(&h.store, "judy", 100).await;
    let hers = h.studio.generate(&judy, request()).await.unwrap();
    match h.studio.cancel(&ivan, &hers).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.studio.job(&hers).await.unwrap().state,
        JobState::Submitted
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_webhook_twice_is_one_transition() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let kim = user_with(&h.store, "kim", 100).await;
    let id = h.studio.generate(&kim, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    let mut events = h.studio.subscribe(&id).await.unwrap();
    assert_eq!(events.next().await.unwrap().state, JobState::Submitted);

    // A progress delivery twice, and the same progress again under a new delivery id: one
    // transition, one event.
    let progress = ProviderStatus::Running {
        progress: Some(30),
        stage: None,
    };
    let running = sim.webhook(&rid, progress.clone());
    let first = h
        .studio
        .handle_webhook(&"sim".into(), &running)
        .await
        .unwrap();
    let version = h.studio.job(&id).await.unwrap().version;
    let again = h
        .studio
        .handle_webhook(&"sim".into(), &running)
        .await
        .unwrap();
    let resent = sim.webhook(&rid, progress);
    let same = h
        .studio
        .handle_webhook(&"sim".into(), &resent)
        .await
        .unwrap();
    assert!(first.applied && !first.duplicate);
    assert!(again.duplicate && !again.applied);
    assert!(!same.applied && !same.duplicate);
    assert_eq!(h.studio.job(&id).await.unwrap().version, version);
    let running_event = events.next().await.unwrap();
    assert_eq!(
        (running_event.state, running_event.version),
        (JobState::Running, version)
    );

    let delivery = sim.succeeded(&rid, "https://cdn.example/a.mp4");
    let first = h
        .studio
        .handle_webhook(&"sim".into(), &delivery)
        .await
        .unwrap();
    let version = h.studio.job(&id).await.unwrap().version;
    let second = h
        .studio
        .handle_webhook(&"sim".into(), &delivery)
        .await
        .unwrap();
    assert!(first.applied && !first.duplicate);
    assert!(second.duplicate && !second.applied);
    assert_eq!(h.studio.job(&id).await.unwrap().version, version);
    h.studio.tick().await.unwrap();
    let seen: Vec<(JobState, u64)> = events.map(|e| (e.state, e.version)).collect().await;
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [JobState::Storing, JobState::Storing, JobState::Completed],
        "one event per transition: {seen:?}"
    );
    assert_eq!(
        ledger_kinds(&h.store.history(&kim).await.unwrap()),
        ["grant", "hold", "settle"]
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_jobs_and_bad_signatures_change_nothing() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let lee = user_with(&h.store, "lee", 100).await;
    let id = h.studio.generate(&lee, request()).await.unwrap();
    let before = h.studio.job(&id).await.unwrap();

    let stray = sim.succeeded("sim-req-999", "https://cdn.example/x.mp4");
    match h.studio.handle_webhook(&"sim".into(), &stray).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a webhook for an unknown job must be NotFound, got {other:?}"),
    }
    let rid = before.provider_request_id.clone().unwrap();
    let mut forged = sim.succeeded(&rid, "https://evil.example/x.mp4");
    forged
        .headers
        .retain(|(k, _)| k != jilo_core::testing::SIM_TOKEN_HEADER);
    match h.studio.handle_webhook(&"sim".into(), &forged).await {
        Err(Error::Unauthorized { .. }) => {}
        other => panic!("an unsigned webhook must be Unauthorized, got {other:?}"),
    }
    let garbage = WebhookDelivery::new(
        vec![(
            jilo_core::testing::SIM_TOKEN_HEADER.into(),
            "sim-token-sim".into(),
        )],
        "not json",
    );
    match h.studio.handle_webhook(&"sim".into(), &garbage).await {
        Err(Error::Protocol { .. }) => {}
        other => panic!("{other:?}"),
    }
    match h.studio.handle_webhook(&"nobody".into(), &forged).await {
        Err(Error::NotFound {
            entity: "provider", ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(h.studio.job(&id).await.unwrap(), before);
    assert_eq!(h.store.history(&lee).await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_webhooks_the_worker_polls_to_completion() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let max = user_with(&h.store, "max", 100).await;
    let id = h.studio.generate(&max, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    let poll = h.studio.policy().poll_interval;

    // Still queued at the provider: nothing changes but the next check.
    tokio::time::advance(poll).await;
    assert_eq!(h.studio.tick().await.unwrap().claimed, 1);
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::Submitted);

    sim.set_status(
        &rid,
        ProviderStatus::Running {
            progress: Some(85),
            stage: Some("rendering".into()),
        },
    );
    tokio::time::advance(poll).await;
    h.studio.tick().await.unwrap();
    let job = h.studio.job(&id).await.unwrap();
    assert_eq!((job.state, job.progress), (JobState::Running, 85));

    // Succeeded without a URL in the status: the Studio fetches the result.
    sim.set_status(&rid, ProviderStatus::Succeeded { video: None });
    tokio::time::advance(poll).await;
    h.studio.tick().await.unwrap();
    let job = h.studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(
        job.video_url.as_deref(),
        Some(format!("https://sim.invalid/{rid}.mp4").as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_each_change_and_the_stream_ends() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let nia = user_with(&h.store, "nia", 100).await;
    let id = h.studio.generate(&nia, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    let mut events = h.studio.subscribe(&id).await.unwrap();

    let studio = h.studio.clone();
    let sim2 = sim.clone();
    let driver = tokio::spawn(async move {
        for p in [10u8, 50, 90] {
            let d = sim2.webhook(
                &rid,
                ProviderStatus::Running {
                    progress: Some(p),
                    stage: None,
                },
            );
            studio.handle_webhook(&"sim".into(), &d).await.unwrap();
        }
        let d = sim2.succeeded(&rid, "https://cdn.example/n.mp4");
        studio.handle_webhook(&"sim".into(), &d).await.unwrap();
        studio.tick().await.unwrap();
    });
    let mut seen = Vec::new();
    while let Some(e) = events.next().await {
        seen.push((e.state, e.progress));
    }
    driver.await.unwrap();
    assert_eq!(seen.first(), Some(&(JobState::Submitted, 0)));
    assert!(seen.contains(&(JobState::Running, 50)));
    assert!(seen.contains(&(JobState::Storing, 100)));
    assert_eq!(seen.last(), Some(&(JobState::Completed, 100)));
    let progress: Vec<u8> = seen.iter().map(|s| s.1).collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );

    // A finished job's stream is its last state alone.
    let done: Vec<_> = h.studio.subscribe(&id).await.unwrap().collect().await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, JobState::Completed);
}

#[tokio::test(start_paused = true)]
async fn the_daily_cap_refuses_with_one_alert() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(
        vec![sim.clone()],
        Policy {
            daily_generation_cap: Some(2),
            ..policy()
        },
    );
    let olga = user_with(&h.store, "olga", 1000).await;
    h.studio.generate(&olga, request()).await.unwrap();
    h.studio.generate(&olga, request()).await.unwrap();
    for _ in 0..3 {
        match h.studio.generate(&olga, request()).await {
            Err(Error::DailyCapReached { cap: 2 }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sim.submissions().len(), 2);
    assert_eq!(h.studio.balance(&olga).await.unwrap().held, 2 * PRICE);
    let alerts = h.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::DailyCapReached { cap: 2 });
}

#[tokio::test(start_paused = true)]
async fn a_job_left_mid_flight_by_a_crash_is_resumed() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let pia = user_with(&h.store, "pia", 100).await;
    // Another process created the job, took the lease and died before submitting.
    let now = jilo_core::Clock::now(&h.clock);
    let mut job = jilo_core::testing::sample_job(&pia, PRICE, now);
    job.next_check_at = Some(now.plus(Duration::from_secs(60)));
    job.lease_owner = Some("dead-process".into());
    job.lease_until = Some(now.plus(Duration::from_secs(60)));
    let hold = jilo_core::Reservation {
        user: pia.clone(),
        job: job.id.clone(),
        credits: PRICE,
        at: now,
        daily_cap: None,
    };
    jilo_core::JobStore::create(h.store.as_ref(), &job, &hold)
        .await
        .unwrap();

    assert_eq!(
        h.studio.tick().await.unwrap().claimed,
        0,
        "the lease still holds"
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    let report = h.studio.tick().await.unwrap();
    assert_eq!((report.claimed, report.advanced), (1, 1));
    let resumed = h.studio.job(&job.id).await.unwrap();
    assert_eq!(resumed.state, JobState::Submitted);
    assert_eq!(sim.submissions().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_media_store_is_retried_then_refunds() {
    let sim = Arc::new(SimProvider::new("sim"));
    let mut media = MockMediaStore::new();
    let mut calls = 0;
    media.expect_store().times(2).returning(move |v| {
        calls += 1;
        if calls == 1 {
            Err(Error::Unavailable {
                service: "media".into(),
                reason: "disk full".into(),
                response: None,
                source: None,
            })
        } else {
            Ok(StoredVideo {
                key: format!("videos/{}.mp4", v.job),
                location: format!("/srv/media/videos/{}.mp4", v.job),
                bytes: Some(1024),
                content_type: Some("video/mp4".into()),
            })
        }
    });
    let Harness { studio, store, .. } = harness_with(vec![sim.clone()], policy(), |b| {
        b.media_store(Arc::new(media))
    });
    let quinn = user_with(&store, "quinn", 100).await;
    let id = studio.generate(&quinn, request()).await.unwrap();
    let rid = request_id(&studio, &id).await;
    studio
        .handle_webhook(
            &"sim".into(),
            &sim.succeeded(&rid, "https://cdn.example/q.mp4"),
        )
        .await
        .unwrap();
    studio.tick().await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Storing);
    assert!(job.failure.unwrap().contains("disk full"));
    tokio::time::advance(studio.policy().retry_backoff.max).await;
    studio.tick().await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.output.unwrap().key, format!("videos/{id}.mp4"));
    assert_eq!(store.hold(&id).await.unwrap().state, HoldState::Settled);
}

#[tokio::test(start_paused = true)]
async fn run_polls_until_shutdown() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let ray = user_with(&h.store, "ray", 100).await;
    let id = h.studio.generate(&ray, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    sim.set_status(
        &rid,
        ProviderStatus::Succeeded {
            video: Some(jilo_core::ProviderVideo {
                url: "https://cdn.example/r.mp4".into(),
                content_type: None,
                bytes: None,
                headers: Vec::new(),
            }),
        },
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let studio = h.studio.clone();
        async move {
            studio
                .run(async {
                    let _ = rx.await;
                })
                .await
        }
    });
    tokio::time::sleep(h.studio.policy().poll_interval * 2).await;
    tx.send(()).unwrap();
    worker.await.unwrap();
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::Completed);
}

#[test]
fn the_builder_refuses_incomplete_or_inconsistent_parts() {
    let sim = Arc::new(SimProvider::new("sim"));
    let store = Arc::new(InMemoryStore::new());
    let no_store = Studio::builder().provider(sim.clone()).build();
    assert!(matches!(no_store, Err(Error::InvalidInput { ref field, .. }) if field == "store"));
    let no_provider = Studio::builder().store(store.clone()).build();
    assert!(
        matches!(no_provider, Err(Error::InvalidInput { ref field, .. }) if field == "providers")
    );
    let twice = Studio::builder()
        .provider(sim.clone())
        .provider(Arc::new(SimProvider::new("sim")))
        .store(store.clone())
        .build();
    assert!(twice.is_err());
    let unknown_order = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .policy(Policy {
            failover_order: vec!["fal".into()],
            ..Policy::default()
        })
        .build();
    assert!(
        matches!(unknown_order, Err(Error::InvalidInput { ref field, .. }) if field == "failover_order")
    );
    for bad in [
        "hooks.example.com/webhooks",
        "ftp://h/x",
        "https://h/x?token=1",
    ] {
        let bad_hooks = Studio::builder()
            .provider(sim.clone())
            .store(store.clone())
            .policy(Policy {
                webhook_base_url: Some(bad.into()),
                ..Policy::default()
            })
            .build();
        assert!(
            matches!(bad_hooks, Err(Error::InvalidInput { ref field, .. }) if field == "webhook_base_url"),
            "{bad}"
        );
    }
    let reordered = Studio::builder()
        .provider(sim)
        .provider(Arc::new(SimProvider::new("fal")))
        .store(store)
        .policy(Policy {
            failover_order: vec!["fal".into()],
            ..Policy::default()
        })
        .build()
        .unwrap();
    let order: Vec<ProviderId> = reordered.models().into_iter().map(|(p, _)| p).collect();
    assert_eq!(order, [ProviderId::new("fal"), ProviderId::new("sim")]);
}

#[test]
fn the_studio_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Studio>();
    let _ = Submission {
        request_id: String::new(),
    };
}

/// A subscriber that falls behind loses events from the store's buffer; re-reading the job
/// still brings it the end.
#[tokio::test(start_paused = true)]
async fn a_subscriber_that_misses_events_still_sees_the_end() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let user = user_with(&h.store, "sam", 100).await;
    let watched = h.studio.generate(&user, request()).await.unwrap();
    let busy = h.studio.generate(&user, request()).await.unwrap();
    let mut events = h.studio.subscribe(&watched).await.unwrap();
    assert_eq!(events.next().await.unwrap().state, JobState::Submitted);

    // The watched job finishes, then another job floods the event buffer (1024) before the
    // subscriber reads again: the watched job's events are gone from it.
    let rid = request_id(&h.studio, &watched).await;
    let done = sim.succeeded(&rid, "https://cdn.example/s.mp4");
    h.studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    h.studio.tick().await.unwrap();
    let busy_rid = request_id(&h.studio, &busy).await;
    for i in 0..1100u32 {
        let p = ProviderStatus::Running {
            progress: Some((i % 100) as u8),
            stage: None,
        };
        h.studio
            .handle_webhook(&"sim".into(), &sim.webhook(&busy_rid, p))
            .await
            .unwrap();
    }
    let rest: Vec<_> = events.collect().await;
    assert_eq!(
        rest.last().map(|e| e.state),
        Some(JobState::Completed),
        "{rest:?}"
    );
    assert!(rest.iter().all(|e| e.job == watched));
    let versions: Vec<u64> = rest.iter().map(|e| e.version).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "no event repeats: {versions:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_webhook_for_an_earlier_attempt_changes_nothing() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let tia = user_with(&h.store, "tia", 100).await;
    let id = h.studio.generate(&tia, request()).await.unwrap();
    let first = request_id(&h.studio, &id).await;

    // The poll sees the first attempt fail; the worker resubmits after the back-off.
    sim.set_status(
        &first,
        ProviderStatus::Failed {
            reason: "GPU fault".into(),
            class: jilo_core::FailureClass::Retryable,
        },
    );
    tokio::time::advance(h.studio.policy().poll_interval).await;
    h.studio.tick().await.unwrap();
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::Queued);
    tokio::time::advance(h.studio.policy().retry_backoff.max).await;
    h.studio.tick().await.unwrap();
    let job = h.studio.job(&id).await.unwrap();
    let second = job.provider_request_id.clone().unwrap();
    assert_ne!(first, second);
    assert_eq!((job.state, job.attempts), (JobState::Submitted, 2));

    // The provider's webhook about the first attempt arrives late.
    let late = sim.succeeded(&first, "https://cdn.example/first.mp4");
    let out = h.studio.handle_webhook(&"sim".into(), &late).await.unwrap();
    assert!(!out.applied && !out.duplicate);
    assert_eq!(out.state, JobState::Submitted);
    assert_eq!(h.studio.job(&id).await.unwrap(), job, "nothing changed");

    // The current attempt still completes normally.
    let done = sim.succeeded(&second, "https://cdn.example/second.mp4");
    let out = h.studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    assert_eq!(out.state, JobState::Storing);
    h.studio.tick().await.unwrap();
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::Completed);
    assert_eq!(
        h.studio.job(&id).await.unwrap().video_url.as_deref(),
        Some("https://cdn.example/second.mp4")
    );
}

/// A media store that takes minutes, like a large download on a slow link.
#[derive(Debug)]
struct SlowMedia {
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl jilo_core::MediaStore for SlowMedia {
    async fn store(&self, v: &jilo_core::VideoToStore) -> jilo_core::Result<StoredVideo> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5 * 60)).await;
        Ok(StoredVideo {
            key: format!("videos/{}.mp4", v.job),
            location: format!("/media/{}.mp4", v.job),
            bytes: Some(1),
            content_type: Some("video/mp4".into()),
        })
    }

    async fn info(&self, key: &str) -> jilo_core::Result<jilo_core::MediaInfo> {
        Err(jilo_core::Error::not_found("media", key))
    }

    async fn read_from(
        &self,
        key: &str,
        _offset: u64,
    ) -> jilo_core::Result<jilo_core::MediaStream> {
        Err(jilo_core::Error::not_found("media", key))
    }
}

/// A webhook handled while the copy into media storage is slow returns before the copy
/// ends; the copy runs once, in a worker that renews its lease, while another worker on the
/// same store finds nothing to take; the job completes.
#[tokio::test(start_paused = true)]
async fn a_slow_copy_runs_once_in_a_worker_not_in_the_webhook() {
    let sim = Arc::new(SimProvider::new("sim"));
    let media = Arc::new(SlowMedia {
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let Harness {
        studio,
        store,
        clock,
        ..
    } = harness_with(vec![sim.clone()], policy(), |b| {
        b.media_store(media.clone()).worker_name("worker-a")
    });
    let other = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .media_store(media.clone())
        .clock(Arc::new(clock))
        .policy(policy())
        .worker_name("worker-b")
        .build()
        .unwrap();
    let uma = user_with(&store, "uma", 100).await;
    let id = studio.generate(&uma, request()).await.unwrap();
    let rid = request_id(&studio, &id).await;

    let started = tokio::time::Instant::now();
    let delivery = sim.succeeded(&rid, "https://cdn.example/big.mp4");
    let out = studio
        .handle_webhook(&"sim".into(), &delivery)
        .await
        .unwrap();
    assert_eq!(out.state, JobState::Storing);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the webhook did not wait"
    );
    assert_eq!(media.calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let studio = studio.clone();
        async move {
            studio
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    // Well past the 60 s lease: the copying worker renewed it, so the other finds nothing.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(studio.job(&id).await.unwrap().state, JobState::Storing);
        assert_eq!(
            other.tick().await.unwrap().claimed,
            0,
            "the copy still holds the job"
        );
    }
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    assert_eq!(studio.job(&id).await.unwrap().state, JobState::Completed);
    assert_eq!(store.hold(&id).await.unwrap().state, HoldState::Settled);
    assert_eq!(media.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    stop.send(()).unwrap();
    worker.await.unwrap();
}

/// The worker watches balances: a provider under its threshold alerts the admin once per
/// cooldown, before users meet an empty account; one above it, or without a threshold, does not.
#[tokio::test(start_paused = true)]
async fn a_low_balance_alerts_the_admin_once_before_users_meet_it() {
    let suchuang = Arc::new(SimProvider::new("suchuang"));
    let fal = Arc::new(SimProvider::new("fal"));
    suchuang.set_balance(9_000); // 90 元
    fal.set_balance(500_000);
    let mut p = policy();
    p.low_balance.insert("suchuang".into(), 10_000);
    p.low_balance.insert("fal".into(), 1_000);
    p.balance_check_interval = Duration::from_secs(60);
    let h = harness(vec![suchuang.clone(), fal.clone()], p);

    let read = h.studio.check_balances().await;
    assert_eq!(read.len(), 2);
    let alerts = h.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].kind,
        AlertKind::BalanceLow {
            provider: "suchuang".into(),
            balance_minor: 9_000
        }
    );
    assert!(
        alerts[0].detail.contains("90 CNY") || alerts[0].detail.contains("90 USD"),
        "{}",
        alerts[0].detail
    );

    // The worker checks on its schedule; within the cooldown there is no second alert.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let studio = h.studio.clone();
        async move {
            studio
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    assert_eq!(h.notifier.alerts().len(), 1, "one alert per cooldown");
    stop.send(()).unwrap();
    worker.await.unwrap();
}

/// The cost report: per provider and day, jobs, deliveries, credits charged and what the
/// provider charged (from its catalog), so a host sees its margin.
#[tokio::test(start_paused = true)]
async fn the_cost_report_shows_the_margin_per_provider_and_day() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let olga = user_with(&h.store, "olga", 1_000).await;
    let start = jilo_core::Clock::now(&h.clock);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(h.studio.generate(&olga, request()).await.unwrap());
    }
    // Two delivered, one failed at the provider, one timed out.
    for id in &ids[..2] {
        let rid = request_id(&h.studio, id).await;
        let done = sim.succeeded(&rid, "https://cdn.example/v.mp4");
        h.studio.handle_webhook(&"sim".into(), &done).await.unwrap();
    }
    let rid = request_id(&h.studio, &ids[2]).await;
    let failed = ProviderStatus::Failed {
        reason: "input refused".into(),
        class: jilo_core::FailureClass::Permanent,
    };
    h.studio
        .handle_webhook(&"sim".into(), &sim.webhook(&rid, failed))
        .await
        .unwrap();
    h.studio.tick().await.unwrap();
    tokio::time::advance(h.studio.policy().deadline + Duration::from_secs(1)).await;
    h.studio.tick().await.unwrap();
    let states: Vec<JobState> = futures::future::join_all(ids.iter().map(|id| h.studio.job(id)))
        .await
        .into_iter()
        .map(|j| j.unwrap().state)
        .collect();
    assert_eq!(
        states,
        [
            JobState::Completed,
            JobState::Completed,
            JobState::Failed,
            JobState::TimedOut
        ]
    );
    assert_eq!(
        h.studio.job(&ids[0]).await.unwrap().provider_cost,
        Some(jilo_core::ProviderCost {
            minor: 25,
            currency: "USD".into()
        }),
        "the provider's charge is recorded when it accepts"
    );

    let report = h
        .studio
        .cost_report(start, start.plus(Duration::from_secs(86_400)))
        .await
        .unwrap();
    assert_eq!(report.len(), 1);
    let line = &report[0];
    assert_eq!(line.provider, ProviderId::new("sim"));
    assert_eq!(line.utc_day, start.utc_day());
    assert_eq!((line.jobs, line.delivered), (4, 2));
    assert_eq!(
        line.credits_charged,
        3 * PRICE,
        "delivered and timed out are charged"
    );
    assert_eq!(
        (line.provider_cost_minor, line.currency.as_str()),
        (75, "USD")
    );
    let empty = h
        .studio
        .cost_report(
            start.plus(Duration::from_secs(86_400)),
            start.plus(Duration::from_secs(2 * 86_400)),
        )
        .await
        .unwrap();
    assert!(empty.is_empty());
}

/// The breaker: a provider failing submits again and again (5xx) is cooled after
/// `Policy::breaker_failures` in a row, the admin told once, and new jobs go to the other.
#[tokio::test(start_paused = true)]
async fn a_provider_failing_again_and_again_is_cooled_by_the_breaker() {
    let flaky = Arc::new(SimProvider::new("flaky"));
    let steady = Arc::new(SimProvider::new("steady"));
    flaky.fail_all_submits(SimFailure::Unavailable);
    let h = harness(
        vec![flaky.clone(), steady.clone()],
        Policy {
            breaker_failures: 3,
            ..policy()
        },
    );
    let pia = user_with(&h.store, "pia", 1_000).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.studio.generate(&pia, request()).await.unwrap());
    }
    assert_eq!(
        flaky.submissions().len(),
        3,
        "three tries in a row at the flaky provider"
    );
    let alerts = h.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].kind,
        AlertKind::ProviderDegraded {
            provider: "flaky".into()
        }
    );
    let next = h.studio.generate(&pia, request()).await.unwrap();
    let job = h.studio.job(&next).await.unwrap();
    assert_eq!(
        job.provider(),
        Some(&ProviderId::new("steady")),
        "routed around"
    );
    assert_eq!(job.state, JobState::Submitted);
    assert_eq!(flaky.submissions().len(), 3);
}

/// A provider that declares nothing beyond submit and status (速创's shape), over the sim.
struct PolledOnly(Arc<SimProvider>);

#[async_trait::async_trait]
impl VideoProvider for PolledOnly {
    fn id(&self) -> ProviderId {
        self.0.id()
    }
    fn models(&self) -> Vec<jilo_core::ModelSpec> {
        self.0.models()
    }
    fn capabilities(&self) -> jilo_core::Capabilities {
        jilo_core::Capabilities::default()
    }
    async fn submit(&self, request: &jilo_core::SubmitRequest) -> jilo_core::Result<Submission> {
        self.0.submit(request).await
    }
    async fn status(&self, q: &jilo_core::StatusQuery) -> jilo_core::Result<ProviderStatus> {
        self.0.status(q).await
    }
    async fn result(
        &self,
        q: &jilo_core::StatusQuery,
    ) -> jilo_core::Result<jilo_core::ProviderVideo> {
        self.0.result(q).await
    }
    async fn cancel(
        &self,
        q: &jilo_core::StatusQuery,
    ) -> jilo_core::Result<jilo_core::CancelOutcome> {
        self.0.cancel(q).await
    }
    async fn parse_webhook(
        &self,
        d: &WebhookDelivery,
    ) -> jilo_core::Result<jilo_core::WebhookEvent> {
        self.0.parse_webhook(d).await
    }
    async fn balance(&self) -> jilo_core::Result<Option<jilo_core::ProviderBalance>> {
        self.0.balance().await
    }
}

/// Capabilities are data the Studio reads before it acts: with `webhook_base_url` set, a
/// provider that sends no webhooks gets no URL and its job is polled every `poll_interval`
/// (not at the 60 s backstop, six times slower); a cancel it cannot do is refused without a
/// call; a balance it cannot read is not asked for.
#[tokio::test(start_paused = true)]
async fn a_provider_without_webhooks_is_polled_and_never_asked_what_it_cannot_do() {
    let sim = Arc::new(SimProvider::new("sim"));
    let store = Arc::new(InMemoryStore::new());
    let studio = Studio::builder()
        .provider(Arc::new(PolledOnly(sim.clone())))
        .store(store.clone())
        .clock(Arc::new(TokioClock::new()))
        .policy(Policy {
            webhook_base_url: Some("https://host.example/webhooks".into()),
            poll_interval: Duration::from_secs(10),
            webhook_backstop: Duration::from_secs(60),
            ..policy()
        })
        .build()
        .unwrap();
    let user = user_with(&store, "polled", 100).await;
    let id = studio.generate(&user, request()).await.unwrap();
    let submitted = sim.submissions();
    assert_eq!(submitted.len(), 1);
    assert_eq!(
        submitted[0].webhook_url, None,
        "no webhook URL for a provider that sends none"
    );
    let job = studio.job(&id).await.unwrap();
    assert!(!job.webhook, "the job is not waiting for a webhook");
    let next = job.next_check_at.expect("a polled job has its next check");
    let wait = next.as_millis() - job.updated_at.as_millis();
    assert!(
        (1..=10_000).contains(&wait),
        "polled at the poll interval, not the backstop: next check in {wait} ms"
    );
    // A cancel of a job at the provider: refused without asking (it would run and bill).
    let refused = studio.cancel(&user, &id).await;
    assert!(
        matches!(refused, Err(Error::NotAllowed { .. })),
        "{refused:?}"
    );
    assert!(sim.cancels().is_empty(), "cancel was never called");
    // No balance endpoint: not read.
    let balances = studio.check_balances().await;
    assert_eq!(balances, vec![(ProviderId::new("sim"), None)]);
}

/// A video the provider made (and billed) is not lost to a failing copy: the copy is tried
/// with back-off well past the attempt limit, until the deadline counted from the result;
/// then the job fails with a refund and the admin is alerted once, as a lost copy (not a
/// provider failure). The headers the provider gave for the download travel with it.
#[tokio::test(start_paused = true)]
async fn a_failing_copy_is_retried_until_the_deadline_then_refunded_and_alerted() {
    let sim = Arc::new(SimProvider::new("sim"));
    let mut media = MockMediaStore::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    media.expect_store().returning(move |v| {
        log.lock().unwrap().push(v.headers.clone());
        Err(Error::Protocol {
            service: "media".into(),
            reason: "the video URL answered HTTP 403".into(),
            response: None,
            source: None,
        })
    });
    let h = harness_with(vec![sim.clone()], policy(), |b| {
        b.media_store(Arc::new(media))
    });
    let user = user_with(&h.store, "copy-lost", 100).await;
    let id = h.studio.generate(&user, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    // The result arrives 14 minutes in: the copy still gets a whole deadline of its own.
    tokio::time::advance(Duration::from_secs(14 * 60)).await;
    sim.set_status(
        &rid,
        ProviderStatus::Succeeded {
            video: Some(
                jilo_core::ProviderVideo::new("https://cdn.example/lost.mp4")
                    .with_header("Referer", "https://api.example/"),
            ),
        },
    );
    h.studio.tick().await.unwrap(); // poll: Storing
    let deadline = h.studio.job(&id).await.unwrap().deadline_at;
    let mut ticks = 0;
    loop {
        h.studio.tick().await.unwrap();
        let job = h.studio.job(&id).await.unwrap();
        if job.state.is_terminal() {
            break;
        }
        assert_eq!(job.state, JobState::Storing);
        ticks += 1;
        assert!(ticks < 200, "the copy gives up at the deadline");
        tokio::time::advance(h.studio.policy().retry_backoff.max).await;
    }
    let job = h.studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.failure
            .as_deref()
            .unwrap_or_default()
            .contains("could not be copied"),
        "{:?}",
        job.failure
    );
    let tries = seen.lock().unwrap().len();
    assert!(
        tries > h.studio.policy().max_attempts as usize,
        "tried {tries} times, past the attempt limit"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|h| h == &[("Referer".to_owned(), "https://api.example/".to_owned())]),
        "every try carried the provider's headers"
    );
    assert!(
        job.updated_at >= deadline,
        "not given up before the deadline: {:?} < {deadline:?}",
        job.updated_at
    );
    assert!(
        deadline.as_millis() - job.created_at.as_millis() >= 29 * 60 * 1000,
        "the copy's deadline counts from the result (14 min in), not from the job's start"
    );
    assert_eq!(h.store.hold(&id).await.unwrap().state, HoldState::Refunded);
    let alerts = h.notifier.alerts();
    let copy_alerts: Vec<_> = alerts
        .iter()
        .filter(|a| matches!(&a.kind, AlertKind::CopyFailed { job, .. } if *job == id))
        .collect();
    assert_eq!(copy_alerts.len(), 1, "{alerts:?}");
    assert!(
        !alerts
            .iter()
            .any(|a| matches!(a.kind, AlertKind::ProviderOutOfFunds { .. })),
        "a lost copy is not a provider failure"
    );
}

/// A provider that keeps failing retryably does not fail a job another provider can do: after
/// the attempt limit of 5xx at the first (速创 answering 503 three times), the job moves to the
/// next provider offering its model and completes there, charged once; every attempt has its
/// own number (its own idempotency key), so nothing is sent twice.
#[tokio::test(start_paused = true)]
async fn a_provider_failing_past_the_attempt_limit_hands_the_job_to_the_next() {
    let first = Arc::new(SimProvider::new("first"));
    let second = Arc::new(SimProvider::new("second"));
    first.fail_all_submits(SimFailure::Unavailable);
    let h = harness(vec![first.clone(), second.clone()], policy());
    let user = user_with(&h.store, "failover-5xx", 100).await;
    let id = h.studio.generate(&user, request()).await.unwrap();
    for _ in 0..10 {
        if h.studio
            .job(&id)
            .await
            .unwrap()
            .provider_request_id
            .is_some()
        {
            break;
        }
        tokio::time::advance(h.studio.policy().retry_backoff.max).await;
        h.studio.tick().await.unwrap();
    }
    let job = h.studio.job(&id).await.unwrap();
    assert_eq!(job.route[job.provider_index], ProviderId::new("second"));
    assert_eq!(job.state, JobState::Submitted);
    assert_eq!((job.attempts, job.provider_attempts), (4, 1));
    assert_eq!(
        first.submissions().len(),
        3,
        "the attempt limit at the first"
    );
    let at_second = second.submissions();
    assert_eq!(at_second.len(), 1);
    assert_eq!(
        at_second[0].attempt, 4,
        "a fresh attempt number at the next provider"
    );
    let rid = job.provider_request_id.clone().unwrap();
    h.studio
        .handle_webhook(
            &"second".into(),
            &second.succeeded(&rid, "https://cdn.example/f.mp4"),
        )
        .await
        .unwrap();
    h.studio.tick().await.unwrap();
    assert_eq!(h.studio.job(&id).await.unwrap().state, JobState::Completed);
    let b = h.studio.balance(&user).await.unwrap();
    assert_eq!((b.spent, b.held), (PRICE, 0));
}

#[tokio::test]
async fn a_thousand_subscribers_of_one_job_share_its_follower_and_see_each_change() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let ola = user_with(&h.store, "ola", 100).await;
    let id = h.studio.generate(&ola, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    let mut streams = Vec::new();
    for _ in 0..1_000 {
        streams.push(h.studio.subscribe(&id).await.unwrap());
    }
    // One leaves at once; the others are unaffected.
    drop(streams.pop());
    for p in [20u8, 60] {
        let d = sim.webhook(
            &rid,
            ProviderStatus::Running {
                progress: Some(p),
                stage: None,
            },
        );
        h.studio.handle_webhook(&"sim".into(), &d).await.unwrap();
    }
    let d = sim.succeeded(&rid, "https://cdn.example/o.mp4");
    h.studio.handle_webhook(&"sim".into(), &d).await.unwrap();
    h.studio.tick().await.unwrap();
    let all: Vec<Vec<(JobState, u8)>> = futures::future::join_all(
        streams
            .into_iter()
            .map(|s| s.map(|e| (e.state, e.progress)).collect::<Vec<_>>()),
    )
    .await;
    assert_eq!(all.len(), 999);
    for seen in &all {
        assert_eq!(seen, &all[0]);
    }
    assert_eq!(all[0].first(), Some(&(JobState::Submitted, 0)));
    assert!(all[0].contains(&(JobState::Running, 20)));
    assert!(all[0].contains(&(JobState::Running, 60)));
    assert_eq!(all[0].last(), Some(&(JobState::Completed, 100)));
    // After the end, a subscriber gets the terminal state alone.
    let late: Vec<JobState> = h
        .studio
        .subscribe(&id)
        .await
        .unwrap()
        .map(|e| e.state)
        .collect()
        .await;
    assert_eq!(late, [JobState::Completed]);
}

#[tokio::test]
async fn a_job_whose_subscribers_all_left_is_followed_afresh() {
    let sim = Arc::new(SimProvider::new("sim"));
    let h = harness(vec![sim.clone()], policy());
    let pia = user_with(&h.store, "pia", 100).await;
    let id = h.studio.generate(&pia, request()).await.unwrap();
    let rid = request_id(&h.studio, &id).await;
    let mut first = h.studio.subscribe(&id).await.unwrap();
    assert_eq!(
        first.next().await.map(|e| e.state),
        Some(JobState::Submitted)
    );
    drop(first);
    // Let the follower notice it has nobody left.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let mut again = h.studio.subscribe(&id).await.unwrap();
    assert_eq!(
        again.next().await.map(|e| e.state),
        Some(JobState::Submitted)
    );
    let d = sim.webhook(
        &rid,
        ProviderStatus::Running {
            progress: Some(40),
            stage: None,
        },
    );
    h.studio.handle_webhook(&"sim".into(), &d).await.unwrap();
    let next = again.next().await.unwrap();
    assert_eq!((next.state, next.progress), (JobState::Running, 40));
}
