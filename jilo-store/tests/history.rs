//! History pages at volume: 100,000 entries of one user among 1,000,000, on SQLite and
//! Postgres. The first page, the last page, a page of one kind and a page of two kinds are
//! read in the right order, and the database's plan for each walks one of the user's indexes
//! (never a scan of the ledger, nor a walk of every user's entries by seq, nor a sort of the
//! user's entries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/ledger_volume.rs"]
mod volume;

use jilo_core::{EntryKind, HistoryCursor, HistoryQuery, QuotaStore};
use jilo_store::{Backend, SqlStore};

const TOTAL: u64 = 1_000_000;

async fn pages_read_by_index(store: &SqlStore) {
    let oldest = volume::fill(store, TOTAL).await;
    let user = volume::heavy();
    let first = HistoryQuery::newest(50);
    let last = HistoryQuery::newest(50).after(HistoryCursor::before_seq(oldest + 300));
    let grants = HistoryQuery::newest(50).of_kinds([EntryKind::Grant]);
    let ends = HistoryQuery::newest(50).of_kinds([EntryKind::Settle, EntryKind::Refund]);
    let old_ends = ends
        .clone()
        .after(HistoryCursor::before_seq(oldest + 3_000));
    for (name, query) in [
        ("first", &first),
        ("last", &last),
        ("grants", &grants),
        ("settles and refunds", &ends),
        ("old settles and refunds", &old_ends),
    ] {
        let plan = store.history_plan(&user, query).await.unwrap();
        println!("{:?} plan of the {name} page:\n{plan}", store.backend());
        let merged = query.kinds.len() > 1;
        match store.backend() {
            Backend::Sqlite => {
                let reads: Vec<&str> = plan.lines().filter(|l| l.contains("jilo_ledger")).collect();
                assert!(!reads.is_empty(), "{name} page: {plan}");
                assert!(
                    reads
                        .iter()
                        .all(|l| l.contains("SEARCH jilo_ledger USING INDEX jilo_ledger_user")),
                    "{name} page: every read of the ledger searches the user's index: {plan}"
                );
                if merged {
                    assert_eq!(reads.len(), query.kinds.len(), "one walk per kind: {plan}");
                    assert!(
                        reads.iter().all(|l| l.contains("jilo_ledger_user_kind")),
                        "{plan}"
                    );
                } else {
                    // One walk, in seq order: nothing to sort.
                    assert!(!plan.contains("TEMP B-TREE"), "{name} page sorts: {plan}");
                }
            }
            Backend::Postgres => {
                assert!(!plan.contains("Seq Scan"), "{name} page scans: {plan}");
                assert!(plan.contains("Index"), "{name} page: {plan}");
                if merged {
                    // The kinds' walks merge in seq order, each stopping at a page.
                    assert!(plan.contains("Merge Append"), "{name} page: {plan}");
                    assert!(
                        !plan.lines().any(|l| l
                            .trim_start()
                            .trim_start_matches("->  ")
                            .starts_with("Sort  (")),
                        "{name} page sorts: {plan}"
                    );
                } else {
                    assert!(!plan.contains("Sort"), "{name} page sorts: {plan}");
                }
            }
        }
    }
    // A user with few entries among the million: read through the user's index (on Postgres
    // the heavy user's pages may walk the primary key backwards, each row a tenth likely
    // theirs; a sparse user's never).
    let sparse = jilo_core::UserId::new("user-17");
    let plan = store.history_plan(&sparse, &first).await.unwrap();
    println!(
        "{:?} plan of a sparse user's first page:\n{plan}",
        store.backend()
    );
    match store.backend() {
        Backend::Sqlite => assert!(plan.contains("USING INDEX jilo_ledger_user "), "{plan}"),
        Backend::Postgres => assert!(
            plan.contains("Index Cond: ((user_id = 'user-17'::text)"),
            "{plan}"
        ),
    }
    // A statement's spending this period reads the user's settles since the period began,
    // by index (the statement's own query).
    let spent_sql = "SELECT CAST(SUM(credits) AS BIGINT) FROM jilo_ledger \
                     WHERE user_id = 'heavy-user' AND kind = 'settle' AND at_ms >= 1800000990000";
    let explain = match store.backend() {
        Backend::Sqlite => format!("EXPLAIN QUERY PLAN {spent_sql}"),
        Backend::Postgres => format!("EXPLAIN {spent_sql}"),
    };
    let detail = match store.backend() {
        Backend::Sqlite => 3,
        Backend::Postgres => 0,
    };
    let plan: Vec<String> = store
        .query(&explain, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(detail).unwrap())
        .collect();
    let plan = plan.join("\n");
    println!(
        "{:?} plan of a statement's spending:\n{plan}",
        store.backend()
    );
    assert!(plan.contains("jilo_ledger_settled_at"), "{plan}");
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("SCAN jilo_ledger"),
        "{plan}"
    );
    // A user id with quotes and backslashes is a value, never SQL.
    let odd = jilo_core::UserId::new("o'brien\\' OR 1=1 --");
    let plan = store.history_plan(&odd, &first).await.unwrap();
    assert!(!plan.is_empty());
    let page = store.history_page(&user, &first).await.unwrap();
    assert_eq!(page.entries.len(), 50);
    assert!(page.entries.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(page.entries.iter().all(|e| e.user == user));
    assert!(page.next.is_some());
    let tail = store.history_page(&user, &last).await.unwrap();
    assert!(!tail.entries.is_empty() && tail.entries.len() <= 50);
    assert!(tail
        .entries
        .iter()
        .all(|e| e.seq < oldest + 300 && e.user == user));
    let only = store.history_page(&user, &grants).await.unwrap();
    assert!(only.entries.iter().all(|e| e.kind.as_str() == "grant"));
    assert_eq!(only.entries.len(), 50);
    // Two kinds merge into one page, newest first, and page on by cursor without a gap.
    let both = store.history_page(&user, &ends).await.unwrap();
    assert_eq!(both.entries.len(), 50);
    assert!(both.entries.windows(2).all(|w| w[0].seq > w[1].seq));
    let kinds: std::collections::BTreeSet<&str> =
        both.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["refund", "settle"].into_iter().collect());
    let next = store
        .history_page(&user, &ends.clone().after(both.next.unwrap()))
        .await
        .unwrap();
    let expected: Vec<i64> = store
        .query(
            "SELECT seq FROM jilo_ledger WHERE user_id = 'heavy-user' \
             AND kind IN ('settle', 'refund') ORDER BY seq DESC LIMIT 100",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.int(0).unwrap())
        .collect();
    let got: Vec<i64> = both
        .entries
        .iter()
        .chain(&next.entries)
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        got, expected,
        "two pages of two kinds, as the ledger has them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_history_pages_are_read_by_index() {
    let store = common::open(&common::sqlite_file()).await;
    pages_read_by_index(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_history_pages_are_read_by_index() {
    let Some(url) = common::postgres_database().await else {
        return;
    };
    let store = common::open(&url).await;
    pages_read_by_index(&store).await;
    store.close().await;
    common::drop_postgres_database(&url).await;
}
