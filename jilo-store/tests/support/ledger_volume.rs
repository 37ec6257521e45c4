//! A ledger at volume for the history tests and benchmark: `total` entries written straight
//! into `jilo_ledger` (a tenth of them, every tenth seq, the heavy user's; every user's
//! entries a quarter of each kind: grants, holds, settles, refunds), in one statement per
//! backend. Only the ledger rows are written: the data is for reading pages, not for the
//! balance invariant.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use jilo_core::{Grant, QuotaStore, Timestamp, UserId};
use jilo_store::{Backend, SqlStore};

/// The user one entry in ten belongs to.
pub fn heavy() -> UserId {
    UserId::new("heavy-user")
}

/// Writes `total` entries; returns the heavy user's oldest seq.
pub async fn fill(store: &SqlStore, total: u64) -> i64 {
    store
        .grant(&Grant::signup(heavy(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    // The kind turns with n / 10, so the heavy user (every tenth n) has all four.
    let rows = |n: &str| {
        let k = format!("(({n} / 10) % 4)");
        format!(
            "CASE WHEN {n} % 10 = 0 THEN 'heavy-user' ELSE 'user-' || ({n} % 9973) END, \
             CASE {k} WHEN 0 THEN 'grant' WHEN 1 THEN 'hold' WHEN 2 THEN 'settle' ELSE 'refund' END, \
             CASE WHEN {k} = 0 THEN NULL ELSE 'job-' || {n} END, \
             CASE WHEN {k} = 0 THEN 'key-' || {n} ELSE NULL END, \
             CASE WHEN {k} = 0 THEN 'purchase' ELSE NULL END, \
             1 + {n} % 15, 1800000000000 + {n}"
        )
    };
    let insert =
        "INSERT INTO jilo_ledger (user_id, kind, job_id, grant_key, reason, credits, at_ms)";
    let sql = match store.backend() {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total}) \
             {insert} SELECT {} FROM n",
            rows("i")
        ),
        Backend::Postgres => format!(
            "{insert} SELECT {} FROM generate_series(1, {total}) AS g(i)",
            rows("i")
        ),
    };
    store.execute(&sql, &[]).await.unwrap();
    store.execute("ANALYZE", &[]).await.unwrap();
    store
        .query(
            "SELECT MIN(seq) FROM jilo_ledger WHERE user_id = 'heavy-user' AND kind <> 'grant' \
             OR (user_id = 'heavy-user' AND grant_key LIKE 'key-%')",
            &[],
        )
        .await
        .unwrap()[0]
        .int(0)
        .unwrap()
}
