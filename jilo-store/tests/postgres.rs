//! The Postgres store: conformance suites, migrations, events across store instances, the
//! Studio on a shared database. Each test runs on a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jilo_core::testing::{job_store_suite, quota_store_suite, SimProvider, SIM_MODEL};
use jilo_core::{Error, Grant, JobState, QuotaStore, Studio, Timestamp, UserId, VideoRequest};
use jilo_store::{SqlStore, SqlStoreOptions, SqlValue};

#[tokio::test]
async fn postgres_passes_the_conformance_suites() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let store = common::open(&url).await;
    quota_store_suite(&store).await;
    job_store_suite(&store).await;
    jilo_core::testing::alert_store_suite(&store).await;
    jilo_core::testing::trend_cache_suite(&store).await;
    jilo_core::testing::channel_store_suite(&store).await;
    jilo_core::testing::publication_store_suite(&store).await;
    jilo_core::testing::credit_lots_suite(&store, jilo_core::testing::StoreCapabilities::ALL).await;
    assert!(common::check_ledger(&store).await > 0);
    store.close().await;
    common::drop_postgres_database(&url).await;
}

#[tokio::test]
async fn postgres_migrations_race_safely_and_refuse_a_newer_schema() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let stores: Vec<SqlStore> = futures::future::join_all(
        (0..4).map(|_| SqlStore::connect(&url, SqlStoreOptions::default())),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let versions = futures::future::join_all(stores.iter().map(|s| s.migrate())).await;
    for v in versions {
        assert_eq!(
            v.unwrap(),
            stores[0].schema_version(),
            "concurrent migrations all end at the latest version"
        );
    }
    let future = stores[0].schema_version() + 1;
    stores[0]
        .execute(
            "INSERT INTO jilo_schema (version, name, applied_ms) VALUES ($1, 'future', 0)",
            &[SqlValue::from(future)],
        )
        .await
        .unwrap();
    match stores[1].migrate().await {
        Err(Error::Storage { reason, .. }) => {
            assert!(reason.contains(&format!("version {future}")), "{reason}")
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
    for s in &stores {
        s.close().await;
    }
    common::drop_postgres_database(&url).await;
}

/// Two store instances on one database stand for two processes: a Studio on one sees, through
/// `subscribe`, the transitions a Studio on the other makes.
#[tokio::test]
async fn subscribers_see_transitions_made_by_another_process() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let here = Arc::new(common::open(&url).await);
    let there = Arc::new(common::open(&url).await);
    let sim = Arc::new(SimProvider::new("sim"));
    let studio_here = Studio::builder()
        .provider(sim.clone())
        .store(here.clone())
        .build()
        .unwrap();
    let studio_there = Studio::builder()
        .provider(sim.clone())
        .store(there.clone())
        .build()
        .unwrap();
    let user = UserId::new("pg-sub");
    here.grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();

    let job = studio_here
        .generate(
            &user,
            VideoRequest::new("Waves on a black sand beach", SIM_MODEL, 5),
        )
        .await
        .unwrap();
    let mut events = studio_here.subscribe(&job).await.unwrap();
    let first = events.next().await.unwrap();
    assert_eq!(first.state, JobState::Submitted);

    let rid = studio_there
        .job(&job)
        .await
        .unwrap()
        .provider_request_id
        .unwrap();
    studio_there
        .handle_webhook(
            &"sim".into(),
            &sim.succeeded(&rid, "https://cdn.example/w.mp4"),
        )
        .await
        .unwrap();
    // The other process's worker copies the video and settles.
    studio_there.tick().await.unwrap();
    let seen: Vec<JobState> = tokio::time::timeout(
        Duration::from_secs(10),
        events.map(|e| e.state).collect::<Vec<_>>(),
    )
    .await
    .expect("the stream ends after the terminal event");
    assert_eq!(
        seen,
        [JobState::Storing, JobState::Storing, JobState::Completed]
    );

    // Many watchers of one store share one LISTEN connection.
    let mut watchers = Vec::new();
    for _ in 0..20 {
        watchers.push(jilo_core::JobStore::watch(here.as_ref()).await.unwrap());
    }
    let listening = common::int(
        &here,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        &[],
    )
    .await;
    assert_eq!(
        listening, 1,
        "21 watchers of one store, one LISTEN connection"
    );
    drop(watchers);
    let b = studio_here.balance(&user).await.unwrap();
    assert_eq!((b.available, b.spent), (90, 10));
    common::check_ledger(&here).await;
    here.close().await;
    there.close().await;
    common::drop_postgres_database(&url).await;
}

/// Two workers (two Studios on two pools: two processes, as far as Postgres can tell) poll
/// the same jobs: every job completes once and each hold is settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_jobs_of_one_database() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let a_store = Arc::new(common::open(&url).await);
    let b_store = Arc::new(common::open(&url).await);
    let sim = Arc::new(SimProvider::new("sim"));
    let policy = jilo_core::Policy {
        poll_interval: Duration::from_millis(5),
        ..jilo_core::Policy::default()
    };
    let build = |store: Arc<SqlStore>, name: &str| {
        Studio::builder()
            .provider(sim.clone())
            .store(store)
            .policy(policy.clone())
            .worker_name(name)
            .build()
            .unwrap()
    };
    let (a, b) = (
        build(a_store.clone(), "worker-a"),
        build(b_store.clone(), "worker-b"),
    );
    let user = UserId::new("pg-workers");
    a_store
        .grant(&Grant::signup(
            user.clone(),
            1_000,
            Timestamp::from_millis(0),
        ))
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for i in 0..40 {
        let req = VideoRequest::new(format!("Clip number {i} of a quiet harbour"), SIM_MODEL, 5);
        jobs.push(a.generate(&user, req).await.unwrap());
    }
    for id in &jobs {
        let rid = a.job(id).await.unwrap().provider_request_id.unwrap();
        sim.set_status(&rid, jilo_core::ProviderStatus::Succeeded { video: None });
    }
    let mut claimed = (0, 0);
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (ra, rb) = tokio::join!(a.tick(), b.tick());
        claimed.0 += ra.unwrap().claimed;
        claimed.1 += rb.unwrap().claimed;
        let mut done = 0;
        for id in &jobs {
            if a.job(id).await.unwrap().state == JobState::Completed {
                done += 1;
            }
        }
        if done == jobs.len() {
            break;
        }
    }
    for id in &jobs {
        assert_eq!(a.job(id).await.unwrap().state, JobState::Completed);
    }
    eprintln!("claims: worker-a {}, worker-b {}", claimed.0, claimed.1);
    assert_eq!(
        claimed.0 + claimed.1,
        jobs.len(),
        "each job claimed once: a claim that finishes a job is never repeated"
    );
    let b = a_store.balance(&user).await.unwrap();
    assert_eq!((b.spent, b.held), (400, 0));
    common::check_ledger(&a_store).await;
    a_store.close().await;
    b_store.close().await;
    common::drop_postgres_database(&url).await;
}

/// Four Studios on one Postgres (four pools: four processes as far as Postgres can tell) and
/// a provider out of funds: one admin alert in all, and once it is known, every process routes
/// new jobs to the other provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_send_one_alert_and_all_route_around_the_provider() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let suchuang = Arc::new(SimProvider::new("suchuang"));
    suchuang.fail_all_submits(jilo_core::testing::SimFailure::OutOfFunds);
    let fal = Arc::new(SimProvider::new("fal"));
    let notifier = Arc::new(jilo_core::testing::RecordingNotifier::new());
    let mut stores = Vec::new();
    let mut studios = Vec::new();
    for i in 0..4 {
        let store = Arc::new(common::open(&url).await);
        studios.push(
            Studio::builder()
                .provider(suchuang.clone())
                .provider(fal.clone())
                .store(store.clone())
                .notifier(notifier.clone())
                .worker_name(format!("process-{i}"))
                .build()
                .unwrap(),
        );
        stores.push(store);
    }
    let user = UserId::new("pg-outage");
    stores[0]
        .grant(&Grant::signup(
            user.clone(),
            1_000,
            Timestamp::from_millis(0),
        ))
        .await
        .unwrap();
    let request = |i: usize| VideoRequest::new(format!("Harbour lights, take {i}"), SIM_MODEL, 5);

    // The outage meets all four processes at once.
    let first = futures::future::join_all(
        studios
            .iter()
            .enumerate()
            .map(|(i, s)| s.generate(&user, request(i))),
    )
    .await;
    for id in first {
        let job = studios[0].job(&id.unwrap()).await.unwrap();
        assert_eq!(job.state, JobState::Submitted);
        assert_eq!(job.provider(), Some(&"fal".into()), "failed over to fal");
    }
    let alerts = notifier.alerts();
    assert_eq!(
        alerts.len(),
        1,
        "one alert across four processes: {alerts:?}"
    );
    assert_eq!(
        alerts[0].kind,
        jilo_core::AlertKind::ProviderOutOfFunds {
            provider: "suchuang".into()
        }
    );
    let tried = suchuang.submissions().len();
    assert!((1..=4).contains(&tried), "{tried}");

    // From now on every process routes new jobs to fal first.
    let later = futures::future::join_all(
        studios
            .iter()
            .flat_map(|s| (0..5).map(move |i| (s, i)))
            .map(|(s, i)| s.generate(&user, request(10 + i))),
    )
    .await;
    for id in later {
        let job = studios[1].job(&id.unwrap()).await.unwrap();
        assert_eq!(job.route.first(), Some(&"fal".into()), "fal first");
        assert_eq!(job.state, JobState::Submitted);
    }
    assert_eq!(
        suchuang.submissions().len(),
        tried,
        "no process sent another job to the provider out of funds"
    );
    assert_eq!(notifier.alerts().len(), 1);
    for s in &stores {
        s.close().await;
    }
    common::drop_postgres_database(&url).await;
}

/// An account with an open hold, written before credit lots (schema 7), upgrades on Postgres:
/// one lasting lot with the open hold as its part, and the ledger adds up.
#[tokio::test]
async fn upgrading_to_credit_lots_keeps_accounts_and_open_holds_on_postgres() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let store = SqlStore::connect(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    for sql in [
        include_str!("../migrations/postgres/0001_ledger_and_jobs.sql"),
        include_str!("../migrations/postgres/0002_job_requests.sql"),
        include_str!("../migrations/postgres/0003_alerts_and_cooling.sql"),
        include_str!("../migrations/postgres/0004_trend_cache.sql"),
        include_str!("../migrations/postgres/0005_jobs_by_creation.sql"),
        include_str!("../migrations/postgres/0006_publishing.sql"),
        include_str!("../migrations/postgres/0007_ledger_pages.sql"),
    ] {
        store.execute_script(sql).await.unwrap();
    }
    store.execute_script(common::SCHEMA7_LEDGER).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), store.schema_version());
    let b = store.balance(&UserId::new("old")).await.unwrap();
    assert_eq!(
        (b.available, b.held, b.spent, b.granted, b.expired),
        (80, 15, 5, 100, 0)
    );
    common::check_upgraded_parts(&store).await;
    common::check_ledger(&store).await;
    common::end_the_upgraded_hold(&store).await;
    store.close().await;
    common::drop_postgres_database(&url).await;
}

#[tokio::test]
async fn postgres_refuses_an_applied_migration_edited_since() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    common::edited_migrations_are_refused(&url).await;
    common::drop_postgres_database(&url).await;
}
