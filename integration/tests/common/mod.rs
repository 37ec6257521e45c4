//! Local stand-ins for Apify and Gemini shared by the tests and the discover benchmark:
//! each answers realistically, after a configurable delay.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use jilo::store::StoreUrl;
use jilo::Platform;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long each platform's actor run takes.
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    pub tiktok: Duration,
    pub youtube: Duration,
    pub instagram: Duration,
}

impl Delays {
    pub fn none() -> Self {
        Self {
            tiktok: Duration::ZERO,
            youtube: Duration::ZERO,
            instagram: Duration::ZERO,
        }
    }

    pub fn slowest(&self) -> Duration {
        self.tiktok.max(self.youtube).max(self.instagram)
    }
}

fn tiktok_items(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "id": format!("tt{i}"), "text": format!("TikTok clip {i} #ai"),
                    "webVideoUrl": format!("https://www.tiktok.com/@c/video/{i}"),
                    "createTimeISO": "2026-11-25T10:00:00.000Z",
                    "authorMeta": {"name": "c"},
                    "playCount": 10_000 * (i as u64 + 1), "diggCount": 700 * (i as u64 + 1),
                    "shareCount": 30, "commentCount": 20, "videoMeta": {"duration": 15}
                })
            })
            .collect(),
    )
}

fn youtube_items(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "id": format!("yt{i}"), "title": format!("Shorts {i}"),
                    "url": format!("https://www.youtube.com/shorts/yt{i}"),
                    "viewCount": 20_000 * (i as u64 + 1), "likes": 900 * (i as u64 + 1),
                    "date": "3 days ago", "duration": "0:40", "channelName": "y"
                })
            })
            .collect(),
    )
}

fn instagram_items(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "shortCode": format!("ig{i}"), "url": format!("https://www.instagram.com/reel/ig{i}/"),
                    "caption": format!("Reel {i}"), "videoViewCount": 15_000 * (i as u64 + 1),
                    "likesCount": 500, "commentsCount": 10, "timestamp": "2026-11-26T08:00:00.000Z",
                    "ownerUsername": "i", "videoDuration": 12.0
                })
            })
            .collect(),
    )
}

/// Apify with the three actors answering 50 items each after their delay; `failing` answers
/// 402 (the account's usage limit) instead.
pub async fn apify_server(delays: &Delays, failing: Option<Platform>) -> MockServer {
    let server = MockServer::start().await;
    for (platform, actor, items, delay) in [
        (
            Platform::TikTok,
            "clockworks~tiktok-scraper",
            tiktok_items(50),
            delays.tiktok,
        ),
        (
            Platform::YouTubeShorts,
            "streamers~youtube-scraper",
            youtube_items(50),
            delays.youtube,
        ),
        (
            Platform::InstagramReels,
            "apify~instagram-hashtag-scraper",
            instagram_items(50),
            delays.instagram,
        ),
    ] {
        // Apify's asynchronous runs: the start answers the run at once, the run's status
        // (long-polled) once it has run for `delay`, then its dataset.
        let run = format!("run-{}", platform.as_str());
        let dataset = format!("ds-{}", platform.as_str());
        let record = |status: &str| {
            json!({"data": {"id": run, "status": status, "defaultDatasetId": dataset,
                            "startedAt": "2026-11-30T00:00:00.000Z"}})
        };
        let started = if failing == Some(platform) {
            ResponseTemplate::new(402).set_body_json(json!({"error": {
                "type": "x402-payment-required", "message": "Monthly usage limit exceeded"
            }}))
        } else {
            ResponseTemplate::new(201).set_body_json(record("READY"))
        };
        Mock::given(method("POST"))
            .and(path(format!("/v2/acts/{actor}/runs")))
            .respond_with(started)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v2/actor-runs/{run}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(record("SUCCEEDED"))
                    .set_delay(delay),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v2/datasets/{dataset}/items")))
            .respond_with(ResponseTemplate::new(200).set_body_json(items))
            .mount(&server)
            .await;
    }
    server
}

/// Gemini answering every generateContent with an analysis after `delay`.
pub async fn gemini_server(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let text = json!({
        "hook": "The result shows in the first second",
        "success_factors": ["instant payoff", "clear text", "loop"],
        "score": 7
    })
    .to_string();
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1beta/models/[^/]+:generateContent$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"candidates": [{
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP"
                }]}))
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

pub fn sqlite_url() -> StoreUrl {
    let dir = std::env::temp_dir().join("jilo-root-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    StoreUrl::SqliteFile(file.to_string_lossy().into_owned())
}
