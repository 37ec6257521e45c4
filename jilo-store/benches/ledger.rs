//! Reserve + settle per second on each backend at 1 and 32 concurrent callers, beside the
//! same SQL run raw through sqlx's typed drivers in the same run: the floor jilo can't beat.
//!
//! `cargo bench -p jilo-store --features sqlite,postgres --bench ledger`
//! (Postgres: `JILO_TEST_POSTGRES_URL`, else the local server; skipped when unreachable.)
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jilo_core::{Grant, JobId, QuotaStore, Reservation, Timestamp, UserId};
use jilo_store::{SqlStore, SqlStoreOptions, StoreUrl};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Executor, PgConnection, Pool};

const RUN_FOR: Duration = Duration::from_secs(2);

/// Runs `op(caller, i)` from `callers` tasks for [`RUN_FOR`]; returns operations per second.
async fn measure<F, Fut>(callers: usize, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while start.elapsed() < RUN_FOR {
                    op(c, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn jilo_run(store: Arc<SqlStore>, callers: usize) -> f64 {
    let at = Timestamp::from_millis(0);
    let run = uuid::Uuid::new_v4().simple().to_string();
    for c in 0..callers {
        let user = UserId::new(format!("bench-{run}-{c}"));
        store
            .grant(&Grant::signup(user, i64::MAX / 4, at))
            .await
            .unwrap();
    }
    measure(callers, move |c, _| {
        let store = store.clone();
        let user = UserId::new(format!("bench-{run}-{c}"));
        async move {
            let job = JobId::random();
            let r = Reservation {
                user,
                job: job.clone(),
                credits: 1,
                at,
                daily_cap: None,
            };
            store.reserve(&r).await.unwrap();
            store.settle(&job, at).await.unwrap();
        }
    })
    .await
}

/// The same statements jilo runs for a reserve and a settle, on a typed pool.
macro_rules! raw_run {
    ($pool:expr, $callers:expr, $begin:expr) => {{
        let pool = $pool;
        let run = uuid::Uuid::new_v4().simple().to_string();
        for c in 0..$callers {
            sqlx::query("INSERT INTO jilo_accounts (user_id, available, held, spent, granted) VALUES ($1, $2, 0, 0, $2)")
                .bind(format!("raw-{run}-{c}"))
                .bind(i64::MAX / 4)
                .execute(&pool)
                .await
                .unwrap();
        }
        measure($callers, move |c, _| {
            let pool = pool.clone();
            let user = format!("raw-{run}-{c}");
            async move {
                let job = JobId::random().to_string();
                let mut tx = pool.begin_with($begin).await.unwrap();
                let n = sqlx::query("UPDATE jilo_accounts SET available = available - $2, held = held + $2 WHERE user_id = $1 AND available >= $2")
                    .bind(&user).bind(1_i64).execute(&mut *tx).await.unwrap().rows_affected();
                assert_eq!(n, 1);
                sqlx::query("INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms) VALUES ($1, $2, $3, 'held', 0, 0)")
                    .bind(&job).bind(&user).bind(1_i64).execute(&mut *tx).await.unwrap();
                sqlx::query("INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) VALUES ($1, 'hold', $2, NULL, NULL, $3, 0)")
                    .bind(&user).bind(&job).bind(1_i64).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                let mut tx = pool.begin_with($begin).await.unwrap();
                let (u, credits): (String, i64) = sqlx::query_as("UPDATE jilo_holds SET state = 'settled', ended_ms = 0 WHERE job_id = $1 AND state = 'held' RETURNING user_id, credits")
                    .bind(&job).fetch_one(&mut *tx).await.unwrap();
                sqlx::query("UPDATE jilo_accounts SET held = held - $2, spent = spent + $2 WHERE user_id = $1")
                    .bind(&u).bind(credits).execute(&mut *tx).await.unwrap();
                sqlx::query("INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) VALUES ($1, 'settle', $2, NULL, NULL, $3, 0)")
                    .bind(&u).bind(&job).bind(credits).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
        })
        .await
    }};
}

fn row(backend: &str, callers: usize, jilo: f64, raw: f64) {
    println!(
        "| {backend:<8} | {callers:>7} | {jilo:>12.0} | {raw:>12.0} | {:>6.1}% |",
        100.0 * jilo / raw
    );
}

async fn sqlite(callers: usize) {
    let dir = std::env::temp_dir().join("jilo-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    let url = StoreUrl::SqliteFile(path.to_string_lossy().into_owned());
    let store = Arc::new(
        SqlStore::connect(&url, SqlStoreOptions::default())
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .busy_timeout(Duration::from_secs(30))
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let pool: Pool<sqlx::Sqlite> = SqlitePoolOptions::new()
        .max_connections(16)
        .connect_with(options)
        .await
        .unwrap();
    // Alternate the two, twice, and keep each one's best, so neither gains from going second.
    let mut best = (0.0f64, 0.0f64);
    for _ in 0..2 {
        best.1 = best
            .1
            .max(raw_run!(pool.clone(), callers, "BEGIN IMMEDIATE"));
        best.0 = best.0.max(jilo_run(store.clone(), callers).await);
    }
    row("sqlite", callers, best.0, best.1);
    store.close().await;
    let _ = std::fs::remove_file(&path);
}

async fn postgres(callers: usize) -> bool {
    let admin = std::env::var("JILO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let Ok(mut conn) = PgConnection::connect(&admin).await else {
        println!("| postgres | skipped: {admin} unreachable |");
        return false;
    };
    let name = format!("jilo_bench_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{name}");
    let store = Arc::new(
        SqlStore::connect(&StoreUrl::Postgres(url.clone()), SqlStoreOptions::default())
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let jilo = jilo_run(store.clone(), callers).await;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .unwrap();
    let raw = raw_run!(pool.clone(), callers, "BEGIN");
    row("postgres", callers, jilo, raw);
    store.close().await;
    pool.close().await;
    let _ = conn
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await;
    true
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "reserve + settle per second, {}s per cell",
            RUN_FOR.as_secs()
        );
        println!("| backend  | callers |   jilo ops/s |    raw ops/s | of raw  |");
        println!("|----------|---------|--------------|--------------|---------|");
        for callers in [1, 32] {
            sqlite(callers).await;
        }
        for callers in [1, 32] {
            if !postgres(callers).await {
                break;
            }
        }
    });
}
