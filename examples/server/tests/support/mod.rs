//! A jilo-server on loopback with its simulators, its own data directory and database, and
//! an HTTP client that speaks to it as a browser or an app would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../../integration/tests/support/postgres.rs"]
pub mod postgres;

use std::sync::Arc;

use futures::StreamExt;
use jilo_server::{AppState, Config};
use jilo_sim::{Pace, SimConfig, Simulators};
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// Which database a server runs on.
#[derive(Clone, Debug)]
pub enum Db {
    /// An SQLite file in the data directory.
    Sqlite,
    /// This Postgres URL.
    Postgres(String),
}

pub struct Server {
    pub url: String,
    pub state: AppState,
    pub sims: Arc<Simulators>,
    pub http: reqwest::Client,
    pub dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn sims() -> Arc<Simulators> {
    Arc::new(
        Simulators::start(SimConfig::default().with_pace(Pace::Speed(120.0)))
            .await
            .unwrap(),
    )
}

impl Server {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, sims().await, None, true).await
    }

    /// A server on `sims`, in `dir` (a new one when `None`), running the worker or not.
    pub async fn start_with(
        db: Db,
        sims: Arc<Simulators>,
        dir: Option<std::path::PathBuf>,
        run_worker: bool,
    ) -> Self {
        let dir = dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "jilo-server-test-{}",
                uuid::Uuid::new_v4().simple()
            ))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            database_url: match &db {
                Db::Sqlite => None,
                Db::Postgres(url) => Some(url.clone()),
            },
            data_dir: dir.clone(),
            addr,
            public_url: Some(format!("http://{addr}")),
            admin_token: Some(ADMIN_TOKEN.to_owned().into()),
            env_keys: false,
            run_worker,
            ..Config::default()
        };
        let state = AppState::build(config, Some(sims.clone())).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(jilo_server::serve(state.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{addr}"),
            state,
            sims,
            http: jilo::providers::http::client_builder()
                .unwrap()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Stops the server and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Signs a user up; answers the session token.
    pub async fn signup(&self, email: &str) -> String {
        let r = self
            .http
            .post(self.at("/api/auth/signup"))
            .json(&json!({ "email": email, "password": "secret123", "confirm": "secret123" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.at(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.at(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn available(&self, token: &str) -> i64 {
        let (s, q) = self.get(token, "/api/quota").await;
        assert_eq!(s, 200, "{q}");
        q["available"].as_i64().unwrap()
    }

    pub async fn admin_grant(&self, user_email: &str, credits: i64, key: &str) -> Value {
        let r = self
            .http
            .post(self.at("/api/admin/grant"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "email": user_email, "credits": credits, "idempotency_key": key }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Reads a job's SSE stream to its end (`last_event_id` resumes after it).
    pub async fn events(
        &self,
        token: &str,
        job: &str,
        last_event_id: Option<u64>,
    ) -> Vec<SseEvent> {
        let mut req = self
            .http
            .get(self.at(&format!("/api/jobs/{job}/events")))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        read_sse(r).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One server-sent event.
#[derive(Clone, Debug, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
}

/// Every event of an SSE response until it ends.
pub async fn read_sse(r: reqwest::Response) -> Vec<SseEvent> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut e = SseEvent::default();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    e.id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    e.event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                e.data = serde_json::from_str(&data).unwrap();
                out.push(e);
            }
        }
    }
    out
}

/// A `jilo-server` process and everything it logged so far.
pub struct Process {
    pub child: tokio::process::Child,
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts the server binary on a free port with `env`; returns once it listens.
pub async fn spawn(env: &[(String, String)]) -> Process {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jilo-server"))
        .args(["--port", "0"])
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr: std::net::SocketAddr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the server stopped before listening");
        log.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Process {
        child,
        url: format!("http://{addr}"),
        addr,
        log,
    }
}
