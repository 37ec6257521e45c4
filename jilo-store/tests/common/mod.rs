//! Shared helpers of the SQL store tests: fresh databases and the ledger invariant check.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use jilo_store::{SqlRow, SqlStore, SqlStoreOptions, SqlValue, StoreUrl};
use sqlx::{Connection, Executor, PgConnection};

/// The rows of a query through the store's own connections.
pub async fn rows(store: &SqlStore, sql: &str, args: &[SqlValue]) -> Vec<SqlRow> {
    store.query(sql, args).await.unwrap()
}

/// The first column of a query's one row, as an integer that may be null.
pub async fn opt_int(store: &SqlStore, sql: &str, args: &[SqlValue]) -> Option<i64> {
    rows(store, sql, args).await[0].opt_int(0).unwrap()
}

/// The first column of a query's one row, as an integer.
pub async fn int(store: &SqlStore, sql: &str, args: &[SqlValue]) -> i64 {
    opt_int(store, sql, args).await.unwrap()
}

/// A statement run in a write transaction of the store.
pub async fn exec(store: &SqlStore, sql: &str, args: &[SqlValue]) -> u64 {
    store.execute(sql, args).await.unwrap()
}

/// A new SQLite file in the temp directory.
pub fn sqlite_file() -> StoreUrl {
    let dir = std::env::temp_dir().join("jilo-store-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    StoreUrl::SqliteFile(path.to_string_lossy().into_owned())
}

/// The server the Postgres tests create their databases on: `JILO_TEST_POSTGRES_URL`, else
/// the local one.
fn postgres_admin_url() -> String {
    std::env::var("JILO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty Postgres database for one test, or `None` (with the reason printed) when no
/// server answers outside CI. Under `CI=true` an unreachable server fails the test.
pub async fn postgres_database() -> Option<StoreUrl> {
    let admin = postgres_admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and Postgres at {admin} cannot be reached: {e}");
            }
            eprintln!("SKIPPED: Postgres at {admin} cannot be reached ({e}); set JILO_TEST_POSTGRES_URL to run the Postgres tests");
            return None;
        }
    };
    let name = format!("jilo_t_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(StoreUrl::Postgres(format!("{base}/{name}")))
}

/// Drops a test database (best effort).
pub async fn drop_postgres_database(url: &StoreUrl) {
    let StoreUrl::Postgres(u) = url else { return };
    let Some((_, name)) = u.rsplit_once('/') else {
        return;
    };
    if let Ok(mut conn) = PgConnection::connect(&postgres_admin_url()).await {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

pub async fn open(url: &StoreUrl) -> SqlStore {
    let store = SqlStore::connect(url, SqlStoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

/// Sums of a user's lots: granted, available, held, spent, expired.
type LotSums = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Checks every account against the holds, grants, lots and ledger rows behind it:
/// `granted = available + held + spent + expired`, held = open holds, spent = settled holds,
/// granted = grants, each column the sum of the user's lots, expired = expiry and lapse rows,
/// one ledger row per grant and per hold start, and a refunded hold's refund and lapse rows
/// adding up to it. Returns the number of accounts checked.
pub async fn check_ledger(store: &SqlStore) -> usize {
    let accounts: Vec<(String, i64, i64, i64, i64, i64)> = rows(
        store,
        "SELECT user_id, available, held, spent, granted, expired FROM jilo_accounts",
        &[],
    )
    .await
    .iter()
    .map(|r| {
        (
            r.text(0).unwrap(),
            r.int(1).unwrap(),
            r.int(2).unwrap(),
            r.int(3).unwrap(),
            r.int(4).unwrap(),
            r.int(5).unwrap(),
        )
    })
    .collect();
    for (user, available, held, spent, granted, expired) in &accounts {
        assert_eq!(
            *granted,
            available + held + spent + expired,
            "{user}: granted = available + held + spent + expired"
        );
        assert!(
            *available >= 0 && *held >= 0 && *spent >= 0 && *expired >= 0,
            "{user}: nothing negative"
        );
        let sums = &rows(
            store,
            "SELECT CAST(SUM(granted) AS BIGINT), CAST(SUM(available) AS BIGINT), \
                 CAST(SUM(held) AS BIGINT), CAST(SUM(spent) AS BIGINT), \
                 CAST(SUM(expired) AS BIGINT) FROM jilo_credit_lots WHERE user_id = $1",
            &[user.as_str().into()],
        )
        .await[0];
        let lots: LotSums = (
            sums.opt_int(0).unwrap(),
            sums.opt_int(1).unwrap(),
            sums.opt_int(2).unwrap(),
            sums.opt_int(3).unwrap(),
            sums.opt_int(4).unwrap(),
        );
        assert_eq!(
            (
                lots.0.unwrap_or(0),
                lots.1.unwrap_or(0),
                lots.2.unwrap_or(0),
                lots.3.unwrap_or(0),
                lots.4.unwrap_or(0)
            ),
            (*granted, *available, *held, *spent, *expired),
            "{user}: the lots add up to the account"
        );
        let sum = |sql: &'static str| {
            let user = user.clone();
            async move { opt_int(store, sql, &[user.into()]).await.unwrap_or(0) }
        };
        assert_eq!(*held, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_holds WHERE user_id = $1 AND state = 'held'").await, "{user}: held");
        assert_eq!(*spent, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_holds WHERE user_id = $1 AND state = 'settled'").await, "{user}: spent");
        assert_eq!(
            *granted,
            sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_grants WHERE user_id = $1").await,
            "{user}: granted"
        );
        assert_eq!(*granted, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger WHERE user_id = $1 AND kind = 'grant'").await, "{user}: grant rows");
        let holds =
            sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_holds WHERE user_id = $1").await;
        assert_eq!(holds, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger WHERE user_id = $1 AND kind = 'hold'").await, "{user}: hold rows");
        assert_eq!(*spent, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger WHERE user_id = $1 AND kind = 'settle'").await, "{user}: settle rows");
        let refunded = sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_holds WHERE user_id = $1 AND state = 'refunded'").await;
        assert_eq!(refunded, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger WHERE user_id = $1 AND kind IN ('refund', 'lapse')").await, "{user}: refund and lapse rows");
        assert_eq!(*expired, sum("SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger WHERE user_id = $1 AND kind IN ('expire', 'lapse')").await, "{user}: expiry and lapse rows");
    }
    // Each hold has exactly one hold row, and an ended hold exactly one end row.
    let doubled: i64 = int(
        store,
        "SELECT COUNT(*) FROM (SELECT job_id FROM jilo_ledger WHERE kind = 'hold' \
         GROUP BY job_id HAVING COUNT(*) <> 1) d",
        &[],
    )
    .await;
    assert_eq!(doubled, 0, "no hold is recorded twice");
    let unmatched: i64 = int(
        store,
        "SELECT COUNT(*) FROM jilo_holds h WHERE \
         (SELECT COUNT(*) FROM jilo_ledger l WHERE l.job_id = h.job_id AND l.kind = 'hold') <> 1 \
         OR (SELECT COUNT(*) FROM jilo_ledger l WHERE l.job_id = h.job_id AND l.kind = 'settle') \
            <> CASE WHEN h.state = 'settled' THEN 1 ELSE 0 END \
         OR (SELECT COUNT(*) FROM jilo_ledger l WHERE l.job_id = h.job_id AND l.kind = 'refund') \
            > CASE WHEN h.state = 'refunded' THEN 1 ELSE 0 END \
         OR (h.state = 'refunded' AND (SELECT COALESCE(SUM(l.credits), 0) FROM jilo_ledger l \
             WHERE l.job_id = h.job_id AND l.kind IN ('refund', 'lapse')) <> h.credits)",
        &[],
    )
    .await;
    assert_eq!(
        unmatched, 0,
        "every hold has one start and at most one end in the ledger"
    );
    // Every hold is drawn from lots of its own user, its parts adding up to it.
    let unparted: i64 = int(
        store,
        "SELECT COUNT(*) FROM jilo_holds h WHERE h.credits <> \
         (SELECT COALESCE(SUM(p.credits), 0) FROM jilo_hold_parts p WHERE p.job_id = h.job_id) \
         OR EXISTS (SELECT 1 FROM jilo_hold_parts p JOIN jilo_credit_lots c \
             ON c.grant_key = p.lot_key WHERE p.job_id = h.job_id AND c.user_id <> h.user_id)",
        &[],
    )
    .await;
    assert_eq!(
        unparted, 0,
        "each hold's parts add up to it, from its user's lots"
    );
    // A lot holds what its open holds' parts took from it.
    let misheld: i64 = int(
        store,
        "SELECT COUNT(*) FROM jilo_credit_lots c WHERE c.held <> \
         (SELECT COALESCE(SUM(p.credits), 0) FROM jilo_hold_parts p JOIN jilo_holds h \
             ON h.job_id = p.job_id WHERE p.lot_key = c.grant_key AND h.state = 'held')",
        &[],
    )
    .await;
    assert_eq!(misheld, 0, "each lot's held is its open holds' parts");
    accounts.len()
}

/// After an upgrade from [`SCHEMA7_LEDGER`]: each hold, open or ended, is a part of the
/// account's legacy lot.
pub async fn check_upgraded_parts(store: &SqlStore) {
    let parts: Vec<(String, String, i64)> = rows(
        store,
        "SELECT job_id, lot_key, credits FROM jilo_hold_parts ORDER BY job_id",
        &[],
    )
    .await
    .iter()
    .map(|r| (r.text(0).unwrap(), r.text(1).unwrap(), r.int(2).unwrap()))
    .collect();
    assert_eq!(
        parts,
        vec![
            ("done-job".to_owned(), "jilo:legacy:old".to_owned(), 5),
            ("open-job".to_owned(), "jilo:legacy:old".to_owned(), 15)
        ]
    );
}

/// After an upgrade from [`SCHEMA7_LEDGER`]: the open hold (15 credits, a part of the
/// account's legacy lot) ends through the lots, refunded by its job's transition, and the
/// credits go back to that lot.
pub async fn end_the_upgraded_hold(store: &SqlStore) {
    use jilo_core::{HoldState, JobId, QuotaStore, Timestamp, UserId};
    let user = UserId::new("old");
    // The job the schema-7 hold belongs to, as a queued job.
    let mut job = jilo_core::testing::sample_job(&user, 15, Timestamp::from_millis(0));
    job.id = JobId::new("open-job");
    job.version = 1;
    exec(
        store,
        "INSERT INTO jilo_jobs (id, user_id, state, version, provider, provider_request_id, \
         created_ms, deadline_ms, next_check_ms, lease_owner, lease_until_ms, doc) \
         VALUES ($1, $2, 'queued', 1, 'sim', NULL, 0, $3, NULL, NULL, NULL, $4)",
        &[
            job.id.as_str().into(),
            user.as_str().into(),
            job.deadline_at.as_millis().into(),
            serde_json::to_string(&job).unwrap().into(),
        ],
    )
    .await;
    let lot_of = || async {
        let lot = &rows(
            store,
            "SELECT available, held, spent FROM jilo_credit_lots \
             WHERE grant_key = 'jilo:legacy:old'",
            &[],
        )
        .await[0];
        (
            lot.int(0).unwrap(),
            lot.int(1).unwrap(),
            lot.int(2).unwrap(),
        )
    };
    let (before, lot_before) = (store.balance(&user).await.unwrap(), lot_of().await);
    assert_eq!(before.held, 15);
    jilo_core::testing::end_hold(store, &job.id, HoldState::Refunded)
        .await
        .unwrap();
    let b = store.balance(&user).await.unwrap();
    assert_eq!(
        (b.available, b.held, b.spent, b.granted, b.expired),
        (before.available + 15, 0, before.spent, before.granted, 0),
        "the upgraded hold's 15 came back"
    );
    assert_eq!(
        lot_of().await,
        (lot_before.0 + 15, lot_before.1 - 15, lot_before.2),
        "to the legacy lot it was drawn from"
    );
    check_ledger(store).await;
}

/// A schema-7 ledger (before credit lots) for the upgrade tests: an account of 100 granted,
/// 5 spent by a settled hold and 15 under an open one.
pub const SCHEMA7_LEDGER: &str = "
    CREATE TABLE jilo_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL);
    INSERT INTO jilo_schema VALUES (7, 'ledger_pages', 0);
    INSERT INTO jilo_accounts (user_id, available, held, spent, granted) VALUES ('old', 80, 15, 5, 100);
    INSERT INTO jilo_grants (grant_key, user_id, credits, reason, at_ms) VALUES ('signup:old', 'old', 100, 'signup', 0);
    INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms) VALUES ('open-job', 'old', 15, 'held', 0, 0);
    INSERT INTO jilo_holds (job_id, user_id, credits, state, utc_day, created_ms, ended_ms) VALUES ('done-job', 'old', 5, 'settled', 0, 0, 1);
    INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms) VALUES
      ('old', 'grant', NULL, 'signup:old', 'signup', 100, 0),
      ('old', 'hold', 'done-job', NULL, NULL, 5, 0),
      ('old', 'settle', 'done-job', NULL, NULL, 5, 1),
      ('old', 'hold', 'open-job', NULL, NULL, 15, 0);";

/// An applied migration edited since is refused by name; a schema table kept by a build that
/// had no checksums is adopted.
pub async fn edited_migrations_are_refused(url: &StoreUrl) {
    let store = SqlStore::connect(url, SqlStoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let checksums = || async {
        rows(
            &store,
            "SELECT checksum FROM jilo_schema ORDER BY version",
            &[],
        )
        .await
        .iter()
        .map(|r| r.opt_text(0).unwrap())
        .collect::<Vec<_>>()
    };
    let kept = checksums().await;
    assert!(
        kept.iter()
            .all(|c| c.as_ref().is_some_and(|c| c.len() == 64)),
        "{kept:?}"
    );
    // A build that kept no checksum: adopted, then checked from then on.
    exec(&store, "UPDATE jilo_schema SET checksum = NULL", &[]).await;
    store.migrate().await.unwrap();
    let adopted = checksums().await;
    assert_eq!(adopted, kept);
    // Migration 3 applied here is not this build's any more.
    exec(
        &store,
        "UPDATE jilo_schema SET checksum = 'edited' WHERE version = 3",
        &[],
    )
    .await;
    match store.migrate().await {
        Err(jilo_core::Error::Storage {
            reason,
            retryable: false,
            ..
        }) => {
            assert!(
                reason.contains("migration 3 (alerts_and_cooling)"),
                "{reason}"
            );
            assert!(reason.contains("edited"), "{reason}");
        }
        other => panic!("expected the edited migration to be refused, got {other:?}"),
    }
    store.close().await;
}
