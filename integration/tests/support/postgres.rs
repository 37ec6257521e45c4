//! A fresh Postgres database per test, on the server named by `JILO_TEST_POSTGRES_URL`, and
//! its removal afterwards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use jilo::store::{SqlStore, SqlStoreOptions, StoreUrl};

fn admin_url() -> String {
    std::env::var("JILO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database named `{prefix}_{uuid}`, or `None` when no server answers outside CI
/// (under `CI=true` an unreachable server fails the test).
pub async fn database(prefix: &str) -> Option<String> {
    let admin = admin_url();
    let server = match SqlStore::connect(
        &StoreUrl::parse(&admin).unwrap(),
        SqlStoreOptions::default(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and Postgres at {admin} cannot be reached: {e}"
            );
            eprintln!("SKIPPED: Postgres at {admin} cannot be reached ({e})");
            return None;
        }
    };
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(server.pool())
        .await
        .unwrap();
    server.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

/// Drops a database made by [`database`] (best effort).
pub async fn drop(db: &str) {
    let admin = admin_url();
    if let Ok(server) = SqlStore::connect(
        &StoreUrl::parse(&admin).unwrap(),
        SqlStoreOptions::default(),
    )
    .await
    {
        if let Some((_, name)) = db.rsplit_once('/') {
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(server.pool())
                .await;
        }
        server.close().await;
    }
}
