//! Apify's API with the three trend actors jilo uses, as `specs/apify.md` describes it.
//!
//! - `POST /v2/acts/{actor}/runs[?maxItems=]` starts a run (201, `READY`), keeping the input
//!   verbatim as the run's `INPUT` record; `GET /v2/actor-runs/{id}[?waitForFinish=]` and
//!   `GET /v2/acts/{actor}/runs/{id}` answer the run, waiting up to 60 s for it to end;
//!   `GET /v2/acts/{actor}/runs` lists runs (`desc`, `limit`, `offset`, `status`,
//!   `startedAfter`); `POST /v2/actor-runs/{id}/abort` aborts;
//! - `GET /v2/datasets/{id}/items` answers the items (`offset`, `limit`, `clean`);
//!   `GET /v2/key-value-stores/{id}/records/INPUT` the input;
//! - `POST /v2/acts/{actor}/run-sync-get-dataset-items` runs and answers the items (201), or
//!   408 `run-timeout-exceeded` when the run outlasts the sync window, the run going on.
//!
//! Items are plausible for any keyword and stable for a seed: TikTok (`clockworks~tiktok-scraper`),
//! YouTube Shorts (`streamers~youtube-scraper`) and Instagram reels
//! (`apify~instagram-hashtag-scraper`), each in its actor's own fields, with the occasional
//! error item the real actors emit. `/v2/actors/…` is served as an alias of `/v2/acts/…`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::server::{self, body, bytes, dropped, header, query, reply, reply_with, Answer, Req};
use crate::{Pace, Service, Switches};

/// The token the simulator accepts (`APIFY_TOKEN`).
pub const TOKEN: &str = "apify_api_jilosim0000000000000000";
/// TikTok's actor.
pub const TIKTOK: &str = "clockworks~tiktok-scraper";
/// YouTube's actor.
pub const YOUTUBE: &str = "streamers~youtube-scraper";
/// Instagram's actor.
pub const INSTAGRAM: &str = "apify~instagram-hashtag-scraper";
const SERVICE: Service = Service::Apify;
/// One error item among this many items.
const ERROR_EVERY: usize = 25;

/// One actor run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The actor's id (`user~name`).
    pub actor: String,
    /// The input as sent (the `INPUT` record).
    pub input: Bytes,
    /// The `maxItems` asked for.
    pub max_items: Option<usize>,
    /// When it started (wall clock, for `startedAt`).
    pub started_at: SystemTime,
    /// When it started (for progress).
    pub started: tokio::time::Instant,
    /// When it was aborted (a run that had ended keeps its status).
    pub aborted: Option<tokio::time::Instant>,
    /// The run ends `FAILED`.
    pub fails: bool,
}

/// What the simulator holds.
#[derive(Debug)]
pub struct State {
    /// Runs by id (the dataset and key-value store ids are derived from it).
    pub runs: HashMap<String, Run>,
    /// Run ids in the order they started (each one billed).
    pub started: Vec<String>,
    /// How long a run takes at [`Pace::Speed`]`(1.0)`.
    pub run_length: Duration,
    /// How long `run-sync-get-dataset-items` waits before its 408.
    pub sync_window: Duration,
    /// Each rule a client broke.
    pub violations: Vec<String>,
    /// Every request line.
    pub requests: Vec<String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            runs: HashMap::new(),
            started: Vec::new(),
            run_length: Duration::from_secs(40),
            sync_window: Duration::from_secs(300),
            violations: Vec::new(),
            requests: Vec::new(),
        }
    }
}

/// The Apify simulator.
#[derive(Clone, Debug)]
pub struct ApifySim {
    /// The base URL (`APIFY_API_URL`).
    pub url: String,
    /// The simulator's state.
    pub state: Arc<Mutex<State>>,
    switches: Switches,
    pace: Pace,
    seed: u64,
    task: Arc<crate::Task>,
}

fn apify_error(status: u16, kind: &str, message: &str) -> Answer {
    reply(status, json!({"error": {"type": kind, "message": message}}))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as Apify writes times.
pub fn iso(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl server::Simulator for ApifySim {
    async fn answer(self, req: Req) -> Answer {
        self.handle(req).await
    }

    fn with_task(mut self, task: Arc<crate::Task>) -> Self {
        self.task = task;
        self
    }
}

impl ApifySim {
    /// Starts on a free loopback port with its own switches, at test pace.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Switches::default(),
            Pace::Instant,
            7,
        )
        .await
    }

    /// Starts on `addr`, following `switches`; `seed` decides the made-up items.
    pub async fn start_on(
        addr: SocketAddr,
        switches: Switches,
        pace: Pace,
        seed: u64,
    ) -> std::io::Result<Self> {
        server::launch(addr, |url| ApifySim {
            url,
            state: Arc::new(Mutex::new(State::default())),
            switches,
            pace,
            seed,
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

    fn violation(&self, what: String) {
        tracing::warn!(target: "jilo_sim::apify", "{what}");
        self.lock().violations.push(what);
    }

    async fn handle(&self, req: Req) -> Answer {
        self.lock()
            .requests
            .push(server::line(&req).replace(TOKEN, "…"));
        let faults = self.switches.get(SERVICE);
        if faults.down || self.switches.take(SERVICE, |f| &mut f.server_errors) {
            return apify_error(
                503,
                "internal-server-error",
                "Server is temporarily unavailable",
            );
        }
        if let Some(secs) = faults.rate_limited {
            return reply_with(
                429,
                json!({"error": {"type": "rate-limit-exceeded",
                    "message": "You have exceeded the rate limit of 30 requests per second"}}),
                &[("retry-after", secs.to_string())],
            );
        }
        let q = query(&req);
        let token = header(&req, "authorization")
            .and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned))
            .or_else(|| q.get("token").cloned());
        // A run's id is enough to read it (its costs aside).
        let run_lookup = req.method() == "GET" && req.uri().path().starts_with("/v2/actor-runs/");
        match token {
            None if run_lookup => {}
            None => {
                return apify_error(
                    401,
                    "token-not-provided",
                    "Authentication token was not provided",
                )
            }
            Some(t) if faults.key_rejected || t != TOKEN => {
                return apify_error(401, "invalid-token", "Authentication token is not valid.")
            }
            Some(_) => {}
        }
        let path = req
            .uri()
            .path()
            .replacen("/v2/actors/", "/v2/acts/", 1)
            .trim_end_matches('/')
            .to_owned();
        let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().as_str().to_owned();
        match (method.as_str(), s.as_slice()) {
            ("POST", ["", "v2", "acts", actor, "runs"]) => {
                let actor = (*actor).to_owned();
                self.start_run(actor, &q, req).await
            }
            ("POST", ["", "v2", "acts", actor, "run-sync-get-dataset-items"]) => {
                let actor = (*actor).to_owned();
                self.run_sync(actor, q, req).await
            }
            ("GET", ["", "v2", "acts", actor, "runs"]) => {
                self.list(Self::actor(actor).unwrap_or(actor), &q)
            }
            ("GET", ["", "v2", "acts", _, "runs", id]) | ("GET", ["", "v2", "actor-runs", id]) => {
                let id = (*id).to_owned();
                self.get_run(&id, &q).await
            }
            ("POST", ["", "v2", "actor-runs", id, "abort"]) => self.abort(id),
            ("GET", ["", "v2", "datasets", id, "items"]) => self.items(id, &q),
            ("GET", ["", "v2", "key-value-stores", id, "records", "INPUT"]) => self.input(id),
            _ => apify_error(
                404,
                "page-not-found",
                "We have bad news: there is no API endpoint at this URL.",
            ),
        }
    }

    /// The actor an id names: `user~name`, or the opaque id the store gives it.
    fn actor(id: &str) -> Option<&'static str> {
        match id {
            TIKTOK | "GdWCkxBtKWOsKjdch" => Some(TIKTOK),
            YOUTUBE | "h7sDV53CddomktSi5" => Some(YOUTUBE),
            INSTAGRAM | "reGe1ST3OBgYZSsZJ" => Some(INSTAGRAM),
            _ => None,
        }
    }

    async fn begin(
        &self,
        actor: String,
        q: &HashMap<String, String>,
        req: Req,
    ) -> Result<String, Answer> {
        let ctype = header(&req, "content-type").unwrap_or_default();
        let raw = body(req).await;
        let Some(actor) = Self::actor(&actor).map(str::to_owned) else {
            return Err(apify_error(
                404,
                "record-not-found",
                &format!("Actor {actor} was not found"),
            ));
        };
        if !ctype.starts_with("application/json") {
            self.violation(format!("run start: content type `{ctype}`"));
        }
        let Ok(input) = serde_json::from_slice::<Value>(&raw) else {
            self.violation("run start: the input is not JSON".into());
            return Err(apify_error(
                400,
                "invalid-input",
                "Input is not a valid JSON object",
            ));
        };
        if let Err(why) = check_input(&actor, &input) {
            self.violation(format!("run start: {why}"));
            return Err(apify_error(
                400,
                "invalid-input",
                &format!("Input is not valid: {why}"),
            ));
        }
        let faults = self.switches.get(SERVICE);
        if faults.out_of_funds || faults.quota_exhausted {
            return Err(apify_error(402, "x402-payment-required",
                "By launching this job you will exceed the memory limit of 8192MB for all your Actor runs and builds (or the monthly usage limit)."));
        }
        let id = server::random("run").chars().take(20).collect::<String>();
        let mut s = self.lock();
        s.started.push(id.clone());
        s.runs.insert(
            id.clone(),
            Run {
                actor,
                input: raw,
                max_items: q.get("maxItems").and_then(|m| m.parse().ok()),
                started_at: SystemTime::now(),
                started: tokio::time::Instant::now(),
                aborted: None,
                fails: faults.fail_jobs,
            },
        );
        Ok(id)
    }

    async fn start_run(&self, actor: String, q: &HashMap<String, String>, req: Req) -> Answer {
        let id = match self.begin(actor.clone(), q, req).await {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        if self.switches.take(SERVICE, |f| &mut f.lose_submit_answers) {
            return dropped();
        }
        let run = self.describe(&id).unwrap_or(Value::Null);
        reply_with(
            201,
            json!({ "data": run }),
            &[("location", format!("{}/v2/actor-runs/{id}", self.url))],
        )
    }

    /// (status, still running).
    fn status(&self, run: &Run) -> &'static str {
        let length = self.lock().run_length;
        let ran = self.ran_for(run);
        let done = self.pace.fraction(length, ran, 3) >= 1.0;
        if run.aborted.is_some() && !done {
            return "ABORTED";
        }
        match (done, run.fails) {
            (true, true) => "FAILED",
            (true, false) => "SUCCEEDED",
            (false, _) if run.started.elapsed() < Duration::from_millis(200) => "READY",
            _ => "RUNNING",
        }
    }

    /// How long a run has run: until now, or until it was aborted.
    fn ran_for(&self, run: &Run) -> Duration {
        match run.aborted {
            Some(at) => at.saturating_duration_since(run.started),
            None => run.started.elapsed(),
        }
    }

    fn describe(&self, id: &str) -> Option<Value> {
        let run = self.lock().runs.get(id).cloned()?;
        let status = self.status(&run);
        let terminal = !matches!(status, "READY" | "RUNNING");
        Some(
            json!({"id": id, "actId": run.actor, "userId": "jilosimuser",
            "actorTaskId": null, "status": status,
            "statusMessage": if terminal { "Finished" } else { "Scraping" },
            "startedAt": iso(run.started_at),
                        "finishedAt": if terminal {
                let length = self.pace.wait(self.lock().run_length).min(self.ran_for(&run));
                json!(iso(run.started_at + length))
            } else {
                Value::Null
            },
            "buildId": "simbuild0001", "buildNumber": "1.0.1", "meta": {"origin": "API"},
            "stats": {}, "options": {"build": "latest", "timeoutSecs": 3600, "memoryMbytes": 1024},
            "exitCode": if terminal { json!(0) } else { Value::Null },
            "defaultKeyValueStoreId": format!("kvs-{id}"), "defaultDatasetId": format!("ds-{id}"),
            "defaultRequestQueueId": format!("rq-{id}"), "usageTotalUsd": 0.012}),
        )
    }

    /// How long until the run ends, in real time.
    fn remaining(&self, run: &Run) -> Duration {
        let length = self.lock().run_length;
        self.pace.wait(length).saturating_sub(run.started.elapsed())
    }

    async fn get_run(&self, id: &str, q: &HashMap<String, String>) -> Answer {
        let Some(run) = self.lock().runs.get(id).cloned() else {
            return apify_error(404, "record-not-found", "Actor run was not found");
        };
        let wait = q
            .get("waitForFinish")
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0)
            .min(60);
        if run.aborted.is_none() {
            let pause = self.remaining(&run).min(Duration::from_secs(wait));
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        match self.describe(id) {
            Some(run) => reply(200, json!({ "data": run })),
            None => apify_error(404, "record-not-found", "Actor run was not found"),
        }
    }

    fn list(&self, actor: &str, q: &HashMap<String, String>) -> Answer {
        let mut runs: Vec<(String, Run)> = self
            .lock()
            .runs
            .iter()
            .filter(|(_, r)| r.actor == actor)
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        runs.sort_by_key(|(_, r)| r.started);
        if q.get("desc").is_some_and(|d| d == "1" || d == "true") {
            runs.reverse();
        }
        let wanted: Option<Vec<String>> = q
            .get("status")
            .map(|s| s.split(',').map(str::to_owned).collect());
        let items: Vec<Value> = runs
            .iter()
            .filter_map(|(id, _)| self.describe(id))
            .filter(|r| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|s| r["status"] == json!(s)))
            })
            .filter(|r| {
                q.get("startedAfter")
                    .is_none_or(|after| r["startedAt"].as_str().unwrap_or("") >= after.as_str())
            })
            .collect();
        let total = items.len();
        let offset = q
            .get("offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0usize);
        let limit = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(1000usize)
            .min(1000);
        let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
        reply(
            200,
            json!({"data": {"total": total, "offset": offset, "limit": limit,
            "desc": q.get("desc").is_some(), "count": page.len(), "items": page}}),
        )
    }

    fn abort(&self, id: &str) -> Answer {
        let exists = {
            let mut s = self.lock();
            match s.runs.get_mut(id) {
                Some(r) => {
                    r.aborted.get_or_insert_with(tokio::time::Instant::now);
                    true
                }
                None => false,
            }
        };
        if !exists {
            return apify_error(404, "record-not-found", "Actor run was not found");
        }
        match self.describe(id) {
            Some(run) => reply(200, json!({ "data": run })),
            None => apify_error(404, "record-not-found", "Actor run was not found"),
        }
    }

    fn input(&self, store: &str) -> Answer {
        let id = store.trim_start_matches("kvs-");
        match self.lock().runs.get(id) {
            Some(run) => bytes(
                200,
                "application/json; charset=utf-8",
                run.input.clone(),
                &[],
            ),
            None => apify_error(404, "record-not-found", "Record was not found"),
        }
    }

    /// Every item a run's dataset holds now.
    fn dataset(&self, id: &str) -> Option<Vec<Value>> {
        let run = self.lock().runs.get(id).cloned()?;
        let status = self.status(&run);
        let input: Value = serde_json::from_slice(&run.input).unwrap_or(Value::Null);
        let all = make_items(self.seed, &run.actor, &input, run.max_items);
        Some(match status {
            "SUCCEEDED" => all,
            "FAILED" | "READY" => Vec::new(),
            _ => {
                let length = self.lock().run_length;
                let f = self.pace.fraction(length, self.ran_for(&run), 0);
                let n = (all.len() as f64 * f) as usize;
                all.into_iter().take(n).collect()
            }
        })
    }

    fn items(&self, dataset: &str, q: &HashMap<String, String>) -> Answer {
        let id = dataset.trim_start_matches("ds-");
        let Some(items) = self.dataset(id) else {
            return apify_error(404, "record-not-found", "Dataset was not found");
        };
        page(items, q, 200)
    }

    async fn run_sync(&self, actor: String, q: HashMap<String, String>, req: Req) -> Answer {
        let id = match self.begin(actor, &q, req).await {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let (run, window) = {
            let s = self.lock();
            (s.runs.get(&id).cloned(), s.sync_window)
        };
        let Some(run) = run else {
            return apify_error(404, "record-not-found", "Actor run was not found");
        };
        let remaining = self.remaining(&run);
        let window = self.pace.wait(window);
        if remaining > window {
            tokio::time::sleep(window).await;
            return apify_error(
                408,
                "run-timeout-exceeded",
                "Actor run exceeded the timeout of 300 seconds for this API endpoint",
            );
        }
        tokio::time::sleep(remaining).await;
        if self.switches.take(SERVICE, |f| &mut f.lose_submit_answers) {
            return dropped();
        }
        let status = self.status(&run);
        if status != "SUCCEEDED" {
            return apify_error(
                400,
                "run-failed",
                &format!("Actor run did not succeed (run ID: {id}, status: {status})"),
            );
        }
        page(self.dataset(&id).unwrap_or_default(), &q, 201)
    }
}

fn page(items: Vec<Value>, q: &HashMap<String, String>, status: u16) -> Answer {
    let clean = q.get("clean").is_some_and(|c| c == "true" || c == "1");
    let total = items.len();
    let offset = q
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0usize);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let mut out: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    if clean {
        // skipHidden (fields named `#…`) and skipEmpty (items with nothing in them).
        for item in &mut out {
            if let Some(map) = item.as_object_mut() {
                map.retain(|k, _| !k.starts_with('#'));
            }
        }
        out.retain(|item| item.as_object().is_none_or(|m| !m.is_empty()));
    }
    let count = out.len();
    reply_with(
        status,
        Value::Array(out),
        &[
            ("x-apify-pagination-offset", offset.to_string()),
            ("x-apify-pagination-limit", limit.min(total).to_string()),
            ("x-apify-pagination-count", count.to_string()),
            ("x-apify-pagination-total", total.to_string()),
        ],
    )
}

fn check_input(actor: &str, input: &Value) -> Result<(), String> {
    let strings = |k: &str| {
        input[k].as_array().is_some_and(|a| {
            !a.is_empty()
                && a.iter()
                    .all(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
        })
    };
    match actor {
        TIKTOK if !(strings("searchQueries") || strings("hashtags") || strings("profiles")) => {
            Err("give searchQueries, hashtags or profiles".into())
        }
        YOUTUBE if !strings("searchQueries") => Err("searchQueries must be a list of words".into()),
        INSTAGRAM if !strings("hashtags") => Err("hashtags must be a list of hashtags".into()),
        _ => Ok(()),
    }
}

struct Dice(u64);

impl Dice {
    fn new(parts: &[&str]) -> Self {
        let digest = Sha256::digest(parts.join("\u{1f}").as_bytes());
        let mut s = 0u64;
        for b in &digest[..8] {
            s = (s << 8) | u64::from(*b);
        }
        Dice(s | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// A long-tailed view count: most videos modest, a few huge.
    fn views(&mut self) -> u64 {
        let exp = 3 + self.below(5); // 10^3 .. 10^7
        let base = 10u64.pow(exp as u32);
        base + self.below(base * 9)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const HOOKS: [&str; 8] = [
    "you need to try this",
    "in 10 seconds",
    "changed everything",
    "nobody talks about",
    "before and after",
    "the trick pros use",
    "wait for the end",
    "day 1 vs day 30",
];
const AUTHORS: [&str; 8] = [
    "studio.mika",
    "ai.daily",
    "cutbycut",
    "lumen.lab",
    "framebyframe",
    "neo.crafts",
    "the.promptist",
    "shortsmith",
];

fn max_age_days(input: &Value) -> u64 {
    // "7 days", "2 weeks", "3 months", "1 year" (a date string falls back to 30 days).
    let days = |v: &Value| {
        let text = v.as_str()?;
        let mut words = text.split_whitespace();
        let n = words.next()?.parse::<u64>().ok()?;
        let per = match words.next().unwrap_or("days").trim_end_matches('s') {
            "week" => 7,
            "month" => 30,
            "year" => 365,
            _ => 1,
        };
        Some(n.saturating_mul(per))
    };
    days(&input["oldestPostDateUnified"])
        .or_else(|| days(&input["onlyPostsNewerThan"]))
        .or_else(|| match input["dateFilter"].as_str() {
            Some("month") => Some(30),
            Some("year") => Some(365),
            Some("week") => Some(7),
            _ => None,
        })
        .unwrap_or(30)
        .clamp(1, 3650)
}

/// The items an actor finds for `input`: its results, with error items mixed in.
fn make_items(seed: u64, actor: &str, input: &Value, max_items: Option<usize>) -> Vec<Value> {
    let (keyword, limit) = match actor {
        TIKTOK => (
            input["searchQueries"][0]
                .as_str()
                .or(input["hashtags"][0].as_str())
                .or(input["profiles"][0].as_str()),
            input["resultsPerPage"].as_u64(),
        ),
        YOUTUBE => (
            input["searchQueries"][0].as_str(),
            input["maxResultsShorts"].as_u64(),
        ),
        _ => (
            input["hashtags"][0].as_str(),
            input["resultsLimit"].as_u64(),
        ),
    };
    let keyword = keyword.unwrap_or("video").trim().to_owned();
    let limit = (limit.unwrap_or(20) as usize)
        .min(max_items.unwrap_or(usize::MAX))
        .min(1000);
    let age = max_age_days(input);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let seed = seed.to_string();
    let mut out = Vec::with_capacity(limit + limit / ERROR_EVERY + 1);
    for i in 0..limit {
        let mut d = Dice::new(&[&seed, actor, &keyword, &i.to_string()]);
        if i > 0 && i % ERROR_EVERY == 0 {
            out.push(error_item(actor, &keyword, &mut d));
        }
        let views = d.views();
        let likes = views / (8 + d.below(40));
        let comments = likes / (10 + d.below(40));
        let shares = likes / (5 + d.below(30));
        let posted = now.saturating_sub(d.below(age * 86_400));
        let duration = 8 + d.below(52);
        let title = format!("{keyword} {} #{}", d.pick(&HOOKS), keyword.replace(' ', ""));
        let author = d.pick(&AUTHORS).to_owned();
        // TikTok's ids are about 7.3e18: below i64::MAX, as real ones are.
        let vid = format!(
            "{}",
            7_300_000_000_000_000_000 + d.below(100_000_000_000_000_000)
        );
        let when = iso(UNIX_EPOCH + Duration::from_secs(posted));
        out.push(match actor {
            TIKTOK => json!({"id": vid, "text": title,
                "webVideoUrl": format!("https://www.tiktok.com/@{author}/video/{vid}"),
                "createTimeISO": when, "createTime": posted,
                "authorMeta": {"name": author, "nickName": author, "fans": views / 3, "verified": d.below(5) == 0},
                "playCount": views, "diggCount": likes, "commentCount": comments, "shareCount": shares,
                "collectCount": likes / 7,
                "videoMeta": {"duration": duration, "coverUrl": format!("https://p16-sign.tiktokcdn.com/{vid}.jpeg"),
                    "height": 1024, "width": 576},
                "mediaUrls": [], "hashtags": [{"name": keyword.replace(' ', "")}],
                "musicMeta": {"musicName": "original sound", "musicAuthor": author},
                "isAd": false, "isPinned": false, "searchQuery": keyword}),
            YOUTUBE => {
                let id: String = vid.chars().rev().take(11).collect();
                json!({"id": id, "title": title, "type": "shorts",
                    "url": format!("https://www.youtube.com/shorts/{id}"),
                    "text": format!("{title}. Made with AI."), "channelName": author,
                    "channelUrl": format!("https://www.youtube.com/@{author}"),
                    "viewCount": views, "likes": likes, "commentsCount": comments,
                    "date": when, "thumbnailUrl": format!("https://i.ytimg.com/vi/{id}/hq2.jpg"),
                    "duration": format!("00:00:{:02}", duration.min(59)), "fromYTUrl": "search"})
            }
            _ => {
                let code: String = vid.chars().take(11).collect();
                json!({"id": vid, "shortCode": code, "type": "Video", "productType": "clips",
                    "url": format!("https://www.instagram.com/reel/{code}/"),
                    "caption": title, "ownerUsername": author, "ownerId": format!("{}", d.below(1_000_000_000)),
                    "videoViewCount": views, "videoPlayCount": views + views / 3,
                    "likesCount": if d.below(12) == 0 { -1 } else { likes as i64 },
                    "commentsCount": comments, "timestamp": when,
                    "displayUrl": format!("https://scontent.cdninstagram.com/{code}.jpg"),
                    "videoUrl": format!("https://scontent.cdninstagram.com/{code}.mp4"),
                    "videoDuration": duration as f64 + 0.5,
                    "hashtags": [keyword.replace(' ', "")]})
            }
        });
    }
    out
}

fn error_item(actor: &str, keyword: &str, d: &mut Dice) -> Value {
    match actor {
        TIKTOK => json!({"errorCode": d.pick(&["PROFILE_PRIVATE", "NOT_FOUND"]),
            "error": format!("The profile found for \"{keyword}\" is private or gone"), "url": null}),
        YOUTUBE => {
            json!({"error": "Video unavailable", "url": format!("https://www.youtube.com/shorts/{:011}", d.below(1_000_000))})
        }
        _ => {
            json!({"error": d.pick(&["not_found", "private"]), "errorDescription": "The post is not available",
            "url": format!("https://www.instagram.com/explore/tags/{keyword}/")})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_stable_for_a_seed_and_carry_error_items() {
        let input = json!({"searchQueries": ["AI tools"], "resultsPerPage": 50});
        let a = make_items(7, TIKTOK, &input, None);
        assert_eq!(a.len(), 51);
        assert_eq!(a.iter().filter(|i| !i["error"].is_null()).count(), 1);
        assert_eq!(a.iter().filter(|i| i["error"].is_null()).count(), 50);
        // The same seed makes the same videos (times aside).
        let b = make_items(7, TIKTOK, &input, Some(10));
        assert_eq!(a[3]["id"], b[3]["id"]);
        assert_ne!(make_items(8, TIKTOK, &input, None)[3]["id"], a[3]["id"]);
        assert_eq!(
            iso(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
