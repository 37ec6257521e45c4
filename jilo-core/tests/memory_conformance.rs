//! The in-memory store and the simulated provider pass the conformance suites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::testing::{self, SimProvider};
use jilo_core::InMemoryStore;

#[tokio::test]
async fn in_memory_store_passes_the_quota_suite() {
    let store = InMemoryStore::new();
    testing::quota_store_suite(&store).await;
}

#[tokio::test]
async fn in_memory_store_passes_the_trend_cache_suite() {
    testing::trend_cache_suite(&InMemoryStore::new()).await;
}

#[tokio::test]
async fn in_memory_store_passes_the_job_suite() {
    let store = InMemoryStore::new();
    testing::job_store_suite(&store).await;
    testing::alert_store_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suites_pass_on_one_shared_store_run_concurrently() {
    let store = std::sync::Arc::new(InMemoryStore::new());
    let a = tokio::spawn({
        let s = store.clone();
        async move { testing::quota_store_suite(s.as_ref()).await }
    });
    let b = tokio::spawn({
        let s = store.clone();
        async move { testing::quota_store_suite(s.as_ref()).await }
    });
    a.await.unwrap();
    b.await.unwrap();
}

#[tokio::test]
async fn simulated_provider_passes_the_provider_suite() {
    testing::video_provider_suite(&SimProvider::new("sim")).await;
}

/// The seed's bar on the in-memory store with real parallelism: 100 tasks spawned on four
/// threads, released together, each holding 1 of 10 credits: exactly 10 holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_holds_are_exact_under_parallel_tasks() {
    use jilo_core::{Error, Grant, QuotaStore, Timestamp, UserId};
    use std::sync::Arc;

    let store = Arc::new(InMemoryStore::new());
    let user = UserId::new("parallel");
    let at = Timestamp::from_millis(0);
    store
        .grant(&Grant::signup(user.clone(), 10, at))
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (store, user, barrier) = (store.clone(), user.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                testing::take_hold(store.as_ref(), &user, 1, at, None).await
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(Error::Insufficient { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, 10);
    let b = store.balance(&user).await.unwrap();
    assert_eq!((b.available, b.held), (0, 10));
}

#[tokio::test]
async fn in_memory_store_passes_the_channel_store_suite() {
    testing::channel_store_suite(&InMemoryStore::new()).await;
}

#[tokio::test]
async fn in_memory_store_passes_the_publication_store_suite() {
    testing::publication_store_suite(&InMemoryStore::new()).await;
}

#[tokio::test]
async fn in_memory_store_passes_the_credit_lots_suite() {
    testing::credit_lots_suite(&InMemoryStore::new(), testing::StoreCapabilities::ALL).await;
}

/// An `Arc` of a store is a store (the traits forward), and so is an `Arc<dyn …>` of one: the
/// suites pass through both, reaching the one store behind them.
#[tokio::test]
async fn an_arc_of_a_store_passes_the_suites() {
    use jilo_core::{AlertStore, JobStore, QuotaStore};
    use std::sync::Arc;

    let store = Arc::new(InMemoryStore::new());
    testing::quota_store_suite(&store).await;
    testing::job_store_suite(&store).await;
    testing::trend_cache_suite(&store).await;
    testing::channel_store_suite(&store).await;
    testing::publication_store_suite(&store).await;
    let alerts: Arc<dyn AlertStore> = store.clone();
    testing::alert_store_suite(&alerts).await;
    // The same store behind all of them: what one wrote, the other reads.
    let user = jilo_core::UserId::new("arc-user");
    let quota: Arc<dyn QuotaStore> = store.clone();
    quota
        .grant(&jilo_core::Grant::signup(
            user.clone(),
            7,
            jilo_core::Timestamp::from_millis(0),
        ))
        .await
        .unwrap();
    assert_eq!(store.balance(&user).await.unwrap().available, 7);
    let jobs: Arc<dyn JobStore> = store.clone();
    assert!(jobs.jobs_for_user(&user, 10).await.unwrap().is_empty());
    assert!(
        format!("{alerts:?}").contains("InMemoryStore"),
        "{alerts:?}"
    );
}
