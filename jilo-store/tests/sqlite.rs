//! The SQLite store: conformance suites on a file and in memory, migrations, a busy database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use jilo_core::testing::{end_hold, take_hold};
use jilo_core::testing::{job_store_suite, quota_store_suite, StoreCapabilities};
use jilo_core::{Error, Grant, HoldState, QuotaStore, Timestamp, UserId};
use jilo_store::{SqlStore, SqlStoreOptions, SqlValue, StoreUrl};

#[tokio::test]
async fn sqlite_file_passes_the_conformance_suites() {
    let url = common::sqlite_file();
    let store = common::open(&url).await;
    quota_store_suite(&store).await;
    job_store_suite(&store).await;
    jilo_core::testing::alert_store_suite(&store).await;
    jilo_core::testing::trend_cache_suite(&store).await;
    jilo_core::testing::channel_store_suite(&store).await;
    jilo_core::testing::publication_store_suite(&store).await;
    assert!(common::check_ledger(&store).await > 0);
}

#[tokio::test]
async fn sqlite_memory_passes_the_conformance_suites() {
    let store = common::open(&StoreUrl::SqliteMemory).await;
    quota_store_suite(&store).await;
    job_store_suite(&store).await;
    jilo_core::testing::alert_store_suite(&store).await;
    jilo_core::testing::trend_cache_suite(&store).await;
    jilo_core::testing::channel_store_suite(&store).await;
    jilo_core::testing::publication_store_suite(&store).await;
    jilo_core::testing::credit_lots_suite(&store, StoreCapabilities::ALL).await;
    common::check_ledger(&store).await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let url = common::sqlite_file();
    let store = SqlStore::connect(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.migrate().await.unwrap(), store.schema_version());
    assert_eq!(store.migrate().await.unwrap(), store.schema_version());
    store
        .execute(
            "INSERT INTO jilo_schema (version, name, applied_ms) VALUES (99, 'future', 0)",
            &[],
        )
        .await
        .unwrap();
    let reopened = SqlStore::connect(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    match reopened.migrate().await {
        Err(Error::Storage {
            reason,
            retryable: false,
            ..
        }) => {
            assert!(reason.contains("version 99"), "{reason}");
            assert!(reason.contains("upgrade jilo"), "{reason}");
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_build_without_the_backend_or_a_bad_url_is_a_clear_error() {
    assert!(matches!(
        StoreUrl::parse("redis://localhost"),
        Err(Error::InvalidInput { .. })
    ));
    let missing = StoreUrl::SqliteFile("/nonexistent-dir/deeper/jilo.db".into());
    match SqlStore::connect(&missing, SqlStoreOptions::default()).await {
        Err(Error::Storage { .. }) => {}
        other => panic!("an unopenable file must be a storage error, got {other:?}"),
    }
}

/// Many writers on one file, with a pool of 8 connections: every call waits its turn; none
/// sees `database is locked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_database_is_waited_on() {
    let url = common::sqlite_file();
    let store = Arc::new(
        SqlStore::connect(
            &url,
            SqlStoreOptions {
                max_connections: 8,
                ..SqlStoreOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    store.migrate().await.unwrap();
    let at = Timestamp::from_millis(0);
    let users: Vec<UserId> = (0..8).map(|i| UserId::new(format!("busy-{i}"))).collect();
    for u in &users {
        store
            .grant(&Grant::signup(u.clone(), 1_000, at))
            .await
            .unwrap();
    }
    // A second store on the same file is another set of writers.
    let other = Arc::new(common::open(&url).await);
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let s = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            let user = users[i % users.len()].clone();
            tokio::spawn(async move {
                let (job, _) = take_hold(&*s, &user, 1, at, None).await?;
                let to = if i % 3 == 0 {
                    HoldState::Refunded
                } else {
                    HoldState::Settled
                };
                end_hold(&*s, &job.id, to).await?;
                Ok::<_, Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(common::check_ledger(&store).await, 8);
    let total: i64 = {
        let mut sum = 0;
        for u in &users {
            let b = store.balance(u).await.unwrap();
            sum += b.spent;
        }
        sum
    };
    assert_eq!(total, (0..400).filter(|i| i % 3 != 0).count() as i64);
}

/// A database that cannot be reached is a storage error that never shows the password.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn connection_errors_never_show_the_password() {
    let url = StoreUrl::parse("postgres://jilo:hunter2-secret@127.0.0.1:1/jilo").unwrap();
    let options = SqlStoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..SqlStoreOptions::default()
    };
    let err = SqlStore::connect(&url, options).await.unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A database at schema 1 is upgraded in place: requests of existing jobs stay findable.
#[tokio::test]
async fn upgrading_from_schema_1_keeps_jobs_findable_by_request() {
    let url = common::sqlite_file();
    let store = SqlStore::connect(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    store
        .execute_script(include_str!(
            "../migrations/sqlite/0001_ledger_and_jobs.sql"
        ))
        .await
        .unwrap();
    store
        .execute_script(
            "CREATE TABLE jilo_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL);
             INSERT INTO jilo_schema VALUES (1, 'ledger_and_jobs', 0);",
        )
        .await
        .unwrap();
    let mut job = jilo_core::testing::sample_job(&UserId::new("old"), 5, Timestamp::from_millis(0));
    job.version = 1;
    job.provider_request_id = Some("old-request".into());
    store.execute("INSERT INTO jilo_jobs (id, user_id, state, version, provider, provider_request_id, \
         created_ms, deadline_ms, doc) VALUES ($1, 'old', 'submitted', 1, 'sim', 'old-request', 0, 0, $2)", &[SqlValue::from(job.id.as_str()), SqlValue::from(serde_json::to_string(&job).unwrap())]).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), store.schema_version());
    let found = jilo_core::JobStore::job_by_provider_request(&store, &"sim".into(), "old-request")
        .await
        .unwrap();
    assert_eq!(found.map(|j| j.id), Some(job.id));
}

/// A job document exactly as the previous release wrote it (schema 2, before attempts were
/// tracked as pending submits) still reads, every field in place and new ones defaulted.
#[tokio::test]
async fn a_job_written_by_the_previous_release_still_reads() {
    let store = common::open(&common::sqlite_file()).await;
    let doc = include_str!("fixtures/job_schema2.json");
    store
        .execute(
            "INSERT INTO jilo_jobs (id, user_id, state, version, provider, provider_request_id, \
         created_ms, deadline_ms, next_check_ms, doc) \
         VALUES ('5b0f3c4e-8a51-4d0b-9a39-1f6f1d2c7e10', 'fixture-user', 'running', 4, 'fal', \
                 '019d61ac-62e0-7893-bea6-336a1659511f', 1796000000000, 1796000900000, \
                 1796000090000, $1)",
            &[SqlValue::from(doc)],
        )
        .await
        .unwrap();
    let job = jilo_core::JobStore::job(&store, &"5b0f3c4e-8a51-4d0b-9a39-1f6f1d2c7e10".into())
        .await
        .unwrap();
    assert_eq!(job.state, jilo_core::JobState::Running);
    assert_eq!(job.version, 4);
    assert_eq!(job.route, vec!["fal".into(), "suchuang".into()]);
    assert_eq!(job.request.style.style.as_deref(), Some("cinematic"));
    assert_eq!(
        job.provider_request_id.as_deref(),
        Some("019d61ac-62e0-7893-bea6-336a1659511f")
    );
    assert_eq!((job.progress, job.attempts, job.webhook), (40, 1, true));
    assert_eq!(
        job.pending_submit, None,
        "a field added since reads as its default"
    );
    assert_eq!(job.deadline_at, Timestamp::from_millis(1796000900000));
}

/// The URL's SQLite parameters reach SQLite: `mode=ro` opens the file read-only.
#[tokio::test]
async fn sqlite_url_parameters_are_passed_on() {
    let url = common::sqlite_file();
    let store = common::open(&url).await;
    store
        .grant(&Grant::signup("rw".into(), 5, Timestamp::from_millis(0)))
        .await
        .unwrap();
    store.close().await;
    let StoreUrl::SqliteFile(path) = &url else {
        unreachable!()
    };
    let read_only = StoreUrl::parse(&format!("sqlite://{path}?mode=ro")).unwrap();
    let ro = jilo_store::SqlStore::connect(&read_only, jilo_store::SqlStoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        ro.balance(&"rw".into()).await.unwrap().available,
        5,
        "reads work"
    );
    match ro
        .grant(&Grant::signup("other".into(), 5, Timestamp::from_millis(0)))
        .await
    {
        Err(e) => assert_eq!(e.kind(), jilo_core::ErrorKind::Storage, "{e}"),
        Ok(o) => panic!("a read-only database took a write: {o:?}"),
    }
}

/// Callers that give up mid-write (their futures dropped) leave the file consistent: each
/// transaction they sent either committed whole or not at all, and later writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_dropped_mid_write_leave_the_store_consistent() {
    let store = Arc::new(common::open(&common::sqlite_file()).await);
    let user = UserId::new("quitter");
    let at = Timestamp::from_millis(0);
    store
        .grant(&Grant::signup(user.clone(), 1_000, at))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { take_hold(&*store, &user, 1, at, None).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        if i % 2 == 0 {
            t.abort();
        } else {
            t.await.unwrap().unwrap();
        }
    }
    // Every job written has its hold and its ledger row; later writes work.
    let (job, _) = take_hold(&*store, &user, 1, at, None).await.unwrap();
    end_hold(&*store, &job.id, HoldState::Settled)
        .await
        .unwrap();
    let b = store.balance(&user).await.unwrap();
    assert!(b.is_consistent(), "{b:?}");
    let jobs = jilo_core::JobStore::jobs_for_user(&*store, &user, 100)
        .await
        .unwrap();
    assert_eq!(
        b.held + b.spent,
        jobs.len() as i64,
        "one credit per job written"
    );
    assert!(common::check_ledger(&store).await > 0);
}

/// Credit lots on SQLite: the shared lot suite on a file, then the ledger checked whole.
#[tokio::test]
async fn sqlite_passes_the_credit_lots_suite() {
    let store = common::open(&common::sqlite_file()).await;
    jilo_core::testing::credit_lots_suite(&store, StoreCapabilities::ALL).await;
    assert!(common::check_ledger(&store).await > 0);
}

/// An account with an open hold and a settled one, written before credit lots (schema 7),
/// upgrades: one lasting lot per account with the open hold as its part, the account counts
/// expired, the hold ends afterwards through the lots, and the ledger adds up.
#[tokio::test]
async fn upgrading_to_credit_lots_keeps_accounts_and_open_holds() {
    let url = common::sqlite_file();
    let store = SqlStore::connect(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    for sql in [
        include_str!("../migrations/sqlite/0001_ledger_and_jobs.sql"),
        include_str!("../migrations/sqlite/0002_job_requests.sql"),
        include_str!("../migrations/sqlite/0003_alerts_and_cooling.sql"),
        include_str!("../migrations/sqlite/0004_trend_cache.sql"),
        include_str!("../migrations/sqlite/0005_jobs_by_creation.sql"),
        include_str!("../migrations/sqlite/0006_publishing.sql"),
        include_str!("../migrations/sqlite/0007_ledger_pages.sql"),
    ] {
        store.execute_script(sql).await.unwrap();
    }
    store.execute_script(common::SCHEMA7_LEDGER).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), store.schema_version());
    let user = UserId::new("old");
    let b = store.balance(&user).await.unwrap();
    assert_eq!(
        (b.available, b.held, b.spent, b.granted, b.expired),
        (80, 15, 5, 100, 0)
    );
    let lots: Vec<(String, i64, i64, i64)> = common::rows(
        &store,
        "SELECT grant_key, available, held, spent FROM jilo_credit_lots WHERE user_id = 'old'",
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
        )
    })
    .collect();
    assert_eq!(lots, vec![("jilo:legacy:old".to_owned(), 80, 15, 5)]);
    common::check_upgraded_parts(&store).await;
    common::check_ledger(&store).await;
    // The ledger kept its order and goes on after it.
    let page = store
        .history_page(&user, &jilo_core::HistoryQuery::newest(10))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 4);
    assert!(page.entries.windows(2).all(|w| w[0].seq > w[1].seq));
    store
        .grant(&Grant::purchase(
            user.clone(),
            10,
            "after-upgrade",
            Timestamp::from_millis(5),
        ))
        .await
        .unwrap();
    let newest = store
        .history_page(&user, &jilo_core::HistoryQuery::newest(1))
        .await
        .unwrap();
    assert!(
        newest.entries[0].seq > page.entries[0].seq,
        "new entries follow the old"
    );
    // The holds still refer to the accounts, by name, with their indexes.
    let holds_sql = common::rows(
        &store,
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jilo_holds'",
        &[],
    )
    .await[0]
        .text(0)
        .unwrap();
    assert!(holds_sql.contains("jilo_accounts"), "{holds_sql}");
    assert!(!holds_sql.contains("_v8"), "{holds_sql}");
    let indexes = common::int(
        &store,
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN \
         ('jilo_holds_day', 'jilo_holds_user', 'jilo_ledger_user', 'jilo_ledger_user_kind')",
        &[],
    )
    .await;
    assert_eq!(indexes, 4);
    let broken = common::rows(
        &store,
        "SELECT \"table\" FROM pragma_foreign_key_check",
        &[],
    )
    .await;
    assert!(broken.is_empty(), "{broken:?}");
    common::end_the_upgraded_hold(&store).await;
}

#[tokio::test]
async fn an_applied_migration_edited_since_is_refused() {
    common::edited_migrations_are_refused(&common::sqlite_file()).await;
}
