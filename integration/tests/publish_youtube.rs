//! Publishing through the Studio on SQLite with the real YouTube client against the local
//! Google stand-in: durable records, publishing twice, quota failures, resumption after an
//! outage, statistics, and an uploading process killed part-way (SIGKILL) whose upload the
//! next process resumes so the server keeps every byte exactly once.
//!
//! The restart test spawns this test binary again as its children; `JILO_PUBLISH_CHILD` tells
//! a copy which part to play.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../jilo-store/tests/support/moto.rs"]
mod moto;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "../../jilo-providers/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jilo::providers::tokens::TokenCipher;
use jilo::providers::youtube::{GoogleOAuth, UploadRetry, YouTubePublisher};
use jilo::store::{ObjectMediaStore, SqlStore, SqlStoreOptions, StoreUrl};
use jilo::testing::{MockCreativeModel, SimProvider, SIM_MODEL};
use jilo::{
    ChannelStore, Error, Grant, JobId, JobState, MetadataSuggestion, Policy, Privacy,
    ProgressReporter, PublicationState, PublishMetadata, QuotaLimit, QuotaStore, Studio, Timestamp,
    UploadProgress, UserId, VideoRequest,
};
use secrecy::SecretString;
use serde_json::json;
use support::google::{Fault, GoogleSim, CHANNEL_ID, CLIENT_ID, CLIENT_SECRET};
use tokio::io::AsyncBufReadExt;

const CHILD: &str = "JILO_PUBLISH_CHILD";
const KEY: [u8; 32] = [7u8; 32];

fn cipher() -> TokenCipher {
    TokenCipher::new("k1", &KEY).unwrap()
}

fn mp4(len: usize) -> Vec<u8> {
    let mut body = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    let mut x: u32 = 0x1234_5678;
    while body.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        body.push((x >> 24) as u8);
    }
    body.truncate(len);
    body
}

fn metadata() -> PublishMetadata {
    PublishMetadata {
        title: "Lanterns drifting over a lake".to_owned(),
        description: "Made with jilo.".to_owned(),
        tags: vec!["ai".to_owned(), "lanterns".to_owned()],
        category_id: Some("22".to_owned()),
        privacy: Privacy::Unlisted,
        publish_at: None,
        playlist_id: None,
        thumbnail_key: None,
    }
}

async fn open(url: &str) -> Arc<SqlStore> {
    let store = SqlStore::connect(&StoreUrl::parse(url).unwrap(), SqlStoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

fn studio(
    store: Arc<SqlStore>,
    media: Arc<ObjectMediaStore>,
    google: &str,
    lease: Duration,
) -> Studio {
    let oauth = GoogleOAuth::new(CLIENT_ID, SecretString::from(CLIENT_SECRET))
        .unwrap()
        .with_endpoints(
            format!("{google}/o/oauth2/v2/auth"),
            format!("{google}/token"),
            format!("{google}/revoke"),
        )
        .unwrap();
    let youtube = YouTubePublisher::new(oauth, store.clone(), cipher())
        .unwrap()
        .with_urls(google, google)
        .unwrap()
        .with_chunk_size(256 * 1024)
        .with_retry(UploadRetry {
            max_failures: 4,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_restarts: 2,
        });
    let mut creative = MockCreativeModel::new();
    creative.expect_suggest_metadata().returning(|brief| {
        Ok(MetadataSuggestion {
            titles: vec![format!("<{}>", brief.prompt), "x".repeat(140)],
            description: "A calm night.".to_owned(),
            tags: (0..18).map(|i| format!("tag {i}")).collect(),
        })
    });
    Studio::builder()
        .provider(Arc::new(SimProvider::new("sim")))
        .store(store)
        .media_store(media)
        .publisher(Arc::new(youtube))
        .creative_model(Arc::new(creative))
        .policy(Policy {
            publish_lease: lease,
            ..Policy::default()
        })
        .build()
        .unwrap()
}

struct Setup {
    google: GoogleSim,
    _video_server: wiremock::MockServer,
    db: String,
    media: PathBuf,
    media_store: Arc<ObjectMediaStore>,
    _moto: Option<moto::Moto>,
    studio: Studio,
    user: UserId,
    body: Vec<u8>,
}

/// A finished job whose video (of `len` bytes) is in media storage, and a connected channel.
async fn setup(len: usize, lease: Duration) -> Setup {
    setup_on(len, lease, None, Storage::Local)
        .await
        .expect("a local directory is always there")
}

/// Where the Studio keeps its media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    Local,
    S3,
}

/// `None` when S3 is asked for and moto's server is not installed (outside CI).
async fn setup_on(
    len: usize,
    lease: Duration,
    database: Option<String>,
    storage: Storage,
) -> Option<Setup> {
    let google = GoogleSim::start().await.unwrap();
    let dir = std::env::temp_dir()
        .join("jilo-publish-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let db = database.unwrap_or_else(|| format!("sqlite://{}", dir.join("jilo.db").display()));
    let media = dir.join("media");
    let (media_store, moto) = match storage {
        Storage::Local => (Arc::new(ObjectMediaStore::local(&media).unwrap()), None),
        Storage::S3 => {
            let moto = moto::start().await?;
            moto.bucket("jilo-media").await;
            (
                Arc::new(ObjectMediaStore::s3(moto.builder("jilo-media")).unwrap()),
                Some(moto),
            )
        }
    };
    let store = open(&db).await;
    let studio = studio(store.clone(), media_store.clone(), &google.url, lease);
    let user = UserId::new("publisher-1");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    // A channel connected earlier.
    store
        .save_channel(&support::connected_channel(
            &google,
            &user,
            &cipher(),
            Timestamp::from_system(std::time::SystemTime::now()),
        ))
        .await
        .unwrap();
    let body = mp4(len);
    let video_server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
        .mount(&video_server)
        .await;
    Some(Setup {
        google,
        _video_server: video_server,
        db,
        media,
        media_store,
        _moto: moto,
        studio,
        user,
        body,
    })
}

impl Setup {
    /// Publishes `job` to the channel with the usual metadata, reporting progress nowhere.
    async fn publish(&self, job: &JobId) -> Result<jilo::Publication, Error> {
        self.studio
            .publish(
                &self.user,
                job,
                CHANNEL_ID,
                metadata(),
                ProgressReporter::none(),
            )
            .await
    }

    /// Generates a job through the simulated provider and stores its video.
    async fn finished_job(&self) -> JobId {
        let sim = SimProvider::new("sim");
        let job = self
            .studio
            .generate(
                &self.user,
                VideoRequest::new("Lanterns drifting over a lake at night", SIM_MODEL, 5),
            )
            .await
            .unwrap();
        let rid = self
            .studio
            .job(&job)
            .await
            .unwrap()
            .provider_request_id
            .unwrap();
        let delivery = sim.succeeded(&rid, &format!("{}/v.mp4", self._video_server.uri()));
        self.studio
            .handle_webhook(&"sim".into(), &delivery)
            .await
            .unwrap();
        self.studio.tick().await.unwrap();
        assert_eq!(
            self.studio.job(&job).await.unwrap().state,
            JobState::Completed
        );
        job
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_thumbnail_after_the_upload_ends_published_with_its_thumbnail() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    // The lease is renewed every 100 ms; the thumbnail takes 700 ms after the video exists.
    let s = setup(262_144 + 1, Duration::from_millis(300)).await;
    let job = s.finished_job().await;
    let thumb = b"\xff\xd8\xff\xe0 a small thumbnail".to_vec();
    s.media_store
        .put("thumbnails/lanterns.jpg", thumb.clone().into())
        .await
        .unwrap();
    s.google.lock().thumbnail_delay = Some(Duration::from_millis(700));
    let mut meta = metadata();
    meta.thumbnail_key = Some("thumbnails/lanterns.jpg".to_owned());
    let published = s
        .studio
        .publish(&s.user, &job, CHANNEL_ID, meta, ProgressReporter::none())
        .await
        .expect("published, not cut short by a lease renewal after the upload");
    assert_eq!(published.state, PublicationState::Published);
    assert!(published.notes.is_empty(), "{:?}", published.notes);
    let video = published.video_id.unwrap();
    assert_eq!(
        s.google.lock().thumbnails.get(&video).map(|t| t.1.clone()),
        Some(thumb),
        "the thumbnail was set"
    );
    assert_eq!(s.google.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_youtube_asks_for_holds_the_upload_until_then() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let s = setup(3 * 262_144, Duration::from_secs(60)).await;
    let job = s.finished_job().await;
    // The first chunk is kept, then "come back in two minutes": longer than the back-off.
    s.google.fault(Fault::PauseAfter(120));
    let before = Timestamp::from_system(std::time::SystemTime::now());
    let paused = s.publish(&job).await;
    assert!(
        matches!(&paused, Err(e @ Error::RateLimited { .. }) if e.retry_after() == Some(Duration::from_secs(120))),
        "{paused:?}"
    );
    let record = s
        .studio
        .publication(&job, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, PublicationState::Uploading);
    assert_eq!(record.session.as_ref().map(|x| x.confirmed), Some(262_144));
    let until = record.lease.as_ref().map(|l| l.until).unwrap();
    assert!(
        until >= before.plus(Duration::from_secs(119)),
        "the record is held until YouTube's time: {until:?}"
    );
    let sent = s.google.lock().requests.len();
    assert_eq!(s.studio.resume_publications().await, 0);
    assert_eq!(
        s.google.lock().requests.len(),
        sent,
        "nothing is asked before the time is up"
    );
    assert_eq!(
        s.studio
            .publication(&job, CHANNEL_ID)
            .await
            .unwrap()
            .unwrap()
            .attempts,
        record.attempts,
        "no attempt is spent on the pause"
    );

    // An absurd pause (ten days) holds the record a day at most.
    let job2 = s.finished_job().await;
    s.google.fault(Fault::PauseAfter(10 * 86_400));
    assert!(matches!(
        s.publish(&job2).await,
        Err(Error::RateLimited { .. })
    ));
    let held = s
        .studio
        .publication(&job2, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    let until = held.lease.as_ref().map(|l| l.until).unwrap();
    let now = Timestamp::from_system(std::time::SystemTime::now());
    assert!(
        until <= now.plus(Duration::from_secs(86_400)),
        "held a day at most: {until:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_is_durable_and_publishing_twice_returns_the_first() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    durable(Storage::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_from_s3_storage_is_durable_as_from_a_directory() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    durable(Storage::S3).await;
}

async fn durable(storage: Storage) {
    let Some(s) = setup_on(3 * 262_144 + 99, Duration::from_secs(60), None, storage).await else {
        return;
    };
    let job = s.finished_job().await;

    // Suggestions come cut to YouTube's rules.
    let suggestion = s
        .studio
        .suggest_metadata(&s.user, &job, vec!["lanterns".into()])
        .await
        .unwrap();
    assert!(suggestion
        .titles
        .iter()
        .all(|t| !t.contains('<') && t.chars().count() <= 100));
    assert_eq!(suggestion.tags.len(), 15);

    let seen = Arc::new(Mutex::new(Vec::<UploadProgress>::new()));
    let sink = seen.clone();
    let published = s
        .studio
        .publish(
            &s.user,
            &job,
            CHANNEL_ID,
            metadata(),
            ProgressReporter::new(move |p| sink.lock().unwrap().push(p)),
        )
        .await
        .unwrap();
    assert_eq!(published.state, PublicationState::Published);
    let video_id = published.video_id.clone().unwrap();
    assert_eq!(
        published.url.as_deref(),
        Some(format!("https://www.youtube.com/watch?v={video_id}").as_str())
    );
    let uploads = s.google.uploaded();
    assert_eq!(uploads.len(), 1);
    assert!(
        uploads[0].1 == s.body,
        "the stored video arrives byte for byte"
    );
    let progress = seen.lock().unwrap().clone();
    assert_eq!(
        progress.last().map(|p| (p.uploaded, p.total)),
        Some((s.body.len() as u64, s.body.len() as u64))
    );
    assert!(progress.windows(2).all(|w| w[0].uploaded <= w[1].uploaded));

    // Again: the first publication, no second upload.
    let puts = s.google.lock().requests.len();
    let again = s.publish(&job).await.unwrap();
    assert_eq!(again.video_id.as_deref(), Some(video_id.as_str()));
    assert_eq!(s.google.lock().requests.len(), puts, "nothing sent");
    assert_eq!(s.google.uploaded().len(), 1);

    // Another user cannot publish this job; bad metadata writes nothing.
    let stranger = s
        .studio
        .publish(
            &UserId::new("someone-else"),
            &job,
            CHANNEL_ID,
            metadata(),
            ProgressReporter::none(),
        )
        .await;
    assert!(matches!(stranger, Err(Error::NotFound { .. })));
    let mut bad = metadata();
    bad.publish_at = Some(Timestamp::from_millis(1_900_000_000_000));
    let job2 = s.finished_job().await;
    assert!(matches!(
        s.studio.publish(&s.user, &job2, CHANNEL_ID, bad, ProgressReporter::none()).await,
        Err(Error::InvalidInput { ref field, .. }) if field == "publish_at"
    ));
    assert!(s
        .studio
        .publication(&job2, CHANNEL_ID)
        .await
        .unwrap()
        .is_none());

    // A quota answer ends the record as failed; publishing again starts over.
    s.google.lock().start_errors.push_back((
        403,
        json!({"error": {"code": 403, "message": "quota", "errors": [{"reason": "quotaExceeded", "domain": "youtube.quota"}]}}),
    ));
    let quota = s.publish(&job2).await;
    assert!(
        matches!(
            quota,
            Err(Error::QuotaExceeded {
                limit: QuotaLimit::ProjectDaily,
                ..
            })
        ),
        "{quota:?}"
    );
    let failed = s
        .studio
        .publication(&job2, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.state, PublicationState::Failed);
    assert!(failed.notes[0].contains("quota"), "{:?}", failed.notes);

    // An outage mid-upload leaves it uploading with its session; the worker resumes it.
    s.google.lock().faults.extend([
        Fault::Partial(262_144),
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
    ]);
    let outage = s.publish(&job2).await;
    assert!(
        matches!(outage, Err(Error::Unavailable { .. })),
        "{outage:?}"
    );
    let paused = s
        .studio
        .publication(&job2, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paused.state, PublicationState::Uploading);
    assert_eq!(paused.session.as_ref().map(|x| x.confirmed), Some(262_144));
    assert!(
        paused.lease.is_none(),
        "the lease is given back for the worker"
    );
    assert_eq!(
        paused.attempts, 1,
        "publishing again after a failure counts its own attempts"
    );
    // The worker's resumption reports its progress to the process's upload watchers.
    let mut watching = s.studio.watch_uploads();
    assert_eq!(s.studio.resume_publications().await, 1);
    let mut updates = Vec::new();
    while let Ok(Some(u)) = tokio::time::timeout(
        Duration::from_millis(50),
        futures::StreamExt::next(&mut watching),
    )
    .await
    {
        updates.push(u);
    }
    assert!(
        updates
            .iter()
            .all(|u| u.job == job2 && u.channel_id == CHANNEL_ID),
        "{updates:?}"
    );
    let total = s.body.len() as u64;
    assert_eq!(
        updates
            .last()
            .map(|u| (u.progress.uploaded, u.progress.total)),
        Some((total, total)),
        "the resumed upload's progress reached the watcher: {updates:?}"
    );
    assert!(updates
        .first()
        .is_some_and(|u| u.progress.uploaded >= 262_144));
    let done = s
        .studio
        .publication(&job2, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, PublicationState::Published);
    let sessions = s.google.lock().sessions.len();
    assert_eq!(
        sessions, 2,
        "one session per job: the resumption reused its own"
    );
    assert!(
        s.google.violations().is_empty(),
        "{:?}",
        s.google.violations()
    );

    // Statistics, kept on the records.
    assert_eq!(s.studio.sync_stats().await.unwrap(), 2);
    let read = s
        .studio
        .publication(&job, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    let (stats, _) = read.stats.unwrap();
    assert!(stats.views >= 12_345_678_901);
    assert_eq!((stats.likes, stats.comments), (42, 7));
    assert_eq!(
        s.studio.sync_stats().await.unwrap(),
        0,
        "not again within the interval"
    );
    let _ = s.db;
}

/// Child roles of the restart test.
async fn child(role: &str) {
    let db = std::env::var("JILO_PUBLISH_DB").unwrap();
    let media = PathBuf::from(std::env::var("JILO_PUBLISH_MEDIA").unwrap());
    let google = std::env::var("JILO_PUBLISH_GOOGLE").unwrap();
    let store = open(&db).await;
    let studio = studio(
        store,
        Arc::new(ObjectMediaStore::local(&media).unwrap()),
        &google,
        Duration::from_millis(800),
    );
    match role {
        "publish" => {
            let job = JobId::new(std::env::var("JILO_PUBLISH_JOB").unwrap());
            let user = UserId::new(std::env::var("JILO_PUBLISH_USER").unwrap());
            println!("started");
            let out = studio
                .publish(
                    &user,
                    &job,
                    CHANNEL_ID,
                    metadata(),
                    ProgressReporter::none(),
                )
                .await;
            println!("ended {:?}", out.map(|p| p.state));
        }
        "resume" => {
            let n = studio.resume_publications().await;
            println!("published {n}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(test: &str, role: &str, s: &Setup, job: &JobId) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .env("JILO_PUBLISH_DB", &s.db)
        .env("JILO_PUBLISH_MEDIA", &s.media)
        .env("JILO_PUBLISH_GOOGLE", &s.google.url)
        .env("JILO_PUBLISH_JOB", job.as_str())
        .env("JILO_PUBLISH_USER", s.user.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_uploader_is_resumed_by_the_next_process() {
    if let Ok(role) = std::env::var(CHILD) {
        child(&role).await;
        return;
    }
    killed_and_resumed("a_killed_uploader_is_resumed_by_the_next_process", None).await;
}

/// The same on Postgres: the processes share the database over the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_uploader_is_resumed_by_the_next_process_on_postgres() {
    if let Ok(role) = std::env::var(CHILD) {
        child(&role).await;
        return;
    }
    let Some(db) = postgres::database("jilo_pub").await else {
        return;
    };
    killed_and_resumed(
        "a_killed_uploader_is_resumed_by_the_next_process_on_postgres",
        Some(db.clone()),
    )
    .await;
    postgres::drop(&db).await;
}

async fn killed_and_resumed(test: &str, database: Option<String>) {
    let len = 24 * 262_144 + 1_234;
    let s = setup_on(len, Duration::from_secs(60), database, Storage::Local)
        .await
        .unwrap();
    let job = s.finished_job().await;
    s.google.lock().put_delay = Some(Duration::from_millis(60));

    let mut uploader = spawn(test, "publish", &s, &job);
    let mut lines = tokio::io::BufReader::new(uploader.stdout.take().unwrap()).lines();
    // libtest speaks first ("running 1 test"); the child says when it starts.
    loop {
        match lines.next_line().await.unwrap() {
            Some(line) if line.ends_with("started") => break,
            Some(_) => {}
            None => panic!("the uploading child ended before it started"),
        }
    }
    // Kill it once the server holds a third of the video.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.google.lock().kept < (len / 3) as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    uploader.kill().await.unwrap(); // SIGKILL
    let held_at_kill = s.google.lock().kept;
    assert!(held_at_kill < len as u64, "killed part-way");
    let left = s
        .studio
        .publication(&job, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.state, PublicationState::Uploading);
    let session = left
        .session
        .clone()
        .expect("the session URI was kept before any byte");
    assert!(session.confirmed > 0 && session.confirmed <= held_at_kill);

    // The next process, once the dead one's lease lapsed, resumes from the confirmed byte:
    // wait until the record says its lease is over (by the wall clock both processes use).
    let lease_end = left.lease.as_ref().map(|l| l.until);
    while let Some(until) = lease_end {
        let now = jilo::Timestamp::from_system(std::time::SystemTime::now());
        if left.claimable_at(now) || now > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.google.lock().put_delay = None;
    let queries_before = s.google.lock().status_queries;
    let mut resumer = spawn(test, "resume", &s, &job);
    let out = tokio::io::BufReader::new(resumer.stdout.take().unwrap());
    let mut out_lines = out.lines();
    let mut said = Vec::new();
    while let Some(line) = out_lines.next_line().await.unwrap() {
        said.push(line);
    }
    assert!(resumer.wait().await.unwrap().success());
    assert!(said.iter().any(|l| l.ends_with("published 1")), "{said:?}");

    {
        let g = s.google.lock();
        assert_eq!(
            g.sessions.len(),
            1,
            "the same session was resumed, not a new one"
        );
        let upload = g.sessions.values().next().unwrap();
        assert!(upload.received == s.body, "every byte, in order");
        assert_eq!(
            g.kept, len as u64,
            "the server kept every byte exactly once"
        );
        assert!(
            g.status_queries > queries_before,
            "the resumer asked what the server held"
        );
        assert!(g.violations.is_empty(), "{:?}", g.violations);
    }
    let done = s
        .studio
        .publication(&job, CHANNEL_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, PublicationState::Published);
    assert_eq!(done.attempts, 2);
}
