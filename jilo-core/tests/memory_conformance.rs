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
async fn in_memory_store_passes_the_job_suite() {
    let store = InMemoryStore::new();
    testing::job_store_suite(&store).await;
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
