//! A database that cannot be used fails fast with its cause: a read-only, corrupt or
//! unreachable SQLite file is refused at once, not retried, with its path in the message; an
//! unreachable Postgres answers within the configured connect time-out, naming the cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use jilo_core::{Error, ErrorKind};
use jilo_store::{SqlStore, SqlStoreOptions, StoreUrl};

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("jilo-store-open-failures");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", uuid::Uuid::new_v4().simple()))
}

fn quick() -> SqlStoreOptions {
    SqlStoreOptions {
        connect_timeout: Duration::from_secs(2),
        ..SqlStoreOptions::default()
    }
}

async fn open(url: &StoreUrl) -> Result<SqlStore, Error> {
    let store = SqlStore::connect(url, quick()).await?;
    store.migrate().await?;
    Ok(store)
}

fn expect_permanent(result: Result<SqlStore, Error>, path: &str, cause: &str) {
    match result {
        Err(e @ Error::Storage { retryable, .. }) => {
            let text = e.to_string();
            assert!(!retryable, "{cause} is not worth retrying: {text}");
            assert!(text.contains(path), "the message names the file: {text}");
            assert!(text.contains(cause), "the message says why: {text}");
        }
        other => panic!("expected a storage error ({cause}), got {other:?}"),
    }
}

#[tokio::test]
async fn an_unusable_sqlite_file_is_refused_at_once_with_its_cause() {
    // Read-only: the schema cannot be written.
    let ro = temp_path("ro.db");
    std::fs::write(&ro, b"").unwrap();
    let ro_path = ro.to_string_lossy().into_owned();
    let url = StoreUrl::parse(&format!("sqlite://{ro_path}?mode=ro")).unwrap();
    expect_permanent(open(&url).await, &ro_path, "read-only");

    // Corrupt: not a database at all.
    let corrupt = temp_path("corrupt.db");
    std::fs::write(&corrupt, vec![0x5Au8; 8192]).unwrap();
    let corrupt_path = corrupt.to_string_lossy().into_owned();
    let url = StoreUrl::parse(&format!("sqlite://{corrupt_path}")).unwrap();
    expect_permanent(open(&url).await, &corrupt_path, "not a database");

    // A directory that does not exist.
    let missing = temp_path("no-such-dir").join("jilo.db");
    let missing_path = missing.to_string_lossy().into_owned();
    let url = StoreUrl::parse(&format!("sqlite://{missing_path}")).unwrap();
    expect_permanent(open(&url).await, &missing_path, "cannot be opened");
}

#[tokio::test]
async fn an_unreachable_postgres_answers_within_the_connect_time_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = StoreUrl::parse(&format!("postgres://jilo:s3cret@127.0.0.1:{port}/jilo")).unwrap();
    let started = Instant::now();
    let result = open(&url).await;
    let took = started.elapsed();
    match result {
        Err(e @ Error::Storage { .. }) => {
            let text = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Storage);
            assert!(
                text.contains(&format!("127.0.0.1:{port}")),
                "names the server: {text}"
            );
            assert!(!text.contains("s3cret"), "no password: {text}");
            assert!(e.is_retryable(), "a server that may come back is retryable");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    // The configured 2 s, not the 30 s pool wait: a generous bound, far from either.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
