//! A 速创 video is not lost to its hotlink-protected CDN: the provider says how its result is
//! fetched (the referer and a browser agent travel with the video), media storage downloads
//! it with them, and the job completes with the user charged once. A bare download would get
//! 403 and (before) refund the user while 速创 billed the platform.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use jilo::providers::http::RetryPolicy;
use jilo::providers::suchuang::{SuchuangProvider, CDN_REFERER, VEO3};
use jilo::store::{ObjectMediaStore, SqlStore};
use jilo::{
    AspectRatio, Grant, JobState, Policy, Pricing, QuotaStore, Studio, Timestamp, UserId,
    VideoRequest,
};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn mp4(len: usize) -> Vec<u8> {
    let mut body = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    body.resize(len, 0x5C);
    body
}

#[tokio::test]
async fn a_suchuang_video_behind_its_referer_check_is_stored_and_charged_once() {
    let api = MockServer::start().await;
    let video = mp4(64 * 1024);
    Mock::given(method("POST"))
        .and(path("/api/async/video_veo3.1_fast"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 200, "msg": "成功", "data": {"id": "task-9"}})),
        )
        .expect(1)
        .mount(&api)
        .await;
    let cdn_url = format!("{}/cdn/task-9.mp4", api.uri());
    Mock::given(method("GET"))
        .and(path("/api/async/detail"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": 200, "msg": "成功",
            "data": {"id": "task-9", "status": 2, "result": [cdn_url]}
        })))
        .mount(&api)
        .await;
    // The CDN serves only a download that comes from 速创's site in a browser.
    Mock::given(method("GET"))
        .and(path("/cdn/task-9.mp4"))
        .and(header("referer", CDN_REFERER))
        .and(|req: &Request| {
            req.headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ua| ua.starts_with("Mozilla/5.0"))
        })
        .respond_with(ResponseTemplate::new(200).set_body_raw(video.clone(), "video/mp4"))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/task-9.mp4"))
        .respond_with(ResponseTemplate::new(403).set_body_string("hotlink denied"))
        .expect(0)
        .mount(&api)
        .await;

    let store = Arc::new(SqlStore::open(&common::sqlite_url()).await.unwrap());
    let media_dir = std::env::temp_dir().join(format!("jilo-copy-{}", uuid::Uuid::new_v4()));
    let studio = Studio::builder()
        .provider(Arc::new(
            SuchuangProvider::new("sc-key")
                .unwrap()
                .with_base_url(api.uri())
                .unwrap()
                .with_retries(RetryPolicy::once()),
        ))
        .store(store.clone())
        .media_store(Arc::new(ObjectMediaStore::local(&media_dir).unwrap()))
        .policy(Policy {
            pricing: Pricing::new().with_price(VEO3, 8, 15),
            // Due at once: each tick polls, as a worker does every interval.
            poll_interval: std::time::Duration::ZERO,
            ..Policy::default()
        })
        .build()
        .unwrap();
    let user = UserId::new("suchuang-copy");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    let job = studio
        .generate(
            &user,
            VideoRequest::new("Paper lanterns rising over a night river", VEO3, 8)
                .with_aspect_ratio(AspectRatio::Landscape),
        )
        .await
        .unwrap();
    // The worker polls (速创 sends no webhooks), then copies the video.
    for _ in 0..3 {
        studio.tick().await.unwrap();
        if studio.job(&job).await.unwrap().state.is_terminal() {
            break;
        }
    }
    let done = studio.job(&job).await.unwrap();
    assert_eq!(done.state, JobState::Completed, "{:?}", done.failure);
    let output = done.output.unwrap();
    assert_eq!(std::fs::read(&output.location).unwrap(), video);
    let balance = studio.balance(&user).await.unwrap();
    assert_eq!(
        (balance.available, balance.spent, balance.held),
        (85, 15, 0)
    );
    let _ = std::fs::remove_dir_all(&media_dir);
}
