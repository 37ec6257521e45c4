//! The 速创 provider against a local server speaking its `{code, msg, data}` API: both key
//! forms, the body's fields and types, both status numberings, and errors as HTTP statuses or
//! as codes inside HTTP 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::testing::video_provider_suite;
use jilo_core::{
    AspectRatio, ErrorKind, FailureClass, JobId, ProviderStatus, StatusQuery, SubmitRequest,
    VideoProvider, VideoRequest,
};
use jilo_providers::http::RetryPolicy;
use jilo_providers::suchuang::{SuchuangProvider, VEO3};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sc-test-key-0123456789";

fn provider(server: &MockServer) -> SuchuangProvider {
    SuchuangProvider::new(KEY)
        .unwrap()
        .with_base_url(server.uri())
        .unwrap()
        .with_retries(RetryPolicy::once())
}

fn request() -> SubmitRequest {
    SubmitRequest::new(
        JobId::new("job-1"),
        1,
        VideoRequest::new("  A lantern festival over a river at night  ", VEO3, 8)
            .with_aspect_ratio(AspectRatio::Landscape),
        "veo3.1_fast",
    )
}

fn query(id: &str) -> StatusQuery {
    StatusQuery {
        request_id: id.into(),
        provider_model: "veo3.1_fast".into(),
    }
}

#[tokio::test]
async fn submit_sends_both_key_forms_and_the_fields() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/async/video_veo3.1_fast"))
        .and(header("authorization", KEY))
        .and(query_param("key", KEY))
        .and(body_json(json!({
            "prompt": "A lantern festival over a river at night",
            "aspectRatio": "16:9",
            "size": "720p"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": 200, "msg": "成功", "data": {"id": "video_task_123", "count": null}, "exec_time": 0.12
        })))
        .expect(1)
        .mount(&server)
        .await;
    let sub = provider(&server).submit(&request()).await.unwrap();
    assert_eq!(sub.request_id, "video_task_123");

    let numeric = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 200, "msg": "成功", "data": {"id": 5823}})),
        )
        .mount(&numeric)
        .await;
    assert_eq!(
        provider(&numeric)
            .submit(&request())
            .await
            .unwrap()
            .request_id,
        "5823"
    );
}

#[tokio::test]
async fn errors_in_the_status_or_the_body_are_typed_and_a_submit_is_sent_once() {
    let cases: [(u16, Value, ErrorKind); 7] = [
        (
            200,
            json!({"code": 400, "msg": "账户余额不足，请充值"}),
            ErrorKind::ProviderOutOfFunds,
        ),
        (
            400,
            json!({"code": 400, "msg": "余额不足"}),
            ErrorKind::ProviderOutOfFunds,
        ),
        (
            200,
            json!({"code": 403, "msg": "密钥无效"}),
            ErrorKind::Unauthorized,
        ),
        (
            400,
            json!({"code": 400, "msg": "size must match supported resolution"}),
            ErrorKind::InvalidInput,
        ),
        (
            200,
            json!({"code": 429, "msg": "请求过于频繁"}),
            ErrorKind::RateLimited,
        ),
        (
            502,
            json!({"code": 502, "msg": "服务暂时繁忙"}),
            ErrorKind::Unavailable,
        ),
        (
            200,
            json!({"code": 10001, "msg": "余额不足"}),
            ErrorKind::ProviderOutOfFunds,
        ),
    ];
    for (status, body, kind) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body.clone()))
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(&server).submit(&request()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status} {body}: {err}");
        assert!(!format!("{err} {err:?}").contains(KEY));
    }
    // A key refused with HTTP 401 is reported as the 401 that came back, not the body's code.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"code": 403, "msg": "密钥无效"})),
        )
        .mount(&server)
        .await;
    let err = provider(&server).submit(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.to_string().contains("401"), "{err}");
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(402).set_body_string("<html>余额不足</html>"))
        .mount(&gateway)
        .await;
    assert_eq!(
        provider(&gateway)
            .submit(&request())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ProviderOutOfFunds,
        "a non-JSON error page is read by the shared rule"
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 200, "msg": "成功", "data": {}})),
        )
        .mount(&server)
        .await;
    assert_eq!(
        provider(&server)
            .submit(&request())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::OutcomeUnknown,
        "accepted without an id: it may be running"
    );
}

async fn status_for(data: Value) -> ProviderStatus {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/async/detail"))
        .and(query_param("id", "t-1"))
        .and(query_param("key", KEY))
        .and(header("authorization", KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 200, "msg": "成功", "data": data})),
        )
        .expect(1)
        .mount(&server)
        .await;
    provider(&server).status(&query("t-1")).await.unwrap()
}

#[tokio::test]
async fn both_status_numberings_are_read() {
    // Current API: 0 queued, 1 processing, 2 succeeded (result[0]), 3 failed.
    assert_eq!(
        status_for(json!({"status": 0, "result": []})).await,
        ProviderStatus::Queued { position: None }
    );
    assert!(matches!(
        status_for(json!({"status": 1})).await,
        ProviderStatus::Running { .. }
    ));
    match status_for(
        json!({"status": 2, "result": ["https://cdn.wuyinkeji.com/v/1.mp4"], "task_id": "t-1"}),
    )
    .await
    {
        ProviderStatus::Succeeded { video: Some(v) } => {
            assert_eq!(v.url, "https://cdn.wuyinkeji.com/v/1.mp4")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        status_for(json!({"status": 3, "fail_reason": "内容审核未通过"})).await,
        ProviderStatus::Failed {
            reason: "内容审核未通过".into(),
            class: FailureClass::Permanent
        }
    );
    // Legacy VEO API: 0 queued, 1 success (content), 2 failed, 3 generating.
    match status_for(json!({"id": 5823, "status": 1, "content": "https://cdn.wuyinkeji.com/v/5823.mp4", "fail_reason": ""})).await {
        ProviderStatus::Succeeded { video: Some(v) } => assert!(v.url.ends_with("5823.mp4")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        status_for(json!({"id": 5823, "status": 2, "content": "", "fail_reason": "超时"})).await,
        ProviderStatus::Failed { .. }
    ));
    assert!(matches!(
        status_for(json!({"id": 5823, "status": 3, "content": ""})).await,
        ProviderStatus::Running { .. }
    ));
    // A `content: null` beside `result` is the current API; done without a URL yet is still
    // running (polled again, never resubmitted).
    match status_for(
        json!({"status": 2, "result": ["https://cdn.wuyinkeji.com/v/2.mp4"], "content": null}),
    )
    .await
    {
        ProviderStatus::Succeeded { video: Some(v) } => assert!(v.url.ends_with("2.mp4")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        status_for(json!({"status": 2, "result": []})).await,
        ProviderStatus::Running { .. }
    ));
    // Anything else ends the poll.
    assert!(matches!(
        status_for(json!({"status": 9})).await,
        ProviderStatus::Failed { .. }
    ));
}

#[tokio::test]
async fn suchuang_passes_the_provider_conformance_suite() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/async/video_veo3.1_fast"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 200, "msg": "成功", "data": {"id": "t-suite"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/async/detail"))
        .and(query_param("id", "t-suite"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 200, "msg": "成功", "data": {"status": 0}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/async/detail"))
        .and(query_param("id", "jilo-conformance-unknown"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"code": 400, "msg": "任务不存在"})),
        )
        .mount(&server)
        .await;
    video_provider_suite(&provider(&server)).await;
}

/// 速创 reports an empty balance only in words (`code: 400`, `余额` in `msg`). A validation
/// error that echoes a prompt mentioning `余额` or "too many requests" is the user's input, not
/// an empty account or a rate limit: it never alerts the admin nor cools the provider.
#[tokio::test]
async fn an_echoed_prompt_never_makes_an_empty_balance_or_a_rate_limit() {
    let prompt = "A shopkeeper counts the 余额 of the day, too many requests piling up";
    let echoing = SubmitRequest::new(
        JobId::new("job-echo"),
        1,
        VideoRequest::new(prompt, VEO3, 8),
        "veo3.1_fast",
    );
    for msg in [
        format!("prompt '{prompt}' contains a sensitive word"),
        format!("参数错误: {prompt}"),
        // The words alone, when the prompt carried them, are not trusted either.
        "余额不足".to_owned(),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"code": 400, "msg": msg})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(&server).submit(&echoing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{msg}: {err}");
    }
    // A prompt without those words: 速创's own message is read.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 400, "msg": "账户余额不足，请充值"})),
        )
        .mount(&server)
        .await;
    let err = provider(&server).submit(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ProviderOutOfFunds, "{err}");
}
