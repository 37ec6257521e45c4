//! A usage page over years of entries: 100,000 ledger entries of one user among 1,000,000,
//! the newest page and the oldest page (50 entries, by cursor) read through
//! `QuotaStore::history_page`, beside the same statement run bare through sqlx's typed
//! driver on the same database (the floor: a bare client, no mapping into entries), on SQLite and Postgres, median of 200 reads each.
//!
//! `cargo bench -p jilo-store --features sqlite,postgres --bench history`
//! (Postgres: `JILO_TEST_POSTGRES_URL`, else the local server; skipped when unreachable.)
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/ledger_volume.rs"]
mod volume;

use std::time::{Duration, Instant};

use jilo_core::{HistoryCursor, HistoryQuery, QuotaStore};
use jilo_store::{SqlStore, SqlStoreOptions, StoreUrl};
use sqlx::{Connection, Executor, PgConnection, PgPool, SqlitePool};

/// The bare client the store is measured against.
enum Floor {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Floor {
    async fn page(&self, sql: &str, user: &str, before: i64, limit: i64) -> usize {
        let rows: Vec<Row> = match self {
            Floor::Sqlite(pool) => {
                sqlx::query_as(sql)
                    .bind(user)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
            Floor::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(user)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
        }
        .unwrap();
        rows.len()
    }
}

const TOTAL: u64 = 1_000_000;

type Row = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);
const READS: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn measure(store: &SqlStore, floor: &Floor, label: &str) {
    let started = Instant::now();
    let oldest = volume::fill(store, TOTAL).await;
    let filled = started.elapsed();
    let user = volume::heavy();
    let bare = "SELECT seq, kind, job_id, grant_key, reason, credits, at_ms FROM jilo_ledger \
                WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";
    for (page, query) in [
        ("newest page", HistoryQuery::newest(50)),
        (
            "oldest page",
            HistoryQuery::newest(50).after(HistoryCursor::before_seq(oldest + 500)),
        ),
    ] {
        let before = query.before.map_or(i64::MAX, |c| c.seq());
        let (mut ours, mut floors) = (Vec::new(), Vec::new());
        for _ in 0..READS {
            let t = Instant::now();
            let got = store.history_page(&user, &query).await.unwrap();
            ours.push(t.elapsed());
            assert!(!got.entries.is_empty());
            let t = Instant::now();
            let rows = floor.page(bare, user.as_str(), before, 51).await;
            floors.push(t.elapsed());
            assert!(rows > 0);
        }
        println!(
            "| {label} | {page} | {:>8.0} µs | {:>8.0} µs |",
            median(ours).as_secs_f64() * 1e6,
            median(floors).as_secs_f64() * 1e6
        );
    }
    println!(
        "| {label} | (filling 1,000,000 entries took {:.1} s) | | |",
        filled.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("history pages of 50 for one user with 100,000 of 1,000,000 entries (median of {READS}):");
        println!("| store | page | history_page | bare statement (sqlx) |");
        println!("|---|---|---|---|");
        let dir = std::env::temp_dir().join("jilo-bench");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
        let url = StoreUrl::SqliteFile(path.to_string_lossy().into_owned());
        let store = SqlStore::connect(&url, SqlStoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let floor = Floor::Sqlite(
            SqlitePool::connect(&format!("sqlite://{}", path.to_string_lossy()))
                .await
                .unwrap(),
        );
        measure(&store, &floor, "sqlite").await;
        store.close().await;
        let _ = std::fs::remove_file(&path);

        let admin = std::env::var("JILO_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let Ok(mut conn) = PgConnection::connect(&admin).await else {
            println!("| postgres | skipped: {admin} unreachable | | |");
            return;
        };
        let name = format!("jilo_bench_{}", uuid::Uuid::new_v4().simple());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let store = SqlStore::connect(
            &StoreUrl::Postgres(format!("{base}/{name}")),
            SqlStoreOptions::default(),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let floor = Floor::Postgres(store.postgres_pool().unwrap().clone());
        measure(&store, &floor, "postgres").await;
        store.close().await;
        let _ = conn
            .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await;
    });
}
