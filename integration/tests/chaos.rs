//! Chaos: four worker processes on one Postgres, media on S3-compatible storage (moto), jobs
//! (generations and publications) against the simulators of `jilo-sim` while faults are
//! switched on and off and workers are killed with SIGKILL and restarted, at random from a
//! seed. At the end every job is terminal, every hold ended exactly once, every user's
//! credits add up (`granted = available + held + spent + expired`), no FAL submission was
//! billed twice for one attempt nor a 速创 one more often than the job's attempts, every
//! published video's bytes are the stored file's, and the one out-of-funds outage sent exactly
//! one alert.
//!
//! `JILO_CHAOS_SEED` and `JILO_CHAOS_JOBS` (default 60) choose the run; the figures are printed.
//! The test spawns this binary again as its workers (`JILO_CHAOS_CHILD`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../jilo-store/tests/support/moto.rs"]
mod moto;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "../../jilo-providers/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use jilo::ledger::{HistoryQuery, LedgerEntryKind};
use jilo::providers::fal::FalProvider;
use jilo::providers::notify::ChatWebhookNotifier;
use jilo::providers::suchuang::SuchuangProvider;
use jilo::providers::tokens::TokenCipher;
use jilo::providers::youtube::{GoogleOAuth, YouTubePublisher};
use jilo::store::{ObjectMediaStore, SqlStore, StoreUrl};
use jilo::{
    Backoff, ChannelStore, Grant, JobState, MediaStore, Policy, Privacy, ProgressReporter,
    PublicationState, PublishMetadata, QuotaStore, Studio, SubmissionKey, Timestamp, UserId,
    VideoRequest, WebhookDelivery,
};
use jilo_sim::{Pace, Service, SimConfig, Simulators, WebhookFault};

const CHILD: &str = "JILO_CHAOS_CHILD";
const TEST: &str = "many_jobs_survive_faults_and_killed_workers";
const WORKERS: usize = 4;
const USERS: usize = 8;
const TOKEN_KEY: [u8; 32] = [42; 32];

/// splitmix64: the run's choices, from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn policy(hooks: &str) -> Policy {
    Policy {
        webhook_base_url: Some(hooks.to_owned()),
        deadline: Duration::from_secs(20),
        poll_interval: Duration::from_millis(300),
        webhook_backstop: Duration::from_secs(2),
        retry_backoff: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        tick_interval: Duration::from_millis(100),
        lease: Duration::from_secs(3),
        submit_grace: Duration::from_secs(3),
        call_timeout: Duration::from_secs(20),
        provider_cooldown: Duration::from_secs(2),
        publish_lease: Duration::from_secs(3),
        publish_check_interval: Duration::from_millis(500),
        ..Policy::default()
    }
}

/// A worker process: the Studio from the environment, working until it is killed.
async fn child() {
    let store = Arc::new(SqlStore::open_from_env().await.unwrap());
    let oauth = GoogleOAuth::from_env().unwrap();
    let youtube = YouTubePublisher::new(oauth, store.clone(), TokenCipher::from_env().unwrap())
        .unwrap()
        .with_chunk_size(256 * 1024);
    let studio = Studio::builder()
        .provider(Arc::new(SuchuangProvider::from_env().unwrap()))
        .provider(Arc::new(FalProvider::from_env().unwrap()))
        .store(store)
        .media_store(Arc::new(ObjectMediaStore::from_env().unwrap()))
        .publisher(Arc::new(youtube))
        .notifier(Arc::new(ChatWebhookNotifier::from_env().unwrap()))
        .policy(policy(&std::env::var("JILO_CHAOS_HOOKS").unwrap()))
        .worker_name(std::env::var(CHILD).unwrap())
        .build()
        .unwrap();
    println!("working");
    studio.run(futures::future::pending::<()>()).await;
}

/// A small HTTP server for the test: the Studio's webhook route and the chat alerts.
async fn serve(listener: tokio::net::TcpListener, studio: Studio, alerts: Arc<Mutex<Vec<String>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let studio = studio.clone();
        let alerts = alerts.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let studio = studio.clone();
                    let alerts = alerts.clone();
                    async move {
                        let path: Vec<String> =
                            req.uri().path().split('/').map(str::to_owned).collect();
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = match path.as_slice() {
                            [_, hooks, provider, job, attempt] if hooks == "hooks" => {
                                let delivery = WebhookDelivery::from_http(&headers, body)
                                    .for_submission(
                                        SubmissionKey::from_route(job, attempt).unwrap(),
                                    );
                                match studio
                                    .handle_webhook(&provider.as_str().into(), &delivery)
                                    .await
                                {
                                    Ok(_) => 200,
                                    Err(_) => 500,
                                }
                            }
                            [_, a] if a == "alerts" => {
                                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                                alerts
                                    .lock()
                                    .unwrap()
                                    .push(v["text"].as_str().unwrap_or("").to_owned());
                                200
                            }
                            _ => 404,
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Workers {
    env: Vec<(String, String)>,
    children: Vec<tokio::process::Child>,
    started: usize,
}

impl Workers {
    async fn spawn(&mut self) -> tokio::process::Child {
        self.started += 1;
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(CHILD, format!("worker-{}", self.started))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Ready when it says so (a readiness signal, not a sleep).
        let out = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(out));
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("working") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "a worker did not start (it died or hung)");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        child
    }

    async fn kill_and_restart(&mut self, i: usize) {
        let child = &mut self.children[i];
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        self.children[i] = self.spawn().await;
    }
}

/// The faults the run switches, each on for a while and then off.
const FAULTS: [&str; 9] = [
    "fal:server_errors",
    "fal:lose_submit_answers",
    "suchuang:lose_submit_answers",
    "fal:webhooks_duplicated",
    "fal:webhooks_never",
    "fal:webhooks_late",
    "suchuang:down",
    "youtube:drop_uploads",
    "youtube:server_errors",
];

fn switch(sims: &Simulators, fault: &str, on: bool) {
    let s = &sims.switches;
    match fault {
        "fal:server_errors" => s.update(Service::Fal, |f| f.server_errors = if on { 2 } else { 0 }),
        "fal:lose_submit_answers" => {
            s.update(Service::Fal, |f| f.lose_submit_answers = u32::from(on))
        }
        "suchuang:lose_submit_answers" => {
            s.update(Service::Suchuang, |f| f.lose_submit_answers = u32::from(on))
        }
        "fal:webhooks_duplicated" | "fal:webhooks_never" | "fal:webhooks_late" => {
            let mode = match (on, fault) {
                (false, _) => WebhookFault::OnTime,
                (true, "fal:webhooks_duplicated") => WebhookFault::Duplicated,
                (true, "fal:webhooks_never") => WebhookFault::Never,
                _ => WebhookFault::Late(60),
            };
            s.update(Service::Fal, |f| f.webhooks = mode)
        }
        "suchuang:down" => s.update(Service::Suchuang, |f| f.down = on),
        "suchuang:out_of_funds" => s.update(Service::Suchuang, |f| f.out_of_funds = on),
        "youtube:drop_uploads" => s.update(Service::Youtube, |f| f.drop_uploads = u32::from(on)),
        "youtube:server_errors" => s.update(Service::Youtube, |f| {
            f.server_errors = if on { 2 } else { 0 }
        }),
        other => panic!("no fault {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_survive_faults_and_killed_workers() {
    if std::env::var(CHILD).is_ok() {
        child().await;
        return;
    }
    let seed: u64 = std::env::var("JILO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_205);
    let jobs_wanted: usize = std::env::var("JILO_CHAOS_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(seed);
    let Some(db) = postgres::database("jilo_chaos").await else {
        return;
    };
    let Some(moto) = moto::start().await else {
        return;
    };
    moto.bucket("chaos").await;
    let started = Instant::now();

    let sims = Simulators::start(
        SimConfig::default()
            .with_pace(Pace::Speed(600.0))
            .with_seed(seed),
    )
    .await
    .unwrap();
    let store = Arc::new(
        SqlStore::open(&StoreUrl::parse(&db).unwrap())
            .await
            .unwrap(),
    );
    let media = Arc::new(ObjectMediaStore::s3(moto.builder("chaos")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hooks = format!("{base}/hooks");

    // The API process: takes generations and publications, and the webhooks.
    let g = &sims.google.url;
    let oauth = GoogleOAuth::new(
        jilo_sim::google::CLIENT_ID,
        jilo_sim::google::CLIENT_SECRET.to_owned().into(),
    )
    .unwrap()
    .with_endpoints(
        format!("{g}/o/oauth2/v2/auth"),
        format!("{g}/token"),
        format!("{g}/revoke"),
    )
    .unwrap();
    let cipher = || TokenCipher::new("k1", &TOKEN_KEY).unwrap();
    let youtube = YouTubePublisher::new(oauth, store.clone(), cipher())
        .unwrap()
        .with_urls(g, g)
        .unwrap()
        .with_chunk_size(256 * 1024);
    let studio = Studio::builder()
        .provider(Arc::new(
            SuchuangProvider::new(jilo_sim::suchuang::KEY)
                .unwrap()
                .with_base_url(&sims.suchuang.url)
                .unwrap(),
        ))
        .provider(Arc::new(
            FalProvider::new(jilo_sim::fal::KEY)
                .unwrap()
                .with_queue_url(&sims.fal.url, None)
                .unwrap()
                .with_jwks_url(sims.fal.jwks_url())
                .unwrap()
                .with_user_id(jilo_sim::fal::USER_ID),
        ))
        .store(store.clone())
        .media_store(media.clone())
        .publisher(Arc::new(youtube))
        .notifier(Arc::new(
            ChatWebhookNotifier::new(format!("{base}/alerts")).unwrap(),
        ))
        .policy(policy(&hooks))
        .worker_name("api")
        .build()
        .unwrap();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(serve(listener, studio.clone(), alerts.clone()));

    let now = Timestamp::from_system(std::time::SystemTime::now());
    let users: Vec<UserId> = (0..USERS)
        .map(|i| UserId::new(format!("chaos-{i}")))
        .collect();
    for u in &users {
        store
            .grant(&Grant::signup(u.clone(), 100_000, now))
            .await
            .unwrap();
        store
            .save_channel(&support::connected_channel(&sims.google, u, &cipher(), now))
            .await
            .unwrap();
    }

    let mut env: Vec<(String, String)> = sims
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.extend([
        ("DATABASE_URL".to_owned(), db.clone()),
        ("JILO_MEDIA_S3_BUCKET".to_owned(), "chaos".to_owned()),
        ("JILO_MEDIA_S3_ENDPOINT".to_owned(), moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        (
            "JILO_TOKEN_KEY".to_owned(),
            base64::engine::general_purpose::STANDARD.encode(TOKEN_KEY),
        ),
        ("JILO_ALERT_WEBHOOK".to_owned(), format!("{base}/alerts")),
        ("JILO_CHAOS_HOOKS".to_owned(), hooks.clone()),
    ]);
    let mut workers = Workers {
        env,
        children: Vec::new(),
        started: 0,
    };
    for _ in 0..WORKERS {
        let c = workers.spawn().await;
        workers.children.push(c);
    }

    // The run: jobs arrive; every few, chaos strikes.
    let mut jobs: Vec<(jilo::JobId, UserId, String)> = Vec::new();
    let mut on: Vec<(&str, usize)> = Vec::new();
    let (mut kills, mut flips, mut refused) = (0, 0, 0);
    let mut outage_done = false;
    let mut publishing = Vec::new();
    let mut published_jobs: HashSet<jilo::JobId> = HashSet::new();
    let mut decided: HashSet<jilo::JobId> = HashSet::new();
    for i in 0..jobs_wanted {
        let user = users[rng.below(USERS as u64) as usize].clone();
        let (model, secs) = if rng.below(2) == 0 {
            ("veo3", 8)
        } else {
            ("kling-t2v", 5)
        };
        let prompt = format!("A paper boat drifting down a rainy street at night, take {i}");
        match studio
            .generate(&user, VideoRequest::new(prompt.clone(), model, secs))
            .await
        {
            Ok(job) => jobs.push((job, user, prompt)),
            Err(_) => refused += 1,
        }
        if i % 3 == 2 {
            match rng.below(10) {
                0..=2 => {
                    let w = rng.below(WORKERS as u64) as usize;
                    workers.kill_and_restart(w).await;
                    kills += 1;
                }
                _ if !outage_done && i >= jobs_wanted / 3 => {
                    // The one out-of-funds outage of the run, a third of the way in, with
                    // 速创 up, so that submits meet it.
                    switch(&sims, "suchuang:down", false);
                    on.retain(|(f, _)| *f != "suchuang:down");
                    switch(&sims, "suchuang:out_of_funds", true);
                    on.push(("suchuang:out_of_funds", i + 24));
                    outage_done = true;
                    flips += 1;
                }
                _ => {
                    let f = FAULTS[rng.below(FAULTS.len() as u64) as usize];
                    let during_outage = on.iter().any(|(x, _)| *x == "suchuang:out_of_funds");
                    let already_on = on.iter().any(|(x, _)| *x == f);
                    let keeps_up = during_outage && f == "suchuang:down";
                    if !already_on && !keeps_up {
                        switch(&sims, f, true);
                        on.push((f, i + 3 + rng.below(9) as usize));
                        flips += 1;
                    }
                }
            }
        }
        on.retain(|(f, until)| {
            let keep = *until > i;
            if !keep {
                switch(&sims, f, false);
            }
            keep
        });
        // A third of the videos finished so far are published, as their owners ask.
        // (Which ones is fixed by the job's number, not drawn here, so the seed's draws for
        // kills and faults do not depend on which jobs happen to be done.)
        for (n, (job, user, _)) in jobs.iter().enumerate() {
            if decided.contains(job) {
                continue;
            }
            let state = studio.job(job).await.unwrap().state;
            if state.is_terminal() {
                decided.insert(job.clone());
            }
            let chosen = (n as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62 == 0;
            if state == JobState::Completed && chosen {
                published_jobs.insert(job.clone());
                let (studio, job, user) = (studio.clone(), job.clone(), user.clone());
                publishing.push(tokio::spawn(async move {
                    studio
                        .publish(
                            &user,
                            &job,
                            jilo_sim::google::CHANNEL_ID,
                            PublishMetadata {
                                title: format!("Chaos {job}"),
                                description: "A paper boat.".into(),
                                tags: vec!["chaos".into()],
                                category_id: None,
                                privacy: Privacy::Unlisted,
                                publish_at: None,
                                playlist_id: None,
                                thumbnail_key: None,
                            },
                            ProgressReporter::none(),
                        )
                        .await
                }));
            }
        }
    }
    for (f, _) in on.drain(..) {
        switch(&sims, f, false);
    }
    sims.switches.clear();
    let publish_answers = futures::future::join_all(publishing).await;

    // Everything ends: jobs terminal, publications published or failed.
    let wait_until = Instant::now() + Duration::from_secs(240);
    loop {
        let mut open = 0;
        for (job, _, _) in &jobs {
            if !studio.job(job).await.unwrap().state.is_terminal() {
                open += 1;
            }
        }
        for job in &published_jobs {
            let p = studio
                .publication(job, jilo_sim::google::CHANNEL_ID)
                .await
                .unwrap();
            if p.is_none_or(|p| p.state == PublicationState::Uploading) {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < wait_until,
            "{open} jobs or publications still open after the run (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for c in &mut workers.children {
        let _ = c.start_kill();
    }

    // The books.
    let mut holds: HashMap<jilo::JobId, (u32, u32)> = HashMap::new();
    for u in &users {
        let b = studio.balance(u).await.unwrap();
        assert_eq!(
            b.granted,
            b.available + b.held + b.spent + b.expired,
            "{u}: {b:?}"
        );
        assert_eq!(b.held, 0, "{u}: nothing is held once every job ended");
        let mut query = HistoryQuery::newest(500);
        loop {
            let page = studio.credit_history(u, &query).await.unwrap();
            for e in &page.entries {
                match &e.kind {
                    LedgerEntryKind::Hold { job } => holds.entry(job.clone()).or_default().0 += 1,
                    LedgerEntryKind::Settle { job } | LedgerEntryKind::Refund { job } => {
                        holds.entry(job.clone()).or_default().1 += 1
                    }
                    _ => {}
                }
            }
            match page.next {
                Some(next) => query.before = Some(next),
                None => break,
            }
        }
    }
    let (mut completed, mut failed, mut retries, mut failovers) = (0, 0, 0, 0);
    let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
    let mut fal_by_attempt: BTreeMap<(String, String), u32> = BTreeMap::new();
    for url in sims
        .fal
        .lock()
        .requests
        .values()
        .filter_map(|r| r.webhook.clone())
    {
        let parts: Vec<&str> = url.rsplit('/').take(2).collect();
        *fal_by_attempt
            .entry((parts[1].to_owned(), parts[0].to_owned()))
            .or_default() += 1;
    }
    let suchuang_by_prompt: HashMap<String, u32> =
        sims.suchuang
            .lock()
            .tasks
            .values()
            .fold(HashMap::new(), |mut m, t| {
                *m.entry(t.input["prompt"].as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
                m
            });
    for (job, _, prompt) in &jobs {
        let j = studio.job(job).await.unwrap();
        assert!(j.state.is_terminal(), "{job}: {}", j.state.as_str());
        assert_eq!(
            holds.get(job).copied(),
            Some((1, 1)),
            "{job}: one hold, ended once ({})",
            j.state.as_str()
        );
        match j.state {
            JobState::Completed => completed += 1,
            _ => {
                failed += 1;
                let reason = j.failure.clone().unwrap_or_default();
                let mut short: String = reason.chars().take(60).collect();
                let at = j.provider().map(|p| p.to_string()).unwrap_or_default();
                let lost = if j.pending_submit.is_some() {
                    ", its answer lost"
                } else {
                    ""
                };
                short.push_str(&format!(" (at {at}, attempt {}{lost})", j.attempts));
                *reasons.entry(short).or_default() += 1;
            }
        }
        retries += j.attempts.saturating_sub(1);
        failovers += usize::from(j.provider_index > 0);
        let at_suchuang = suchuang_by_prompt.get(prompt).copied().unwrap_or(0);
        assert!(
            at_suchuang <= j.attempts,
            "{job}: 速创 took {at_suchuang} submissions for {} attempts",
            j.attempts
        );
    }
    assert!(
        completed * 2 > jobs.len(),
        "most jobs complete: {completed} of {}",
        jobs.len()
    );
    assert!(
        !fal_by_attempt.is_empty(),
        "FAL took submissions with webhooks"
    );
    for ((job, attempt), n) in &fal_by_attempt {
        assert_eq!(*n, 1, "FAL billed job {job} attempt {attempt} {n} times");
    }

    // Every published video is the stored file, byte for byte.
    let mut published = 0;
    for job in &published_jobs {
        let p = studio
            .publication(job, jilo_sim::google::CHANNEL_ID)
            .await
            .unwrap()
            .unwrap();
        if p.state != PublicationState::Published {
            continue;
        }
        published += 1;
        let video = p.video_id.clone().unwrap();
        let uploaded = sims
            .google
            .lock()
            .sessions
            .values()
            .find(|u| u.video.as_ref().is_some_and(|v| v["id"] == video.as_str()))
            .map(|u| u.received.clone())
            .unwrap();
        let mut stored = Vec::new();
        let mut stream = media.read_from(&p.media_key, 0).await.unwrap();
        while let Some(chunk) = stream.next().await {
            stored.extend_from_slice(&chunk.unwrap());
        }
        assert!(
            uploaded == stored,
            "{job}: the published bytes are the stored file"
        );
    }

    assert!(published > 0, "some videos were published and compared");

    // One outage, one alert.
    let alerts = alerts.lock().unwrap().clone();
    let funds_alerts = alerts
        .iter()
        .filter(|a| a.contains("suchuang") && a.contains("out of funds"))
        .count();
    let refused_for_funds = sims.suchuang.lock().refused_out_of_funds;
    assert!(refused_for_funds > 0, "the outage met a submit");
    assert_eq!(funds_alerts, 1, "alerts: {alerts:?}");
    let violations: Vec<String> = [
        sims.fal.lock().violations.clone(),
        sims.suchuang.lock().violations.clone(),
        sims.google.violations(),
    ]
    .concat();
    assert!(violations.is_empty(), "{violations:?}");
    let publish_errors = publish_answers
        .iter()
        .filter(|a| !matches!(a, Ok(Ok(_))))
        .count();
    println!(
        "chaos seed {seed}: {} jobs ({completed} completed, {failed} failed, {refused} refused at \
         generate), {retries} retries, {failovers} failovers; {} publications ({published} \
         published, {publish_errors} first answers were errors and were resumed or failed); \
         {kills} workers killed, {flips} faults switched, {} out-of-funds refusals, {} alerts; \
         {:.1} s",
        jobs.len(),
        published_jobs.len(),
        refused_for_funds,
        alerts.len(),
        started.elapsed().as_secs_f64()
    );
    println!("failed jobs by reason: {reasons:?}");
    println!(
        "alerts: {:?}",
        alerts
            .iter()
            .map(|a| a.lines().next().unwrap_or(""))
            .collect::<Vec<_>>()
    );
    drop(studio);
    drop(store);
    postgres::drop(&db).await;
}
