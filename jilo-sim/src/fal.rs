//! fal.ai's queue, as `specs/fal.md` describes it.
//!
//! - `POST /{owner}/{app}[/…]` submits (`Authorization: Key …`, JSON input, optional
//!   `?fal_webhook=`), answering `request_id` and the request's URLs;
//! - `GET /{owner}/{app}/requests/{id}/status[?logs=1]` answers `IN_QUEUE` with a queue
//!   position, `IN_PROGRESS` with logs, then `COMPLETED` (with `error`/`error_type` when the
//!   run failed);
//! - `GET /{owner}/{app}/requests/{id}` answers the model's output (`video.url` served by the
//!   simulator under `/files/`);
//! - `PUT /{owner}/{app}/requests/{id}/cancel` answers `OK`, `CANCELLATION_REQUESTED`,
//!   `ALREADY_COMPLETED` or `NOT_FOUND`;
//! - webhooks go to the `fal_webhook` URL when a run ends, signed with Ed25519 over
//!   `{request_id}\n{user_id}\n{timestamp}\n{hex(sha256(body))}`, the key published at
//!   `GET /.well-known/jwks.json`; a receiver that does not answer 2xx is retried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::server::{self, body, bytes, dropped, header, query, reply, reply_with, Answer, Req};
use crate::{Pace, Service, Switches, WebhookFault};

/// The key the simulator accepts (`FAL_KEY`), in fal's `key_id:key_secret` form.
pub const KEY: &str = "jilo-sim-fal:9c1f0e7d2b";
/// The user id webhooks are signed for (`FAL_USER_ID`).
pub const USER_ID: &str = "jilo-sim-user";
/// How long a generation takes at [`Pace::Speed`]`(1.0)`.
pub const NOMINAL_RUN: Duration = Duration::from_secs(90);
/// The size of each result video.
pub const VIDEO_BYTES: usize = 1_300_000;
const SERVICE: Service = Service::Fal;
const WEBHOOK_TRIES: u32 = 10;

/// One submitted request.
#[derive(Clone, Debug)]
pub struct Request {
    /// The full model id it was submitted to.
    pub model: String,
    /// The `owner/app` its status, result and cancel live under.
    pub app: String,
    /// The input sent.
    pub input: Value,
    /// The webhook URL given at submit.
    pub webhook: Option<String>,
    /// When it was accepted.
    pub submitted: tokio::time::Instant,
    /// Status reads so far.
    pub polls: u32,
    /// Whether the run ended (by time, polls or webhook).
    pub done: bool,
    /// Why the run failed, when it did: (error, error_type).
    pub failure: Option<(String, String)>,
    /// Cancelled while queued.
    pub cancelled: bool,
}

/// What the simulator holds.
#[derive(Debug, Default)]
pub struct State {
    /// Requests by id.
    pub requests: HashMap<String, Request>,
    /// Request ids in the order they were accepted (each one billed).
    pub accepted: Vec<String>,
    /// Webhooks delivered (answered 2xx): (request id, body status).
    pub webhooks_delivered: Vec<(String, String)>,
    /// Each rule a client broke.
    pub violations: Vec<String>,
    /// Every request line.
    pub requests_seen: Vec<String>,
}

/// The FAL simulator.
#[derive(Clone, Debug)]
pub struct FalSim {
    /// The queue's base URL (`FAL_QUEUE_URL`); the JWKS is at `/.well-known/jwks.json`.
    pub url: String,
    /// The simulator's state.
    pub state: Arc<Mutex<State>>,
    switches: Switches,
    pace: Pace,
    signing: Arc<SigningKey>,
    task: Arc<crate::Task>,
}

fn fal_error(status: u16, detail: Value) -> Answer {
    reply_with(
        status,
        json!({ "detail": detail }),
        &[("x-fal-request-id", server::random("gw-"))],
    )
}

/// The `owner/app` of a model id (three segments for `workflows/` and `comfy/`).
pub fn app_of(model: &str) -> String {
    let parts: Vec<&str> = model.trim_matches('/').split('/').collect();
    let keep = if matches!(parts.first(), Some(&"workflows" | &"comfy")) {
        3
    } else {
        2
    };
    parts[..keep.min(parts.len())].join("/")
}

impl server::Simulator for FalSim {
    async fn answer(self, req: Req) -> Answer {
        self.handle(req).await
    }

    fn with_task(mut self, task: Arc<crate::Task>) -> Self {
        self.task = task;
        self
    }
}

impl FalSim {
    /// Starts on a free loopback port with its own switches, at test pace.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Switches::default(),
            Pace::Instant,
        )
        .await
    }

    /// Starts on `addr`, following `switches`.
    pub async fn start_on(
        addr: SocketAddr,
        switches: Switches,
        pace: Pace,
    ) -> std::io::Result<Self> {
        let seed: [u8; 32] = Sha256::digest(b"jilo-sim fal webhook signing key").into();
        server::launch(addr, |url| FalSim {
            url,
            state: Arc::new(Mutex::new(State::default())),
            switches,
            pace,
            signing: Arc::new(SigningKey::from_bytes(&seed)),
            task: Arc::default(),
        })
        .await
    }

    /// The fault switches this simulator follows.
    pub fn switches(&self) -> &Switches {
        &self.switches
    }

    /// The state, for a test to read.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The JWKS URL (`FAL_JWKS_URL`).
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// The URL a finished request's video is served at.
    pub fn video_url(&self, id: &str) -> String {
        format!("{}/files/{id}/output.mp4", self.url)
    }

    /// Signs a webhook body as fal does: the headers to send with it.
    pub fn sign(&self, request_id: &str, body: &[u8], timestamp: u64) -> Vec<(String, String)> {
        let digest = hex::encode(Sha256::digest(body));
        let message = format!("{request_id}\n{USER_ID}\n{timestamp}\n{digest}");
        let signature = self.signing.sign(message.as_bytes());
        vec![
            ("x-fal-webhook-request-id".into(), request_id.to_owned()),
            ("x-fal-webhook-user-id".into(), USER_ID.to_owned()),
            ("x-fal-webhook-timestamp".into(), timestamp.to_string()),
            (
                "x-fal-webhook-signature".into(),
                hex::encode(signature.to_bytes()),
            ),
        ]
    }

    fn violation(&self, what: String) {
        tracing::warn!(target: "jilo_sim::fal", "{what}");
        self.lock().violations.push(what);
    }

    async fn handle(&self, req: Req) -> Answer {
        self.lock().requests_seen.push(server::line(&req));
        let path = req.uri().path().trim_matches('/').to_owned();
        let method = req.method().as_str().to_owned();
        if method == "GET" && path == ".well-known/jwks.json" {
            return self.jwks();
        }
        if method == "GET" && path.starts_with("files/") {
            return self.file(&path);
        }
        let faults = self.switches.get(SERVICE);
        if faults.down || self.switches.take(SERVICE, |f| &mut f.server_errors) {
            // The ingress answers: fal never saw the request (no x-fal-request-id).
            return bytes(
                503,
                "text/html",
                Bytes::from_static(
                    b"<html><body>503 Service Temporarily Unavailable</body></html>",
                ),
                &[],
            );
        }
        if let Some(secs) = faults.rate_limited {
            return reply_with(
                429,
                json!({"detail": "Too many requests"}),
                &[("retry-after", secs.to_string())],
            );
        }
        let key = header(&req, "authorization");
        if faults.key_rejected || key.as_deref() != Some(&format!("Key {KEY}")) {
            if !faults.key_rejected {
                self.violation(format!("authorization header {:?}", key.map(|_| "…")));
            }
            return fal_error(401, json!("No user found for Key ID and Secret"));
        }
        let segments: Vec<&str> = path.split('/').collect();
        match segments.iter().position(|s| *s == "requests") {
            None if method == "POST" => self.submit(&path, req).await,
            Some(i) if i >= 2 && segments.len() > i + 1 => {
                let app = segments[..i].join("/");
                let id = segments[i + 1].to_owned();
                let tail: Vec<&str> = segments[i + 2..].to_vec();
                match (method.as_str(), tail.as_slice()) {
                    ("GET", ["status"]) => self.status(&app, &id, &req),
                    ("GET", []) => self.result(&app, &id),
                    ("PUT", ["cancel"]) => self.cancel(&app, &id),
                    _ => fal_error(405, json!("Method not allowed")),
                }
            }
            _ => fal_error(404, json!("Not found")),
        }
    }

    fn jwks(&self) -> Answer {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.signing.verifying_key().to_bytes());
        reply(
            200,
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "jilo-sim-1", "x": x}]}),
        )
    }

    fn file(&self, path: &str) -> Answer {
        let id = path.split('/').nth(1).unwrap_or_default();
        let known = self
            .lookup_any(id)
            .is_some_and(|r| r.failure.is_none() && self.progress(&r).0 >= 1.0);
        if !known {
            return reply(404, json!({"detail": "File not found"}));
        }
        bytes(200, "video/mp4", crate::sample_video(id, VIDEO_BYTES), &[])
    }

    fn check_input(&self, model: &str, input: &Value) -> Result<(), Value> {
        let mut problems = Vec::new();
        let prompt = input.get("prompt").and_then(Value::as_str).unwrap_or("");
        if prompt.trim().is_empty() {
            problems.push(json!({"loc": ["body", "prompt"], "msg": "field required",
                "type": "value_error.missing"}));
        }
        let (durations, ratios): (&[&str], &[&str]) = if model.starts_with("fal-ai/veo3") {
            (&["4s", "6s", "8s"], &["16:9", "9:16"])
        } else if model.starts_with("fal-ai/kling-video") {
            (&["5", "10"], &["16:9", "9:16", "1:1"])
        } else {
            (&[], &[])
        };
        if let Some(d) = input.get("duration") {
            if !durations.is_empty() && !d.as_str().is_some_and(|d| durations.contains(&d)) {
                problems.push(json!({"loc": ["body", "duration"],
                    "msg": format!("unexpected value; permitted: {}", durations.join(", ")),
                    "type": "value_error.const", "input": d}));
            }
        }
        if let Some(r) = input.get("aspect_ratio") {
            if !ratios.is_empty() && !r.as_str().is_some_and(|r| ratios.contains(&r)) {
                problems.push(json!({"loc": ["body", "aspect_ratio"],
                    "msg": format!("unexpected value; permitted: {}", ratios.join(", ")),
                    "type": "value_error.const", "input": r}));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Value::Array(problems))
        }
    }

    async fn submit(&self, path: &str, req: Req) -> Answer {
        let q = query(&req);
        let ctype = header(&req, "content-type").unwrap_or_default();
        let raw = body(req).await;
        let model = path.to_owned();
        if !["fal-ai/minimax", "fal-ai/kling-video", "fal-ai/veo3"]
            .iter()
            .any(|m| model.starts_with(m))
        {
            return fal_error(404, json!(format!("Application '{model}' not found")));
        }
        if !ctype.starts_with("application/json") {
            self.violation(format!("submit: content type `{ctype}`"));
        }
        let input: Value = match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(e) => {
                self.violation(format!("submit: body is not JSON: {e}"));
                return fal_error(
                    422,
                    json!([{"loc": ["body"], "msg": "invalid JSON",
                    "type": "value_error.jsondecode"}]),
                );
            }
        };
        if let Err(detail) = self.check_input(&model, &input) {
            self.violation(format!("submit: input refused: {detail}"));
            return fal_error(422, detail);
        }
        let faults = self.switches.get(SERVICE);
        if faults.out_of_funds {
            return fal_error(
                403,
                json!("User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."),
            );
        }
        let webhook = q.get("fal_webhook").cloned();
        if let Some(w) = &webhook {
            if w.starts_with("https://") {
                self.violation(format!(
                    "submit: webhook {w} is https; the simulator delivers over plain HTTP only"
                ));
            } else if !w.starts_with("http://") {
                return fal_error(
                    422,
                    json!([{"loc": ["query", "fal_webhook"],
                    "msg": "invalid or missing URL scheme", "type": "value_error.url.scheme"}]),
                );
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let app = app_of(&model);
        let failure = faults.fail_jobs.then(|| {
            (
                "Runner disconnected".to_owned(),
                "runner_disconnected".to_owned(),
            )
        });
        {
            let mut s = self.lock();
            s.accepted.push(id.clone());
            s.requests.insert(
                id.clone(),
                Request {
                    model: model.clone(),
                    app: app.clone(),
                    input,
                    webhook: webhook.clone(),
                    submitted: tokio::time::Instant::now(),
                    polls: 0,
                    done: false,
                    failure,
                    cancelled: false,
                },
            );
        }
        if webhook.is_some() {
            let sim = self.clone();
            let id = id.clone();
            tokio::spawn(async move { sim.run_to_webhook(id, faults.webhooks).await });
        }
        if self.switches.take(SERVICE, |f| &mut f.lose_submit_answers) {
            return dropped();
        }
        let base = format!("{}/{app}/requests/{id}", self.url);
        reply_with(
            200,
            json!({"status": "IN_QUEUE", "request_id": id, "response_url": base,
                "status_url": format!("{base}/status"), "cancel_url": format!("{base}/cancel"),
                "queue_position": 0}),
            &[("x-fal-request-id", id.clone())],
        )
    }

    /// Where a request stands: (fraction done, queue position).
    fn progress(&self, r: &Request) -> (f64, u32) {
        if r.done {
            return (1.0, 0);
        }
        let f = self
            .pace
            .fraction(NOMINAL_RUN, r.submitted.elapsed(), r.polls);
        let position = if f < 0.2 {
            ((0.2 - f) * 20.0).ceil() as u32
        } else {
            0
        };
        (f, position)
    }

    fn lookup_any(&self, id: &str) -> Option<Request> {
        self.lock().requests.get(id).cloned()
    }

    fn lookup(&self, app: &str, id: &str) -> Option<Request> {
        self.lock()
            .requests
            .get(id)
            .filter(|r| r.app == app)
            .cloned()
    }

    fn status(&self, app: &str, id: &str, req: &Req) -> Answer {
        let logs_asked = query(req).get("logs").map(String::as_str) == Some("1");
        let Some(r) = self.lookup(app, id) else {
            return fal_error(404, json!("Request not found"));
        };
        if r.cancelled {
            return reply(400, json!({"detail": "Request was cancelled"}));
        }
        let (f, position) = self.progress(&r);
        let finished = f >= 1.0;
        {
            let mut s = self.lock();
            if let Some(r) = s.requests.get_mut(id) {
                r.polls += 1;
                r.done |= finished;
            }
        }
        let logs = |n: u32| -> Value {
            if !logs_asked {
                return Value::Null;
            }
            Value::Array(
                (1..=n)
                    .map(|i| {
                        json!({"message": format!("step {i}/30"), "level": "INFO",
                        "source": "USER", "timestamp": "2026-01-01T00:00:00Z"})
                    })
                    .collect(),
            )
        };
        let headers = [("x-fal-request-id", id.to_owned())];
        let base = format!("{}/{app}/requests/{id}", self.url);
        if !finished && position > 0 {
            return reply_with(
                202,
                json!({"status": "IN_QUEUE", "request_id": id, "queue_position": position,
                    "response_url": base, "status_url": format!("{base}/status"),
                    "cancel_url": format!("{base}/cancel")}),
                &headers,
            );
        }
        if !finished {
            let step = ((f - 0.2) / 0.8 * 30.0).clamp(1.0, 29.0) as u32;
            return reply_with(
                202,
                json!({"status": "IN_PROGRESS", "request_id": id, "logs": logs(step),
                    "response_url": base, "status_url": format!("{base}/status"),
                    "cancel_url": format!("{base}/cancel")}),
                &headers,
            );
        }
        let mut answer = json!({"status": "COMPLETED", "request_id": id, "logs": logs(30),
            "metrics": {"inference_time": NOMINAL_RUN.as_secs_f64() * 0.8},
            "response_url": base, "status_url": format!("{base}/status"),
            "cancel_url": format!("{base}/cancel")});
        if let Some((error, kind)) = &r.failure {
            answer["error"] = json!(error);
            answer["error_type"] = json!(kind);
        }
        reply_with(200, answer, &headers)
    }

    fn output(&self, id: &str) -> Value {
        json!({"video": {"url": self.video_url(id), "content_type": "video/mp4",
            "file_name": "output.mp4", "file_size": VIDEO_BYTES},
            "seed": 17_454_220_438_242_315_174_u64})
    }

    fn result(&self, app: &str, id: &str) -> Answer {
        let Some(r) = self.lookup(app, id) else {
            return fal_error(404, json!("Request not found"));
        };
        if r.cancelled {
            return reply(499, json!({"detail": "Request was cancelled"}));
        }
        if self.progress(&r).0 < 1.0 {
            return fal_error(400, json!("Request is still in progress"));
        }
        if let Some((error, kind)) = &r.failure {
            return reply_with(
                503,
                json!({"detail": error, "error_type": kind}),
                &[
                    ("x-fal-error-type", kind.clone()),
                    ("x-fal-request-id", id.to_owned()),
                ],
            );
        }
        reply_with(200, self.output(id), &[("x-fal-request-id", id.to_owned())])
    }

    fn cancel(&self, app: &str, id: &str) -> Answer {
        let Some(r) = self.lookup(app, id) else {
            return reply(404, json!({"status": "NOT_FOUND"}));
        };
        let (f, position) = self.progress(&r);
        if r.done || f >= 1.0 {
            return reply(400, json!({"status": "ALREADY_COMPLETED"}));
        }
        if position > 0 && !r.cancelled {
            if let Some(r) = self.lock().requests.get_mut(id) {
                r.cancelled = true;
            }
            return reply(200, json!({"status": "OK"}));
        }
        reply(202, json!({"status": "CANCELLATION_REQUESTED"}))
    }

    /// Waits for the run to end, then delivers its webhook as the switch says.
    async fn run_to_webhook(&self, id: String, mode: WebhookFault) {
        tokio::time::sleep(self.pace.wait(NOMINAL_RUN)).await;
        let (url, failure) = {
            let mut s = self.lock();
            let Some(r) = s.requests.get_mut(&id) else {
                return;
            };
            if r.cancelled {
                return;
            }
            r.done = true;
            (r.webhook.clone(), r.failure.clone())
        };
        let Some(url) = url else { return };
        let payload = match &failure {
            None => json!({"error": null, "gateway_request_id": id, "payload": self.output(&id),
                "request_id": id, "status": "OK"}),
            Some((error, _)) => json!({"error": error, "gateway_request_id": id,
                "payload": {"detail": error}, "request_id": id, "status": "ERROR"}),
        };
        let body = python_json(&payload);
        let copies = match mode {
            WebhookFault::Never => return,
            WebhookFault::OnTime => 1,
            WebhookFault::Duplicated => 2,
            WebhookFault::Late(secs) => {
                // At test pace "late" is a hundredth of the seconds in real time.
                let delay = match self.pace {
                    Pace::Instant => {
                        Duration::from_millis(secs.saturating_mul(10)).min(Duration::from_secs(5))
                    }
                    pace => pace.wait(Duration::from_secs(secs)),
                };
                tokio::time::sleep(delay).await;
                1
            }
        };
        for _ in 0..copies {
            self.deliver(&url, &id, &body, &payload).await;
        }
    }

    async fn deliver(&self, url: &str, id: &str, body: &[u8], payload: &Value) {
        for attempt in 0..WEBHOOK_TRIES {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let headers = self.sign(id, body, now);
            match crate::post(url, "application/json", body.to_vec(), &headers).await {
                Ok(status) if (200..300).contains(&status) => {
                    let status = payload["status"].as_str().unwrap_or("").to_owned();
                    self.lock().webhooks_delivered.push((id.to_owned(), status));
                    return;
                }
                outcome => {
                    tracing::info!(target: "jilo_sim::fal", %url, ?outcome, attempt, "webhook not taken; retrying");
                }
            }
            let wait = match self.pace {
                Pace::Instant => Duration::from_millis(100 << attempt.min(6)),
                pace => pace.wait(Duration::from_secs(15 << attempt.min(6))),
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// JSON as Python's `json.dumps` writes it (what fal's webhooks carry): keys sorted, `", "`
/// and `": "` between items.
pub fn python_json(value: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                out.push('{');
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push_str(": ");
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out.into_bytes()
}
