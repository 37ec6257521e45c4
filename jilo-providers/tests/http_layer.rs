//! The shared HTTP layer under paused time: `Retry-After` as seconds and as an HTTP date is
//! waited out before the next try; a service that keeps answering 429 ends the call with a
//! typed error once the tries are spent, never a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use jilo_core::ErrorKind;
use jilo_providers::http::{self, CallKind, RetryPolicy};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn call(server: &MockServer, policy: &RetryPolicy) -> jilo_core::Result<u16> {
    // No time-outs: tokio's paused clock would run them out while the server answers.
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(http::tls_config().unwrap())
        .build()
        .unwrap();
    let url = server.uri();
    http::send(
        "svc",
        CallKind::Read,
        policy,
        |_| false,
        |f| f.into_error("svc"),
        || client.get(&url),
    )
    .await
    .map(|r| r.status().as_u16())
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_and_dates_are_waited_out() {
    // (the value, the least wait it must cause): an HTTP date is made just before it is
    // served, 10 s ahead, so the real time the test takes cannot eat into the wait.
    for as_date in [false, true] {
        let (retry_after, least) = if as_date {
            let later = SystemTime::now() + Duration::from_secs(10);
            (httpdate::fmt_http_date(later), Duration::from_secs(7))
        } else {
            ("2".to_owned(), Duration::from_millis(1_900))
        };
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(429).insert_header("retry-after", retry_after.as_str()),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let policy = RetryPolicy {
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::default()
        };
        let start = tokio::time::Instant::now();
        assert_eq!(call(&server, &policy).await.unwrap(), 200);
        let waited = start.elapsed();
        assert!(waited >= least, "{retry_after}: waited {waited:?}");
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn endless_rate_limits_end_in_a_typed_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let err = call(&server, &RetryPolicy::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert!(
        server.received_requests().await.unwrap().len() <= 4,
        "bounded in tries and time"
    );
}

/// A request that cannot be built (a header value with a newline) never left the process:
/// it is "not sent" (`Unavailable` with no answer, which the Studio retries or fails over),
/// never an unknown outcome that would be reconciled and charged at the deadline.
#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_built_is_not_sent_not_unknown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let client = http::client(Duration::from_secs(5)).unwrap();
    let url = server.uri();
    let err = http::send(
        "svc",
        CallKind::PaidStart,
        &RetryPolicy::once(),
        |_| false,
        |f| f.into_error("svc"),
        || client.post(&url).header("authorization", "Key abc\n"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.http().is_none());
    assert_eq!(
        jilo_core::FailureClass::of(&err),
        jilo_core::FailureClass::Retryable
    );
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
