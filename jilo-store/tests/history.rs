//! History pages at volume: 100,000 entries of one user among 1,000,000, on SQLite and
//! Postgres. The first page, the last page and a page filtered by kind are read in the right
//! order, and the database's plan for each is an index search, never a scan of the ledger.
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
    for (name, query) in [("first", &first), ("last", &last), ("grants", &grants)] {
        let plan = store.history_plan(&user, query).await.unwrap();
        println!("{:?} plan of the {name} page:\n{plan}", store.backend());
        match store.backend() {
            Backend::Sqlite => {
                assert!(
                    plan.contains("SEARCH jilo_ledger USING INDEX jilo_ledger_user"),
                    "{name} page: {plan}"
                );
                assert!(
                    !plan.contains("SCAN jilo_ledger"),
                    "{name} page scans: {plan}"
                );
                assert!(!plan.contains("TEMP B-TREE"), "{name} page sorts: {plan}");
            }
            Backend::Postgres => {
                assert!(plan.contains("Index"), "{name} page: {plan}");
                assert!(!plan.contains("Seq Scan"), "{name} page scans: {plan}");
                assert!(!plan.contains("Sort"), "{name} page sorts: {plan}");
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
