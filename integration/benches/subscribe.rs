//! `subscribe` at scale: 1,000 subscribers, each following its own job on one store, while
//! 100 other jobs change 10 times each. Reports the events each subscriber's stream had to
//! process and the wall time until every subscriber saw its job's change, for a watcher of
//! every job filtered by id (how `subscribe` worked before) and for a watcher of one job
//! (`JobStore::watch_job`, what it uses now), in the same run.
//!
//! `cargo bench -p jilo-integration --bench subscribe`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jilo::testing::take_hold;
use jilo::{
    Grant, InMemoryStore, Job, JobId, JobState, JobStore, JobUpdate, QuotaStore, Timestamp, UserId,
};

const SUBSCRIBERS: usize = 1_000;
const BUSY_JOBS: usize = 100;
const CHANGES_PER_BUSY_JOB: usize = 10;

async fn progress(store: &InMemoryStore, job: &Job, p: u8) -> Job {
    let mut next = job.clone();
    next.state = JobState::Running;
    next.progress = p;
    store.update(&JobUpdate::new(job, next)).await.unwrap()
}

/// Returns (events processed per subscriber, time until all saw their job's change).
async fn run(one_job_streams: bool) -> (f64, Duration) {
    let store = Arc::new(InMemoryStore::new());
    let user = UserId::new("bench");
    let at = Timestamp::from_millis(0);
    store
        .grant(&Grant::signup(user.clone(), jilo::ledger::MAX_CREDITS, at))
        .await
        .unwrap();
    let mut watched = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (mut job, _) = take_hold(&*store, &user, 1, at, None).await.unwrap();
        job.version = 1;
        watched.push(job);
    }
    let mut busy = Vec::new();
    for _ in 0..BUSY_JOBS {
        let (mut job, _) = take_hold(&*store, &user, 1, at, None).await.unwrap();
        job.version = 1;
        busy.push(job);
    }
    let processed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for job in &watched {
        let id: JobId = job.id.clone();
        let mut events = if one_job_streams {
            store.watch_job(&id).await.unwrap()
        } else {
            store.watch().await.unwrap()
        };
        let processed = processed.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(e) = events.next().await {
                n += 1;
                if e.job == id {
                    break;
                }
            }
            processed.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let start = Instant::now();
    for round in 0..CHANGES_PER_BUSY_JOB {
        for job in busy.iter_mut() {
            *job = progress(&store, job, round as u8 + 1).await;
        }
        tokio::task::yield_now().await;
    }
    for job in &watched {
        progress(&store, job, 50).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    (
        processed.load(Ordering::Relaxed) as f64 / SUBSCRIBERS as f64,
        elapsed,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "subscribe: {SUBSCRIBERS} subscribers, {BUSY_JOBS} other jobs x {CHANGES_PER_BUSY_JOB} changes, in-memory store"
    );
    println!(
        "| stream                        | events per subscriber | time until all saw theirs |"
    );
    println!(
        "|-------------------------------|----------------------:|--------------------------:|"
    );
    for _ in 0..2 {
        for (name, one) in [
            ("every job's events, filtered", false),
            ("one job's events (watch_job)", true),
        ] {
            let (per_sub, elapsed) = rt.block_on(run(one));
            println!(
                "| {name:<29} | {per_sub:>21.1} | {:>22.1} ms |",
                elapsed.as_secs_f64() * 1000.0
            );
        }
    }
}
