//! The Postgres store: conformance suites, migrations, events across store instances, the
//! Studio on a shared database. Each test runs on a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jilo_core::testing::{job_store_suite, quota_store_suite, SimProvider, SIM_MODEL};
use jilo_core::{Error, Grant, JobState, QuotaStore, Studio, Timestamp, UserId, VideoRequest};
use jilo_store::{SqlStore, SqlStoreOptions};

#[tokio::test]
async fn postgres_passes_the_conformance_suites() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let store = common::open(&url).await;
    quota_store_suite(&store).await;
    job_store_suite(&store).await;
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
        assert_eq!(v.unwrap(), 1, "concurrent migrations all end at version 1");
    }
    sqlx::query("INSERT INTO jilo_schema (version, name, applied_ms) VALUES (7, 'future', 0)")
        .execute(stores[0].pool())
        .await
        .unwrap();
    match stores[1].migrate().await {
        Err(Error::Storage { reason, .. }) => assert!(reason.contains("version 7"), "{reason}"),
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
    let seen: Vec<JobState> = tokio::time::timeout(
        Duration::from_secs(10),
        events.map(|e| e.state).collect::<Vec<_>>(),
    )
    .await
    .expect("the stream ends after the terminal event");
    assert_eq!(seen, [JobState::Storing, JobState::Completed]);

    // Many watchers of one store share one LISTEN connection.
    let mut watchers = Vec::new();
    for _ in 0..20 {
        watchers.push(jilo_core::JobStore::watch(here.as_ref()).await.unwrap());
    }
    let listening: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(here.pool())
    .await
    .unwrap();
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
