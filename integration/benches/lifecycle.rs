#![allow(missing_docs)] // criterion_group! generates undocumented items.
#![allow(clippy::expect_used)]
//! A full job lifecycle through the Studio: generate (validate, price, hold, create, submit),
//! then a webhook (verify, dedupe, transition, store, settle), on the in-memory store with an
//! instant provider. Reports the per-job time; jobs per second is its inverse.
//!
//! `cargo bench -p jilo-integration --bench lifecycle`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use jilo::{
    CancelOutcome, Capabilities, Error, Grant, InMemoryStore, ModelSpec, ProviderBalance,
    ProviderId, ProviderStatus, ProviderVideo, QuotaStore, Result, StatusQuery, Studio, Submission,
    SubmitRequest, Timestamp, UserId, VideoProvider, VideoRequest, WebhookDelivery, WebhookEvent,
};

/// Accepts every submit at once and reads a webhook body as the request id that succeeded.
#[derive(Debug)]
struct InstantProvider {
    next: AtomicU64,
    models: Vec<ModelSpec>,
}

#[async_trait]
impl VideoProvider for InstantProvider {
    fn id(&self) -> ProviderId {
        ProviderId::new("instant")
    }
    fn models(&self) -> Vec<ModelSpec> {
        self.models.clone()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            webhooks: true,
            ..Capabilities::default()
        }
    }
    async fn submit(&self, _: &SubmitRequest) -> Result<Submission> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(Submission {
            request_id: format!("r{n}"),
        })
    }
    async fn status(&self, _: &StatusQuery) -> Result<ProviderStatus> {
        Ok(ProviderStatus::Queued { position: None })
    }
    async fn result(&self, q: &StatusQuery) -> Result<ProviderVideo> {
        Err(Error::not_found("result", &q.request_id))
    }
    async fn cancel(&self, _: &StatusQuery) -> Result<CancelOutcome> {
        Ok(CancelOutcome::Unsupported)
    }
    async fn parse_webhook(&self, d: &WebhookDelivery) -> Result<WebhookEvent> {
        let request_id = String::from_utf8_lossy(&d.body).into_owned();
        Ok(WebhookEvent {
            delivery_id: request_id.clone(),
            status: ProviderStatus::Succeeded {
                video: Some(ProviderVideo {
                    url: format!("https://cdn.invalid/{request_id}.mp4"),
                    content_type: None,
                    bytes: None,
                    headers: Vec::new(),
                }),
            },
            request_id,
        })
    }
    async fn balance(&self) -> Result<Option<ProviderBalance>> {
        Ok(None)
    }
}

fn studio() -> (Studio, Arc<InMemoryStore>) {
    let provider = InstantProvider {
        next: AtomicU64::new(0),
        models: jilo::testing::SimProvider::new("instant").models(),
    };
    let store = Arc::new(InMemoryStore::new());
    let studio = Studio::builder()
        .provider(Arc::new(provider))
        .store(store.clone())
        .build()
        .expect("a valid studio");
    (studio, store)
}

async fn one_job(studio: &Studio, user: &UserId) {
    let id = studio
        .generate(
            user,
            VideoRequest::new(
                "A paper boat on a rainy street",
                jilo::testing::SIM_MODEL,
                5,
            ),
        )
        .await
        .expect("generate");
    let rid = studio
        .job(&id)
        .await
        .expect("job")
        .provider_request_id
        .expect("submitted");
    let delivery = WebhookDelivery::new(Vec::new(), rid.into_bytes());
    let out = studio
        .handle_webhook(&ProviderId::new("instant"), &delivery)
        .await
        .expect("webhook");
    assert_eq!(out.state, jilo::JobState::Storing);
    // The worker's part: store and settle (a tick also takes other tasks' due jobs).
    while studio.job(&id).await.expect("job").state != jilo::JobState::Completed {
        studio.tick().await.expect("tick");
        tokio::task::yield_now().await;
    }
}

async fn run_jobs(iters: u64, concurrency: u64) -> Duration {
    let (studio, store) = studio();
    let user = UserId::new("bench");
    store
        .grant(&Grant::signup(
            user.clone(),
            jilo::ledger::MAX_CREDITS,
            Timestamp::from_millis(0),
        ))
        .await
        .expect("grant");
    let start = Instant::now();
    if concurrency == 1 {
        for _ in 0..iters {
            one_job(&studio, &user).await;
        }
    } else {
        let per_task = iters.div_ceil(concurrency);
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let studio = studio.clone();
                let user = user.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        one_job(&studio, &user).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    }
    start.elapsed()
}

fn lifecycle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("job_lifecycle");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("sequential", |b| {
        b.to_async(&rt).iter_custom(|iters| run_jobs(iters, 1));
    });
    group.bench_function("32_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| run_jobs(iters, 32));
    });
    group.finish();
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
