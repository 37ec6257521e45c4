//! A paid submit is never sent twice, end to end across the crates: a provider speaking HTTP
//! (a stand-in with an idempotency-key header and an optional lookup) to a local server that
//! takes the submit and then answers too late, a Studio on a real SQLite file, for every way
//! the outcome can be unknown:
//!
//! - the client times out after the body was sent: completed through the provider's lookup;
//! - the connection is reset after the body was sent: completed by the webhook to the job-named
//!   URL, the request id never learnt from the submit;
//! - the process is killed (SIGKILL) between the call and the write: the next process
//!   reconciles through the lookup.
//!
//! Each time the server receives exactly one billed submit for the job, and the ledger shows
//! one hold and one settle. A submit refused before it was sent is still retried plainly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jilo::store::{SqlStore, StoreUrl};
use jilo::{
    AspectRatio, CancelOutcome, Error, Grant, HttpFailure, JobId, JobState, JobStore, ModelPrice,
    ModelSpec, Policy, ProviderBalance, ProviderId, ProviderStatus, ProviderVideo, QuotaStore,
    StatusQuery, Studio, Submission, SubmissionKey, SubmissionSearch, SubmitRequest, Timestamp,
    UserId, VideoProvider, VideoRequest, WebhookDelivery, WebhookEvent,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const MODEL: &str = "standin-video";
const TOKEN: &str = "standin-webhook-token";
const HOOKS: &str = "https://host.example/webhooks";

/// A small HTTP video provider: `POST /v1/videos` with an `Idempotency-Key` header,
/// `GET /v1/videos/{id}`, and (when `lookup`) `GET /v1/videos?idempotency_key=…`.
struct StandIn {
    submit_base: String,
    api_base: String,
    lookup: bool,
    http: reqwest::Client,
}

impl StandIn {
    fn new(submit_base: &str, api_base: &str, lookup: bool) -> Self {
        Self::with_timeout(submit_base, api_base, lookup, Duration::from_millis(400))
    }

    /// A stand-in whose calls give up after `timeout`.
    fn with_timeout(submit_base: &str, api_base: &str, lookup: bool, timeout: Duration) -> Self {
        Self {
            submit_base: submit_base.to_owned(),
            api_base: api_base.to_owned(),
            lookup,
            http: jilo::providers::http::client(timeout).unwrap(),
        }
    }

    fn failed(status: u16, body: &str) -> Error {
        Error::Unavailable {
            service: "standin".into(),
            reason: format!("HTTP {status}"),
            response: Some(HttpFailure::new(status, body)),
            source: None,
        }
    }

    async fn get_json(&self, url: &str) -> jilo::Result<(u16, Value)> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Error::Unavailable {
                service: "standin".into(),
                reason: e.to_string(),
                response: None,
                source: None,
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }
}

#[async_trait]
impl VideoProvider for StandIn {
    fn id(&self) -> ProviderId {
        ProviderId::new("standin")
    }

    fn models(&self) -> Vec<ModelSpec> {
        vec![ModelSpec {
            id: MODEL.to_owned(),
            provider_model: "standin/v1".to_owned(),
            durations: vec![5],
            aspect_ratios: vec![AspectRatio::Portrait],
            prices: vec![ModelPrice {
                duration_secs: 5,
                credits: 15,
                provider_cost_minor: 30,
                currency: "USD".to_owned(),
            }],
        }]
    }

    fn capabilities(&self) -> jilo::Capabilities {
        jilo::Capabilities {
            webhooks: true,
            find_submission: true,
            ..jilo::Capabilities::default()
        }
    }

    async fn submit(&self, request: &SubmitRequest) -> jilo::Result<Submission> {
        let body = json!({
            "model": request.provider_model,
            "prompt": request.request.prompt,
            "duration": request.request.duration_secs.to_string(),
            "webhook_url": request.webhook_url,
        });
        let sent = self
            .http
            .post(format!("{}/v1/videos", self.submit_base))
            .header("Idempotency-Key", request.idempotency_key())
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let v: Value = resp.json().await.map_err(|e| Error::OutcomeUnknown {
                    service: "standin".into(),
                    reason: format!("the answer was cut off: {e}"),
                    source: Some(Box::new(e)),
                })?;
                let request_id = v["request_id"].as_str().unwrap_or_default().to_owned();
                Ok(Submission { request_id })
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                Err(Self::failed(status, &resp.text().await.unwrap_or_default()))
            }
            // Nothing left this machine: plainly retryable.
            Err(e) if e.is_connect() => Err(Error::Unavailable {
                service: "standin".into(),
                reason: format!("connection refused: {e}"),
                response: None,
                source: None,
            }),
            // The request may have reached the provider: unknown.
            Err(e) => Err(Error::OutcomeUnknown {
                service: "standin".into(),
                reason: e.to_string(),
                source: Some(Box::new(e)),
            }),
        }
    }

    async fn status(&self, query: &StatusQuery) -> jilo::Result<ProviderStatus> {
        let (_, v) = self
            .get_json(&format!("{}/v1/videos/{}", self.api_base, query.request_id))
            .await?;
        Ok(match v["status"].as_str() {
            Some("succeeded") => ProviderStatus::Succeeded { video: None },
            Some("running") => ProviderStatus::Running {
                progress: None,
                stage: None,
            },
            _ => ProviderStatus::Queued { position: None },
        })
    }

    async fn result(&self, query: &StatusQuery) -> jilo::Result<ProviderVideo> {
        let (_, v) = self
            .get_json(&format!("{}/v1/videos/{}", self.api_base, query.request_id))
            .await?;
        Ok(ProviderVideo {
            url: v["video_url"].as_str().unwrap_or_default().to_owned(),
            content_type: None,
            bytes: None,
            headers: Vec::new(),
        })
    }

    async fn cancel(&self, _: &StatusQuery) -> jilo::Result<CancelOutcome> {
        Ok(CancelOutcome::Unsupported)
    }

    async fn parse_webhook(&self, delivery: &WebhookDelivery) -> jilo::Result<WebhookEvent> {
        if delivery.header("x-standin-token") != Some(TOKEN) {
            return Err(Error::Unauthorized {
                service: "standin webhook".into(),
                response: None,
                source: None,
            });
        }
        let v: Value = serde_json::from_slice(&delivery.body).map_err(|e| Error::Protocol {
            service: "standin".into(),
            reason: e.to_string(),
            response: None,
            source: None,
        })?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Ok(WebhookEvent {
            request_id: text("request_id"),
            delivery_id: text("delivery_id"),
            status: ProviderStatus::Succeeded {
                video: Some(ProviderVideo {
                    url: text("video_url"),
                    content_type: Some("video/mp4".into()),
                    bytes: None,
                    headers: Vec::new(),
                }),
            },
        })
    }

    async fn find_submission(&self, key: &SubmissionKey) -> jilo::Result<SubmissionSearch> {
        if !self.lookup {
            return Ok(SubmissionSearch::Unsupported);
        }
        let url = format!(
            "{}/v1/videos?idempotency_key={}",
            self.api_base,
            key.idempotency_key()
        );
        match self.get_json(&url).await? {
            (200, v) => Ok(SubmissionSearch::Found(Submission {
                request_id: v["request_id"].as_str().unwrap_or_default().to_owned(),
            })),
            (404, _) => Ok(SubmissionSearch::NotFound),
            (status, v) => Err(Self::failed(status, &v.to_string())),
        }
    }

    async fn balance(&self) -> jilo::Result<Option<ProviderBalance>> {
        Ok(None)
    }
}

fn policy() -> Policy {
    Policy {
        webhook_base_url: Some(HOOKS.to_owned()),
        submit_grace: Duration::from_millis(200),
        lease: Duration::from_millis(900),
        ..Policy::default()
    }
}

fn sqlite_url() -> StoreUrl {
    let dir = std::env::temp_dir().join("jilo-root-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    StoreUrl::SqliteFile(file.to_string_lossy().into_owned())
}

fn studio(provider: StandIn, store: Arc<SqlStore>, worker: &str) -> Studio {
    Studio::builder()
        .provider(Arc::new(provider))
        .store(store)
        .policy(policy())
        .worker_name(worker)
        .build()
        .unwrap()
}

fn request() -> VideoRequest {
    VideoRequest::new("Paper lanterns rising over a night market", MODEL, 5)
}

/// The provider's signed webhook for a request, as the host's route
/// `…/webhooks/standin/{job}/{attempt}` received it.
fn webhook(request_id: &str, job: &JobId, attempt: u32) -> WebhookDelivery {
    let body = json!({
        "request_id": request_id,
        "delivery_id": format!("d-{request_id}"),
        "video_url": format!("https://cdn.example/{request_id}.mp4"),
    });
    WebhookDelivery::new(
        vec![("X-Standin-Token".into(), TOKEN.into())],
        body.to_string(),
    )
    .for_submission(SubmissionKey::new(job.clone(), attempt))
}

/// Checks the one billed submit the server saw for `job`.
fn check_submit(req: &Request, job: &JobId) {
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/v1/videos");
    assert_eq!(
        req.headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(format!("jilo-{job}-1").as_str())
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["model"], "standin/v1");
    assert_eq!(body["duration"], "5", "durations are strings on the wire");
    assert_eq!(body["prompt"], request().prompt);
    assert_eq!(
        body["webhook_url"],
        format!("{HOOKS}/standin/{job}/1"),
        "the webhook URL names the job and attempt"
    );
}

async fn one_hold_one_settle(store: &SqlStore, user: &UserId) {
    let history = store.history(user).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["grant", "hold", "settle"]);
    let b = store.balance(user).await.unwrap();
    assert_eq!((b.available, b.held, b.spent), (85, 0, 15));
}

async fn granted_store(url: &StoreUrl, user: &UserId) -> Arc<SqlStore> {
    let store = Arc::new(SqlStore::open(url).await.unwrap());
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    store
}

/// A provider that takes exactly one submit and answers it `request_id` only after `delay`.
async fn provider_taking_one_submit(request_id: &str, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "request_id": request_id }))
                .set_delay(delay),
        )
        .expect(1)
        .mount(&server)
        .await;
    server
}

/// Ticks until the job is in `state` (or fails after a few seconds).
async fn tick_until(studio: &Studio, job: &JobId, state: JobState) {
    for _ in 0..100 {
        studio.tick().await.unwrap();
        if studio.job(job).await.unwrap().state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {job} never reached {state}: {:?}",
        studio.job(job).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_timeout_after_sending_is_completed_through_the_lookup() {
    let server = provider_taking_one_submit("req-slow", Duration::from_secs(3)).await;
    let user = UserId::new("tia");
    let store = granted_store(&sqlite_url(), &user).await;
    let studio = studio(
        StandIn::new(&server.uri(), &server.uri(), true),
        store.clone(),
        "w1",
    );
    let job = studio.generate(&user, request()).await.unwrap();
    let key = format!("jilo-{job}-1");
    Mock::given(method("GET"))
        .and(path("/v1/videos"))
        .and(query_param("idempotency_key", key.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"request_id": "req-slow"})))
        .expect(1..)
        .mount(&server)
        .await;
    let pending = studio.job(&job).await.unwrap();
    assert_eq!(pending.state, JobState::Queued);
    assert!(pending.pending_submit.is_some(), "{pending:?}");

    tick_until(&studio, &job, JobState::Submitted).await;
    assert_eq!(
        studio
            .job(&job)
            .await
            .unwrap()
            .provider_request_id
            .as_deref(),
        Some("req-slow")
    );
    let out = studio
        .handle_webhook(&"standin".into(), &webhook("req-slow", &job, 1))
        .await
        .unwrap();
    assert_eq!(out.state, JobState::Storing);
    tick_until(&studio, &job, JobState::Completed).await;

    let requests = server.received_requests().await.unwrap();
    let submits: Vec<&Request> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(submits.len(), 1, "one billed submit");
    check_submit(submits[0], &job);
    one_hold_one_settle(&store, &user).await;
}

/// Reads one HTTP request (headers and a `Content-Length` body) and closes the connection
/// with a reset, answering nothing. Returns the raw request.
async fn read_then_reset(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown().await;
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_after_sending_is_completed_by_the_job_named_webhook() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let submit_base = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let raw = read_then_reset(&mut stream).await;
            let _ = seen_tx.send(raw);
        }
    });
    let api = MockServer::start().await;
    let user = UserId::new("uma");
    let store = granted_store(&sqlite_url(), &user).await;
    let studio = studio(
        StandIn::new(&submit_base, &api.uri(), false),
        store.clone(),
        "w1",
    );
    let job = studio.generate(&user, request()).await.unwrap();
    let pending = studio.job(&job).await.unwrap();
    assert_eq!(pending.state, JobState::Queued);
    assert_eq!(pending.stage.as_deref(), Some("confirming the submission"));

    // The provider could not be asked; past the grace window nothing is sent again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        studio.tick().await.unwrap();
    }
    assert_eq!(studio.job(&job).await.unwrap().state, JobState::Queued);

    // The provider ran it and calls the URL that names the job and attempt.
    let out = studio
        .handle_webhook(&"standin".into(), &webhook("req-reset", &job, 1))
        .await
        .unwrap();
    assert!(out.applied);
    tick_until(&studio, &job, JobState::Completed).await;
    assert_eq!(
        studio
            .job(&job)
            .await
            .unwrap()
            .provider_request_id
            .as_deref(),
        Some("req-reset")
    );

    let first = seen_rx.recv().await.unwrap();
    let text = String::from_utf8_lossy(&first).to_lowercase();
    assert!(text.starts_with("post /v1/videos "), "{text}");
    assert!(text.contains(&format!("idempotency-key: jilo-{job}-1")));
    assert!(text.contains("\"duration\":\"5\""));
    assert!(
        seen_rx.try_recv().is_err(),
        "one submit reached the provider"
    );
    one_hold_one_settle(&store, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_refused_before_sending_is_retried_plainly() {
    // A port nobody listens on: the connection is refused, nothing was sent.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let user = UserId::new("vic");
    let store = granted_store(&sqlite_url(), &user).await;
    let studio = studio(StandIn::new(&refused, &refused, false), store, "w1");
    let job = studio.generate(&user, request()).await.unwrap();
    let queued = studio.job(&job).await.unwrap();
    assert_eq!(queued.state, JobState::Queued);
    assert!(
        queued.pending_submit.is_none(),
        "known not sent: no reconciliation"
    );
    assert_eq!(queued.stage.as_deref(), Some("retrying"));
}

const CHILD: &str = "JILO_RECONCILE_CHILD";

/// The child: a host process that submits and is killed inside the call.
async fn child_submits(url: StoreUrl, provider_url: String) {
    let store = Arc::new(SqlStore::open(&url).await.unwrap());
    // No time-out of its own that a loaded machine could reach first: the kill is the only
    // way out of the submit, so the crash between the call and the write is what is tested.
    let studio = studio(
        StandIn::with_timeout(&provider_url, &provider_url, true, Duration::from_secs(120)),
        store,
        "doomed",
    );
    let mut slow = request();
    slow.prompt.push_str(" (child)");
    let _ = studio.generate(&UserId::new("wes"), slow).await;
    // Killed before this line, inside the submit call.
    std::process::exit(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_between_the_call_and_the_write_is_reconciled() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (url, provider) = spec.split_once('|').unwrap();
        child_submits(StoreUrl::parse(url).unwrap(), provider.to_owned()).await;
        return;
    }
    let server = provider_taking_one_submit("req-killed", Duration::from_secs(30)).await;
    let url = sqlite_url();
    let user = UserId::new("wes");
    let store = granted_store(&url, &user).await;
    let StoreUrl::SqliteFile(file) = &url else {
        unreachable!()
    };
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_process_killed_between_the_call_and_the_write_is_reconciled",
            "--nocapture",
        ])
        .env(CHILD, format!("sqlite://{file}|{}", server.uri()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Once the provider has the submit, kill the child inside its call.
    let mut waited = 0;
    while server.received_requests().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 1500, "the child never submitted");
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let jobs = store.jobs_for_user(&user, 5).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].id.clone();
    assert_eq!(jobs[0].state, JobState::Queued);
    assert_eq!(jobs[0].pending_submit.as_ref().map(|p| p.attempt), Some(1));
    Mock::given(method("GET"))
        .and(path("/v1/videos"))
        .and(query_param(
            "idempotency_key",
            format!("jilo-{job}-1").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"request_id": "req-killed"})))
        .expect(1..)
        .mount(&server)
        .await;

    // The next process, once the dead one's lease is over, asks the provider and goes on.
    let next = studio(
        StandIn::new(&server.uri(), &server.uri(), true),
        store.clone(),
        "survivor",
    );
    tick_until(&next, &job, JobState::Submitted).await;
    next.handle_webhook(&"standin".into(), &webhook("req-killed", &job, 1))
        .await
        .unwrap();
    tick_until(&next, &job, JobState::Completed).await;

    let requests = server.received_requests().await.unwrap();
    let submits: Vec<&Request> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(submits.len(), 1, "one billed submit");
    let body: Value = serde_json::from_slice(&submits[0].body).unwrap();
    assert!(body["prompt"].as_str().unwrap().ends_with("(child)"));
    one_hold_one_settle(&store, &user).await;
}
