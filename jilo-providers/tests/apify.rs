//! The Apify source against a local server speaking Apify's API: what we send (method, path,
//! query, bearer token, actor input) and what we make of realistic answers; runs started
//! asynchronously, their ids kept in a store before anyone waits, followed by every caller of
//! the same search (a caller that gave up, another source sharing the store) and never paid
//! twice, a lost start answer found among the actor's runs; and the errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use jilo_core::{Error, ErrorKind, Platform, TrendQuery, TrendSource};
use jilo_providers::apify::ApifySource;
use jilo_providers::http::RetryPolicy;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "apify_api_test_token_0123456789";

fn source(server: &MockServer) -> ApifySource {
    let quick = RetryPolicy {
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    ApifySource::new(TOKEN)
        .unwrap()
        .with_base_url(server.uri())
        .unwrap()
        .with_retries(quick, quick)
}

fn query(platform: Platform, limit: u32) -> TrendQuery {
    TrendQuery {
        platform,
        keyword: "AI tools".into(),
        min_views: None,
        max_views: None,
        max_age_days: Some(7),
        limit,
    }
}

fn runs_path(actor: &str) -> String {
    format!("/v2/acts/{actor}/runs")
}

/// A run as Apify describes it.
fn run(id: &str, status: &str, started: &str) -> Value {
    json!({"id": id, "status": status, "startedAt": started, "defaultDatasetId": format!("ds-{id}"),
           "defaultKeyValueStoreId": format!("kvs-{id}")})
}

/// The answer to a start: the run, at once.
fn started(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"data": run(id, "READY", &humantime_now())}))
}

/// The run `id` finishes and its dataset holds `items`, read as the source reads it.
async fn finished(server: &MockServer, id: &str, items: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v2/actor-runs/{id}")))
        .and(query_param("waitForFinish", "60"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": run(id, "SUCCEEDED", &humantime_now())})),
        )
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/datasets/ds-{id}/items")))
        .and(query_param("clean", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(items))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn tiktok_sends_the_actor_input_and_maps_items() {
    let server = MockServer::start().await;
    let items = json!([
        {
            "id": "7351234567890123456",
            "text": "This AI tool edits your videos #ai #tools",
            "createTimeISO": "2026-11-28T10:00:00.000Z",
            "authorMeta": {"name": "aicreator", "nickName": "AI Creator"},
            "webVideoUrl": "https://www.tiktok.com/@aicreator/video/7351234567890123456",
            "videoMeta": {"duration": 21, "coverUrl": "https://p16.tiktokcdn.com/cover.jpg"},
            "playCount": 2400000, "diggCount": 310000, "shareCount": 12000, "commentCount": 4100
        },
        {
            "id": "7351234567890000001",
            "text": "Counts nested under stats",
            "createTime": 1764320000,
            "authorMeta": {"nickName": "Nested"},
            "webVideoUrl": "https://www.tiktok.com/@nested/video/7351234567890000001",
            "stats": {"playCount": 51000, "diggCount": 3000, "shareCount": 40, "commentCount": 12}
        },
        {"errorCode": "SEARCH_QUERY_PROFILE_NOT_FOUND", "error": "nothing found"},
        {"text": "an item without an id or url"}
    ]);
    Mock::given(method("POST"))
        .and(path(runs_path("clockworks~tiktok-scraper")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(query_param("maxItems", "20"))
        .and(body_partial_json(json!({
            "searchQueries": ["AI tools"],
            "resultsPerPage": 20,
            "searchSection": "/video",
            "shouldDownloadVideos": false,
            "oldestPostDateUnified": "7 days"
        })))
        .respond_with(started("tt"))
        .expect(1)
        .mount(&server)
        .await;
    finished(&server, "tt", items).await;
    let videos = source(&server)
        .search(&query(Platform::TikTok, 20))
        .await
        .unwrap();
    assert_eq!(
        videos.len(),
        2,
        "error items and items without an id are dropped"
    );
    let v = &videos[0];
    assert_eq!(v.video_id, "7351234567890123456");
    assert_eq!(v.platform, Platform::TikTok);
    assert_eq!(
        (v.views, v.likes, v.shares, v.comments),
        (2_400_000, 310_000, 12_000, 4_100)
    );
    assert_eq!(v.author.as_deref(), Some("aicreator"));
    assert_eq!(v.duration_secs, Some(21));
    assert_eq!(
        v.published_at.map(|t| t.as_millis()),
        Some(1_795_860_000_000)
    );
    assert_eq!(
        v.thumbnail_url.as_deref(),
        Some("https://p16.tiktokcdn.com/cover.jpg")
    );
    let nested = &videos[1];
    assert_eq!((nested.views, nested.likes), (51_000, 3_000));
    assert_eq!(nested.author.as_deref(), Some("Nested"));
    assert_eq!(
        nested.published_at.map(|t| t.as_millis()),
        Some(1_764_320_000_000)
    );
}

#[tokio::test]
async fn youtube_asks_for_shorts_only_and_reads_thin_search_items() {
    let server = MockServer::start().await;
    let items = json!([
        {
            "title": "AI tools you need in 2026 #shorts", "id": "aB3dE5fG7hI",
            "url": "https://www.youtube.com/shorts/aB3dE5fG7hI",
            "thumbnailUrl": "https://i.ytimg.com/vi/aB3dE5fG7hI/hq2.jpg",
            "viewCount": 1300000, "date": "2026-11-20T08:30:00.000Z", "likes": 54000,
            "channelName": "Tech Shorts", "duration": "00:00:45", "commentsCount": 800,
            "text": "Five tools in 45 seconds"
        },
        {
            "id": "Zz9Yy8Xx7Ww", "title": "thin search result", "duration": "0:31",
            "channelName": "Someone", "date": "5 days ago",
            "url": "https://www.youtube.com/shorts/Zz9Yy8Xx7Ww", "viewCount": 90000
        }
    ]);
    Mock::given(method("POST"))
        .and(path(runs_path("streamers~youtube-scraper")))
        .and(body_partial_json(json!({
            "searchQueries": ["AI tools"],
            "maxResults": 0,
            "maxResultsShorts": 10,
            "maxResultStreams": 0,
            "dateFilter": "month"
        })))
        .respond_with(started("yt"))
        .expect(1)
        .mount(&server)
        .await;
    finished(&server, "yt", items).await;
    let before = jilo_core::Timestamp::from_system(std::time::SystemTime::now());
    let videos = source(&server)
        .search(&query(Platform::YouTubeShorts, 10))
        .await
        .unwrap();
    assert_eq!(videos.len(), 2);
    assert_eq!(
        (videos[0].views, videos[0].likes, videos[0].comments),
        (1_300_000, 54_000, 800)
    );
    assert_eq!(videos[0].duration_secs, Some(45));
    assert_eq!(
        videos[0].description.as_deref(),
        Some("Five tools in 45 seconds")
    );
    let thin = &videos[1];
    assert_eq!(
        (thin.likes, thin.duration_secs),
        (0, Some(31)),
        "missing likes are 0"
    );
    let age = before.since(thin.published_at.unwrap());
    assert!(
        age >= Duration::from_secs(5 * 86_400 - 60) && age <= Duration::from_secs(5 * 86_400 + 60),
        "\"5 days ago\" read as five days: {age:?}"
    );
}

#[tokio::test]
async fn instagram_reads_reels_of_the_hashtag() {
    let server = MockServer::start().await;
    let items = json!([
        {
            "id": "3291234567890", "type": "Video", "productType": "clips", "shortCode": "C9xYz12AbCd",
            "url": "https://www.instagram.com/reel/C9xYz12AbCd/", "caption": "AI tools that save hours",
            "commentsCount": 310, "likesCount": -1, "videoPlayCount": 880000, "videoDuration": 17.8,
            "videoUrl": "https://scontent.cdninstagram.com/v.mp4", "displayUrl": "https://scontent.cdninstagram.com/t.jpg",
            "timestamp": "2026-11-25T19:00:00.000Z", "ownerUsername": "toolsdaily"
        },
        {"error": "not_found", "errorDescription": "Reel not found", "url": "https://www.instagram.com/reel/x/"}
    ]);
    Mock::given(method("POST"))
        .and(path(runs_path("apify~instagram-hashtag-scraper")))
        .and(body_partial_json(json!({
            "hashtags": ["aitools"],
            "resultsType": "reels",
            "resultsLimit": 5,
            "onlyPostsNewerThan": "7 days"
        })))
        .respond_with(started("ig"))
        .expect(1)
        .mount(&server)
        .await;
    finished(&server, "ig", items).await;
    let videos = source(&server)
        .search(&query(Platform::InstagramReels, 5))
        .await
        .unwrap();
    assert_eq!(videos.len(), 1);
    let v = &videos[0];
    assert_eq!(v.video_id, "C9xYz12AbCd");
    assert_eq!(
        (v.views, v.likes, v.comments),
        (880_000, 0, 310),
        "hidden likes are 0; plays when no views"
    );
    assert_eq!(v.duration_secs, Some(18));
    assert_eq!(v.author.as_deref(), Some("toolsdaily"));
}

/// A start whose answer was lost (the server failed after taking it): the run it began is
/// found among the actor's runs by its input (another search's run on the same actor, begun
/// meanwhile, is not taken for it) and followed; nothing is started a second time.
#[tokio::test]
async fn a_start_whose_answer_was_lost_is_found_by_its_input_not_started_again() {
    let server = MockServer::start().await;
    let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = posted.clone();
    Mock::given(method("POST"))
        .and(path(runs_path("clockworks~tiktok-scraper")))
        .respond_with(move |req: &Request| {
            *keep.lock().unwrap() = req.body.clone();
            ResponseTemplate::new(502).set_body_string("bad gateway")
        })
        .expect(1)
        .mount(&server)
        .await;
    let now = humantime_now();
    Mock::given(method("GET"))
        .and(path("/v2/acts/clockworks~tiktok-scraper/runs"))
        .and(query_param("desc", "1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"items": [
                run("theirs", "RUNNING", &now),
                run("ours", "RUNNING", &now),
                run("older", "SUCCEEDED", "2020-01-01T00:00:00.000Z")
            ]}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/key-value-stores/kvs-theirs/records/INPUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "searchQueries": ["cats"], "resultsPerPage": 10
        })))
        .mount(&server)
        .await;
    let ours = posted.clone();
    Mock::given(method("GET"))
        .and(path("/v2/key-value-stores/kvs-ours/records/INPUT"))
        .respond_with(move |_: &Request| {
            ResponseTemplate::new(200)
                .set_body_raw(ours.lock().unwrap().clone(), "application/json")
        })
        .mount(&server)
        .await;
    finished(
        &server,
        "ours",
        json!([{"id": "1", "webVideoUrl": "https://www.tiktok.com/@a/video/1", "playCount": 5}]),
    )
    .await;
    let videos = source(&server)
        .search(&query(Platform::TikTok, 10))
        .await
        .unwrap();
    assert_eq!(videos.len(), 1);
    assert_eq!(videos[0].views, 5);
}

/// Two sources sharing one run store (two processes sharing a database) searching the same
/// thing at once: one run is started, both follow it.
#[tokio::test]
async fn two_sources_sharing_a_store_pay_for_one_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(runs_path("streamers~youtube-scraper")))
        .respond_with(started("shared").set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let now = humantime_now();
    Mock::given(method("GET"))
        .and(path("/v2/actor-runs/shared"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": run("shared", "SUCCEEDED", &now)})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/datasets/ds-shared/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": "s1", "title": "a short", "url": "https://www.youtube.com/shorts/s1", "viewCount": 9
        }])))
        .mount(&server)
        .await;
    let store: std::sync::Arc<dyn jilo_core::TrendCache> =
        std::sync::Arc::new(jilo_core::InMemoryStore::new());
    let one = source(&server).with_run_store(store.clone());
    let two = source(&server).with_run_store(store.clone());
    let q = query(Platform::YouTubeShorts, 3);
    let (a, b) = tokio::join!(one.search(&q), two.search(&q));
    assert_eq!(a.unwrap()[0].views, 9);
    assert_eq!(b.unwrap()[0].views, 9);
}

fn humantime_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // RFC 3339 by hand (UTC), to stay off extra dev-dependencies.
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap());
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap();
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap();
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[tokio::test]
async fn errors_are_typed_and_never_show_the_token() {
    let cases = [
        (
            401,
            json!({"error": {"type": "invalid-token", "message": "Authentication token is not valid."}}),
            ErrorKind::Unauthorized,
        ),
        (
            402,
            json!({"error": {"type": "x402-payment-required", "message": "You have exceeded your monthly usage limit"}}),
            ErrorKind::ProviderOutOfFunds,
        ),
        (
            403,
            json!({"error": {"type": "not-enough-usage-to-run-paid-actor", "message": "not enough usage"}}),
            ErrorKind::ProviderOutOfFunds,
        ),
        (
            402,
            json!({"error": {"type": "concurrent-runs-limit-exceeded", "message": "too many runs"}}),
            ErrorKind::RateLimited,
        ),
    ];
    for (status, body, kind) in cases {
        let server = MockServer::start().await;
        // A refused start (rate limited) may be sent again; money and key errors are not.
        let tries = if kind == ErrorKind::RateLimited {
            2..=4
        } else {
            1..=1
        };
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(tries)
            .mount(&server)
            .await;
        let err = source(&server)
            .search(&query(Platform::TikTok, 5))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status}: {err}");
        assert_eq!(err.http().map(|h| h.status), Some(status));
        assert!(!format!("{err} {err:?}").contains(TOKEN));
    }
    let shown = format!("{:?}", ApifySource::new(TOKEN).unwrap());
    assert!(!shown.contains(TOKEN) && shown.contains("***"), "{shown}");
}

/// A 429 on a run start is retried (the run was refused, not started), honouring
/// `Retry-After`; a 5xx on a run start is not (it may have started).
#[tokio::test]
async fn rate_limits_are_waited_out_and_a_failing_start_is_not_repeated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({"error": {"type": "rate-limit-exceeded", "message": "slow down"}}),
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(started("rl"))
        .mount(&server)
        .await;
    finished(&server, "rl", json!([])).await;
    let begun = std::time::Instant::now();
    source(&server)
        .search(&query(Platform::TikTok, 5))
        .await
        .unwrap();
    assert!(
        begun.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let posts = |sent: Vec<Request>| sent.iter().filter(|r| r.method.as_str() == "POST").count();
    assert_eq!(posts(server.received_requests().await.unwrap()), 2);

    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&failing)
        .await;
    let err = source(&failing)
        .search(&query(Platform::TikTok, 5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        posts(failing.received_requests().await.unwrap()),
        1,
        "a paid start that may have run is not sent again"
    );
    assert!(matches!(err, Error::Unavailable { .. }));
}

/// A caller that gives up while its run goes on: the same search later follows that run and
/// does not pay for another.
#[tokio::test]
async fn a_run_that_outlives_its_caller_is_not_started_twice() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(runs_path("clockworks~tiktok-scraper")))
        .respond_with(started("long"))
        .expect(1)
        .mount(&server)
        .await;
    let now = humantime_now();
    // The first look at the run hangs (the caller gives up during it); later looks answer.
    Mock::given(method("GET"))
        .and(path("/v2/actor-runs/long"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": run("long", "RUNNING", &now)}))
                .set_delay(Duration::from_secs(600)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/actor-runs/long"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": run("long", "SUCCEEDED", &now)})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/datasets/ds-long/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": "9", "webVideoUrl": "https://www.tiktok.com/@a/video/9", "playCount": 77
        }])))
        .expect(1)
        .mount(&server)
        .await;
    let apify = std::sync::Arc::new(source(&server));
    let q = query(Platform::TikTok, 10);
    let first = tokio::spawn({
        let (apify, q) = (apify.clone(), q.clone());
        async move { apify.search(&q).await }
    });
    // The caller gives up once it is following the run (readiness, not a time).
    loop {
        let following = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path() == "/v2/actor-runs/long");
        if following {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    assert!(
        first.await.unwrap_err().is_cancelled(),
        "the first caller gave up while the run went on"
    );
    let videos = apify.search(&q).await.unwrap();
    assert_eq!(videos[0].views, 77);
    // The sync start was made once in all (its mock expects exactly one).
}

/// Apify's `error.type` decides, never its message (which may quote the keyword): a run that
/// ended badly is the actor's failure (`Unavailable`), not the user's query; an input error
/// whose message quotes "rate limit" is still an input error.
#[tokio::test]
async fn errors_are_read_from_the_type_never_the_message() {
    let cases = [
        (
            400,
            json!({"error": {"type": "run-failed", "message": "Actor run did not succeed (run ID: r1, status: FAILED)"}}),
            ErrorKind::Unavailable,
        ),
        (
            400,
            json!({"error": {"type": "actor-run-failed", "message": "keyword 'insufficient balance' failed"}}),
            ErrorKind::Unavailable,
        ),
        (
            400,
            json!({"error": {"type": "invalid-input", "message": "Input keyword 'rate limit 余额 insufficient balance' is not valid"}}),
            ErrorKind::InvalidInput,
        ),
    ];
    for (status, body, kind) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body.clone()))
            .expect(1)
            .mount(&server)
            .await;
        let err = source(&server)
            .search(&query(Platform::TikTok, 5))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{body}: {err}");
    }
}

/// Two searches for the same thing at once in one process, on one source: one run.
#[tokio::test]
async fn two_searches_on_one_source_pay_for_one_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(runs_path("clockworks~tiktok-scraper")))
        .respond_with(started("once").set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let now = humantime_now();
    Mock::given(method("GET"))
        .and(path("/v2/actor-runs/once"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": run("once", "SUCCEEDED", &now)})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/datasets/ds-once/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": "1", "webVideoUrl": "https://www.tiktok.com/@a/video/1", "playCount": 3
        }])))
        .mount(&server)
        .await;
    let apify = source(&server);
    let q = query(Platform::TikTok, 5);
    let (a, b) = tokio::join!(apify.search(&q), apify.search(&q));
    assert_eq!((a.unwrap()[0].views, b.unwrap()[0].views), (3, 3));
}
