//! 速创 (api.wuyinkeji.com), as `specs/suchuang.md` describes it.
//!
//! - `POST /api/async/video_{model}` submits (JSON `{prompt, aspectRatio, size}`), the key in
//!   the `Authorization` header or the `key` query parameter (both forms are accepted; when
//!   both come they must agree), answering the `{code, msg, data}` envelope with `data.id`;
//! - `GET /api/async/detail?id=…` answers the task: `status` 0 queued, 1 processing,
//!   2 succeeded (`result[0]` the video), 3 failed (`fail_reason`);
//! - the legacy VEO API: `POST /api/video/veoPlus` (`{model, prompt, type, ratio}`) and
//!   `GET /api/video/veoDetail?id=…` in its own numbering (0 queued, 1 succeeded with
//!   `content`, 2 failed, 3 generating);
//! - `GET /cdn/{id}.mp4` serves the video only with the CDN's referer
//!   (`https://api.wuyinkeji.com/`) and a browser User-Agent; a bare download gets 403.
//!
//! Errors come as the service sends them: HTTP 200 with a non-200 `code` (out of funds, a
//! rejected key), HTTP 400 for a refused body (its `msg` echoing the prompt), HTTP 429 with
//! `Retry-After`, HTTP 502 when busy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::server::{self, body, bytes, dropped, header, query, reply, reply_with, Answer, Req};
use crate::{Pace, Service, Switches};

/// The key the simulator accepts (`SUCHUANG_API_KEY`).
pub const KEY: &str = "jilo-sim-suchuang-key";
/// The referer the CDN asks of a download.
pub const CDN_REFERER: &str = "https://api.wuyinkeji.com/";
/// How long a generation takes at [`Pace::Speed`]`(1.0)`.
pub const NOMINAL_RUN: Duration = Duration::from_secs(120);
/// The size of each result video.
pub const VIDEO_BYTES: usize = 1_100_000;
/// The models offered (`video_{model}`).
pub const MODELS: [&str; 2] = ["veo3.1_fast", "veo3.1_pro"];
const SERVICE: Service = Service::Suchuang;

/// One task.
#[derive(Clone, Debug)]
pub struct Task {
    /// The model it was submitted to.
    pub model: String,
    /// The body sent.
    pub input: Value,
    /// When it was accepted.
    pub submitted: tokio::time::Instant,
    /// Detail reads so far.
    pub polls: u32,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// What the simulator holds.
#[derive(Debug, Default)]
pub struct State {
    /// Tasks by id.
    pub tasks: HashMap<String, Task>,
    /// Task ids in the order they were accepted (each one billed).
    pub accepted: Vec<String>,
    /// Give task ids as numbers.
    pub numeric_ids: bool,
    /// Submits refused because the account was out of funds.
    pub refused_out_of_funds: u32,
    /// Downloads the CDN refused (no referer or no browser User-Agent).
    pub downloads_refused: u32,
    /// Downloads the CDN served.
    pub downloads_served: u32,
    /// Each rule a client broke.
    pub violations: Vec<String>,
    /// Every request line (the key in the query shown as `…`).
    pub requests: Vec<String>,
}

/// The 速创 simulator (API and CDN on one address).
#[derive(Clone, Debug)]
pub struct SuchuangSim {
    /// The base URL (`SUCHUANG_API_URL`).
    pub url: String,
    /// The simulator's state.
    pub state: Arc<Mutex<State>>,
    switches: Switches,
    pace: Pace,
    task: Arc<crate::Task>,
}

fn envelope(code: i64, msg: &str, data: Value) -> Value {
    json!({"code": code, "msg": msg, "data": data, "exec_time": 0.012})
}

impl server::Simulator for SuchuangSim {
    async fn answer(self, req: Req) -> Answer {
        self.handle(req).await
    }

    fn with_task(mut self, task: Arc<crate::Task>) -> Self {
        self.task = task;
        self
    }
}

impl SuchuangSim {
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
        server::launch(addr, |url| SuchuangSim {
            url,
            state: Arc::new(Mutex::new(State::default())),
            switches,
            pace,
            task: Arc::default(),
        })
        .await
    }

    /// The fault switches this simulator follows.
    pub fn switches(&self) -> &Switches {
        &self.switches
    }

    /// The state, for a test to read or set.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a task's video is served.
    pub fn video_url(&self, id: &str) -> String {
        format!("{}/cdn/{id}.mp4", self.url)
    }

    fn violation(&self, what: String) {
        tracing::warn!(target: "jilo_sim::suchuang", "{what}");
        self.lock().violations.push(what);
    }

    async fn handle(&self, req: Req) -> Answer {
        let logged = server::line(&req).replace(KEY, "…");
        self.lock().requests.push(logged);
        let path = req.uri().path().to_owned();
        if req.method() == "GET" && path.starts_with("/cdn/") {
            return self.cdn(&path, &req);
        }
        let faults = self.switches.get(SERVICE);
        if faults.down || self.switches.take(SERVICE, |f| &mut f.server_errors) {
            return reply(503, envelope(503, "服务暂时繁忙", Value::Null));
        }
        if let Some(secs) = faults.rate_limited {
            return reply_with(
                429,
                envelope(429, "请求过于频繁", Value::Null),
                &[("retry-after", secs.to_string())],
            );
        }
        let from_header = header(&req, "authorization");
        let from_query = query(&req).get("key").cloned();
        let key = match (&from_header, &from_query) {
            (Some(h), Some(q)) if h != q => None,
            (Some(h), _) => Some(h.clone()),
            (None, q) => q.clone(),
        };
        if faults.key_rejected || key.as_deref() != Some(KEY) {
            if !faults.key_rejected {
                self.violation("a call without the key (or with two different keys)".into());
            }
            return reply(200, envelope(403, "密钥无效", Value::Null));
        }
        let method = req.method().as_str().to_owned();
        match (method.as_str(), path.as_str()) {
            ("POST", p) if p.starts_with("/api/async/video_") => {
                let model = p.trim_start_matches("/api/async/video_").to_owned();
                self.submit(model, req).await
            }
            ("GET", "/api/async/detail") => self.detail(&req, false),
            ("POST", "/api/video/veoPlus") => self.legacy_submit(req).await,
            ("GET", "/api/video/veoDetail") => self.detail(&req, true),
            _ => reply(404, envelope(404, "接口不存在", Value::Null)),
        }
    }

    async fn submit(&self, model: String, req: Req) -> Answer {
        let ctype = header(&req, "content-type").unwrap_or_default();
        let raw = body(req).await;
        if !MODELS.contains(&model.as_str()) {
            return reply(200, envelope(400, "产品未开通", Value::Null));
        }
        if !ctype.starts_with("application/json") {
            self.violation(format!("submit: content type `{ctype}`"));
        }
        let Ok(input) = serde_json::from_slice::<Value>(&raw) else {
            self.violation("submit: the body is not JSON".into());
            return reply(400, envelope(400, "参数格式错误", Value::Null));
        };
        let prompt = input.get("prompt").and_then(Value::as_str).unwrap_or("");
        if prompt.trim().is_empty() {
            self.violation("submit: no prompt".into());
            return reply(400, envelope(400, "prompt 不能为空", Value::Null));
        }
        let size = input.get("size").and_then(Value::as_str).unwrap_or("720p");
        if !["720p", "1080p", "4K"].contains(&size) {
            self.violation(format!("submit: size `{size}`"));
            return reply(
                400,
                envelope(400, "size must match supported resolution", Value::Null),
            );
        }
        let ratio = input
            .get("aspectRatio")
            .and_then(Value::as_str)
            .unwrap_or("16:9");
        if !["16:9", "9:16"].contains(&ratio) {
            self.violation(format!("submit: aspectRatio `{ratio}`"));
            // The service echoes the request in its validation message.
            return reply(
                400,
                envelope(
                    400,
                    &format!("参数错误: aspectRatio {ratio} 不支持 ({prompt})"),
                    Value::Null,
                ),
            );
        }
        let faults = self.switches.get(SERVICE);
        if faults.out_of_funds {
            self.lock().refused_out_of_funds += 1;
            return reply(200, envelope(400, "账户余额不足，请充值", Value::Null));
        }
        let (id, numeric) = {
            let mut s = self.lock();
            let n = s.accepted.len() + 5800;
            let id = format!("{n}");
            let id = if s.numeric_ids {
                id
            } else {
                format!("video_task_{id}")
            };
            s.accepted.push(id.clone());
            s.tasks.insert(
                id.clone(),
                Task {
                    model,
                    input,
                    submitted: tokio::time::Instant::now(),
                    polls: 0,
                    failure: faults.fail_jobs.then(|| "内容审核未通过".to_owned()),
                },
            );
            (id, s.numeric_ids)
        };
        if self.switches.take(SERVICE, |f| &mut f.lose_submit_answers) {
            return dropped();
        }
        let id_value = if numeric {
            json!(id.parse::<u64>().unwrap_or(0))
        } else {
            json!(id)
        };
        reply(
            200,
            envelope(200, "成功", json!({"id": id_value, "count": null})),
        )
    }

    /// A task in the async API's numbering, or the legacy one (`legacy`).
    /// The legacy VEO submit: `{model, prompt, type, ratio}` → a numeric id.
    async fn legacy_submit(&self, req: Req) -> Answer {
        let raw = body(req).await;
        let Ok(input) = serde_json::from_slice::<Value>(&raw) else {
            self.violation("legacy submit: the body is not JSON".into());
            return reply(400, envelope(400, "参数格式错误", Value::Null));
        };
        let model = input.get("model").and_then(Value::as_str).unwrap_or("");
        if !["veo3", "veo3-fast", "veo3-pro"].contains(&model) {
            return reply(200, envelope(400, "产品未开通", Value::Null));
        }
        if input
            .get("prompt")
            .and_then(Value::as_str)
            .is_none_or(|p| p.trim().is_empty())
        {
            return reply(400, envelope(400, "prompt 不能为空", Value::Null));
        }
        let faults = self.switches.get(SERVICE);
        if faults.out_of_funds {
            self.lock().refused_out_of_funds += 1;
            return reply(200, envelope(400, "账户余额不足，请充值", Value::Null));
        }
        let id = {
            let mut s = self.lock();
            let id = format!("{}", s.accepted.len() + 5800);
            s.accepted.push(id.clone());
            s.tasks.insert(
                id.clone(),
                Task {
                    model: model.to_owned(),
                    input,
                    submitted: tokio::time::Instant::now(),
                    polls: 0,
                    failure: faults.fail_jobs.then(|| "内容审核未通过".to_owned()),
                },
            );
            id
        };
        if self.switches.take(SERVICE, |f| &mut f.lose_submit_answers) {
            return dropped();
        }
        let n: u64 = id.parse().unwrap_or(0);
        reply(200, envelope(200, "成功", json!({ "id": n })))
    }

    fn detail(&self, req: &Req, legacy: bool) -> Answer {
        let id = query(req).get("id").cloned().unwrap_or_default();
        let task = {
            let mut s = self.lock();
            let Some(task) = s.tasks.get_mut(&id) else {
                return reply(200, envelope(400, "任务不存在", Value::Null));
            };
            let before = task.clone();
            task.polls += 1;
            before
        };
        let f = self
            .pace
            .fraction(NOMINAL_RUN, task.submitted.elapsed(), task.polls);
        // 0 queued, 1 processing, 2 done, 3 failed (current numbering).
        let stage = if f >= 1.0 {
            if task.failure.is_some() {
                3
            } else {
                2
            }
        } else if f < 0.15 {
            0
        } else {
            1
        };
        let url = self.video_url(&id);
        let prompt = task.input.get("prompt").cloned().unwrap_or(Value::Null);
        let data = if legacy {
            let status = match stage {
                0 => 0,
                1 => 3,
                2 => 1,
                _ => 2,
            };
            json!({"id": id, "status": status,
                "content": if stage == 2 { json!(url) } else { json!("") },
                "fail_reason": task.failure.clone().unwrap_or_default(),
                "created_at": "2026-01-01 10:00:00", "updated_at": "2026-01-01 10:01:30"})
        } else {
            json!({"task_id": id, "id": id, "status": stage,
                "result": if stage == 2 { json!([url]) } else { json!([]) },
                "fail_reason": task.failure.clone().unwrap_or_default(),
                "duration": 8, "message": "", "request": {"prompt": prompt},
                "created_at": "2026-01-01 10:00:00", "updated_at": "2026-01-01 10:01:30"})
        };
        reply(200, envelope(200, "成功", data))
    }

    fn cdn(&self, path: &str, req: &Req) -> Answer {
        let id = path
            .trim_start_matches("/cdn/")
            .trim_end_matches(".mp4")
            .to_owned();
        let referer = header(req, "referer");
        let agent = header(req, "user-agent").unwrap_or_default();
        if referer.as_deref() != Some(CDN_REFERER) || !agent.starts_with("Mozilla/5.0") {
            self.lock().downloads_refused += 1;
            return bytes(
                403,
                "text/plain",
                Bytes::from_static(b"hotlink denied"),
                &[],
            );
        }
        let done = self.lock().tasks.get(&id).is_some_and(|t| {
            t.failure.is_none()
                && self
                    .pace
                    .fraction(NOMINAL_RUN, t.submitted.elapsed(), t.polls)
                    >= 1.0
        });
        if !done {
            return bytes(404, "text/plain", Bytes::from_static(b"not found"), &[]);
        }
        self.lock().downloads_served += 1;
        bytes(200, "video/mp4", crate::sample_video(&id, VIDEO_BYTES), &[])
    }
}
