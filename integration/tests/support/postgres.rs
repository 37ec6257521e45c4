//! A fresh Postgres database per test, on the server named by `JILO_TEST_POSTGRES_URL`, and
//! its removal afterwards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, Executor, PgConnection};

fn admin_url() -> String {
    std::env::var("JILO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database named `{prefix}_{uuid}`, or `None` when no server answers outside CI
/// (under `CI=true` an unreachable server fails the test).
pub async fn database(prefix: &str) -> Option<String> {
    let admin = admin_url();
    let mut server = match PgConnection::connect(&admin).await {
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
    server
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = server.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

/// Drops a database made by [`database`] (best effort).
pub async fn drop(db: &str) {
    if let Ok(mut server) = PgConnection::connect(&admin_url()).await {
        if let Some((_, name)) = db.rsplit_once('/') {
            let _ = server
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
        let _ = server.close().await;
    }
}
