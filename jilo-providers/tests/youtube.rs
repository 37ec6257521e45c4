//! YouTube publishing against a local stand-in of Google's OAuth endpoints and the YouTube
//! API and upload server (`support/google.rs`), which checks every header, the PKCE pair,
//! each `Content-Range` and chunk size, and can take part of a chunk, drop connections,
//! answer 503 or expire a session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../../jilo-store/tests/support/moto.rs"]
mod moto;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jilo_core::{
    ChannelStore, Clock, Error, InMemoryStore, Privacy, ProgressReporter, PublishMetadata,
    PublishRequest, PublishedVideo, Publisher, QuotaLimit, Timestamp, UploadJournal,
    UploadProgress, UploadSession, UserId,
};
use jilo_providers::tokens::TokenCipher;
use jilo_providers::youtube::{
    GoogleOAuth, LoopbackRedirect, PendingAuthorization, UploadRetry, YouTubePublisher,
};
use jilo_store::ObjectMediaStore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use support::google::{Fault, GoogleSim, CHANNEL_ID, CHANNEL_NAME, CLIENT_ID, CLIENT_SECRET};

const KEY: [u8; 32] = [42u8; 32];

fn cipher() -> TokenCipher {
    TokenCipher::new("test-key", &KEY).unwrap()
}

fn oauth(sim: &GoogleSim) -> GoogleOAuth {
    GoogleOAuth::new(CLIENT_ID, SecretString::from(CLIENT_SECRET))
        .unwrap()
        .with_endpoints(
            format!("{}/o/oauth2/v2/auth", sim.url),
            format!("{}/token", sim.url),
            format!("{}/revoke", sim.url),
        )
        .unwrap()
}

/// A clock a test moves.
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t = t.plus(d);
    }
}

/// Where the rig keeps its media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    Local,
    S3,
}

struct Rig {
    _moto: Option<moto::Moto>,
    sim: GoogleSim,
    youtube: Arc<YouTubePublisher>,
    channels: Arc<InMemoryStore>,
    media: Arc<ObjectMediaStore>,
    user: UserId,
    clock: Arc<TestClock>,
}

async fn rig_with(chunk: usize) -> Rig {
    rig_on(chunk, Storage::Local)
        .await
        .expect("a local directory is always there")
}

/// A rig on `storage`; `None` when S3 is asked for and moto's server is not installed
/// (outside CI).
async fn rig_on(chunk: usize, storage: Storage) -> Option<Rig> {
    let moto = match storage {
        Storage::Local => None,
        Storage::S3 => Some(moto::start().await?),
    };
    let sim = GoogleSim::start().await.unwrap();
    let channels = Arc::new(InMemoryStore::new());
    let clock = Arc::new(TestClock(Mutex::new(Timestamp::from_system(
        std::time::SystemTime::now(),
    ))));
    let youtube = YouTubePublisher::new(oauth(&sim), channels.clone(), cipher())
        .unwrap()
        .with_urls(&sim.url, &sim.url)
        .unwrap()
        .with_chunk_size(chunk)
        .with_clock(clock.clone())
        .with_retry(UploadRetry {
            max_failures: 6,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_restarts: 2,
        });
    let dir = std::env::temp_dir()
        .join("jilo-youtube-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    let media = Arc::new(match &moto {
        None => ObjectMediaStore::local(&dir).unwrap(),
        Some(moto) => {
            moto.bucket("jilo-media").await;
            ObjectMediaStore::s3(moto.builder("jilo-media")).unwrap()
        }
    });
    let user = UserId::new("creator-1");
    // A channel connected earlier: tokens issued by the stand-in, sealed as the publisher
    // seals them.
    // A channel connected earlier.
    channels
        .save_channel(&support::connected_channel(
            &sim,
            &user,
            &cipher(),
            clock.now(),
        ))
        .await
        .unwrap();
    Some(Rig {
        _moto: moto,
        sim,
        youtube: Arc::new(youtube),
        channels,
        media,
        user,
        clock,
    })
}

/// Bytes that differ at every position a slip would show (not a repeating short pattern).
fn video_bytes(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

impl Rig {
    async fn put_media(&self, key: &str, bytes: &[u8]) {
        self.media
            .put(key, bytes::Bytes::copy_from_slice(bytes))
            .await
            .unwrap();
    }

    fn request(&self, key: &str, total: u64) -> PublishRequest {
        PublishRequest {
            user: self.user.clone(),
            job: jilo_core::JobId::random(),
            channel_id: CHANNEL_ID.to_owned(),
            media_key: key.to_owned(),
            total_bytes: total,
            content_type: "video/mp4".to_owned(),
            metadata: PublishMetadata {
                title: "A paper boat on a rainy street".to_owned(),
                description: "Made with AI. 雨の日".to_owned(),
                tags: vec!["ai video".to_owned(), "shorts".to_owned()],
                category_id: Some("22".to_owned()),
                privacy: Privacy::Public,
                publish_at: None,
                playlist_id: None,
                thumbnail_key: None,
            },
            session: None,
        }
    }

    async fn publish(
        &self,
        request: &PublishRequest,
        journal: Arc<Journal>,
    ) -> Result<PublishedVideo, Error> {
        self.youtube
            .publish(
                request,
                self.media.clone(),
                journal.clone(),
                journal.reporter(),
            )
            .await
    }
}

/// Records what the publisher journals and reports.
#[derive(Default)]
struct Journal {
    sessions: Mutex<Vec<UploadSession>>,
    confirmed: Mutex<Vec<u64>>,
    uploaded: Mutex<Vec<PublishedVideo>>,
    progress: Arc<Mutex<Vec<UploadProgress>>>,
}

impl Journal {
    fn reporter(&self) -> ProgressReporter {
        let progress = self.progress.clone();
        ProgressReporter::new(move |p| progress.lock().unwrap().push(p))
    }
}

#[async_trait::async_trait]
impl UploadJournal for Journal {
    async fn session_opened(&self, session: &UploadSession) -> jilo_core::Result<()> {
        self.sessions.lock().unwrap().push(session.clone());
        Ok(())
    }

    async fn confirmed(&self, confirmed: u64) -> jilo_core::Result<()> {
        self.confirmed.lock().unwrap().push(confirmed);
        Ok(())
    }

    async fn uploaded(&self, video: &PublishedVideo) -> jilo_core::Result<()> {
        self.uploaded.lock().unwrap().push(video.clone());
        Ok(())
    }
}

async fn upload_of_size(len: usize, chunk: usize, storage: Storage) {
    let Some(rig) = rig_on(chunk, storage).await else {
        return;
    };
    let bytes = video_bytes(len);
    let key = format!("videos/creator-1/size-{len}.mp4");
    rig.put_media(&key, &bytes).await;
    let journal = Arc::new(Journal::default());
    let video = rig
        .publish(&rig.request(&key, len as u64), journal.clone())
        .await
        .unwrap_or_else(|e| panic!("{len} bytes: {e}"));
    let uploads = rig.sim.uploaded();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].1 == bytes, "{len} bytes arrive byte for byte");
    assert_eq!(uploads[0].0["id"], json!(video.video_id));
    assert_eq!(rig.sim.violations(), Vec::<String>::new());
    let s = rig.sim.lock();
    assert_eq!(s.kept, len as u64, "every byte kept once");
    assert_eq!(s.arrived, len as u64, "no byte sent twice on a clean line");
    let expected_puts = len.div_ceil(chunk.div_ceil(262_144) * 262_144).max(1);
    let puts = s.requests.iter().filter(|r| r.starts_with("PUT ")).count();
    assert_eq!(puts, expected_puts, "{len} bytes in {expected_puts} chunks");
    assert_eq!(journal.sessions.lock().unwrap().len(), 1);
    let progress = journal.progress.lock().unwrap().clone();
    assert_eq!(
        progress.last(),
        Some(&UploadProgress {
            uploaded: len as u64,
            total: len as u64
        })
    );
    assert!(progress.windows(2).all(|w| w[0].uploaded <= w[1].uploaded));
}

#[tokio::test]
async fn odd_sizes_arrive_byte_for_byte() {
    for len in [1, 262_144, 262_145, 3 * 262_144 - 1] {
        upload_of_size(len, 262_144, Storage::Local).await;
    }
}

/// The same uploads read from S3-compatible storage (moto's server on loopback).
#[tokio::test]
async fn odd_sizes_arrive_byte_for_byte_from_s3_storage() {
    for len in [1, 262_144, 262_145, 3 * 262_144 - 1] {
        upload_of_size(len, 262_144, Storage::S3).await;
    }
    upload_of_size(
        50 * 1024 * 1024,
        jilo_providers::youtube::DEFAULT_CHUNK_SIZE,
        Storage::S3,
    )
    .await;
}

#[tokio::test]
async fn fifty_mebibytes_arrive_byte_for_byte_in_8_mib_chunks() {
    upload_of_size(
        50 * 1024 * 1024,
        jilo_providers::youtube::DEFAULT_CHUNK_SIZE,
        Storage::Local,
    )
    .await;
}

#[tokio::test]
async fn an_empty_video_or_bad_metadata_is_refused_before_any_call() {
    let rig = rig_with(262_144).await;
    rig.put_media("videos/creator-1/empty.mp4", &[]).await;
    let journal = Arc::new(Journal::default());
    let empty = rig
        .publish(
            &rig.request("videos/creator-1/empty.mp4", 0),
            journal.clone(),
        )
        .await;
    assert!(
        matches!(empty, Err(Error::InvalidInput { ref field, .. }) if field == "total_bytes"),
        "{empty:?}"
    );
    rig.put_media("videos/creator-1/a.mp4", &video_bytes(10))
        .await;
    let mut bad = rig.request("videos/creator-1/a.mp4", 10);
    bad.metadata.title = "x".repeat(101);
    assert!(matches!(
        rig.publish(&bad, journal.clone()).await,
        Err(Error::InvalidInput { ref field, .. }) if field == "title"
    ));
    let wrong_size = rig.request("videos/creator-1/a.mp4", 11);
    assert!(matches!(
        rig.publish(&wrong_size, journal.clone()).await,
        Err(Error::InvalidInput { ref field, .. }) if field == "total_bytes"
    ));
    let mut big_thumb = rig.request("videos/creator-1/a.mp4", 10);
    rig.put_media("thumbs/big.jpg", &vec![0xFF; 2 * 1024 * 1024 + 1])
        .await;
    big_thumb.metadata.thumbnail_key = Some("thumbs/big.jpg".to_owned());
    assert!(matches!(
        rig.publish(&big_thumb, journal.clone()).await,
        Err(Error::InvalidInput { ref field, .. }) if field == "thumbnail_key"
    ));
    assert!(
        rig.sim.lock().requests.is_empty(),
        "nothing reached YouTube: {:?}",
        rig.sim.lock().requests
    );
    assert!(journal.sessions.lock().unwrap().is_empty());
}

/// Part of a chunk taken, a connection dropped mid-body, a 503, an answer lost after the
/// chunk was kept, and an expired session: the upload asks the server what it holds after
/// each, resends only from there, starts a new session when the old one expired, and the
/// server ends with every byte, in order, with no rule broken.
#[tokio::test]
async fn an_upload_survives_partial_chunks_drops_503s_and_an_expired_session() {
    survives_faults(Storage::Local).await;
}

#[tokio::test]
async fn an_upload_from_s3_storage_survives_the_same_faults() {
    survives_faults(Storage::S3).await;
}

async fn survives_faults(storage: Storage) {
    let chunk = 2 * 262_144;
    let Some(rig) = rig_on(chunk, storage).await else {
        return;
    };
    let len = 6 * 262_144 + 12_345;
    let bytes = video_bytes(len);
    rig.put_media("videos/creator-1/flaky.mp4", &bytes).await;
    for fault in [
        Fault::Partial(0),             // a 308 without Range: nothing held
        Fault::Partial(262_144 + 100), // keeps an odd count: the resend starts mid-unit
        Fault::DropAfter(300_000),     // keeps one unit, no answer
        Fault::Status(503),
        Fault::EarlyAnswer(503), // answered before the body was read
        Fault::DropAnswer,       // kept, answer lost
    ] {
        rig.sim.fault(fault);
    }
    let journal = Arc::new(Journal::default());
    let request = rig.request("videos/creator-1/flaky.mp4", len as u64);
    let video = rig.publish(&request, journal.clone()).await.unwrap();
    assert_eq!(rig.sim.violations(), Vec::<String>::new());
    let uploads = rig.sim.uploaded();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].1 == bytes, "every byte arrives, in order");
    assert_eq!(uploads[0].0["id"], json!(video.video_id));
    let (kept, queries) = {
        let s = rig.sim.lock();
        (s.kept, s.status_queries)
    };
    assert_eq!(kept, len as u64, "the server kept each byte once");
    assert!(
        queries >= 3,
        "a status query after each interruption ({queries})"
    );
    let confirmed = journal.confirmed.lock().unwrap().clone();
    assert!(
        confirmed.windows(2).all(|w| w[0] <= w[1]),
        "confirmed bytes never go back: {confirmed:?}"
    );
    assert!(
        confirmed.contains(&(262_144 + 100)),
        "the partial count was read from Range"
    );

    // An expired session: a new one starts from byte 0, once.
    let Some(rig) = rig_on(chunk, storage).await else {
        return;
    };
    rig.put_media("videos/creator-1/expiring.mp4", &bytes).await;
    rig.sim
        .lock()
        .faults
        .extend([Fault::Partial(chunk as u64), Fault::Expire]);
    let journal = Arc::new(Journal::default());
    let request = rig.request("videos/creator-1/expiring.mp4", len as u64);
    rig.publish(&request, journal.clone()).await.unwrap();
    assert_eq!(rig.sim.violations(), Vec::<String>::new());
    let sessions = journal.sessions.lock().unwrap().clone();
    assert_eq!(sessions.len(), 2, "a new session after the expiry");
    assert_ne!(sessions[0].uri, sessions[1].uri);
    let uploads = rig.sim.uploaded();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].1 == bytes);
}

#[tokio::test]
async fn retry_after_on_a_503_and_on_a_308_is_waited_out() {
    let chunk = 262_144;
    let mut rig = rig_with(chunk).await;
    // Back-off of at most 2 s: a Retry-After of 1 s is within it and waited out.
    rig.youtube = Arc::new(
        YouTubePublisher::new(oauth(&rig.sim), rig.channels.clone(), cipher())
            .unwrap()
            .with_urls(&rig.sim.url, &rig.sim.url)
            .unwrap()
            .with_chunk_size(chunk)
            .with_clock(rig.clock.clone())
            .with_retry(UploadRetry {
                max_failures: 6,
                base: Duration::from_millis(5),
                max_delay: Duration::from_secs(2),
                max_restarts: 2,
            }),
    );
    let len = 3 * 262_144 + 5;
    let bytes = video_bytes(len);
    rig.put_media("videos/creator-1/patient.mp4", &bytes).await;
    rig.sim.lock().faults.extend([
        Fault::PauseAfter(1),            // the first chunk kept, then "wait 1 s"
        Fault::StatusRetryAfter(503, 1), // the second refused, "wait 1 s"
    ]);
    let journal = Arc::new(Journal::default());
    let request = rig.request("videos/creator-1/patient.mp4", len as u64);
    rig.publish(&request, journal.clone()).await.unwrap();
    assert_eq!(rig.sim.violations(), Vec::<String>::new());
    assert!(rig.sim.uploaded()[0].1 == bytes);
    let times = rig.sim.lock().put_times.clone();
    // PUTs: chunk 1 (308, wait), chunk 2 (503, wait), status query, chunk 2, chunk 3, chunk 4.
    assert!(times.len() >= 4, "{} PUTs", times.len());
    let gap = |i: usize| times[i + 1].duration_since(times[i]);
    assert!(
        gap(0) >= Duration::from_secs(1),
        "the 308's Retry-After was waited out ({:?})",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_secs(1),
        "the 503's Retry-After was waited out ({:?})",
        gap(1)
    );

    // With back-off capped at 50 ms, a 1 s Retry-After ends the try: the upload resumes
    // later from what the server holds, and nothing was sent in between.
    let rig = rig_with(chunk).await;
    rig.put_media("videos/creator-1/later.mp4", &bytes).await;
    rig.sim.fault(Fault::PauseAfter(1));
    let journal = Arc::new(Journal::default());
    let request = rig.request("videos/creator-1/later.mp4", len as u64);
    let ended = rig.publish(&request, journal.clone()).await;
    assert!(
        matches!(&ended, Err(e @ Error::RateLimited { .. }) if e.retry_after() == Some(Duration::from_secs(1))),
        "the try ends with the time YouTube asked for: {ended:?}"
    );
    assert_eq!(rig.sim.lock().put_times.len(), 1, "no byte before the wait");
    assert_eq!(
        journal.confirmed.lock().unwrap().last(),
        Some(&(chunk as u64)),
        "the kept chunk is journaled before the try ends"
    );
}

#[tokio::test]
async fn a_long_upload_refreshes_its_token_before_it_expires() {
    let chunk = 262_144;
    let rig = rig_with(chunk).await;
    let len = 4 * 262_144;
    let bytes = video_bytes(len);
    rig.put_media("videos/creator-1/long.mp4", &bytes).await;
    let issued = rig.sim.lock().issued;
    // After the first chunk, 58 minutes pass (the hour-long token has 2 left) and Google
    // stops taking the old token.
    let (clock, sim) = (rig.clock.clone(), rig.sim.clone());
    let once = std::sync::atomic::AtomicBool::new(false);
    let progress = ProgressReporter::new(move |p| {
        if p.uploaded > 0 && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            clock.advance(Duration::from_secs(58 * 60));
            sim.expire_access_tokens();
        }
    });
    let journal = Arc::new(Journal::default());
    let request = rig.request("videos/creator-1/long.mp4", len as u64);
    rig.youtube
        .publish(&request, rig.media.clone(), journal.clone(), progress)
        .await
        .unwrap();
    assert!(rig.sim.uploaded()[0].1 == bytes);
    let s = rig.sim.lock();
    assert_eq!(
        s.issued,
        issued + 1,
        "one refresh, before the token ran out"
    );
    assert_eq!(
        s.status_queries, 0,
        "no chunk was lost to a 401 (which would be followed by a status query)"
    );
    assert_eq!(s.violations, Vec::<String>::new());
}

#[tokio::test]
async fn a_journaled_session_is_resumed_from_the_servers_count_not_the_journals() {
    let chunk = 262_144;
    let rig = rig_with(chunk).await;
    let len = 4 * 262_144 + 7;
    let bytes = video_bytes(len);
    rig.put_media("videos/creator-1/resume.mp4", &bytes).await;
    // The first process: two chunks kept, the third's answer lost, then it stops.
    rig.sim.lock().faults.extend([
        Fault::Partial(chunk as u64),
        Fault::Partial(chunk as u64),
        Fault::DropAnswer,
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
    ]);
    let journal = Arc::new(Journal::default());
    let request = rig.request("videos/creator-1/resume.mp4", len as u64);
    let failed = rig.publish(&request, journal.clone()).await;
    assert!(
        matches!(failed, Err(Error::Unavailable { .. })),
        "{failed:?}"
    );
    rig.sim.lock().faults.clear();
    let session = journal.sessions.lock().unwrap()[0].clone();
    // Whoever holds the session URI can send bytes into the upload: the journal keeps it
    // sealed, bound to this job on this channel.
    assert!(
        session.uri.starts_with("v1:") && !session.uri.contains("upload_id"),
        "the journaled session URI is sealed: {}",
        session.uri
    );
    let elsewhere = PublishRequest {
        job: jilo_core::JobId::random(),
        session: Some(session.clone()),
        ..request.clone()
    };
    let refused = rig.publish(&elsewhere, Arc::new(Journal::default())).await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput { field, reason }) if field == "upload session" && reason.contains("cannot be opened")),
        "a session sealed for one job does not open for another (nor starts a second upload): {refused:?}"
    );
    assert_eq!(
        rig.sim.lock().sessions.len(),
        1,
        "no new session for a journal that does not open"
    );
    let journaled = *journal.confirmed.lock().unwrap().last().unwrap();
    assert_eq!(
        journaled,
        3 * 262_144,
        "the status query after the lost answer learnt of the third chunk"
    );
    // The second process resumes from a journal that lags the server (the first died
    // between the server keeping a chunk and the journal write): it asks before sending.
    let resumed = PublishRequest {
        session: Some(UploadSession {
            uri: session.uri.clone(),
            confirmed: 2 * 262_144,
        }),
        ..request
    };
    let before = rig.sim.lock().arrived;
    let second = Arc::new(Journal::default());
    rig.publish(&resumed, second.clone()).await.unwrap();
    assert!(second.sessions.lock().unwrap().is_empty(), "no new session");
    let uploads = rig.sim.uploaded();
    assert!(uploads[0].1 == bytes);
    let s = rig.sim.lock();
    assert_eq!(
        s.arrived - before,
        (len - 3 * 262_144) as u64,
        "the resumed upload sends only what the server lacks"
    );
    assert_eq!(s.kept, len as u64);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
}

#[tokio::test]
async fn thumbnail_playlist_locked_private_and_statistics() {
    let rig = rig_with(262_144).await;
    let bytes = video_bytes(300_000);
    rig.put_media("videos/creator-1/full.mp4", &bytes).await;
    let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[7u8; 5000]].concat();
    rig.put_media("thumbs/full.jpg", &jpeg).await;
    rig.sim.lock().keep_private = true;
    let mut request = rig.request("videos/creator-1/full.mp4", bytes.len() as u64);
    request.metadata.thumbnail_key = Some("thumbs/full.jpg".to_owned());
    request.metadata.playlist_id = Some("PLjilo".to_owned());
    let journal = Arc::new(Journal::default());
    let video = rig.publish(&request, journal.clone()).await.unwrap();
    assert!(video.locked_private, "asked public, kept private");
    assert_eq!(video.warnings.len(), 1, "{:?}", video.warnings);
    assert_eq!(
        journal.uploaded.lock().unwrap().len(),
        1,
        "journaled before the extras"
    );
    {
        let s = rig.sim.lock();
        assert_eq!(
            s.thumbnails.get(&video.video_id),
            Some(&("image/jpeg".to_owned(), jpeg.clone()))
        );
        assert_eq!(
            s.playlist_items,
            vec![("PLjilo".to_owned(), video.video_id.clone())]
        );
        let sessions: Vec<&support::google::Upload> = s.sessions.values().collect();
        assert_eq!(sessions.len(), 1);
        assert!(sessions[0].received == bytes);
        let meta = sessions[0].video.as_ref().unwrap();
        assert_eq!(
            meta["snippet"]["title"],
            json!("A paper boat on a rainy street")
        );
        assert_eq!(meta["snippet"]["tags"], json!(["ai video", "shorts"]));
        assert_eq!(meta["snippet"]["categoryId"], json!("22"));
        assert_eq!(meta["status"]["containsSyntheticMedia"], json!(true));
        assert!(s.violations.is_empty(), "{:?}", s.violations);
    }
    // A full playlist is a warning, not a failure.
    rig.put_media("videos/creator-1/second.mp4", &bytes).await;
    let mut second = rig.request("videos/creator-1/second.mp4", bytes.len() as u64);
    second.metadata.playlist_id = Some("PLfull".to_owned());
    second.metadata.privacy = Privacy::Private;
    second.metadata.publish_at = Some(Timestamp::from_millis(1_900_000_000_000));
    let v2 = rig
        .publish(&second, Arc::new(Journal::default()))
        .await
        .unwrap();
    assert!(!v2.locked_private, "asked private");
    assert!(
        v2.warnings.iter().any(|w| w.contains("PLfull")),
        "{:?}",
        v2.warnings
    );
    let sent = &rig
        .sim
        .uploaded()
        .into_iter()
        .find(|(v, _)| v["id"] == json!(v2.video_id))
        .unwrap()
        .0;
    assert_eq!(sent["status"]["publishAt"], json!("2030-03-17T17:46:40Z"));
    assert_eq!(sent["status"]["privacyStatus"], json!("private"));

    // Statistics, with the access token expired at Google before its time: one refresh.
    rig.sim.expire_access_tokens();
    let issued = rig.sim.lock().issued;
    let stats = rig
        .youtube
        .stats(
            &rig.user,
            CHANNEL_ID,
            &[
                video.video_id.clone(),
                "gone0000000".to_owned(),
                v2.video_id.clone(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rig.sim.lock().issued, issued + 1, "one refresh");
    assert_eq!(stats.len(), 2, "a video YouTube no longer has is left out");
    assert_eq!(stats[0].0, video.video_id);
    assert_eq!(stats[0].1.views, 12_345_678_901);
    assert_eq!(stats[0].1.likes, 42);
    assert_eq!(stats[0].1.comments, 7);
}

#[tokio::test]
async fn quota_and_upload_caps_are_typed_and_not_retried() {
    let rig = rig_with(262_144).await;
    rig.put_media("videos/creator-1/q.mp4", &video_bytes(1000))
        .await;
    let cases = [
        (
            403,
            json!({"error": {"code": 403, "message": "The request cannot be completed because you have exceeded your \u{003c}a href=\"/youtube/v3/getting-started#quota\"\u{003e}quota\u{003c}/a\u{003e}.",
                "errors": [{"domain": "youtube.quota", "reason": "quotaExceeded", "message": "quota"}]}}),
            QuotaLimit::ProjectDaily,
        ),
        (
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded for quota metric 'Video Uploads' and limit 'Video Uploads per day' of service 'youtube.googleapis.com'",
                "errors": [{"domain": "global", "reason": "rateLimitExceeded", "message": "x"}], "status": "RESOURCE_EXHAUSTED"}}),
            QuotaLimit::UploadsDaily,
        ),
        (
            400,
            json!({"error": {"code": 400, "message": "The user has exceeded the number of videos they may upload.",
                "errors": [{"domain": "youtube.video", "reason": "uploadLimitExceeded", "message": "x"}]}}),
            QuotaLimit::ChannelUploads,
        ),
    ];
    for (status, body, limit) in cases {
        rig.sim.lock().start_errors.push_back((status, body));
        let before = rig.sim.lock().requests.len();
        let got = rig
            .publish(
                &rig.request("videos/creator-1/q.mp4", 1000),
                Arc::new(Journal::default()),
            )
            .await;
        match got {
            Err(Error::QuotaExceeded {
                limit: l,
                retry_at: Some(at),
                ..
            }) => {
                assert_eq!(l, limit);
                assert!(at > rig.clock.now(), "tells when to try again");
            }
            other => panic!("{status}: {other:?}"),
        }
        let calls = rig.sim.lock().requests.len() - before;
        assert_eq!(calls, 1, "not retried ({status})");
    }
}

#[tokio::test]
async fn connecting_a_channel_runs_pkce_through_a_loopback_redirect() {
    let rig = rig_with(262_144).await;
    let other = UserId::new("creator-2");
    let redirect = LoopbackRedirect::bind().await.unwrap();
    let pending = rig.youtube.oauth().authorize(&redirect.uri()).unwrap();
    let url = url::Url::parse(&pending.url).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["redirect_uri"], redirect.uri());
    assert_eq!(pending.verifier().expose_secret().len(), 128);
    assert!(!format!("{pending:?}").contains(pending.state()));
    // The user's browser: consent at Google, redirected to the loopback listener.
    let waiting = tokio::spawn(redirect.wait(Duration::from_secs(10)));
    let browser = jilo_providers::http::client(Duration::from_secs(10)).unwrap();
    let page = browser.get(&pending.url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("connected"));
    let back = waiting.await.unwrap().unwrap();
    assert_eq!(back.state, pending.state());
    // The fresh token is refused once by the channel lookup: refreshed, looked up again.
    rig.sim.lock().refuse_channel_lookups = 1;
    let issued = rig.sim.lock().issued;
    let channel = rig
        .youtube
        .connect_channel(&other, &pending, &back.state, &back.code)
        .await
        .unwrap();
    assert_eq!(
        rig.sim.lock().issued,
        issued + 2,
        "the exchange, then one refresh"
    );
    assert_eq!(channel.channel_id, CHANNEL_ID);
    assert_eq!(channel.channel_name, CHANNEL_NAME);
    assert_eq!(rig.sim.violations(), Vec::<String>::new());
    let kept = rig
        .channels
        .channel(&other, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert!(kept.access_token.starts_with("v1:test-key:"));
    assert!(!kept.access_token.contains("ya29."), "sealed at rest");
    // The code is single-use; a forged state never reaches the token endpoint.
    let reuse = rig
        .youtube
        .connect_channel(&other, &pending, &back.state, &back.code)
        .await;
    assert!(
        matches!(reuse, Err(Error::ReconnectRequired { .. })),
        "{reuse:?}"
    );
    let tokens_before = rig.sim.lock().requests.len();
    let forged = rig
        .youtube
        .connect_channel(&other, &pending, "forged-state", &back.code)
        .await;
    assert!(matches!(forged, Err(Error::Unauthorized { .. })));
    assert_eq!(rig.sim.lock().requests.len(), tokens_before);
    // A verifier that does not match the challenge is refused by the server.
    let redirect = LoopbackRedirect::bind().await.unwrap();
    let fresh = rig.youtube.oauth().authorize(&redirect.uri()).unwrap();
    let waiting = tokio::spawn(redirect.wait(Duration::from_secs(10)));
    browser.get(&fresh.url).send().await.unwrap();
    let back = waiting.await.unwrap().unwrap();
    let tampered = PendingAuthorization::restore(
        fresh.url.clone(),
        fresh.redirect_uri.clone(),
        SecretString::from(fresh.state().to_owned()),
        SecretString::from("x".repeat(128)),
    );
    let refused = rig
        .youtube
        .connect_channel(&other, &tampered, &back.state, &back.code)
        .await;
    assert!(
        matches!(refused, Err(Error::ReconnectRequired { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn tokens_refresh_before_expiry_and_a_revoked_grant_asks_to_reconnect() {
    let rig = rig_with(262_144).await;
    let first = rig
        .youtube
        .access_token(&rig.user, CHANNEL_ID, false)
        .await
        .unwrap();
    assert_eq!(rig.sim.lock().issued, 0, "a fresh token is used as kept");
    // 56 minutes later: under five minutes left, so it is refreshed, sealed and kept.
    rig.clock.advance(Duration::from_secs(56 * 60));
    let second = rig
        .youtube
        .access_token(&rig.user, CHANNEL_ID, false)
        .await
        .unwrap();
    assert_eq!(rig.sim.lock().issued, 1);
    assert_ne!(first.expose_secret(), second.expose_secret());
    let kept = rig
        .channels
        .channel(&rig.user, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.access_expires_at,
        rig.clock.now().plus(Duration::from_secs(3599))
    );
    let again = rig
        .youtube
        .access_token(&rig.user, CHANNEL_ID, false)
        .await
        .unwrap();
    assert_eq!(
        again.expose_secret(),
        second.expose_secret(),
        "then kept again"
    );
    assert_eq!(rig.sim.lock().issued, 1);
    // The user revokes access at Google: the next refresh is `invalid_grant`.
    let refresh = {
        let s = rig.sim.lock();
        s.refresh_tokens.keys().next().unwrap().clone()
    };
    rig.youtube
        .oauth()
        .revoke(&SecretString::from(refresh.clone()))
        .await
        .unwrap();
    rig.youtube
        .oauth()
        .revoke(&SecretString::from(refresh))
        .await
        .expect("revoking twice is fine");
    let gone = rig.youtube.access_token(&rig.user, CHANNEL_ID, true).await;
    match gone {
        Err(Error::ReconnectRequired {
            account, reason, ..
        }) => {
            assert_eq!(account, CHANNEL_ID);
            assert!(reason.contains("revoked"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Disconnecting revokes at Google and forgets the tokens.
    let rig = rig_with(262_144).await;
    rig.youtube
        .disconnect_channel(&rig.user, CHANNEL_ID)
        .await
        .unwrap();
    assert_eq!(rig.sim.lock().revoked.len(), 1);
    assert!(rig
        .channels
        .channel(&rig.user, CHANNEL_ID)
        .await
        .unwrap()
        .is_none());
    // A token sealed under another key is a clear error, never garbage.
    let rig = rig_with(262_144).await;
    let other_key = YouTubePublisher::new(
        oauth(&rig.sim),
        rig.channels.clone(),
        TokenCipher::new("test-key", &[9u8; 32]).unwrap(),
    )
    .unwrap();
    let wrong = other_key.access_token(&rig.user, CHANNEL_ID, false).await;
    assert!(wrong.is_err() && !matches!(wrong, Err(Error::ReconnectRequired { .. })));
    // Tokens sealed for one user's channel, copied onto another user's row, do not open
    // there: the seal is bound to the user and the channel, at the publisher too.
    let rig = rig_with(262_144).await;
    let mut copied = rig
        .channels
        .channel(&rig.user, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    let intruder = UserId::new("intruder");
    copied.user = intruder.clone();
    rig.channels.save_channel(&copied).await.unwrap();
    for force in [false, true] {
        match rig.youtube.access_token(&intruder, CHANNEL_ID, force).await {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "token"),
            other => panic!("a token sealed for another user must not open: {other:?}"),
        }
    }
    let tokens_before = rig.sim.lock().requests.len();
    assert!(rig
        .youtube
        .access_token(&intruder, CHANNEL_ID, true)
        .await
        .is_err());
    assert_eq!(
        rig.sim.lock().requests.len(),
        tokens_before,
        "no refresh token of another user's was ever sent to Google"
    );
    // The rightful owner's still open.
    assert!(rig
        .youtube
        .access_token(&rig.user, CHANNEL_ID, false)
        .await
        .is_ok());
}

/// A writer that keeps what the tracing subscriber prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_token_or_secret_reaches_debug_or_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The process-wide subscriber: a scoped one can miss events whose call sites other tests,
    // running at the same time without one, registered first. Other tests' lines land in the
    // capture too; the secrets looked for are this test's.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let (secrets, debug) = {
        runtime.block_on(async {
            let rig = rig_with(262_144).await;
            let redirect = LoopbackRedirect::bind().await.unwrap();
            let pending = rig.youtube.oauth().authorize(&redirect.uri()).unwrap();
            let waiting = tokio::spawn(redirect.wait(Duration::from_secs(10)));
            let browser = jilo_providers::http::client(Duration::from_secs(10)).unwrap();
            browser.get(&pending.url).send().await.unwrap();
            let back = waiting.await.unwrap().unwrap();
            let channel = rig
                .youtube
                .connect_channel(&rig.user, &pending, &back.state, &back.code)
                .await
                .unwrap();
            rig.sim.expire_access_tokens();
            rig.put_media("videos/creator-1/log.mp4", &video_bytes(300_000))
                .await;
            rig.sim.fault(Fault::Status(503));
            let request = rig.request("videos/creator-1/log.mp4", 300_000);
            let journal = Arc::new(Journal::default());
            // Expired at Google but not by the clock: a 401 mid-upload, one refresh.
            rig.publish(&request, journal.clone()).await.unwrap();
            let s = rig.sim.lock();
            let mut secrets: Vec<String> = s.access_tokens.keys().cloned().collect();
            secrets.extend(s.refresh_tokens.keys().cloned());
            secrets.push(CLIENT_SECRET.to_owned());
            secrets.push(pending.verifier().expose_secret().to_owned());
            secrets.push(back.code.clone());
            // The session's upload id (the journal keeps the URI sealed).
            assert_eq!(s.sessions.len(), 1);
            secrets.extend(s.sessions.keys().cloned());
            let debug = format!(
                "{:?} {:?} {:?} {:?} {:?}",
                rig.youtube,
                channel,
                pending,
                journal.sessions.lock().unwrap(),
                rig.youtube.oauth()
            );
            (secrets, debug)
        })
    };
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("upload session opened"),
        "the flow logged: {logs}"
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret in the logs");
        assert!(
            !debug.contains(secret.as_str()),
            "a secret in Debug: {debug}"
        );
    }
}

/// A token answer the client cannot read may hold tokens: the error keeps only its size.
#[tokio::test]
async fn an_unreadable_token_answer_never_puts_its_body_in_the_error() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"access_token":"ya29.LEAKED-IF-SHOWN","refresh_token":"1//LEAKED","expires_in":"soon","token_type":"Bearer"}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let oauth = GoogleOAuth::new(CLIENT_ID, SecretString::from(CLIENT_SECRET))
        .unwrap()
        .with_endpoints(
            format!("{}/auth", server.uri()),
            format!("{}/token", server.uri()),
            format!("{}/revoke", server.uri()),
        )
        .unwrap();
    let err = oauth
        .refresh(
            CHANNEL_ID,
            &SecretString::from("1//r"),
            Timestamp::from_millis(0),
        )
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("LEAKED"), "{shown}");
    assert!(err.is_retryable(), "{err:?}");
}

/// The simulator's fault switches, as a demo or the chaos test flips them: a dropped chunk
/// and an expired session are resumed through, an exhausted quota is a typed error with its
/// reset time, a refused OAuth client and a service that is down end the try.
#[tokio::test]
async fn the_simulators_fault_switches_read_as_the_publisher_expects() {
    use jilo_sim::Service;
    let chunk = 262_144;
    let len = 3 * chunk + 11;
    let bytes = video_bytes(len);

    for switch in [
        (|f: &mut jilo_sim::ServiceFaults| f.drop_uploads = 1) as fn(&mut jilo_sim::ServiceFaults),
        |f| f.expire_uploads = 1,
    ] {
        let rig = rig_with(chunk).await;
        rig.put_media("videos/creator-1/switch.mp4", &bytes).await;
        rig.sim.switches().update(Service::Youtube, switch);
        let journal = Arc::new(Journal::default());
        let request = rig.request("videos/creator-1/switch.mp4", len as u64);
        rig.publish(&request, journal).await.unwrap();
        assert!(rig.sim.uploaded()[0].1 == bytes, "the bytes arrive whole");
        assert_eq!(
            rig.sim.switches().get(Service::Youtube),
            Default::default(),
            "the fault was spent"
        );
        assert_eq!(rig.sim.violations(), Vec::<String>::new());
    }

    let rig = rig_with(chunk).await;
    rig.put_media("videos/creator-1/quota.mp4", &bytes).await;
    rig.sim
        .switches()
        .update(Service::Youtube, |f| f.quota_exhausted = true);
    let request = rig.request("videos/creator-1/quota.mp4", len as u64);
    let ended = rig.publish(&request, Arc::new(Journal::default())).await;
    assert!(
        matches!(
            &ended,
            Err(Error::QuotaExceeded {
                limit: QuotaLimit::ProjectDaily,
                ..
            })
        ),
        "{ended:?}"
    );
    assert!(
        ended.unwrap_err().to_string().contains("reset"),
        "the message says when it resets"
    );

    rig.sim.switches().clear();
    rig.sim
        .switches()
        .update(Service::Youtube, |f| f.rate_limited = Some(7));
    let ended = rig.publish(&request, Arc::new(Journal::default())).await;
    let err = ended.unwrap_err();
    assert_eq!(err.kind(), jilo_core::ErrorKind::RateLimited, "{err}");

    rig.sim.switches().clear();
    rig.sim
        .switches()
        .update(Service::Youtube, |f| f.down = true);
    let ended = rig.publish(&request, Arc::new(Journal::default())).await;
    assert_eq!(ended.unwrap_err().kind(), jilo_core::ErrorKind::Unavailable);

    rig.sim.switches().clear();
    rig.sim
        .switches()
        .update(Service::Youtube, |f| f.key_rejected = true);
    rig.sim.expire_access_tokens();
    let ended = rig.publish(&request, Arc::new(Journal::default())).await;
    assert_eq!(
        ended.unwrap_err().kind(),
        jilo_core::ErrorKind::Unauthorized
    );
}
