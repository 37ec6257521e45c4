//! The host app under load, each figure beside its floor in the same run.
//!
//! 1. Sustained `POST /api/generate` from concurrent clients for a while (60 s by default), each
//!    job completed by FAL's webhook and stored by the worker, on SQLite and on Postgres:
//!    requests per second with p50/p99 latency, and completions per second. The floor is the
//!    ledger work each generation does (a job created with its credit hold, then completed
//!    with the hold settled) run straight on `SqlStore` at the same concurrency on the same
//!    database, without HTTP or providers.
//! 2. Many SSE watchers of one job on one process (10,000 by default): the server's memory
//!    per watcher (its resident set before and after they connect) and the time from the
//!    job's transition until every watcher saw it.
//!
//! The server is the `jilo-server` binary in a process of its own, keyless on `jilo-sim`.
//!
//! ```text
//! cargo bench -p jilo-server --bench load
//! JILO_BENCH_SECS=10 JILO_BENCH_CLIENTS=16 JILO_BENCH_WATCHERS=2000 cargo bench -p jilo-server --bench load
//! ```
//! Postgres: `JILO_TEST_POSTGRES_URL`, else the local server; skipped when unreachable. The
//! watchers need two file descriptors each on this machine (client and server): `ulimit -n`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../integration/tests/support/postgres.rs"]
mod postgres;

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use jilo::store::{SqlStore, StoreUrl};
use jilo::testing::take_hold;
use jilo::{Grant, HoldState, JobState, JobStore, JobUpdate, QuotaStore, Timestamp, UserId};
use jilo_sim::{Pace, Service, SimConfig, Simulators, WebhookFault};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ADMIN: &str = "bench-admin-token";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    url: String,
    pid: u32,
}

async fn spawn_server(sims: &Simulators, database_url: &str, dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jilo-server"))
        .args(["--port", "0"])
        .envs(sims.env())
        .env("DATABASE_URL", database_url)
        .env("JILO_DATA_DIR", dir)
        .env("JILO_ADMIN_TOKEN", ADMIN)
        // The simulator takes any pace: the host's own capacity is what is measured.
        .env("FAL_REQUESTS_PER_MINUTE", "1000000")
        .env("RUST_LOG", "warn,jilo_server=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the server stopped");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break format!("http://{}", rest.split_whitespace().next().unwrap());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, url, pid }
}

async fn stop(mut server: Server) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(60), server.child.wait()).await;
    let _ = server.child.start_kill();
}

/// A user with a billion credits; answers the session token.
async fn rich_user(http: &reqwest::Client, url: &str, email: &str) -> String {
    let r = http
        .post(format!("{url}/api/auth/signup"))
        .json(&json!({ "email": email, "password": "secret123", "confirm": "secret123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{url}/api/admin/grant"))
        .bearer_auth(ADMIN)
        .json(&json!({ "email": email, "credits": 1_000_000_000i64, "idempotency_key": "bench" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    token
}

async fn quota(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(format!("{url}/api/quota"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Job lives per second straight on the store: created with a hold, completed and settled.
async fn ledger_floor(url: &str, callers: usize, run_for: Duration) -> f64 {
    let store = Arc::new(
        SqlStore::open(&StoreUrl::parse(url).unwrap())
            .await
            .unwrap(),
    );
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = Timestamp::from_system(SystemTime::now());
    for c in 0..callers {
        let user = UserId::new(format!("floor-{run}-{c}"));
        store
            .grant(&Grant::signup(user, 1_000_000_000, at))
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run_for;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (store, done, run) = (store.clone(), done.clone(), run.clone());
            tokio::spawn(async move {
                let user = UserId::new(format!("floor-{run}-{c}"));
                while Instant::now() < deadline {
                    let (mut job, _) = take_hold(&*store, &user, 15, at, None).await.unwrap();
                    job.version = 1;
                    let mut finished = job.clone();
                    finished.state = JobState::Completed;
                    let mut update = JobUpdate::new(&job, finished);
                    update.end_hold = Some(HoldState::Settled);
                    store.update(&update).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    rate
}

async fn sustained(label: &str, sims: &Simulators, database_url: &str, secs: u64, clients: usize) {
    let dir = std::env::temp_dir().join(format!("jilo-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let floor = ledger_floor(database_url, clients, Duration::from_secs(5)).await;
    let server = spawn_server(sims, database_url, &dir).await;
    let http = jilo::providers::http::client_builder()
        .unwrap()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let token = rich_user(
        &http,
        &server.url,
        &format!("load-{}@example.com", uuid::Uuid::new_v4().simple()),
    )
    .await;
    let before = quota(&http, &server.url, &token).await;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, token) = (http.clone(), server.url.clone(), token.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut refused = 0u64;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let t = Instant::now();
                    let r = http
                        .post(format!("{url}/api/generate"))
                        .bearer_auth(&token)
                        .json(&json!({ "prompt": format!("A paper lantern drifting over a river, client {c} take {n}"), "model": "kling-t2v", "duration": 5 }))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 202 => {
                            let _ = r.bytes().await;
                            latencies.push(t.elapsed().as_micros() as u64);
                        }
                        _ => refused += 1,
                    }
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut refused = 0;
    for t in futures::future::join_all(tasks).await {
        let (l, r) = t.unwrap();
        latencies.extend(l);
        refused += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = quota(&http, &server.url, &token).await;
    latencies.sort_unstable();
    let spent = after["spent"].as_i64().unwrap() - before["spent"].as_i64().unwrap();
    let completed = spent / 15;
    println!(
        "{label}: {clients} clients for {secs} s: {:.1} generate/s accepted (p50 {:.1} ms, p99 {:.1} ms, {refused} refused); {:.1} completions/s by webhook and worker ({completed} jobs settled, {} credits still held at the end)",
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        completed as f64 / elapsed,
        after["held"]
    );
    println!(
        "{label} floor: {floor:.1} job lives/s straight on SqlStore (create with hold, complete and settle) at {clients} callers"
    );
    stop(server).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn watchers(count: usize) {
    // FAL at a slow pace: the job runs about a minute, long enough to connect everyone.
    let sims = Simulators::start(SimConfig::default().with_pace(Pace::Speed(1.5)))
        .await
        .unwrap();
    sims.switches
        .update(Service::Fal, |f| f.webhooks = WebhookFault::OnTime);
    let dir =
        std::env::temp_dir().join(format!("jilo-bench-sse-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("jilo.db").display());
    let server = spawn_server(&sims, &db, &dir).await;
    let http = jilo::providers::http::client_builder()
        .unwrap()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let token = rich_user(&http, &server.url, "watchers@example.com").await;
    let r = http
        .post(format!("{}/api/generate", server.url))
        .bearer_auth(&token)
        .json(&json!({ "prompt": "A slow sunrise over a quiet harbour", "model": "kling-t2v", "duration": 5 }))
        .send()
        .await
        .unwrap();
    let job = r.json::<Value>().await.unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(server.pid);
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let connect_started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(SystemTime, SystemTime)>();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    for _ in 0..count {
        let (http, url, token, job) =
            (http.clone(), server.url.clone(), token.clone(), job.clone());
        let (ready, failed, tx, sem) = (ready.clone(), failed.clone(), tx.clone(), sem.clone());
        tokio::spawn(async move {
            // Connections are opened a few hundred at a time; each slot frees at its first event.
            let mut permit = Some(sem.acquire_owned().await.unwrap());
            let r = match http
                .get(format!("{url}/api/jobs/{job}/events"))
                .bearer_auth(&token)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => r,
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let mut body = r.bytes_stream();
            let mut buffer = String::new();
            let mut first = true;
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let event: Value = serde_json::from_str(data.trim()).unwrap_or_default();
                    if first {
                        first = false;
                        permit.take();
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    if event["state"] == "completed" {
                        let at = event["at"]
                            .as_str()
                            .and_then(|a| humantime::parse_rfc3339(a).ok())
                            .unwrap_or_else(SystemTime::now);
                        let _ = tx.send((SystemTime::now(), at));
                    }
                }
            }
        });
    }
    drop(tx);
    while ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connected = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(server.pid);
    let ready_n = ready.load(Ordering::Relaxed);
    println!(
        "watchers: {ready_n} of {count} connected in {:.1} s ({} refused); server resident set {} MiB → {} MiB: {:.1} KiB per watcher",
        connected.as_secs_f64(),
        failed.load(Ordering::Relaxed),
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) as f64 / ready_n.max(1) as f64
    );
    // The transition: the job completes (FAL's webhook, the worker stores the video).
    let mut seen = Vec::new();
    while let Some(got) = rx.recv().await {
        seen.push(got);
        if seen.len() == ready_n {
            break;
        }
    }
    // From the transition (the event's `at`, when the worker wrote it) to each watcher.
    let mut lags: Vec<u64> = seen
        .iter()
        .map(|(got, at)| got.duration_since(*at).unwrap_or_default().as_micros() as u64)
        .collect();
    lags.sort_unstable();
    println!(
        "watchers: all {} saw `completed` {:.1} ms after the transition was written (p50 {:.1} ms, p99 {:.1} ms)",
        seen.len(),
        lags.last().copied().unwrap_or(0) as f64 / 1000.0,
        percentile(&lags, 0.5),
        percentile(&lags, 0.99)
    );
    stop(server).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let secs = env_number("JILO_BENCH_SECS", 60);
        let clients = env_number("JILO_BENCH_CLIENTS", 32) as usize;
        let watchers_n = env_number("JILO_BENCH_WATCHERS", 10_000) as usize;
        let sims = Simulators::start(SimConfig::default().with_pace(Pace::Instant))
            .await
            .unwrap();
        let dir =
            std::env::temp_dir().join(format!("jilo-bench-db-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = format!("sqlite://{}", dir.join("jilo.db").display());
        sustained("sqlite", &sims, &sqlite, secs, clients).await;
        if let Some(pg) = postgres::database("jilo_bench_load").await {
            sustained("postgres", &sims, &pg, secs, clients).await;
            postgres::drop(&pg).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        watchers(watchers_n).await;
    });
}
