//! The seed's concurrency bar through the Studio: quota 10, 100 concurrent generations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jilo_core::testing::{SimProvider, SIM_MODEL};
use jilo_core::{
    Error, Grant, InMemoryStore, Policy, Pricing, QuotaStore, Studio, Timestamp, UserId,
    VideoRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_10_and_100_concurrent_generations_accept_exactly_10() {
    let store = Arc::new(InMemoryStore::new());
    let sim = Arc::new(SimProvider::new("sim"));
    let studio = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .policy(Policy {
            pricing: Pricing::new().with_price(SIM_MODEL, 5, 1),
            ..Policy::default()
        })
        .build()
        .unwrap();
    let user = UserId::new("racer");
    store
        .grant(&Grant::signup(user.clone(), 10, Timestamp::from_millis(0)))
        .await
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let studio = studio.clone();
            let user = user.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let prompt = format!("Concurrent request number {i} of a snowy forest");
                studio
                    .generate(&user, VideoRequest::new(prompt, SIM_MODEL, 5))
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    let mut insufficient = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(Error::Insufficient {
                available: 0,
                needed: 1,
            }) => insufficient += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(accepted, 10);
    assert_eq!(insufficient, 90);
    let b = store.balance(&user).await.unwrap();
    assert_eq!((b.available, b.held), (0, 10));
    assert!(b.is_consistent());
    assert_eq!(studio.jobs_for_user(&user, 1000).await.unwrap().len(), 10);
    assert_eq!(
        sim.submissions().len(),
        10,
        "only accepted jobs reach the provider"
    );
    assert_eq!(store.history(&user).await.unwrap().len(), 11);
}
