//! jilo's Apify source against the Apify simulator: a search per platform through an async
//! run, a lost start found again by its INPUT record, the sync endpoint and its 408, and the
//! fault switches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use jilo_core::{ErrorKind, Platform, TrendQuery, TrendSource};
use jilo_providers::apify::ApifySource;
use jilo_providers::http::RetryPolicy;
use jilo_sim::apify::{ApifySim, TOKEN};
use jilo_sim::Service;

/// A change of switches.
type Flip = fn(&mut jilo_sim::ServiceFaults);

fn source(sim: &ApifySim) -> ApifySource {
    let quick = RetryPolicy {
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    ApifySource::new(TOKEN)
        .unwrap()
        .with_base_url(&sim.url)
        .unwrap()
        .with_retries(quick, quick)
}

fn query(platform: Platform, keyword: &str) -> TrendQuery {
    TrendQuery {
        platform,
        keyword: keyword.into(),
        min_views: None,
        max_views: None,
        max_age_days: Some(7),
        limit: 30,
    }
}

#[tokio::test]
async fn each_platform_finds_plausible_videos_stable_for_the_seed() {
    let sim = ApifySim::start().await.unwrap();
    let apify = source(&sim);
    for platform in [
        Platform::TikTok,
        Platform::YouTubeShorts,
        Platform::InstagramReels,
    ] {
        let videos = apify.search(&query(platform, "AI tools")).await.unwrap();
        // 30 results and one error item in the dataset: the error item is dropped.
        assert_eq!(videos.len(), 29, "{platform:?}");
        assert!(videos
            .iter()
            .all(|v| v.platform == platform && v.views > 0 && !v.url.is_empty()));
        assert!(
            videos
                .iter()
                .all(|v| v.title.to_lowercase().replace(' ', "").contains("aitools")),
            "{:?}",
            videos[0].title
        );
        // The client asks YouTube's actor for this month (its filter has no "7 days").
        let days = if platform == Platform::YouTubeShorts {
            31
        } else {
            8
        };
        let week_ago = jilo_core::Timestamp::from_system(
            std::time::SystemTime::now() - Duration::from_secs(days * 86_400),
        );
        assert!(videos
            .iter()
            .all(|v| v.published_at.is_some_and(|t| t >= week_ago)));
        let again = source(&sim)
            .search(&query(platform, "AI tools"))
            .await
            .unwrap();
        assert_eq!(
            videos.iter().map(|v| &v.video_id).collect::<Vec<_>>(),
            again.iter().map(|v| &v.video_id).collect::<Vec<_>>()
        );
    }
    let s = sim.lock();
    assert_eq!(s.started.len(), 6, "one run per search");
    assert!(s.violations.is_empty(), "{:?}", s.violations);
}

#[tokio::test]
async fn a_start_whose_answer_is_lost_is_found_by_its_input_and_not_started_twice() {
    let sim = ApifySim::start().await.unwrap();
    let store: Arc<dyn jilo_core::TrendCache> = Arc::new(jilo_core::InMemoryStore::new());
    let apify = source(&sim).with_run_store(store);
    // Another search's run on the same actor is not taken for this one.
    apify
        .search(&query(Platform::TikTok, "cooking"))
        .await
        .unwrap();
    sim.switches()
        .update(Service::Apify, |f| f.lose_submit_answers = 1);
    let videos = apify
        .search(&query(Platform::TikTok, "origami"))
        .await
        .unwrap();
    assert!(!videos.is_empty());
    assert!(videos[0].title.contains("origami"), "{}", videos[0].title);
    let s = sim.lock();
    assert_eq!(
        s.started.len(),
        2,
        "the lost start was followed, not repeated"
    );
    assert!(s.requests.iter().any(|l| l.contains("/records/INPUT")));
}

#[tokio::test]
async fn the_sync_endpoint_answers_items_or_408_with_the_run_going_on() {
    let sim = ApifySim::start().await.unwrap();
    let http = common::http();
    let url = format!(
        "{}/v2/acts/clockworks~tiktok-scraper/run-sync-get-dataset-items?token={TOKEN}&maxItems=5",
        sim.url
    );
    let input = serde_json::json!({"searchQueries": ["robots"], "resultsPerPage": 5});
    let answer = http.post(&url).json(&input).send().await.unwrap();
    assert_eq!(answer.status(), 201);
    assert_eq!(answer.headers()["x-apify-pagination-total"], "5");
    let items: Vec<serde_json::Value> = answer.json().await.unwrap();
    assert_eq!(items.len(), 5);

    // A window shorter than the run: 408, and the run carries on to its dataset.
    let sims = jilo_sim::apify::ApifySim::start_on(
        "127.0.0.1:0".parse().unwrap(),
        jilo_sim::Switches::default(),
        jilo_sim::Pace::Speed(1000.0),
        7,
    )
    .await
    .unwrap();
    sims.lock().sync_window = Duration::from_secs(1);
    let url = format!(
        "{}/v2/acts/clockworks~tiktok-scraper/run-sync-get-dataset-items?token={TOKEN}",
        sims.url
    );
    let late = http.post(&url).json(&input).send().await.unwrap();
    assert_eq!(late.status(), 408);
    let body: serde_json::Value = late.json().await.unwrap();
    assert_eq!(body["error"]["type"], "run-timeout-exceeded");
    let run = sims.lock().started[0].clone();
    let finished: serde_json::Value = http
        .get(format!("{}/v2/actor-runs/{run}?waitForFinish=60", sims.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(finished["data"]["status"], "SUCCEEDED");
}

#[tokio::test]
async fn every_fault_switch_reads_as_the_client_expects() {
    let sim = ApifySim::start().await.unwrap();
    let apify = source(&sim).with_retries(RetryPolicy::once(), RetryPolicy::once());
    let cases: Vec<(Flip, ErrorKind)> = vec![
        (|f| f.out_of_funds = true, ErrorKind::ProviderOutOfFunds),
        (|f| f.quota_exhausted = true, ErrorKind::ProviderOutOfFunds),
        (|f| f.key_rejected = true, ErrorKind::Unauthorized),
        (|f| f.rate_limited = Some(1), ErrorKind::RateLimited),
        (|f| f.fail_jobs = true, ErrorKind::Unavailable),
        (|f| f.down = true, ErrorKind::Unavailable),
    ];
    for (i, (switch, kind)) in cases.into_iter().enumerate() {
        sim.switches().clear();
        sim.switches().update(Service::Apify, switch);
        let err = apify
            .search(&query(Platform::TikTok, &format!("case {i}")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "case {i}: {err}");
        assert!(!format!("{err:?}").contains(TOKEN));
    }
}

/// A 5xx on the start may have started a run: the client looks for it instead of starting
/// again, and finding none (the simulator took nothing) reports the outage, with no second
/// paid start.
#[tokio::test]
async fn a_start_answered_5xx_is_looked_up_not_repeated() {
    let sim = ApifySim::start().await.unwrap();
    let apify = source(&sim);
    sim.switches()
        .update(Service::Apify, |f| f.server_errors = 1);
    let err = apify
        .search(&query(Platform::TikTok, "bursts"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let s = sim.lock();
    assert!(s.started.is_empty(), "no run was started");
    let starts = s.requests.iter().filter(|l| l.starts_with("POST ")).count();
    assert_eq!(starts, 1, "{:?}", s.requests);
    assert!(
        s.requests
            .iter()
            .any(|l| l.starts_with("GET /v2/acts/") && l.contains("/runs?")),
        "{:?}",
        s.requests
    );
}
