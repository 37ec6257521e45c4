//! YouTube upload throughput and memory, against a local resumable-upload server in a child
//! process (it counts bytes, checks each `Content-Range` and answers 308/201 as YouTube does):
//!
//! - throughput: a 256 MiB video uploaded by jilo's publisher from media storage (a local
//!   directory) in 8 MiB chunks, beside a bare reqwest `PUT` of the same bytes, streamed from
//!   the same file in one request, in the same run (goal: at least 90% of the bare PUT);
//! - memory: a 1 GiB upload in a child process, its peak resident memory (`VmHWM`) read at
//!   the end (goal: under 64 MiB).
//!
//! `cargo bench -p jilo-providers --features youtube --bench youtube_upload`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use jilo_core::{
    ChannelConnection, ChannelStore, InMemoryStore, MediaStore, NoJournal, Privacy,
    ProgressReporter, PublishMetadata, PublishRequest, Publisher, Timestamp, UserId,
};
use jilo_providers::tokens::TokenCipher;
use jilo_providers::youtube::{GoogleOAuth, YouTubePublisher};
use jilo_store::ObjectMediaStore;
use secrecy::SecretString;

const ROLE: &str = "JILO_YT_BENCH_ROLE";
const MIB: u64 = 1024 * 1024;
const THROUGHPUT_BYTES: u64 = 256 * MIB;
const MEMORY_BYTES: u64 = 1024 * MIB;
const ROUNDS: usize = 5;

// ---------------------------------------------------------------- the upload server

async fn serve() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    println!("LISTENING {base}");
    std::io::stdout().flush().unwrap();
    let sessions: Arc<std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>> =
        Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let (sessions, next, base) = (sessions.clone(), next.clone(), base.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let (sessions, next, base) = (sessions.clone(), next.clone(), base.clone());
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let method = req.method().clone();
                        let path = req.uri().path().to_owned();
                        let query = req.uri().query().unwrap_or("").to_owned();
                        let total =
                            header("x-upload-content-length").and_then(|v| v.parse::<u64>().ok());
                        let range = header("content-range").unwrap_or_default();
                        // Count the body without keeping it.
                        let mut body = req.into_body();
                        let mut got = 0u64;
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame.unwrap().into_data() {
                                got += data.len() as u64;
                            }
                        }
                        let mut answer = hyper::Response::builder();
                        let out: Bytes = match (method.as_str(), path.as_str()) {
                            ("PUT", "/bare") => {
                                answer = answer.status(200);
                                Bytes::from(format!("{{\"received\":{got}}}"))
                            }
                            ("POST", "/upload/youtube/v3/videos") => {
                                let id = next.fetch_add(1, Ordering::SeqCst).to_string();
                                sessions
                                    .lock()
                                    .unwrap()
                                    .insert(id.clone(), (total.unwrap(), 0));
                                answer = answer.status(200).header(
                                "location",
                                format!("{base}/upload/youtube/v3/videos?uploadType=resumable&upload_id={id}"),
                            );
                                Bytes::new()
                            }
                            ("PUT", "/upload/youtube/v3/videos") => {
                                let id = query.split("upload_id=").nth(1).unwrap_or("").to_owned();
                                let mut s = sessions.lock().unwrap();
                                let (total, held) = s.get_mut(&id).unwrap();
                                let first: u64 = range
                                    .trim_start_matches("bytes ")
                                    .split('-')
                                    .next()
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(u64::MAX);
                                assert_eq!(first, *held, "chunks arrive in order");
                                *held += got;
                                if *held == *total {
                                    answer = answer
                                        .status(201)
                                        .header("content-type", "application/json");
                                    Bytes::from_static(br#"{"kind":"youtube#video","id":"benchvideo1","status":{"uploadStatus":"uploaded","privacyStatus":"private"}}"#)
                                } else {
                                    answer = answer
                                        .status(308)
                                        .header("range", format!("bytes=0-{}", *held - 1));
                                    Bytes::new()
                                }
                            }
                            _ => {
                                answer = answer.status(404);
                                Bytes::new()
                            }
                        };
                        Ok::<_, std::convert::Infallible>(answer.body(Full::new(out)).unwrap())
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

// ---------------------------------------------------------------- the clients

fn write_video(dir: &Path, key: &str, len: u64) {
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let block: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

async fn publisher(server: &str) -> (YouTubePublisher, UserId) {
    let channels = Arc::new(InMemoryStore::new());
    let cipher = TokenCipher::new("bench", &[3u8; 32]).unwrap();
    let user = UserId::new("bench");
    let owner = format!("{user}/UCbench");
    let now = Timestamp::from_system(std::time::SystemTime::now());
    channels
        .save_channel(&ChannelConnection {
            user: user.clone(),
            channel_id: "UCbench".into(),
            channel_name: "bench".into(),
            access_token: cipher
                .seal(&SecretString::from("ya29.bench"), &owner)
                .unwrap()
                .to_string(),
            access_expires_at: now.plus(Duration::from_secs(3600 * 24)),
            refresh_token: cipher
                .seal(&SecretString::from("1//bench"), &owner)
                .unwrap()
                .to_string(),
            scopes: vec![],
            connected_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let oauth = GoogleOAuth::new("bench", SecretString::from("bench")).unwrap();
    let mut yt = YouTubePublisher::new(
        oauth,
        channels,
        TokenCipher::new("bench", &[3u8; 32]).unwrap(),
    )
    .unwrap()
    .with_urls(server, server)
    .unwrap();
    if let Some(mib) = std::env::var("JILO_YT_BENCH_CHUNK_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        yt = yt.with_chunk_size(mib * 1024 * 1024);
    }
    (yt, user)
}

fn request(user: &UserId, key: &str, len: u64) -> PublishRequest {
    PublishRequest {
        user: user.clone(),
        job: jilo_core::JobId::random(),
        channel_id: "UCbench".into(),
        media_key: key.into(),
        total_bytes: len,
        content_type: "video/mp4".into(),
        metadata: PublishMetadata {
            title: "bench".into(),
            description: String::new(),
            tags: vec![],
            category_id: None,
            privacy: Privacy::Private,
            publish_at: None,
            playlist_id: None,
            thumbnail_key: None,
        },
        session: None,
    }
}

async fn jilo_upload(
    yt: &YouTubePublisher,
    media: Arc<ObjectMediaStore>,
    user: &UserId,
    key: &str,
    len: u64,
) -> Duration {
    let started = Instant::now();
    let video = yt
        .publish(
            &request(user, key, len),
            media,
            Arc::new(NoJournal),
            ProgressReporter::none(),
        )
        .await
        .unwrap();
    assert_eq!(video.video_id, "benchvideo1");
    started.elapsed()
}

async fn bare_put(
    client: &reqwest::Client,
    media: &ObjectMediaStore,
    server: &str,
    key: &str,
    len: u64,
) -> Duration {
    let started = Instant::now();
    let stream = media.read_from(key, 0).await.unwrap();
    let body = reqwest::Body::wrap_stream(stream.map(|c| c.map_err(std::io::Error::other)));
    let answer = client
        .put(format!("{server}/bare"))
        .header("content-length", len.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert_eq!(text, format!("{{\"received\":{len}}}"));
    started.elapsed()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn mib_per_s(len: u64, d: Duration) -> f64 {
    len as f64 / MIB as f64 / d.as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var(ROLE).as_deref() {
        Ok("server") => return runtime.block_on(serve()),
        Ok("upload") => {
            let server = std::env::var("JILO_YT_BENCH_SERVER").unwrap();
            let dir = PathBuf::from(std::env::var("JILO_YT_BENCH_DIR").unwrap());
            return runtime.block_on(async {
                let media = Arc::new(ObjectMediaStore::local(&dir).unwrap());
                let (yt, user) = publisher(&server).await;
                let before = peak_rss_kib();
                let took = jilo_upload(&yt, media, &user, "videos/big.mp4", MEMORY_BYTES).await;
                println!(
                    "PEAK before_kib={before} peak_kib={} secs={:.2}",
                    peak_rss_kib(),
                    took.as_secs_f64()
                );
            });
        }
        _ => {}
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let mut server = Command::new(&me)
        .env(ROLE, "server")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(u) = line.strip_prefix("LISTENING ") {
            break u.to_owned();
        }
    };
    let dir = std::env::temp_dir().join(format!("jilo-yt-bench-{}", std::process::id()));
    write_video(&dir, "videos/mid.mp4", THROUGHPUT_BYTES);
    write_video(&dir, "videos/big.mp4", MEMORY_BYTES);

    runtime.block_on(async {
        let media = Arc::new(ObjectMediaStore::local(&dir).unwrap());
        let (yt, user) = publisher(&url).await;
        jilo_providers::http::install_crypto_provider();
        let client = reqwest::Client::new();
        // Warm the page cache and the connections.
        jilo_upload(
            &yt,
            media.clone(),
            &user,
            "videos/mid.mp4",
            THROUGHPUT_BYTES,
        )
        .await;
        bare_put(&client, &media, &url, "videos/mid.mp4", THROUGHPUT_BYTES).await;
        let (mut ours, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(mib_per_s(
                THROUGHPUT_BYTES,
                jilo_upload(
                    &yt,
                    media.clone(),
                    &user,
                    "videos/mid.mp4",
                    THROUGHPUT_BYTES,
                )
                .await,
            ));
            bare.push(mib_per_s(
                THROUGHPUT_BYTES,
                bare_put(&client, &media, &url, "videos/mid.mp4", THROUGHPUT_BYTES).await,
            ));
        }
        let (o, b) = (median(ours.clone()), median(bare.clone()));
        println!(
            "upload of {} MiB to a loopback server, median of {ROUNDS} (MiB/s):",
            THROUGHPUT_BYTES / MIB
        );
        println!(
            "  jilo publisher, 8 MiB resumable chunks: {o:>8.0}   (runs: {})",
            fmt(&ours)
        );
        println!(
            "  bare reqwest PUT, one streamed request: {b:>8.0}   (runs: {})",
            fmt(&bare)
        );
        println!("  ratio: {:.1}% (goal: at least 90%)", 100.0 * o / b);
    });

    let out = Command::new(&me)
        .env(ROLE, "upload")
        .env("JILO_YT_BENCH_SERVER", &url)
        .env("JILO_YT_BENCH_DIR", &dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("PEAK"))
        .unwrap_or_else(|| panic!("{text}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    println!(
        "1 GiB upload in a child process: {:.1} s, peak RSS {:.1} MiB (before the upload {:.1} MiB; goal: under 64 MiB)",
        field("secs="),
        field("peak_kib=") / 1024.0,
        field("before_kib=") / 1024.0
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn fmt(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
