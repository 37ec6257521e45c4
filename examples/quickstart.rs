//! Compose a Studio, give a user credits, generate a video and watch it finish.
//!
//! Runs with no keys: the provider is the simulator from `jilo::testing` and the store is in
//! memory. `cargo run --example quickstart`

use std::sync::Arc;

use futures::StreamExt;
use jilo::testing::{SimProvider, SIM_MODEL};
use jilo::{
    Grant, InMemoryStore, Policy, Pricing, ProviderStatus, QuotaStore, Studio, Timestamp, UserId,
    VideoRequest, WordListModerator,
};

#[tokio::main]
async fn main() -> Result<(), jilo::Error> {
    let store = Arc::new(InMemoryStore::new());
    let provider = Arc::new(SimProvider::new("sim"));
    let studio = Studio::builder()
        .provider(provider.clone())
        .store(store.clone())
        .moderator(Arc::new(WordListModerator::new(["gore"])))
        .policy(Policy {
            pricing: Pricing::new().with_price(SIM_MODEL, 5, 15),
            ..Policy::default()
        })
        .build()?;

    let user = UserId::new("creator-1");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await?;
    println!("balance before: {:?}", studio.balance(&user).await?);

    let request = VideoRequest::new(
        "A paper boat sailing down a rainy street, close-up",
        SIM_MODEL,
        5,
    );
    let job = studio.generate(&user, request).await?;
    println!(
        "job {job} submitted; credits held: {}",
        studio.balance(&user).await?.held
    );

    // A worker: stores finished videos, polls, retries, times out. A host runs it beside its
    // HTTP server; webhooks only record what happened and leave the slow work to it.
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let studio = studio.clone();
        tokio::spawn(async move {
            studio
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    // Follow the job as a host's SSE endpoint would.
    let mut events = studio.subscribe(&job).await?;
    let request_id = studio
        .job(&job)
        .await?
        .provider_request_id
        .unwrap_or_default();
    let driver = {
        let (studio, provider) = (studio.clone(), provider.clone());
        tokio::spawn(async move {
            // The provider reports progress, then delivers, by signed webhook.
            for progress in [15u8, 55, 90] {
                let running = ProviderStatus::Running {
                    progress: Some(progress),
                    stage: None,
                };
                let delivery = provider.webhook(&request_id, running);
                studio.handle_webhook(&"sim".into(), &delivery).await?;
            }
            let done = provider.succeeded(&request_id, "https://cdn.example/boat.mp4");
            studio.handle_webhook(&"sim".into(), &done).await
        })
    };
    while let Some(event) = events.next().await {
        println!(
            "  {:>9} {:>3}%  {}",
            event.state,
            event.progress,
            event.stage.unwrap_or_default()
        );
    }
    if let Ok(outcome) = driver.await {
        outcome?;
    }
    let _ = stop_worker.send(());
    let _ = worker.await;
    let finished = studio.job(&job).await?;
    println!(
        "video: {}",
        finished.output.map(|o| o.location).unwrap_or_default()
    );
    println!("balance after: {:?}", studio.balance(&user).await?);
    for entry in store.history(&user).await? {
        println!("  ledger #{} {:?} {}", entry.seq, entry.kind, entry.credits);
    }
    Ok(())
}
