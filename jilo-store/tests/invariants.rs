//! 1,000 concurrent ledger operations on 100 users, with random grants, holds, settles and
//! refunds: afterwards every account satisfies `granted = available + held + spent` and
//! matches its holds and ledger rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use jilo_core::testing::{end_hold, take_hold};
use jilo_core::{Error, Grant, HoldState, QuotaStore, Timestamp, UserId};
use jilo_store::{SqlStore, SqlStoreOptions, StoreUrl};

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

async fn thousand_operations(url: &StoreUrl) {
    let store = Arc::new(
        SqlStore::connect(
            url,
            SqlStoreOptions {
                max_connections: 16,
                ..SqlStoreOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    store.migrate().await.unwrap();
    let at = Timestamp::from_millis(0);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<UserId> = (0..100)
        .map(|i| UserId::new(format!("inv-{run}-{i}")))
        .collect();
    for u in &users {
        store
            .grant(&Grant::signup(u.clone(), 20, at))
            .await
            .unwrap();
    }
    let seed = 0x5eed_u64 ^ uuid::Uuid::new_v4().as_u128() as u64;
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let store = store.clone();
            let user = users[(rng.next() % 100) as usize].clone();
            let op = rng.next() % 10;
            let credits = 1 + (rng.next() % 5) as i64;
            let payment = format!("pay-{run}-{i}");
            tokio::spawn(async move {
                if op < 2 {
                    let g = Grant::purchase(user, credits, &payment, at);
                    store.grant(&g).await.map(|_| ())
                } else {
                    let job = match take_hold(&*store, &user, credits, at, None).await {
                        Ok((job, _)) => job.id,
                        Err(Error::Insufficient { .. }) => return Ok(()),
                        Err(e) => return Err(e),
                    };
                    match op {
                        2..=5 => end_hold(&*store, &job, HoldState::Settled)
                            .await
                            .map(|_| ()),
                        6..=8 => end_hold(&*store, &job, HoldState::Refunded)
                            .await
                            .map(|_| ()),
                        _ => Ok(()), // left held
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(common::check_ledger(&store).await >= 100);
    for u in &users {
        assert!(store.balance(u).await.unwrap().is_consistent());
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_ledger_stays_exact_under_1000_concurrent_operations() {
    thousand_operations(&common::sqlite_file()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_ledger_stays_exact_under_1000_concurrent_operations() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    thousand_operations(&url).await;
    common::drop_postgres_database(&url).await;
}
