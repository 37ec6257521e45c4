//! Two `jilo-server` processes on one Postgres behind one public address (a small TCP load
//! balancer, as a deployment has): a job generated through one is watched to completion over
//! SSE on the other; a process killed with SIGKILL mid-job leaves the job finished by the
//! other; SIGTERM ends a process cleanly, its open SSE stream included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// Forwards each connection to the first backend that accepts it, in turn.
async fn balancer(backends: Arc<Mutex<Vec<SocketAddr>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut turn = 0usize;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            turn += 1;
            let order: Vec<SocketAddr> = {
                let all = backends.lock().unwrap();
                (0..all.len())
                    .map(|i| all[(turn + i) % all.len()])
                    .collect()
            };
            tokio::spawn(async move {
                for backend in order {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn events(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    job: &str,
) -> Vec<support::SseEvent> {
    let r = http
        .get(format!("{base}/api/jobs/{job}/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    support::read_sse(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_jobs_and_a_killed_one_leaves_nothing_behind() {
    let Some(db) = support::postgres::database("jilo_server_procs").await else {
        return;
    };
    let sims = support::sims().await;
    let dir = std::env::temp_dir().join(format!(
        "jilo-server-procs-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let backends = Arc::new(Mutex::new(Vec::new()));
    let public = balancer(backends.clone()).await;
    let mut env: Vec<(String, String)> = sims
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push(("DATABASE_URL".into(), db.clone()));
    env.push(("JILO_DATA_DIR".into(), dir.display().to_string()));
    env.push(("JILO_PUBLIC_URL".into(), format!("http://{public}")));
    let mut a = support::spawn(&env).await;
    let mut b = support::spawn(&env).await;
    backends.lock().unwrap().extend([a.addr, b.addr]);
    let http = jilo::providers::http::client_builder()
        .unwrap()
        .build()
        .unwrap();

    let signup = http
        .post(format!("{}/api/auth/signup", a.url))
        .json(
            &json!({ "email": "pat@example.com", "password": "secret123", "confirm": "secret123" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let token = signup.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let generate = |base: String, take: u32| {
        let req = http
            .post(format!("{base}/api/generate"))
            .bearer_auth(&token)
            .json(&json!({ "prompt": format!("A paper boat on a rainy street, take {take}"), "model": "kling-t2v", "duration": 5 }));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["job"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // Generated through A, watched on B: Postgres carries the events across.
    let first = generate(a.url.clone(), 1).await;
    let seen = events(&http, &b.url, &token, &first).await;
    let last = seen.last().unwrap();
    assert_eq!(last.data["state"], "completed", "{seen:?}");

    // Generated through A, then A is killed (SIGKILL): the provider's webhook reaches B
    // through the public address, B's worker stores the video and settles the hold.
    let second = generate(a.url.clone(), 2).await;
    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    let seen = events(&http, &b.url, &token, &second).await;
    assert_eq!(seen.last().unwrap().data["state"], "completed", "{seen:?}");
    let url = seen.last().unwrap().data["video"]["video_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let video = http
        .get(format!("{}{url}", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(video.status(), 200);
    assert_eq!(&video.bytes().await.unwrap()[4..8], b"ftyp");
    let quota: Value = http
        .get(format!("{}/api/quota", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Two jobs of 15, each charged once.
    assert_eq!(
        (
            quota["available"].as_i64(),
            quota["held"].as_i64(),
            quota["spent"].as_i64()
        ),
        (Some(70), Some(0), Some(30)),
        "{quota}"
    );
    // FAL billed each job once.
    assert_eq!(sims.fal.lock().accepted.len(), 2);

    // SIGTERM: B ends its open stream and exits cleanly.
    let third = generate(b.url.clone(), 3).await;
    // A watcher with its stream open (its first event read) when the signal comes.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let req = http
            .get(format!("{}/api/jobs/{third}/events", b.url))
            .bearer_auth(&token);
        tokio::spawn(async move {
            let mut body = req.send().await.unwrap().bytes_stream();
            let mut text = String::new();
            let mut first = Some(first_tx);
            while let Some(Ok(chunk)) = futures::StreamExt::next(&mut body).await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains("\n\n") {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
            }
            text
        })
    };
    first_rx.await.unwrap();
    let pid = b.child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = b.child.wait().await.unwrap();
    assert!(exit.success(), "{exit:?}");
    // The stream ended with the process (it did not hang the shutdown).
    let streamed = watcher.await.unwrap();
    assert!(streamed.contains("event: job"), "{streamed}");

    let _ = std::fs::remove_dir_all(&dir);
    support::postgres::drop(&db).await;
}
