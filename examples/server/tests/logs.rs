//! The server's log of a whole flow at trace level: one line per request with its id, method,
//! path, status and latency; a span for every call to every service and every store
//! transaction; and nothing secret in any line (passwords, session tokens, OAuth codes, states
//! and tokens, keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_names_each_request_and_keeps_no_secret() {
    let sims = support::sims().await;
    let dir = std::env::temp_dir().join(format!(
        "jilo-server-logs-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut env: Vec<(String, String)> = sims
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push(("JILO_DATA_DIR".into(), dir.display().to_string()));
    env.push(("JILO_ADMIN_TOKEN".into(), "admin-secret-token-7".into()));
    // Everything jilo says; the libraries under it at their usual level.
    env.push((
        "RUST_LOG".into(),
        "trace,hyper=info,hyper_util=info,h2=info,reqwest=info,rustls=info,tower=info,sqlx=warn,mio=info,want=info".into(),
    ));
    let mut server = support::spawn(&env).await;
    let http = jilo::providers::http::client_builder()
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let password = "pass-word-4242";
    let r = http
        .post(format!("{}/api/auth/signup", server.url))
        .header("x-request-id", "req-signup-1")
        .json(&json!({ "email": "log@example.com", "password": password, "confirm": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "req-signup-1");
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{}/api/generate", server.url))
        .bearer_auth(&token)
        .json(&json!({ "prompt": "A quiet lake under falling snow", "model": "kling-t2v", "duration": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let job = r.json::<Value>().await.unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .get(format!("{}/api/jobs/{job}/events", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let events = support::read_sse(r).await;
    assert_eq!(events.last().unwrap().data["state"], "completed");
    // A YouTube connection: the callback's query carries the code and the state.
    let r = http
        .post(format!("{}/api/youtube/connect", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let consent = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = http.get(&consent).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let r = http
        .get(&back)
        .header("cookie", format!("jilo_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = http
        .post(format!("{}/api/admin/grant", server.url))
        .bearer_auth("admin-secret-token-7")
        .json(&json!({ "email": "log@example.com", "credits": 5, "idempotency_key": "k" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // SIGTERM, then read everything it logged.
    let pid = server.child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(server.child.wait().await.unwrap().success());
    let log = server.log.lock().unwrap().join("\n");

    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!("request_id={generated}"))
                && l.contains("finished processing request")
        })
        .unwrap_or_else(|| panic!("no finished line for the generate request in\n{log}"));
    assert!(
        line.contains("method=POST") && line.contains("path=/api/generate"),
        "{line}"
    );
    assert!(
        line.contains("status=202") && line.contains("latency="),
        "{line}"
    );
    assert!(log.contains("request_id=req-signup-1"), "{log}");
    for secret in [
        password,
        token.as_str(),
        query["code"].as_str(),
        query["state"].as_str(),
        "admin-secret-token-7",
        jilo_sim::fal::KEY,
        jilo_sim::google::CLIENT_SECRET,
    ] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
