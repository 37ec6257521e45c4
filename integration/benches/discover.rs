//! Discovery's wall time: 3 platforms × 50 items from local Apify stand-ins with realistic
//! delays, the top 30 analysed by a local Gemini stand-in, against the floor the services
//! themselves allow (the slowest platform's own delay, then the analyses at the Studio's
//! concurrency within Gemini's rate limit), and the cached repeat.
//!
//! `cargo bench -p jilo-integration --bench discover`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jilo::providers::apify::ApifySource;
use jilo::providers::gemini::GeminiModel;
use jilo::{DiscoverQuery, InMemoryStore, Platform, Policy, Studio};

const TOP: usize = 30;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let delays = common::Delays {
        tiktok: Duration::from_millis(800),
        youtube: Duration::from_millis(1200),
        instagram: Duration::from_millis(1000),
    };
    let analysis = Duration::from_millis(250);
    rt.block_on(async {
        let apify = common::apify_server(&delays, None).await;
        let gemini = common::gemini_server(analysis).await;
        let policy = Policy::default();
        // 60 a minute with bursts: the 30 analyses are bound by the Studio's concurrency.
        let rounds = TOP.div_ceil(policy.analysis_concurrency) as u32;
        let floor = delays.slowest() + analysis * rounds;
        println!(
            "discover: 3 platforms x 50 items (delays 0.8 / 1.2 / 1.0 s), top {TOP} analysed \
             ({} at a time, {} ms each), in-memory store",
            policy.analysis_concurrency,
            analysis.as_millis()
        );
        println!("| run | wall ms | floor ms | jilo overhead | cached repeat ms |");
        println!("|-----|--------:|---------:|--------------:|-----------------:|");
        for run in 1..=3 {
            let studio = Studio::builder()
                .provider(Arc::new(jilo::testing::SimProvider::new("sim")))
                .store(Arc::new(InMemoryStore::new()))
                .trend_source(Arc::new(
                    ApifySource::new("t")
                        .unwrap()
                        .with_base_url(apify.uri())
                        .unwrap(),
                ))
                .creative_model(Arc::new(
                    GeminiModel::new("k")
                        .unwrap()
                        .with_base_url(gemini.uri())
                        .unwrap(),
                ))
                .policy(policy.clone())
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
            .analyze_top(TOP);
            let start = Instant::now();
            let found = studio.discover(&query).await.unwrap();
            let wall = start.elapsed();
            assert_eq!(found.videos.len(), 150);
            assert_eq!(
                found.videos.iter().filter(|v| v.analysis.is_some()).count(),
                TOP
            );
            let start = Instant::now();
            let again = studio.discover(&query).await.unwrap();
            let cached = start.elapsed();
            assert!(again.from_cache);
            println!(
                "| {run} | {:>7.0} | {:>8.0} | {:>12.1}% | {:>16.2} |",
                wall.as_secs_f64() * 1000.0,
                floor.as_secs_f64() * 1000.0,
                100.0 * (wall.as_secs_f64() - floor.as_secs_f64()) / wall.as_secs_f64(),
                cached.as_secs_f64() * 1000.0
            );
        }
    });
}
