//! The Gemini creative model against a local server speaking generateContent: what we send
//! (path with the model, `x-goog-api-key`, the JSON schema in the body, the instructions) and
//! what we make of realistic answers, blocks, safety stops and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use jilo_core::{CreativeModel, ErrorKind, MetadataBrief, Platform, PromptBrief, TrendingVideo};
use jilo_providers::gemini::{CreativePrompts, GeminiModel};
use jilo_providers::http::RetryPolicy;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "AIzaSyTestKey-0123456789abcdef";
const PATH: &str = "/v1beta/models/gemini-3.5-flash:generateContent";

fn model(server: &MockServer) -> GeminiModel {
    GeminiModel::new(KEY)
        .unwrap()
        .with_base_url(server.uri())
        .unwrap()
        .with_retries(RetryPolicy::once())
}

fn video() -> TrendingVideo {
    TrendingVideo {
        platform: Platform::TikTok,
        video_id: "7351234567890123456".into(),
        url: "https://www.tiktok.com/@a/video/7351234567890123456".into(),
        title: "This AI tool edits your videos".into(),
        description: Some("three clicks".into()),
        author: Some("aicreator".into()),
        views: 2_400_000,
        likes: 310_000,
        comments: 4_100,
        shares: 12_000,
        published_at: None,
        thumbnail_url: None,
        video_url: None,
        duration_secs: Some(21),
    }
}

/// A generateContent answer whose text is `json` (as Gemini returns structured output).
fn answer(json_text: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "planning the answer", "thought": true},
                {"text": json_text}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 40, "totalTokenCount": 160},
        "modelVersion": "gemini-3.5-flash"
    })
}

#[tokio::test]
async fn an_analysis_sends_the_schema_and_reads_the_json() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("x-goog-api-key", KEY))
        .and(body_partial_json(json!({
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {"required": ["hook", "success_factors", "score"]}
            },
            "contents": [{"role": "user"}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(
            "```json\n{\"hook\": \"A before/after cut in the first second\", \"success_factors\": [\"instant payoff\", \"tool name on screen\", \"loop\"], \"score\": 8}\n```",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let analysis = model(&server).analyze(&video()).await.unwrap();
    assert_eq!(analysis.score, 8);
    assert_eq!(analysis.success_factors.len(), 3);
    assert!(analysis.hook.starts_with("A before/after"));
    // The instructions carry the video's figures and the system text.
    let sent: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    let task = sent["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert!(
        task.contains("2400000 views") && task.contains("This AI tool edits your videos"),
        "{task}"
    );
    let system = sent["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(system.contains("Answer in English"), "{system}");
    assert!(
        sent.get("key").is_none(),
        "the key travels in the header only"
    );
}

#[tokio::test]
async fn prompts_and_metadata_keep_their_bounds_and_the_prompts_are_the_hosts() {
    let server = MockServer::start().await;
    let prompt = "A paper crane unfolds into a tiny robot on a desk, macro lens, soft morning \
                  light, quick cuts on each fold, ends with the robot waving at the camera";
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-3.8-flash:generateContent"))
        .and(body_partial_json(
            json!({"generationConfig": {"responseJsonSchema": {"required": ["prompt"]}}}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer(&json!({"prompt": prompt}).to_string())),
        )
        .mount(&server)
        .await;
    let tags: Vec<String> = (0..16).map(|i| format!("tag{i}")).collect();
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-3.8-flash:generateContent"))
        .and(body_partial_json(json!({"generationConfig": {"responseJsonSchema": {"required": ["titles", "description", "tags"]}}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&json!({
            "titles": ["One", "Two", "三".repeat(120)],
            "description": "Made with AI.",
            "tags": tags
        }).to_string())))
        .mount(&server)
        .await;
    let gemini = model(&server)
        .with_model("models/gemini-3.8-flash")
        .unwrap()
        .with_prompts(CreativePrompts {
            write_prompt: "HOST PROMPT for {duration}s from {title}".into(),
            language: "Chinese".into(),
            ..CreativePrompts::default()
        });
    let written = gemini
        .write_prompt(&PromptBrief {
            video: video(),
            analysis: None,
            duration_secs: 5,
        })
        .await
        .unwrap();
    assert_eq!(written, prompt);
    let meta = gemini
        .suggest_metadata(&MetadataBrief {
            prompt: prompt.into(),
            duration_secs: 5,
            keywords: vec!["origami".into()],
        })
        .await
        .unwrap();
    assert_eq!(meta.titles.len(), 3);
    assert_eq!(
        meta.titles[2].chars().count(),
        100,
        "titles cut at 100 characters"
    );
    assert_eq!(meta.tags.len(), 15, "at most 15 tags");
    let requests = server.received_requests().await.unwrap();
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        first["contents"][0]["parts"][0]["text"],
        "HOST PROMPT for 5s from This AI tool edits your videos",
        "the host's instructions are what is sent"
    );
    assert!(first["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Answer in Chinese"));
}

#[tokio::test]
async fn a_prompt_out_of_bounds_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(answer(r#"{"prompt": "too short"}"#)),
        )
        .mount(&server)
        .await;
    let err = model(&server)
        .write_prompt(&PromptBrief {
            video: video(),
            analysis: None,
            duration_secs: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn blocks_and_safety_stops_are_moderation_errors() {
    for body in [
        json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}}),
        json!({"candidates": [{"finishReason": "SAFETY", "content": {"parts": []}}]}),
        json!({"candidates": [{"finishReason": "PROHIBITED_CONTENT"}]}),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .mount(&server)
            .await;
        let err = model(&server).analyze(&video()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Moderation, "{body}: {err}");
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"candidates": [{
                "finishReason": "MAX_TOKENS", "content": {"parts": [{"text": "{\"hook\": \"cut"}]}
            }]})),
        )
        .mount(&server)
        .await;
    assert_eq!(
        model(&server).analyze(&video()).await.unwrap_err().kind(),
        ErrorKind::Protocol,
        "a truncated answer"
    );
}

#[tokio::test]
async fn errors_are_typed_and_the_retry_delay_is_read_from_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "You exceeded your current quota",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "42s"}
            ]
        }})))
        .mount(&server)
        .await;
    let err = model(&server).analyze(&video()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(42)));

    let cases = [
        (
            400,
            json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid. Please pass a valid API key.",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}),
            ErrorKind::Unauthorized,
        ),
        (
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "models/gemini-2.0-flash is not found for API version v1beta"}}),
            ErrorKind::InvalidInput,
        ),
        (
            503,
            json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."}}),
            ErrorKind::Unavailable,
        ),
    ];
    for (status, body, kind) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        let err = model(&server).analyze(&video()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status}: {err}");
        assert!(!format!("{err} {err:?}").contains(KEY));
    }
    assert!(!format!("{:?}", GeminiModel::new(KEY).unwrap()).contains(KEY));
}

/// 503 then 200: retried, as the official SDK does (the rate limit itself is tested in `http`).
#[tokio::test]
async fn overloads_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(
            r#"{"hook": "h", "success_factors": ["a", "b", "c"], "score": 6}"#,
        )))
        .mount(&server)
        .await;
    let gemini = GeminiModel::new(KEY)
        .unwrap()
        .with_base_url(server.uri())
        .unwrap()
        .with_retries(RetryPolicy {
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .with_requests_per_minute(120); // one every 0.5 s past a burst of 120
    assert_eq!(gemini.analyze(&video()).await.unwrap().score, 6);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// Google's `status` and `details[].reason` decide, never the message's other text: an
/// INVALID_ARGUMENT that quotes the request's words is the input, not a rejected key or a
/// rate limit.
#[tokio::test]
async fn errors_are_read_from_googles_fields_never_the_echo() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400,
            "message": "Invalid value at 'contents[0]': 'API key not valid, too many requests, 余额'",
            "status": "INVALID_ARGUMENT"
        }})))
        .expect(1)
        .mount(&server)
        .await;
    let err = model(&server).analyze(&video()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let key = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
        }})))
        .mount(&key)
        .await;
    let err = model(&key).analyze(&video()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
}
