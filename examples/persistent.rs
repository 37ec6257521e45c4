//! The Studio on a SQL store: the ledger and the jobs survive the process.
//!
//! `cargo run -p jilo-examples --example persistent` keeps them in `jilo.db`; set
//! `DATABASE_URL` (`sqlite://path`, `postgres://…` with `--features postgres`) to choose. Run it
//! twice: the signup grant is idempotent, and the job list grows.

use std::sync::Arc;

use jilo::store::SqlStore;
use jilo::testing::{SimProvider, SIM_MODEL};
use jilo::{Grant, QuotaStore, Studio, Timestamp, UserId, VideoRequest};

#[tokio::main]
async fn main() -> Result<(), jilo::Error> {
    let store = Arc::new(SqlStore::open_from_env().await?);
    println!(
        "store: {store:?} (schema version {})",
        store.schema_version()
    );
    let provider = Arc::new(SimProvider::new("sim"));
    let studio = Studio::builder()
        .provider(provider.clone())
        .store(store.clone())
        .build()?;

    let user = UserId::new("creator-1");
    let outcome = store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await?;
    println!("signup grant: {outcome:?}");

    let job = studio
        .generate(
            &user,
            VideoRequest::new("Morning fog rolling over rice terraces", SIM_MODEL, 5),
        )
        .await?;
    let request_id = studio
        .job(&job)
        .await?
        .provider_request_id
        .unwrap_or_default();
    let delivery = provider.succeeded(&request_id, "https://cdn.example/terraces.mp4");
    let outcome = studio.handle_webhook(&"sim".into(), &delivery).await?;
    println!("job {job}: {} (webhook answered)", outcome.state);
    // A worker copies the video into storage and settles; a host runs `studio.run(shutdown)`.
    studio.tick().await?;
    println!("job {job}: {}", studio.job(&job).await?.state);

    println!("balance: {:?}", studio.balance(&user).await?);
    for j in studio.jobs_for_user(&user, 10).await? {
        println!("  {} {} {} credits", j.id, j.state, j.credits);
    }
    Ok(())
}
