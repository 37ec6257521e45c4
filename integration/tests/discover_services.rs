//! Discovery end to end: the Studio on SQLite with the real Apify source and Gemini model,
//! both against local servers speaking their APIs. Three platforms, one failing: the other
//! two's videos come back, analysed and scored, the failure reported; the same search again
//! within the window reaches neither service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use jilo::providers::apify::ApifySource;
use jilo::providers::gemini::GeminiModel;
use jilo::providers::http::RetryPolicy;
use jilo::store::SqlStore;
use jilo::{DiscoverQuery, ErrorKind, Platform, Policy, Studio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_platforms_one_failing_and_the_repeat_calls_nobody() {
    let apify = common::apify_server(&common::Delays::none(), Some(Platform::InstagramReels)).await;
    let gemini = common::gemini_server(Duration::ZERO).await;
    let store = Arc::new(SqlStore::open(&common::sqlite_url()).await.unwrap());
    let quick = RetryPolicy::once();
    let studio = Studio::builder()
        .provider(Arc::new(jilo::testing::SimProvider::new("sim")))
        .store(store)
        .trend_source(Arc::new(
            ApifySource::new("apify_api_token")
                .unwrap()
                .with_base_url(apify.uri())
                .unwrap()
                .with_retries(quick, quick),
        ))
        .creative_model(Arc::new(
            GeminiModel::new("gemini-key")
                .unwrap()
                .with_base_url(gemini.uri())
                .unwrap()
                .with_retries(quick),
        ))
        .policy(Policy::default())
        .build()
        .unwrap();
    let query = DiscoverQuery::new(
        "AI tools",
        [
            Platform::TikTok,
            Platform::YouTubeShorts,
            Platform::InstagramReels,
        ],
    )
    .analyze_top(10);

    // On a spawned task, as a web handler runs it: the future is `Send`.
    let found = tokio::spawn({
        let (studio, query) = (studio.clone(), query.clone());
        async move { studio.discover(&query).await }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        found.videos.len(),
        100,
        "50 from each platform that answered"
    );
    assert!(found
        .videos
        .iter()
        .all(|v| v.video.platform != Platform::InstagramReels));
    assert_eq!(found.failures.len(), 1);
    assert_eq!(found.failures[0].platform, Platform::InstagramReels);
    assert_eq!(found.failures[0].kind, ErrorKind::ProviderOutOfFunds);
    assert_eq!(
        found.videos.iter().filter(|v| v.analysis.is_some()).count(),
        10
    );
    assert!(found
        .videos
        .windows(2)
        .all(|w| w[0].score.total >= w[1].score.total));
    let apify_calls = apify.received_requests().await.unwrap();
    let starts = apify_calls
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    let gemini_calls = gemini.received_requests().await.unwrap().len();
    assert_eq!(
        (starts, apify_calls.len(), gemini_calls),
        (3, 7, 10),
        "three runs started, two followed to their datasets (one refused), ten analyses"
    );
    let apify_calls = apify_calls.len();

    let again = studio.discover(&query).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(again.fetched_at, found.fetched_at);
    assert_eq!(again.videos.len(), 100);
    assert_eq!(
        again.videos.iter().filter(|v| v.analysis.is_some()).count(),
        10,
        "analyses come from the store"
    );
    assert_eq!(
        apify.received_requests().await.unwrap().len(),
        apify_calls,
        "no Apify call"
    );
    assert_eq!(
        gemini.received_requests().await.unwrap().len(),
        gemini_calls,
        "no Gemini call"
    );
}

/// Two processes' sources (two Apify clients, two pools on one SQLite file) searching the
/// same thing at once, the run slow to finish: one run is started and paid for, both read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_on_one_database_pay_for_one_run() {
    let delays = common::Delays {
        tiktok: Duration::from_millis(300),
        ..common::Delays::none()
    };
    let apify = common::apify_server(&delays, None).await;
    let url = common::sqlite_url();
    let one_db: Arc<dyn jilo::TrendCache> = Arc::new(SqlStore::open(&url).await.unwrap());
    let other_db: Arc<dyn jilo::TrendCache> = Arc::new(SqlStore::open(&url).await.unwrap());
    let source = |db: Arc<dyn jilo::TrendCache>| {
        ApifySource::new("apify_api_token")
            .unwrap()
            .with_base_url(apify.uri())
            .unwrap()
            .with_retries(RetryPolicy::once(), RetryPolicy::once())
            .with_run_store(db)
    };
    let (one, other) = (source(one_db), source(other_db));
    let query = jilo::TrendQuery {
        platform: Platform::TikTok,
        keyword: "AI tools".into(),
        min_views: None,
        max_views: None,
        max_age_days: Some(7),
        limit: 50,
    };
    use jilo::TrendSource;
    let (a, b) = tokio::join!(one.search(&query), other.search(&query));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.len(), b.len()), (50, 50));
    let starts = apify
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(starts, 1, "one paid run for two callers in two processes");
}
