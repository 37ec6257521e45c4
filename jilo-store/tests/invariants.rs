//! 1,000 concurrent ledger operations on 100 users, with random grants (some expiring), holds,
//! settles, refunds and expiry runs at random times: afterwards every account satisfies
//! `granted = available + held + spent + expired` and matches its lots, holds and ledger rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use jilo_core::testing::{end_hold_at, take_hold};
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
            let op = rng.next() % 12;
            let credits = 1 + (rng.next() % 5) as i64;
            let payment = format!("pay-{run}-{i}");
            // Each operation at its own time within a second; expiring grants lapse within it.
            let t = Timestamp::from_millis((rng.next() % 1_000) as i64);
            let expires = Timestamp::from_millis(1 + (rng.next() % 1_000) as i64);
            let end = Some(Timestamp::from_millis(
                t.as_millis() + (rng.next() % 300) as i64,
            ));
            tokio::spawn(async move {
                match op {
                    0 => {
                        let g = Grant::purchase(user, credits, &payment, at);
                        store.grant(&g).await.map(|_| ())
                    }
                    1 => {
                        let g = Grant::purchase(user, credits, &payment, at).expiring_at(expires);
                        store.grant(&g).await.map(|_| ())
                    }
                    10 => store.expire_credits(t).await.map(|_| ()),
                    _ => {
                        let job = match take_hold(&*store, &user, credits, t, None).await {
                            Ok((job, _)) => job.id,
                            Err(Error::Insufficient { .. }) => return Ok(()),
                            Err(e) => return Err(e),
                        };
                        match op {
                            2..=5 => end_hold_at(&*store, &job, HoldState::Settled, end)
                                .await
                                .map(|_| ()),
                            6..=8 => end_hold_at(&*store, &job, HoldState::Refunded, end)
                                .await
                                .map(|_| ()),
                            _ => Ok(()), // left held
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Everything due by the end expires, once.
    store
        .expire_credits(Timestamp::from_millis(10_000))
        .await
        .unwrap();
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
