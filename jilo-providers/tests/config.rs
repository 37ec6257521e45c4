//! What every client is given is checked where it is given, and what every client returns
//! keeps its secrets: keys with a newline, base URLs that are not URLs and ids that would walk
//! the request's path are refused naming the variable; a service that echoes the request (its
//! URL with the key in the query, its headers) in an error body, and a call that gets no answer
//! at all, give errors whose text holds no key; a proxy's password in a base URL never shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::{
    CreativeModel, Error, ErrorKind, JobId, Platform, ProviderStatus, StatusQuery, SubmitRequest,
    TrendQuery, TrendSource, TrendingVideo, VideoProvider, VideoRequest,
};
use jilo_providers::apify::ApifySource;
use jilo_providers::fal::FalProvider;
use jilo_providers::gemini::GeminiModel;
use jilo_providers::http::RetryPolicy;
use jilo_providers::notify::ChatWebhookNotifier;
use jilo_providers::suchuang::SuchuangProvider;
use jilo_providers::youtube::GoogleOAuth;
use secrecy::SecretString;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "live-key-4f9a8b7c6d5e";

fn field_of(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::InvalidInput { field, reason }) => {
            assert!(
                !reason.contains("4f9a8b"),
                "the value is never shown: {reason}"
            );
            field
        }
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn constructors_refuse_bad_keys_by_the_variable_they_come_from() {
    for bad in [
        format!("{KEY}\n"),
        format!("{KEY}\r"),
        format!(" {KEY}"),
        String::new(),
    ] {
        assert_eq!(field_of(FalProvider::new(bad.clone())), "FAL_KEY");
        assert_eq!(
            field_of(SuchuangProvider::new(bad.clone())),
            "SUCHUANG_API_KEY"
        );
        assert_eq!(field_of(ApifySource::new(bad.clone())), "APIFY_TOKEN");
        assert_eq!(field_of(GeminiModel::new(bad.clone())), "GEMINI_API_KEY");
        assert_eq!(
            field_of(GoogleOAuth::new("id", SecretString::from(bad.clone()))),
            "YOUTUBE_CLIENT_SECRET"
        );
        assert_eq!(
            field_of(GoogleOAuth::new(bad.clone(), SecretString::from("s"))),
            "YOUTUBE_CLIENT_ID"
        );
    }
}

#[test]
fn base_urls_and_ids_are_checked_before_any_request() {
    for bad in [
        "not a url",
        "ftp://host",
        "http://",
        "127.0.0.1:8080",
        "https://h/?k=v",
    ] {
        assert_eq!(
            field_of(FalProvider::new(KEY).unwrap().with_queue_url(bad, None)),
            "FAL_QUEUE_URL",
            "{bad}"
        );
        assert_eq!(
            field_of(SuchuangProvider::new(KEY).unwrap().with_base_url(bad)),
            "SUCHUANG_API_URL"
        );
        assert_eq!(
            field_of(ApifySource::new(KEY).unwrap().with_base_url(bad)),
            "APIFY_API_URL"
        );
        assert_eq!(
            field_of(GeminiModel::new(KEY).unwrap().with_base_url(bad)),
            "GEMINI_API_URL"
        );
    }
    assert_eq!(
        field_of(FalProvider::new(KEY).unwrap().with_jwks_url("jwks.json")),
        "FAL_JWKS_URL"
    );
    assert_eq!(
        field_of(ChatWebhookNotifier::new("hooks.slack.com/x")),
        "JILO_ALERT_WEBHOOK"
    );
    for bad in ["../../admin", "gemini/../x", "a?b=c", ""] {
        assert_eq!(
            field_of(GeminiModel::new(KEY).unwrap().with_model(bad)),
            "GEMINI_MODEL",
            "{bad}"
        );
    }
    assert!(GeminiModel::new(KEY)
        .unwrap()
        .with_model("models/gemini-2.5-flash")
        .is_ok());
    assert_eq!(
        field_of(
            ApifySource::new(KEY)
                .unwrap()
                .with_actor(Platform::TikTok, "../runs")
        ),
        "actor"
    );
    assert_eq!(
        field_of(
            GoogleOAuth::new("id", SecretString::from("s"))
                .unwrap()
                .with_endpoints("https://a", "token", "https://r")
        ),
        "GOOGLE_TOKEN_URL"
    );
}

#[test]
fn a_proxy_password_in_a_base_url_never_shows() {
    let url = "http://proxy-user:pr0xy-pa55@127.0.0.1:3128/api";
    let shown = [
        format!(
            "{:?}",
            FalProvider::new(KEY)
                .unwrap()
                .with_queue_url(url, None)
                .unwrap()
        ),
        format!(
            "{:?}",
            SuchuangProvider::new(KEY)
                .unwrap()
                .with_base_url(url)
                .unwrap()
        ),
        format!(
            "{:?}",
            ApifySource::new(KEY).unwrap().with_base_url(url).unwrap()
        ),
        format!(
            "{:?}",
            GeminiModel::new(KEY).unwrap().with_base_url(url).unwrap()
        ),
        format!(
            "{:?}",
            GoogleOAuth::new("id", SecretString::from("client-s3cret"))
                .unwrap()
                .with_endpoints(url, url, url)
                .unwrap()
        ),
    ];
    for text in shown {
        assert!(!text.contains("pr0xy-pa55"), "{text}");
        assert!(
            !text.contains(KEY) && !text.contains("client-s3cret"),
            "{text}"
        );
        assert!(text.contains("***@127.0.0.1:3128"), "{text}");
    }
}

fn submit_request() -> SubmitRequest {
    SubmitRequest::new(
        JobId::new("job-1"),
        1,
        VideoRequest::new("A lantern festival over a river at night", "veo3", 8),
        "veo3.1_fast",
    )
}

fn status_query() -> StatusQuery {
    StatusQuery {
        request_id: "task-1".into(),
        provider_model: "veo3.1_fast".into(),
    }
}

fn trend_query() -> TrendQuery {
    TrendQuery {
        platform: Platform::TikTok,
        keyword: "ai tools".into(),
        min_views: None,
        max_views: None,
        max_age_days: None,
        limit: 5,
    }
}

fn trending_video() -> TrendingVideo {
    TrendingVideo {
        platform: Platform::TikTok,
        video_id: "1".into(),
        url: "https://www.tiktok.com/@a/video/1".into(),
        title: "An AI tool".into(),
        description: None,
        author: None,
        views: 1,
        likes: 1,
        comments: 1,
        shares: 1,
        published_at: None,
        thumbnail_url: None,
        video_url: None,
        duration_secs: Some(10),
    }
}

/// The error's Display, Debug and source chain.
fn everything_shown(e: &Error) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        text.push_str(&format!(" | {s} | {s:?}"));
        next = s.source();
    }
    text
}

fn assert_no_key(what: &str, e: &Error) {
    let text = everything_shown(e);
    assert!(!text.contains(KEY), "{what}: the key shows in {text}");
    assert!(
        !text.contains("4f9a8b7c"),
        "{what}: part of the key shows in {text}"
    );
}

/// A service that answers every request with an error echoing the whole request: its URL
/// (the query key included) and every header.
async fn echoing_server(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(move |req: &Request| {
            let headers: Vec<String> = req
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default()))
                .collect();
            let echo = format!("bad request {} with {}", req.url, headers.join("; "));
            ResponseTemplate::new(status).set_body_json(serde_json::json!({
                "code": status, "msg": echo, "detail": echo,
                "error": {"type": "invalid-input", "message": echo, "status": "INVALID_ARGUMENT", "code": status},
            }))
        })
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn services_that_echo_the_request_never_show_the_key() {
    for status in [400, 500] {
        let server = echoing_server(status).await;
        let url = server.uri();
        let suchuang = SuchuangProvider::new(KEY)
            .unwrap()
            .with_base_url(&url)
            .unwrap()
            .with_retries(RetryPolicy::once());
        let e = suchuang.submit(&submit_request()).await.unwrap_err();
        assert_no_key("速创 submit", &e);
        let e = suchuang.status(&status_query()).await.unwrap_err();
        assert_no_key("速创 status", &e);

        let fal = FalProvider::new(KEY)
            .unwrap()
            .with_queue_url(&url, None)
            .unwrap()
            .with_retries(RetryPolicy::once());
        let e = fal.submit(&submit_request()).await.unwrap_err();
        assert_no_key("fal submit", &e);

        let apify = ApifySource::new(KEY)
            .unwrap()
            .with_base_url(&url)
            .unwrap()
            .with_retries(RetryPolicy::once(), RetryPolicy::once());
        let e = apify.search(&trend_query()).await.unwrap_err();
        assert_no_key("apify search", &e);

        let gemini = GeminiModel::new(KEY)
            .unwrap()
            .with_base_url(&url)
            .unwrap()
            .with_retries(RetryPolicy::once());
        let e = gemini.analyze(&trending_video()).await.unwrap_err();
        assert_no_key("gemini analyze", &e);

        assert!(
            !server.received_requests().await.unwrap().is_empty(),
            "the calls reached the service"
        );
    }
}

#[tokio::test]
async fn a_failed_task_reason_that_echoes_the_key_is_kept_without_it() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/api/async/detail"))
        .respond_with(move |req: &Request| {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "code": 200, "msg": "成功",
                "data": {"id": "task-1", "status": 3, "fail_reason": format!("upstream refused {}", req.url)},
            }))
        })
        .mount(&server)
        .await;
    let suchuang = SuchuangProvider::new(KEY)
        .unwrap()
        .with_base_url(server.uri())
        .unwrap();
    match suchuang.status(&status_query()).await.unwrap() {
        ProviderStatus::Failed { reason, .. } => {
            assert!(reason.starts_with("upstream refused"), "{reason}");
            assert!(!reason.contains(KEY), "{reason}");
        }
        other => panic!("expected a failed task, got {other:?}"),
    }
}

/// A loopback port nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn calls_that_get_no_answer_are_not_sent_and_show_no_key() {
    let url = closed_port_url().await;
    let suchuang = SuchuangProvider::new(KEY)
        .unwrap()
        .with_base_url(&url)
        .unwrap()
        .with_retries(RetryPolicy::once());
    let e = suchuang.submit(&submit_request()).await.unwrap_err();
    assert_no_key("速创 submit", &e);
    assert_eq!(
        e.kind(),
        ErrorKind::Unavailable,
        "a refused connection sent nothing: {e}"
    );
    assert_no_key(
        "速创 status",
        &suchuang.status(&status_query()).await.unwrap_err(),
    );

    let fal = FalProvider::new(KEY)
        .unwrap()
        .with_queue_url(&url, None)
        .unwrap()
        .with_retries(RetryPolicy::once());
    let e = fal.submit(&submit_request()).await.unwrap_err();
    assert_no_key("fal submit", &e);
    assert_eq!(e.kind(), ErrorKind::Unavailable);

    let apify = ApifySource::new(KEY)
        .unwrap()
        .with_base_url(&url)
        .unwrap()
        .with_retries(RetryPolicy::once(), RetryPolicy::once());
    assert_no_key(
        "apify search",
        &apify.search(&trend_query()).await.unwrap_err(),
    );

    let gemini = GeminiModel::new(KEY)
        .unwrap()
        .with_base_url(&url)
        .unwrap()
        .with_retries(RetryPolicy::once());
    assert_no_key(
        "gemini analyze",
        &gemini.analyze(&trending_video()).await.unwrap_err(),
    );
}

/// A client without time-outs: tokio's paused clock would run them out while a local server
/// answers.
fn untimed_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(jilo_providers::http::tls_config().unwrap())
        .build()
        .unwrap()
}

/// A service that answers its first request 429 (no `Retry-After`) and then a refusal.
async fn rate_limited_once() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "code": 400, "msg": "bad", "detail": "bad",
            "error": {"type": "invalid-input", "message": "bad", "status": "INVALID_ARGUMENT", "code": 400},
        })))
        .mount(&server)
        .await;
    server
}

/// Every client's first wait after a 429 is at least its service's floor (Apify documents
/// a random 500 ms to 1 s, doubling), never the 0-500 ms of full jitter from zero.
#[tokio::test(start_paused = true)]
async fn every_client_waits_at_least_its_services_first_back_off() {
    let floors = [
        ("apify", RetryPolicy::apify().floor),
        ("gemini", RetryPolicy::gemini().floor),
        ("fal", RetryPolicy::fal().floor),
        ("suchuang", RetryPolicy::suchuang().floor),
    ];
    for (service, floor) in floors {
        assert!(floor >= std::time::Duration::from_millis(500), "{service}");
        let server = rate_limited_once().await;
        let url = server.uri();
        let start = tokio::time::Instant::now();
        let result = match service {
            "apify" => ApifySource::new(KEY)
                .unwrap()
                .with_base_url(&url)
                .unwrap()
                .with_client(untimed_client())
                .search(&trend_query())
                .await
                .map(|_| ()),
            "gemini" => GeminiModel::new(KEY)
                .unwrap()
                .with_base_url(&url)
                .unwrap()
                .with_client(untimed_client())
                .analyze(&trending_video())
                .await
                .map(|_| ()),
            "fal" => FalProvider::new(KEY)
                .unwrap()
                .with_queue_url(&url, None)
                .unwrap()
                .with_client(untimed_client())
                .status(&status_query())
                .await
                .map(|_| ()),
            _ => SuchuangProvider::new(KEY)
                .unwrap()
                .with_base_url(&url)
                .unwrap()
                .with_client(untimed_client())
                .status(&status_query())
                .await
                .map(|_| ()),
        };
        let waited = start.elapsed();
        assert!(result.is_err(), "{service}: the second answer refuses");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            2,
            "{service}: one retry after the 429"
        );
        assert!(
            waited >= floor,
            "{service}: waited {waited:?}, under its floor {floor:?}"
        );
    }
}
