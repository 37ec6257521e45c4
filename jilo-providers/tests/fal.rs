//! The FAL provider against a local server speaking fal's queue API: what we send (method,
//! path, query, `Authorization: Key …`, each model's input with string durations) and what we
//! make of every status, result, cancel answer and error; webhooks verified with keys made
//! here; the provider conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use jilo_core::testing::video_provider_suite;
use jilo_core::{
    CancelOutcome, ErrorKind, FailureClass, JobId, ProviderStatus, StatusQuery, SubmitRequest,
    VideoProvider, VideoRequest, WebhookDelivery,
};
use jilo_providers::fal::{FalProvider, KLING_T2V};
use jilo_providers::http::RetryPolicy;
use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "fal-key-id:fal-key-secret";
const KLING: &str = "fal-ai/kling-video/v1.6/standard/text-to-video";

fn fal(server: &MockServer) -> FalProvider {
    FalProvider::new(KEY)
        .unwrap()
        .with_queue_url(server.uri(), None)
        .unwrap()
        .with_jwks_url(format!("{}/.well-known/jwks.json", server.uri()))
        .unwrap()
        .with_retries(RetryPolicy::once())
}

fn kling_request(job: &str) -> SubmitRequest {
    SubmitRequest::new(
        JobId::new(job),
        1,
        VideoRequest::new("A paper boat on a rainy street at night", KLING_T2V, 5),
        KLING,
    )
    .with_webhook_url(format!("https://host.example/webhooks/fal/{job}/1"))
}

fn query(id: &str) -> StatusQuery {
    StatusQuery {
        request_id: id.into(),
        provider_model: KLING.into(),
    }
}

#[tokio::test]
async fn submit_sends_the_input_the_key_and_the_job_named_webhook() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{KLING}")))
        .and(query_param("fal_webhook", "https://host.example/webhooks/fal/job-1/1"))
        .and(header("authorization", format!("Key {KEY}").as_str()))
        .and(body_json(json!({
            "prompt": "A paper boat on a rainy street at night",
            "duration": "5",
            "aspect_ratio": "9:16"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "IN_QUEUE",
            "request_id": "019d61ac-62e0-7893-bea6-336a1659511f",
            "response_url": format!("{}/fal-ai/kling-video/requests/019d61ac-62e0-7893-bea6-336a1659511f", server.uri()),
            "queue_position": 0
        })))
        .expect(1)
        .mount(&server)
        .await;
    let sub = fal(&server).submit(&kling_request("job-1")).await.unwrap();
    assert_eq!(sub.request_id, "019d61ac-62e0-7893-bea6-336a1659511f");
}

#[tokio::test]
async fn a_refused_connection_goes_to_the_backup_host() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let backup = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{KLING}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"request_id": "r-backup"})))
        .expect(1)
        .mount(&backup)
        .await;
    let provider = FalProvider::new(KEY)
        .unwrap()
        .with_queue_url(dead, Some(backup.uri()))
        .unwrap();
    assert_eq!(
        provider
            .submit(&kling_request("job-2"))
            .await
            .unwrap()
            .request_id,
        "r-backup"
    );
}

#[tokio::test]
async fn submit_errors_are_typed_and_never_repeated() {
    let cases = [
        (ResponseTemplate::new(503).set_body_string("<html>nginx</html>"), ErrorKind::Unavailable),
        (
            ResponseTemplate::new(503)
                .insert_header("x-fal-request-id", "r-1")
                .set_body_json(json!({"detail": "runner disconnected", "error_type": "runner_disconnected"})),
            ErrorKind::OutcomeUnknown,
        ),
        (ResponseTemplate::new(401).set_body_json(json!({"detail": "No user found for Key ID and Secret"})), ErrorKind::Unauthorized),
        (ResponseTemplate::new(403).set_body_json(json!({"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."})), ErrorKind::ProviderOutOfFunds),
        (ResponseTemplate::new(422).set_body_json(json!({"detail": [{"loc": ["body", "duration"], "msg": "unexpected value; permitted: '5', '10'", "type": "value_error.const"}]})), ErrorKind::InvalidInput),
    ];
    for (answer, kind) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = fal(&server)
            .submit(&kling_request("job-3"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(!format!("{err} {err:?}").contains("fal-key-secret"));
    }
    let unknown = jilo_core::FailureClass::of(&jilo_core::Error::OutcomeUnknown {
        service: "fal".into(),
        reason: "x".into(),
        source: None,
    });
    assert_eq!(unknown, FailureClass::Unknown);
}

#[tokio::test]
async fn every_status_is_read_and_unknown_ones_end_the_poll() {
    let answers = [
        (
            json!({"status": "IN_QUEUE", "queue_position": 3}),
            ProviderStatus::Queued { position: Some(3) },
        ),
        (
            json!({"status": "IN_PROGRESS", "logs": [{"message": "step 3/30", "level": "INFO"}]}),
            ProviderStatus::Running {
                progress: None,
                stage: Some("step 3/30".into()),
            },
        ),
        (
            json!({"status": "IN_PROGRESS", "logs": null}),
            ProviderStatus::Running {
                progress: None,
                stage: None,
            },
        ),
        (
            json!({"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 41.7}}),
            ProviderStatus::Succeeded { video: None },
        ),
        (
            json!({"status": "COMPLETED", "error": "Runner disconnected", "error_type": "runner_disconnected"}),
            ProviderStatus::Failed {
                reason: "Runner disconnected".into(),
                class: FailureClass::Retryable,
            },
        ),
        (
            json!({"status": "COMPLETED", "error": "Invalid status code: 422", "error_type": "validation_error"}),
            ProviderStatus::Failed {
                reason: "Invalid status code: 422".into(),
                class: FailureClass::Permanent,
            },
        ),
    ];
    for (body, expected) in answers {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/fal-ai/kling-video/requests/r-9/status"))
            .and(header("authorization", format!("Key {KEY}").as_str()))
            .respond_with(ResponseTemplate::new(202).set_body_json(body.clone()))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            fal(&server).status(&query("r-9")).await.unwrap(),
            expected,
            "{body}"
        );
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "FAILED"})))
        .mount(&server)
        .await;
    match fal(&server).status(&query("r-9")).await.unwrap() {
        ProviderStatus::Failed {
            class: FailureClass::Permanent,
            reason,
        } => {
            assert!(reason.contains("FAILED"), "{reason}")
        }
        other => panic!("an unknown status must end the poll, got {other:?}"),
    }
}

#[tokio::test]
async fn result_and_cancel() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/kling-video/requests/r-5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "video": {"url": "https://v3.fal.media/files/x/output.mp4", "content_type": "video/mp4", "file_size": 4404019},
            "seed": 17454220438242315174u64
        })))
        .mount(&server)
        .await;
    let video = fal(&server).result(&query("r-5")).await.unwrap();
    assert_eq!(video.url, "https://v3.fal.media/files/x/output.mp4");
    assert_eq!(video.bytes, Some(4_404_019));

    for (status, body, expected) in [
        (200, json!({"status": "OK"}), Ok(CancelOutcome::Cancelled)),
        (
            202,
            json!({"status": "CANCELLATION_REQUESTED"}),
            Ok(CancelOutcome::TooLate),
        ),
        (
            400,
            json!({"status": "ALREADY_COMPLETED"}),
            Ok(CancelOutcome::TooLate),
        ),
        (
            404,
            json!({"status": "NOT_FOUND"}),
            Err(ErrorKind::NotFound),
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/fal-ai/kling-video/requests/r-5/cancel"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let got = fal(&server)
            .cancel(&query("r-5"))
            .await
            .map_err(|e| e.kind());
        assert_eq!(got, expected, "HTTP {status}");
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwk(k: &SigningKey) -> serde_json::Value {
    json!({
        "kty": "OKP", "crv": "Ed25519", "kid": format!("k{}", k.as_bytes()[0]),
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.verifying_key().as_bytes())
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A delivery as fal sends it: Python-style JSON text, signed over the exact bytes.
fn delivery(
    signer: &SigningKey,
    request_id: &str,
    user: &str,
    ts: u64,
    body: &str,
) -> WebhookDelivery {
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    let message = format!("{request_id}\n{user}\n{ts}\n{digest}");
    let signature = hex::encode(signer.sign(message.as_bytes()).to_bytes());
    WebhookDelivery::new(
        vec![
            ("X-Fal-Webhook-Request-Id".into(), request_id.into()),
            ("X-Fal-Webhook-User-Id".into(), user.into()),
            ("X-Fal-Webhook-Timestamp".into(), ts.to_string()),
            ("X-Fal-Webhook-Signature".into(), signature),
            ("Content-Type".into(), "application/json".into()),
        ],
        body.as_bytes().to_vec(),
    )
}

fn ok_body(request_id: &str) -> String {
    format!(
        "{{\"error\": null, \"gateway_request_id\": \"{request_id}\", \"payload\": {{\"seed\": 17454220438242315174, \"video\": {{\"content_type\": \"video/mp4\", \"file_name\": \"output.mp4\", \"file_size\": 4404019, \"url\": \"https://v3.fal.media/files/a/output.mp4\"}}}}, \"request_id\": \"{request_id}\", \"status\": \"OK\"}}"
    )
}

#[tokio::test]
async fn webhooks_verify_exactly_as_fal_signs_them() {
    let server = MockServer::start().await;
    let (a, b, stranger) = (key(1), key(2), key(9));
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk(&a)]})))
        .mount(&server)
        .await;
    let ts = now_secs();
    // The provider's clock is the signing time exactly, so the window's edges are sharp.
    let provider = fal(&server)
        .with_user_id("user-42")
        .with_jwks_refetch_gap(Duration::ZERO)
        .with_fixed_now(UNIX_EPOCH + Duration::from_secs(ts));

    // Valid: the video, the request, a delivery id from the bytes; a seed beyond i64 parses.
    let body = ok_body("r-1");
    let event = provider
        .parse_webhook(&delivery(&a, "r-1", "user-42", ts, &body))
        .await
        .unwrap();
    assert_eq!(event.request_id, "r-1");
    match &event.status {
        ProviderStatus::Succeeded { video: Some(v) } => {
            assert_eq!(v.url, "https://v3.fal.media/files/a/output.mp4")
        }
        other => panic!("{other:?}"),
    }
    assert!(event.delivery_id.starts_with("sha256:"));

    let refused = |d: WebhookDelivery| {
        let provider = &provider;
        async move {
            provider
                .parse_webhook(&d)
                .await
                .map(|_| ())
                .map_err(|e| e.kind())
        }
    };
    assert_eq!(
        refused(delivery(&stranger, "r-1", "user-42", ts, &body)).await,
        Err(ErrorKind::Unauthorized),
        "a wrong key"
    );
    let mut tampered = body.clone().into_bytes();
    let at = tampered.iter().position(|c| *c == b'4').unwrap();
    tampered[at] = b'5';
    let mut changed = delivery(&a, "r-1", "user-42", ts, &body);
    changed.body = tampered;
    assert_eq!(
        refused(changed).await,
        Err(ErrorKind::Unauthorized),
        "one byte changed"
    );
    assert_eq!(
        refused(delivery(&a, "r-1", "user-42", ts - 301, &body)).await,
        Err(ErrorKind::Unauthorized),
        "stale"
    );
    assert_eq!(
        refused(delivery(&a, "r-1", "user-42", ts + 301, &body)).await,
        Err(ErrorKind::Unauthorized),
        "from the future"
    );
    assert_eq!(
        refused(delivery(&a, "r-1", "user-7", ts, &body)).await,
        Err(ErrorKind::Unauthorized),
        "another fal account"
    );
    assert_eq!(
        refused(delivery(&a, "r-2", "user-42", ts, &body)).await,
        Err(ErrorKind::Unauthorized),
        "header and body disagree"
    );
    let mut unsigned = delivery(&a, "r-1", "user-42", ts, &body);
    unsigned
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("x-fal-webhook-signature"));
    assert_eq!(
        refused(unsigned).await,
        Err(ErrorKind::Unauthorized),
        "no signature"
    );

    // Rotation: fal now signs with b; the cached keys miss, the keys are fetched again.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk(&a), jwk(&b)]})))
        .mount(&server)
        .await;
    let error_body = "{\"error\": \"Invalid status code: 422\", \"gateway_request_id\": \"r-3\", \"payload\": {\"detail\": [{\"loc\": [\"body\", \"prompt\"], \"msg\": \"field required\"}]}, \"request_id\": \"r-3\", \"status\": \"ERROR\"}";
    let event = provider
        .parse_webhook(&delivery(&b, "r-3", "user-42", ts, error_body))
        .await
        .unwrap();
    assert!(
        matches!(event.status, ProviderStatus::Failed { ref reason, class: FailureClass::Permanent } if reason == "Invalid status code: 422")
    );
    let server_error = error_body.replace("422", "503").replace("r-3", "r-4");
    let event = provider
        .parse_webhook(&delivery(&b, "r-4", "user-42", ts, &server_error))
        .await
        .unwrap();
    assert!(
        matches!(
            event.status,
            ProviderStatus::Failed {
                class: FailureClass::Retryable,
                ..
            }
        ),
        "fal's own failure is worth another try, as in the status poll"
    );
}

#[tokio::test]
async fn refetching_the_keys_is_rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk(&key(1))]})))
        .mount(&server)
        .await;
    let provider = fal(&server);
    let body = ok_body("r-1");
    for _ in 0..5 {
        let forged = delivery(&key(9), "r-1", "u", now_secs(), &body);
        assert!(provider.parse_webhook(&forged).await.is_err());
    }
    let fetches = server.received_requests().await.unwrap();
    assert_eq!(
        fetches.len(),
        1,
        "five forged deliveries, one fetch of the keys"
    );
    assert!(
        fetches[0].headers.get("authorization").is_none(),
        "the fal key never goes to the keys' URL"
    );
}

#[tokio::test]
async fn fal_passes_the_provider_conformance_suite() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/minimax/video-01"))
        .and(body_json(json!({"prompt": "A calm lake at dawn, mist drifting over the water", "prompt_optimizer": true})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"request_id": "r-suite"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/minimax/requests/r-suite/status"))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"status": "IN_QUEUE", "queue_position": 0})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/fal-ai/minimax/requests/jilo-conformance-unknown/status",
        ))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"})),
        )
        .mount(&server)
        .await;
    video_provider_suite(&fal(&server)).await;
}

#[tokio::test]
async fn malformed_signatures_and_a_down_key_endpoint_are_clear_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .mount(&server)
        .await;
    let provider = fal(&server);
    let body = ok_body("r-1");
    let mut bad_hex = delivery(&key(1), "r-1", "u", now_secs(), &body);
    for (k, v) in bad_hex.headers.iter_mut() {
        if k.eq_ignore_ascii_case("x-fal-webhook-signature") {
            *v = "zz-not-hex".into();
        }
    }
    assert_eq!(
        provider.parse_webhook(&bad_hex).await.unwrap_err().kind(),
        ErrorKind::Unauthorized,
        "malformed hex is refused before any key is fetched"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
    let good = delivery(&key(1), "r-1", "u", now_secs(), &body);
    let err = provider.parse_webhook(&good).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Unavailable,
        "the keys cannot be read: {err}"
    );
    assert!(err.to_string().contains("fal"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Random headers and bodies never panic the verifier or the parser.
    #[test]
    fn random_deliveries_never_panic(
        headers in proptest::collection::vec(("[a-zA-Z-]{0,30}", "\\PC{0,80}"), 0..6),
        signature in "[0-9a-f]{0,140}",
        timestamp in "\\PC{0,12}",
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk(&key(1))]})))
                .mount(&server)
                .await;
            let provider = fal(&server);
            let mut all = headers.clone();
            all.push(("X-Fal-Webhook-Request-Id".into(), "r".into()));
            all.push(("X-Fal-Webhook-User-Id".into(), "u".into()));
            all.push(("X-Fal-Webhook-Timestamp".into(), timestamp.clone()));
            all.push(("X-Fal-Webhook-Signature".into(), signature.clone()));
            for d in [WebhookDelivery::new(headers.clone(), body.clone()), WebhookDelivery::new(all, body.clone())] {
                let _ = provider.parse_webhook(&d).await;
            }
        });
    }
}

/// fal's validation errors quote the input (`detail[].input`), and a `detail` string may
/// echo the prompt: neither makes an empty balance or a rate limit out of the user's words.
#[tokio::test]
async fn an_echoed_prompt_never_makes_an_empty_balance_or_a_rate_limit() {
    let prompt = "Exhausted balance sheets fly, too many requests, 余额 rain";
    let request = SubmitRequest::new(
        JobId::new("job-echo"),
        1,
        VideoRequest::new(prompt, KLING_T2V, 5),
        KLING,
    );
    let answers = [
        ResponseTemplate::new(422).set_body_json(json!({"detail": [{"loc": ["body", "prompt"], "msg": "too long", "type": "value_error", "input": prompt}]})),
        ResponseTemplate::new(400).set_body_json(json!({"detail": format!("Invalid prompt: {prompt}")})),
        ResponseTemplate::new(403).set_body_json(json!({"detail": format!("Prompt not allowed: {prompt}")})),
    ];
    let kinds = [
        ErrorKind::InvalidInput,
        ErrorKind::InvalidInput,
        ErrorKind::Unauthorized,
    ];
    for (answer, kind) in answers.into_iter().zip(kinds) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = fal(&server).submit(&request).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
    }
}
