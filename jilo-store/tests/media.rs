//! Media storage: streamed downloads into a local object store, checked against a real HTTP
//! server on loopback; a 200 MiB download measured for peak memory in a child process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use jilo_core::testing::{SimProvider, SIM_MODEL};
use jilo_core::{
    Error, Grant, JobId, JobState, MediaStore, QuotaStore, Studio, Timestamp, UserId, VideoRequest,
    VideoToStore,
};
use jilo_store::ObjectMediaStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn media_dir() -> PathBuf {
    std::env::temp_dir()
        .join("jilo-media-tests")
        .join(uuid::Uuid::new_v4().simple().to_string())
}

/// An MP4-looking body: an `ftyp` box, then filler.
fn mp4(len: usize) -> Vec<u8> {
    let mut body = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    body.resize(len, 0xAB);
    body
}

fn video(url: String) -> VideoToStore {
    VideoToStore {
        job: JobId::random(),
        user: UserId::new("media-user"),
        url,
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn a_video_is_streamed_into_the_store_under_a_stable_key() {
    let server = MockServer::start().await;
    let body = mp4(3 * 1024 * 1024 + 17);
    Mock::given(method("GET"))
        .and(path("/files/out.mp4"))
        .and(header("accept", "*/*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
        .expect(2)
        .mount(&server)
        .await;
    let dir = media_dir();
    let media = ObjectMediaStore::local(&dir).unwrap();
    let v = video(format!("{}/files/out.mp4", server.uri()));
    let stored = media.store(&v).await.unwrap();
    assert_eq!(stored.key, format!("videos/media-user/{}.mp4", v.job));
    assert_eq!(stored.bytes, Some(body.len() as u64));
    assert_eq!(stored.content_type.as_deref(), Some("video/mp4"));
    let on_disk = std::fs::read(&stored.location).unwrap();
    assert_eq!(on_disk, body);
    assert!(PathBuf::from(&stored.location).starts_with(dir.canonicalize().unwrap()));
    // Storing the same job again overwrites the same object.
    let again = media.store(&v).await.unwrap();
    assert_eq!(again.key, stored.key);
    assert_eq!(std::fs::read(&again.location).unwrap().len(), body.len());
}

#[tokio::test]
async fn what_is_not_a_video_is_refused_and_leaves_nothing() {
    let server = MockServer::start().await;
    Mock::given(path("/page"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>nope</html>", "text/html"))
        .mount(&server)
        .await;
    Mock::given(path("/opaque-text"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("just some text bytes", "application/octet-stream"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/opaque-video"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(mp4(4096), "application/octet-stream"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(mp4(64 * 1024), "video/mp4"))
        .mount(&server)
        .await;
    Mock::given(path("/busy"))
        .respond_with(ResponseTemplate::new(503).set_body_string("try later"))
        .mount(&server)
        .await;
    Mock::given(path("/gone"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no such file"))
        .mount(&server)
        .await;
    let dir = media_dir();
    let media = ObjectMediaStore::local(&dir)
        .unwrap()
        .with_max_bytes(16 * 1024);
    let get = |p: &str| video(format!("{}{p}", server.uri()));

    for p in ["/page", "/opaque-text", "/big"] {
        match media.store(&get(p)).await {
            Err(Error::Protocol { reason, .. }) => eprintln!("{p}: {reason}"),
            other => panic!("{p} must be refused, got {other:?}"),
        }
    }
    match media.store(&get("/busy")).await {
        Err(e @ Error::Unavailable { .. }) => {
            assert!(e.is_retryable());
            assert_eq!(e.http().map(|h| h.status), Some(503));
        }
        other => panic!("{other:?}"),
    }
    match media.store(&get("/gone")).await {
        Err(Error::Protocol {
            response: Some(r), ..
        }) => assert_eq!(r.status, 404),
        other => panic!("{other:?}"),
    }
    let files: Vec<_> = walk(&dir);
    assert!(
        files.is_empty(),
        "refused downloads leave no file: {files:?}"
    );

    let ok = ObjectMediaStore::local(&dir).unwrap();
    let stored = ok.store(&get("/opaque-video")).await.unwrap();
    assert_eq!(stored.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(walk(&dir).len(), 1);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn the_studio_stores_the_video_before_settling() {
    let server = MockServer::start().await;
    let body = mp4(200_000);
    Mock::given(method("GET"))
        .and(path("/result.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
        .expect(1)
        .mount(&server)
        .await;
    let store = Arc::new(common::open(&common::sqlite_file()).await);
    let sim = Arc::new(SimProvider::new("sim"));
    let studio = Studio::builder()
        .provider(sim.clone())
        .store(store.clone())
        .media_store(Arc::new(ObjectMediaStore::local(media_dir()).unwrap()))
        .build()
        .unwrap();
    let user = UserId::new("studio-media");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    let job = studio
        .generate(
            &user,
            VideoRequest::new("Lanterns drifting over a lake", SIM_MODEL, 5),
        )
        .await
        .unwrap();
    let rid = studio.job(&job).await.unwrap().provider_request_id.unwrap();
    let delivery = sim.succeeded(&rid, &format!("{}/result.mp4", server.uri()));
    let out = studio
        .handle_webhook(&"sim".into(), &delivery)
        .await
        .unwrap();
    assert_eq!(
        out.state,
        JobState::Storing,
        "the webhook leaves the copy to a worker"
    );
    assert_eq!(studio.balance(&user).await.unwrap().held, 10);
    studio.tick().await.unwrap();
    let done = studio.job(&job).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    let output = done.output.unwrap();
    assert_eq!(std::fs::read(&output.location).unwrap(), body);
    assert_eq!(output.bytes, Some(body.len() as u64));
    assert_eq!(studio.balance(&user).await.unwrap().spent, 10);
}

const BIG: u64 = 200 * 1024 * 1024;

/// Serves `BIG` bytes of MP4-looking data per connection, generated as it is sent.
async fn serve_big_video() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: {BIG}\r\nconnection: close\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = mp4(64 * 1024);
                let mut sent = 0u64;
                while sent < BIG {
                    let n = (BIG - sent).min(chunk.len() as u64) as usize;
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n as u64;
                    chunk[0..4].copy_from_slice(&[0xAB; 4]);
                }
            });
        }
    });
    format!("http://{addr}/big.mp4")
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The download runs in a child process (this test binary again) so its peak resident memory
/// (`VmHWM` in `/proc/self/status`) measures the download alone, not the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_download_keeps_memory_flat() {
    if let Ok(url) = std::env::var("JILO_MEDIA_CHILD_URL") {
        let dir = std::env::var("JILO_MEDIA_CHILD_DIR").unwrap();
        let before = peak_rss_kib();
        let stored = ObjectMediaStore::local(&dir)
            .unwrap()
            .store(&video(url))
            .await
            .unwrap();
        println!();
        println!(
            "MEDIA bytes={} peak_kib={} before_kib={before}",
            stored.bytes.unwrap(),
            peak_rss_kib()
        );
        return;
    }
    let url = serve_big_video().await;
    let dir = media_dir();
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_200_mib_download_keeps_memory_flat",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JILO_MEDIA_CHILD_URL", &url)
        .env("JILO_MEDIA_CHILD_DIR", &dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.find("MEDIA ").map(|i| &l[i..]))
        .expect("a MEDIA line");
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|p| p.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (bytes, peak) = (field("bytes="), field("peak_kib="));
    eprintln!(
        "200 MiB download: peak RSS of the downloading process {} KiB ({:.1} MiB)",
        peak,
        peak as f64 / 1024.0
    );
    assert_eq!(bytes, BIG);
    let files = walk(&dir);
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), BIG);
    assert!(peak < 64 * 1024, "peak memory {peak} KiB is over 64 MiB");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads every byte of `key` from `offset`.
async fn read_all(media: &ObjectMediaStore, key: &str, offset: u64) -> Vec<u8> {
    use futures::StreamExt;
    let mut stream = media.read_from(key, offset).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// The read side every media store offers publishing: the size, the bytes from any offset
/// (the start, the middle, the last byte, the end), nothing for an unknown key, and a clear
/// error for an offset past the end or a key that climbs out of the store.
pub async fn read_side_suite(media: &ObjectMediaStore, key: &str, body: &[u8]) {
    let info = media.info(key).await.unwrap();
    assert_eq!(info.bytes, body.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
    for offset in [0, 1, 262_144, body.len() as u64 - 1, body.len() as u64] {
        let got = read_all(media, key, offset).await;
        assert!(
            got == body[offset as usize..],
            "the bytes from {offset} are the stored ones"
        );
    }
    assert!(matches!(
        media.read_from(key, body.len() as u64 + 1).await,
        Err(Error::InvalidInput { ref field, .. }) if field == "offset"
    ));
    assert!(matches!(
        media.info("videos/nobody/none.mp4").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        media.read_from("videos/nobody/none.mp4", 0).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        media.info("videos/../../etc/passwd").await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn a_stored_video_reads_back_from_any_offset() {
    let server = MockServer::start().await;
    let body: Vec<u8> = {
        let mut b = mp4(262_144 * 3 + 5);
        for (i, x) in b.iter_mut().enumerate().skip(32) {
            *x = (i % 251) as u8;
        }
        b
    };
    Mock::given(method("GET"))
        .and(path("/files/read.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
        .mount(&server)
        .await;
    let media = ObjectMediaStore::local(media_dir()).unwrap();
    let stored = media
        .store(&video(format!("{}/files/read.mp4", server.uri())))
        .await
        .unwrap();
    read_side_suite(&media, &stored.key, &body).await;
}

#[cfg(feature = "s3")]
#[path = "support/moto.rs"]
mod moto;

/// The same store and read-back on S3-compatible storage (moto's server on loopback): a
/// video streamed in as a multipart upload (8 MiB parts), then read from every offset.
#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_storage_keeps_and_reads_back_like_a_directory() {
    let Some(moto) = moto::start().await else {
        return;
    };
    moto.bucket("jilo-videos").await;
    let media = ObjectMediaStore::s3(moto.builder("jilo-videos")).unwrap();
    let server = MockServer::start().await;
    let body: Vec<u8> = {
        let mut b = mp4(20 * 1024 * 1024 + 262_145);
        for (i, x) in b.iter_mut().enumerate().skip(32) {
            *x = (i % 253) as u8;
        }
        b
    };
    Mock::given(method("GET"))
        .and(path("/files/s3.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
        .mount(&server)
        .await;
    let v = video(format!("{}/files/s3.mp4", server.uri()));
    let stored = media.store(&v).await.unwrap();
    assert_eq!(stored.key, format!("videos/media-user/{}.mp4", v.job));
    assert_eq!(
        stored.location,
        format!("s3://jilo-videos/videos/media-user/{}.mp4", v.job)
    );
    assert_eq!(stored.bytes, Some(body.len() as u64));
    read_side_suite(&media, &stored.key, &body).await;
    // What is not a video leaves nothing behind on S3 either.
    Mock::given(method("GET"))
        .and(path("/files/page.html"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"<html>".to_vec(), "text/html"))
        .mount(&server)
        .await;
    let page = video(format!("{}/files/page.html", server.uri()));
    assert!(media.store(&page).await.is_err());
    assert!(matches!(
        media.info(&media.key_for(&page, "video/mp4")).await,
        Err(Error::NotFound { .. })
    ));
    // A file put directly (a thumbnail) reads back.
    media
        .put(
            "thumbs/a.jpg",
            bytes::Bytes::from_static(b"\xFF\xD8\xFF\xE0jpeg"),
        )
        .await
        .unwrap();
    assert_eq!(media.info("thumbs/a.jpg").await.unwrap().bytes, 8);
}
