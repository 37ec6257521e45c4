//! submit → status → result for 500 jobs at 50 concurrent against one local FAL-protocol
//! server, driven once by jilo's FAL client and once by the official Python `fal-client`
//! (`pip install fal-client`), reporting jobs/s and client CPU ms per job for each. The server
//! runs in a child process, so each client's CPU is its own.
//!
//! `cargo bench -p jilo-providers --features fal --bench fal_clients`
//! (without `fal-client` installed, the Python row says so.)
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jilo_core::{JobId, StatusQuery, SubmitRequest, VideoProvider, VideoRequest};
use jilo_providers::fal::{FalProvider, KLING_T2V};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const JOBS: usize = 500;
const CONCURRENT: usize = 50;
const KLING: &str = "fal-ai/kling-video/v1.6/standard/text-to-video";
const SERVER: &str = "JILO_FAL_BENCH_SERVER";

/// This process's CPU time (user + system) from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

async fn serve() {
    let server = MockServer::start().await;
    let base = server.uri();
    let id = "019d61ac-62e0-7893-bea6-336a1659511f";
    let req = format!("{base}/fal-ai/kling-video/requests/{id}");
    Mock::given(method("POST"))
        .and(path(format!("/{KLING}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "IN_QUEUE", "request_id": id, "queue_position": 0,
            "response_url": req, "status_url": format!("{req}/status"), "cancel_url": format!("{req}/cancel")
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/fal-ai/kling-video/requests/{id}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.0},
            "request_id": id, "response_url": req
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/fal-ai/kling-video/requests/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "video": {"url": "https://v3.fal.media/files/x/output.mp4", "content_type": "video/mp4", "file_size": 4404019}
        })))
        .mount(&server)
        .await;
    println!("LISTENING {base}");
    std::future::pending::<()>().await;
}

const PYTHON: &str = r#"
import asyncio, os, resource, sys, time
import fal_client, fal_client.client as c
c.QUEUE_URL_FORMAT = sys.argv[1].rstrip("/") + "/"
jobs, concurrent = int(sys.argv[2]), int(sys.argv[3])
async def one(sem):
    async with sem:
        handle = await fal_client.submit_async("fal-ai/kling-video/v1.6/standard/text-to-video",
            arguments={"prompt": "A paper boat on a rainy street at night", "duration": "5", "aspect_ratio": "9:16"})
        await handle.status()
        result = await handle.get()
        assert result["video"]["url"]
async def main():
    sem = asyncio.Semaphore(concurrent)
    await asyncio.gather(*[one(sem) for _ in range(jobs)])
u0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
asyncio.run(main())
t1 = time.perf_counter()
u1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
print(f"RESULT {jobs / (t1 - t0):.1f} {1000 * cpu / jobs:.3f}")
"#;

fn main() {
    if std::env::var(SERVER).is_ok() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(serve());
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SERVER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(url) = line.strip_prefix("LISTENING ") {
            break url.to_owned();
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("{JOBS} jobs (submit, status, result), {CONCURRENT} at a time, one local FAL-protocol server");
    println!("| client | jobs/s | client CPU ms per job |");
    println!("|---|---:|---:|");
    for _ in 0..2 {
        let (jobs_per_s, cpu_ms) = rt.block_on(async {
            let fal = FalProvider::new("bench-key")
                .unwrap()
                .with_queue_url(base.clone(), None)
                .unwrap()
                .with_requests_per_minute(1_000_000);
            let cpu0 = cpu();
            let start = Instant::now();
            stream::iter(0..JOBS)
                .map(|i| {
                    let fal = &fal;
                    async move {
                        let request = SubmitRequest::new(
                            JobId::new(format!("bench-{i}")),
                            1,
                            VideoRequest::new(
                                "A paper boat on a rainy street at night",
                                KLING_T2V,
                                5,
                            ),
                            KLING,
                        );
                        let sub = fal.submit(&request).await.unwrap();
                        let q = StatusQuery {
                            request_id: sub.request_id,
                            provider_model: KLING.into(),
                        };
                        fal.status(&q).await.unwrap();
                        fal.result(&q).await.unwrap();
                    }
                })
                .buffer_unordered(CONCURRENT)
                .collect::<Vec<()>>()
                .await;
            let wall = start.elapsed();
            let cpu_used = cpu() - cpu0;
            (
                JOBS as f64 / wall.as_secs_f64(),
                cpu_used.as_secs_f64() * 1000.0 / JOBS as f64,
            )
        });
        println!("| jilo FalProvider | {jobs_per_s:.0} | {cpu_ms:.3} |");
        let out = Command::new("python3")
            .args([
                "-c",
                PYTHON,
                &base,
                &JOBS.to_string(),
                &CONCURRENT.to_string(),
            ])
            .env("FAL_KEY", "bench-key")
            .output();
        match out {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout);
                match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
                    Some(r) => {
                        let mut parts = r.split_whitespace();
                        println!(
                            "| Python fal-client | {} | {} |",
                            parts.next().unwrap_or("?"),
                            parts.next().unwrap_or("?")
                        );
                    }
                    None => println!(
                        "| Python fal-client | not run: {} | |",
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .last()
                            .unwrap_or("no output")
                    ),
                }
            }
            Err(e) => println!("| Python fal-client | not run: {e} | |"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
