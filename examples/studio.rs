//! The whole product in one run, as a creator uses it: find what is trending, write a prompt
//! from the best video, generate it with credits held, store it, suggest YouTube metadata,
//! connect a channel, publish with an upload progress bar, and read the ledger, the balance and
//! the cost report with its margin.
//!
//! ```text
//! cargo run -p jilo-examples --example studio           # every service simulated (jilo-sim)
//! cargo run -p jilo-examples --example studio -- --fault suchuang-out-of-funds
//! cargo run -p jilo-examples --example studio -- --keyword "AI tools" --speed 120
//! ```
//!
//! Without keys every part talks to `jilo-sim`, which speaks each service's real protocol on
//! loopback. With the keys of the configuration table (`FAL_KEY`, `SUCHUANG_API_KEY`,
//! `APIFY_TOKEN`, `GEMINI_API_KEY`, `YOUTUBE_CLIENT_ID` + `YOUTUBE_CLIENT_SECRET`) that part
//! talks to the real service instead; mixing is fine. The ledger and jobs go to an SQLite file
//! (or `DATABASE_URL`), videos to a directory beside it.
//!
//! `--fault NAME` switches one simulator fault on and ends in the outcome a creator should
//! see: `suchuang-out-of-funds` (the job completes on FAL, one admin alert), `providers-down`
//! (refunded, "service temporarily unavailable"), `upload-dropped` (the upload resumes),
//! `youtube-quota` (a clear message with the reset time). `--fault SERVICE:SWITCH` sets any
//! switch of `jilo_sim::ServiceFaults` (e.g. `fal:webhooks=never`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use indicatif::{ProgressBar, ProgressStyle};
use jilo::plans::Plan;
use jilo::{
    Alert, DiscoverQuery, Grant, HistoryQuery, JobState, Notifier, Platform, Policy, Privacy,
    ProgressReporter, PublishMetadata, QuotaStore, Studio, SubmissionKey, Timestamp, UserId,
    VideoRequest, WebhookDelivery,
};
use jilo_providers::apify::ApifySource;
use jilo_providers::fal::FalProvider;
use jilo_providers::gemini::GeminiModel;
use jilo_providers::suchuang::SuchuangProvider;
use jilo_providers::tokens::TokenCipher;
use jilo_providers::youtube::{GoogleOAuth, LoopbackRedirect, YouTubePublisher};
use jilo_sim::{Pace, Service, SimConfig, Simulators};
use jilo_store::{ObjectMediaStore, SqlStore, StoreUrl};

/// What a credit sells for in the Basic plan (¥49 for 50 credits), for the margin.
const BASIC: (i64, i64) = (4_900, 50);
/// Fen in a dollar, for a margin on a provider that bills in dollars (an assumed rate).
const USD_IN_FEN: i64 = 710;

fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system()).to_string()
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    keyword: String,
    model: Option<String>,
    duration: u32,
    pace: Pace,
    fault: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        keyword: "AI tools".into(),
        model: None,
        duration: 5,
        pace: Pace::Speed(30.0),
        fault: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--keyword" => args.keyword = value()?,
            "--model" => args.model = Some(value()?),
            "--duration" => {
                args.duration = value()?.parse().map_err(|_| "bad --duration".to_owned())?
            }
            "--speed" => {
                let s: f64 = value()?.parse().map_err(|_| "bad --speed".to_owned())?;
                args.pace = if s > 0.0 && s.is_finite() {
                    Pace::Speed(s)
                } else {
                    return Err("--speed must be above 0".into());
                }
            }
            "--instant" => args.pace = Pace::Instant,
            "--fault" => args.fault = Some(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

/// Switches the fault a scenario names; answers the model the run should use.
fn switch_fault(sims: &Simulators, fault: &str, model: &mut Option<String>) -> Result<(), String> {
    let s = &sims.switches;
    match fault {
        "suchuang-out-of-funds" => {
            s.update(Service::Suchuang, |f| f.out_of_funds = true);
            // VEO 3 is offered by 速创 first and FAL second.
            model.get_or_insert_with(|| "veo3".into());
        }
        "providers-down" => {
            s.update(Service::Suchuang, |f| f.down = true);
            s.update(Service::Fal, |f| f.down = true);
            model.get_or_insert_with(|| "veo3".into());
        }
        "upload-dropped" => s.update(Service::Youtube, |f| f.drop_uploads = 1),
        // Switched on mid-flow, once the channel is connected (see `run`).
        "youtube-quota" => {}
        other => {
            let (service, patch) = jilo_sim::parse_fault(other)?;
            s.patch(service, &patch)?;
        }
    }
    Ok(())
}

fn keyed(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// Removes a directory when dropped.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints each admin alert (a host sends them by email or to a chat).
#[derive(Default)]
struct PrintedAlerts(Mutex<Vec<String>>);

#[async_trait]
impl Notifier for PrintedAlerts {
    async fn notify(&self, alert: &Alert) -> jilo::Result<()> {
        let line = format!("{}: {}", alert.kind, alert.detail);
        println!("\n  ⚠ admin alert — {line}");
        if let Ok(mut all) = self.0.lock() {
            all.push(line);
        }
        Ok(())
    }
}

/// The host's webhook route: `POST /webhooks/{provider}/{job}/{attempt}` into the Studio.
async fn serve_webhooks(
    listener: tokio::net::TcpListener,
    studio: Studio,
    verified: Arc<std::sync::atomic::AtomicUsize>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let studio = studio.clone();
        let verified = verified.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let studio = studio.clone();
                    let verified = verified.clone();
                    async move {
                        let path: Vec<String> =
                            req.uri().path().split('/').map(str::to_owned).collect();
                        let headers = req.headers().clone();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status = match path.as_slice() {
                            [_, hooks, provider, job, attempt] if hooks == "webhooks" => {
                                match SubmissionKey::from_route(job, attempt) {
                                    Ok(key) => {
                                        let delivery = WebhookDelivery::from_http(&headers, body)
                                            .for_submission(key);
                                        match studio
                                            .handle_webhook(&provider.as_str().into(), &delivery)
                                            .await
                                        {
                                            Ok(_) => {
                                                verified.fetch_add(
                                                    1,
                                                    std::sync::atomic::Ordering::Relaxed,
                                                );
                                                200
                                            }
                                            Err(e) if e.kind() == jilo::ErrorKind::Unauthorized => {
                                                401
                                            }
                                            Err(_) => 500,
                                        }
                                    }
                                    Err(_) => 404,
                                }
                            }
                            _ => 404,
                        };
                        let answer = hyper::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap_or_default();
                        Ok::<_, Infallible>(answer)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!(
        "{sign}{currency}{}.{:02}",
        minor.abs() / 100,
        minor.abs() % 100
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nthe run stopped: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Failure> {
    let started = Instant::now();
    let mut args = parse_args().map_err(|e| format!("{e}\nusage: cargo run -p jilo-examples --example studio -- [--keyword K] [--model M] [--duration S] [--speed N | --instant] [--fault NAME]"))?;
    let sims = Simulators::start(SimConfig::default().with_pace(args.pace)).await?;
    if let Some(fault) = &args.fault {
        switch_fault(&sims, fault, &mut args.model)?;
        println!("fault switched on: {fault}");
    }
    let model = args.model.clone().unwrap_or_else(|| "kling-t2v".into());

    // Each part: the real service when its key is set, else its simulator.
    let suchuang = if keyed("SUCHUANG_API_KEY") {
        SuchuangProvider::from_env()?
    } else {
        SuchuangProvider::new(jilo_sim::suchuang::KEY)?.with_base_url(&sims.suchuang.url)?
    };
    let fal = if keyed("FAL_KEY") {
        FalProvider::from_env()?
    } else {
        FalProvider::new(jilo_sim::fal::KEY)?
            .with_queue_url(&sims.fal.url, None)?
            .with_jwks_url(sims.fal.jwks_url())?
            .with_user_id(jilo_sim::fal::USER_ID)
    };
    let apify = if keyed("APIFY_TOKEN") {
        ApifySource::from_env()?
    } else {
        ApifySource::new(jilo_sim::apify::TOKEN)?.with_base_url(&sims.apify.url)?
    };
    let gemini = if keyed("GEMINI_API_KEY") {
        GeminiModel::from_env()?
    } else {
        GeminiModel::new(jilo_sim::gemini::KEY)?.with_base_url(&sims.gemini.url)?
    };
    let real_google = keyed("YOUTUBE_CLIENT_ID");
    let oauth = if real_google {
        GoogleOAuth::from_env()?
    } else {
        let g = &sims.google.url;
        GoogleOAuth::new(
            jilo_sim::google::CLIENT_ID,
            jilo_sim::google::CLIENT_SECRET.to_owned().into(),
        )?
        .with_endpoints(
            format!("{g}/o/oauth2/v2/auth"),
            format!("{g}/token"),
            format!("{g}/revoke"),
        )?
    };
    let cipher = if keyed("JILO_TOKEN_KEY") {
        TokenCipher::from_env()?
    } else {
        // A throwaway key for this run: tokens sealed now are never read by another process.
        use sha2::Digest;
        let seed = [
            uuid::Uuid::new_v4().as_bytes().to_vec(),
            uuid::Uuid::new_v4().as_bytes().to_vec(),
        ]
        .concat();
        let key: [u8; 32] = sha2::Sha256::digest(&seed).into();
        TokenCipher::new("demo", &key)?
    };

    // This run's database and videos, removed when the run ends (unless DATABASE_URL is set).
    let dir = std::env::temp_dir().join(format!("jilo-studio-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = Cleanup(dir.clone());
    let store = Arc::new(match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => SqlStore::open(&StoreUrl::parse(&url)?).await?,
        _ => {
            SqlStore::open(&StoreUrl::parse(&format!(
                "sqlite://{}",
                dir.join("jilo.db").display()
            ))?)
            .await?
        }
    });
    let media = Arc::new(ObjectMediaStore::local(dir.join("media"))?);
    let youtube = {
        let p = YouTubePublisher::new(oauth, store.clone(), cipher)?;
        if real_google {
            p
        } else {
            p.with_urls(&sims.google.url, &sims.google.url)?
        }
    };
    let youtube = Arc::new(youtube);
    let alerts = Arc::new(PrintedAlerts::default());

    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hooks_url = format!("http://{}/webhooks", hooks.local_addr()?);
    let studio = Studio::builder()
        .provider(Arc::new(suchuang))
        .provider(Arc::new(fal))
        .store(store.clone())
        .media_store(media.clone())
        .notifier(alerts.clone())
        .trend_source(Arc::new(apify))
        .creative_model(Arc::new(gemini))
        .publisher(youtube.clone())
        .policy(Policy {
            webhook_base_url: Some(hooks_url),
            poll_interval: Duration::from_secs(1),
            // A webhook that never comes is noticed by polling after this.
            webhook_backstop: Duration::from_secs(5),
            tick_interval: Duration::from_millis(250),
            // A demo's pace: a refused submit is tried again after about a second.
            retry_backoff: jilo::Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(4),
            },
            plans: vec![Plan::new("basic", "Basic", BASIC.1, BASIC.0, "CNY")],
            ..Policy::default()
        })
        .build()?;
    let verified = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(serve_webhooks(hooks, studio.clone(), verified.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let studio = studio.clone();
        tokio::spawn(async move {
            studio
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    let user = UserId::new("creator-1");
    let now = Timestamp::from_system(std::time::SystemTime::now());
    store.grant(&Grant::signup(user.clone(), 100, now)).await?;
    println!(
        "signed up {user}: {} credits",
        studio.balance(&user).await?.available
    );

    // 1. Discover.
    let spin = bar(0, "{spinner} {msg}");
    spin.set_message(format!(
        "searching TikTok, YouTube Shorts and Instagram for “{}”…",
        args.keyword
    ));
    let found = studio
        .discover(
            &DiscoverQuery::new(
                args.keyword.clone(),
                vec![
                    Platform::TikTok,
                    Platform::YouTubeShorts,
                    Platform::InstagramReels,
                ],
            )
            .within_days(30)
            .analyze_top(10),
        )
        .await?;
    spin.finish_and_clear();
    println!(
        "\ntrending for “{}” ({} videos):",
        args.keyword,
        found.videos.len()
    );
    println!(
        "  {:>5}  {:<15} {:>12} {:>7}  why",
        "score", "platform", "views", "engage"
    );
    for v in found.videos.iter().take(8) {
        println!(
            "  {:>5}  {:<15} {:>12} {:>6.1}%  {}",
            v.score.total,
            v.video.platform.as_str(),
            v.video.views,
            v.video.engagement_rate() * 100.0,
            v.analysis
                .as_ref()
                .map(|a| a.hook.as_str())
                .unwrap_or("(not analysed)")
        );
    }
    for f in &found.failures {
        println!("  {} gave nothing: {}", f.platform.as_str(), f.message);
    }
    let top = found
        .videos
        .first()
        .ok_or("nothing was found to start from")?;

    // 2. A prompt from the best video.
    let duration = if model == "veo3" { 8 } else { args.duration };
    let prompt = studio.prompt_from(top, duration).await?;
    println!("\nprompt from the top video:\n  {prompt}");

    // 3. Generate with the credits held.
    let job = match studio
        .generate(
            &user,
            VideoRequest::new(prompt.clone(), model.as_str(), duration),
        )
        .await
    {
        Ok(job) => job,
        Err(e) => {
            println!("\ngeneration refused: {e}");
            return finish(&studio, &user, &alerts, stop, worker, started).await;
        }
    };
    let held = studio.balance(&user).await?;
    println!(
        "\njob {job}: {model} {duration}s, {} credits held ({} available)",
        held.held, held.available
    );
    let progress = bar(100, "{spinner} generating [{bar:32}] {pos:>3}% {msg}");
    let mut events = studio.subscribe(&job).await?;
    let mut state = studio.job(&job).await?.state;
    while !state.is_terminal() {
        let Some(e) = events.next().await else { break };
        progress.set_position(u64::from(e.progress));
        progress.set_message(format!(
            "{}{}",
            e.state.as_str(),
            e.stage.map(|s| format!(" — {s}")).unwrap_or_default()
        ));
        state = e.state;
    }
    progress.finish_and_clear();
    let done = studio.job(&job).await?;
    let ran_on = done
        .route
        .get(done.provider_index)
        .map(|p| p.to_string())
        .unwrap_or_default();
    if done.state != JobState::Completed {
        let refunded = studio.balance(&user).await?;
        let unavailable = done.failure_class == Some(jilo::FailureClass::Retryable)
            || done
                .failure
                .as_deref()
                .is_some_and(|f| f.contains("unavailable"));
        println!(
            "job {job} {} after trying {}: {}",
            done.state.as_str(),
            done.route
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            if unavailable {
                "服务暂时不可用 — the service is temporarily unavailable, please try again later"
            } else {
                "the provider could not make this video"
            }
        );
        println!(
            "  the {} credits held were refunded: {} available, {} held",
            done.credits, refunded.available, refunded.held
        );
        return finish(&studio, &user, &alerts, stop, worker, started).await;
    }
    let stored = done.output.clone().ok_or("a completed job has its video")?;
    println!(
        "job {job} completed on {ran_on}{}; stored at {} ({} bytes)",
        match (
            verified.load(std::sync::atomic::Ordering::Relaxed),
            done.webhook
        ) {
            (0, true) => " (no webhook came; found by polling)",
            (0, false) => " (polled)",
            _ => " (its webhook verified)",
        },
        stored.location,
        stored.bytes.unwrap_or(0)
    );

    // 4. Metadata, 5. a channel, 6. publishing.
    let keywords: Vec<String> = args.keyword.split_whitespace().map(str::to_owned).collect();
    let meta = studio.suggest_metadata(&user, &job, keywords).await?;
    println!("\nsuggested titles:");
    for t in &meta.titles {
        println!("  • {t}");
    }
    println!("  tags: {}", meta.tags.join(", "));
    let channel = if real_google {
        let redirect = LoopbackRedirect::bind().await?;
        let pending = youtube.oauth().authorize(&redirect.uri())?;
        println!("\nopen this URL and allow access:\n  {}", pending.url);
        let back = redirect.wait(Duration::from_secs(300)).await?;
        youtube
            .connect_channel(&user, &pending, &back.state, &back.code)
            .await?
    } else {
        // The simulator's consent page approves at once; follow it as a browser would.
        let pending = youtube
            .oauth()
            .authorize("http://127.0.0.1:9/oauth/callback")?;
        let browser = jilo_providers::http::client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let consent = browser.get(&pending.url).send().await?;
        let location = consent
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or("no redirect from the consent page")?;
        let back: HashMap<String, String> = url::Url::parse(location)?
            .query_pairs()
            .into_owned()
            .collect();
        let (state, code) = (
            back.get("state").ok_or("no state")?,
            back.get("code").ok_or("no code")?,
        );
        youtube
            .connect_channel(&user, &pending, state, code)
            .await?
    };
    println!(
        "\nconnected channel {} ({})",
        channel.channel_name, channel.channel_id
    );
    if args.fault.as_deref() == Some("youtube-quota") {
        sims.switches
            .update(Service::Youtube, |f| f.quota_exhausted = true);
        println!("(YouTube's daily quota runs out now)");
    }
    let total = stored.bytes.unwrap_or(0);
    let upload = bar(
        total,
        "{spinner} uploading  [{bar:32}] {bytes}/{total_bytes} {msg}",
    );
    let reporter = {
        let upload = upload.clone();
        ProgressReporter::new(move |p| upload.set_position(p.uploaded))
    };
    let metadata = PublishMetadata {
        title: meta
            .titles
            .first()
            .cloned()
            .unwrap_or_else(|| "A short made with jilo".into()),
        description: meta.description.clone(),
        tags: meta.tags.clone(),
        category_id: Some("22".into()),
        privacy: Privacy::Public,
        publish_at: None,
        playlist_id: None,
        thumbnail_key: None,
    };
    let mut published = studio
        .publish(
            &user,
            &job,
            &channel.channel_id,
            metadata.clone(),
            reporter.clone(),
        )
        .await;
    if let Err(e) = &published {
        // A dropped connection leaves the upload to resume from what YouTube holds.
        if matches!(
            e.kind(),
            jilo::ErrorKind::Unavailable | jilo::ErrorKind::Timeout
        ) {
            upload.set_message("connection dropped; resuming");
            studio.resume_publications().await;
            published = studio
                .publication(&job, &channel.channel_id)
                .await?
                .ok_or_else(|| jilo::Error::not_found("publication", &job));
        }
    }
    upload.finish_and_clear();
    match published {
        Ok(p) => {
            let resumed = p.state == jilo::PublicationState::Published
                && (sims.google.lock().status_queries > 0 || p.attempts > 1);
            println!(
                "published: {}{}",
                p.url
                    .clone()
                    .unwrap_or_else(|| format!("({})", p.state.as_str())),
                if resumed {
                    " (the upload was resumed)"
                } else {
                    ""
                }
            );
        }
        Err(jilo::Error::QuotaExceeded { retry_at, .. }) => println!(
            "not published: YouTube's daily upload quota is used up; it resets at {} \
             (midnight Pacific time). The video is kept; publish it again then.",
            retry_at.map_or_else(|| "the next Pacific midnight".to_owned(), rfc3339)
        ),
        Err(e) => println!("publishing stopped: {e}"),
    }
    finish(&studio, &user, &alerts, stop, worker, started).await
}

async fn finish(
    studio: &Studio,
    user: &UserId,
    alerts: &PrintedAlerts,
    stop: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<()>,
    started: Instant,
) -> Result<(), Failure> {
    println!("\nledger of {user}:");
    let page = studio
        .credit_history(user, &HistoryQuery::newest(20))
        .await?;
    for e in page.entries.iter().rev() {
        use jilo::ledger::LedgerEntryKind as K;
        let (sign, what) = match &e.kind {
            K::Grant { reason, .. } => ("+", format!("granted ({reason:?})")),
            K::Hold { job } => ("", format!("held for job {job}")),
            K::Settle { job } => ("-", format!("spent on job {job}")),
            K::Refund { job } => ("", format!("refunded from job {job}")),
            K::Expire { .. } => ("-", "expired".to_owned()),
            K::Lapse { .. } => ("-", "lapsed".to_owned()),
            other => ("", format!("{other:?}")),
        };
        println!("  {sign:>1}{:<4} {what}", e.credits);
    }
    let b = studio.balance(user).await?;
    println!(
        "balance: {} available, {} held, {} spent of {} granted",
        b.available, b.held, b.spent, b.granted
    );
    let now = Timestamp::from_system(std::time::SystemTime::now());
    let day_ago =
        Timestamp::from_system(std::time::SystemTime::now() - Duration::from_secs(86_400));
    let lines = studio
        .cost_report(day_ago, now.plus(Duration::from_secs(60)))
        .await?;
    println!(
        "cost report (a credit sells at {}):",
        money(BASIC.0 / BASIC.1, "¥")
    );
    for l in lines {
        let revenue = l.credits_charged * BASIC.0 / BASIC.1;
        // Providers bill in their own currency: dollars at an assumed ¥7.10 for the margin.
        let cost_fen = match l.currency.as_str() {
            "USD" => l.provider_cost_minor * USD_IN_FEN / 100,
            _ => l.provider_cost_minor,
        };
        println!(
            "  {:<9} {} jobs, {} delivered: {} credits = {} revenue, {} {} cost, margin {}",
            l.provider.to_string(),
            l.jobs,
            l.delivered,
            l.credits_charged,
            money(revenue, "¥"),
            money(l.provider_cost_minor, ""),
            l.currency,
            money(revenue - cost_fen, "¥")
        );
    }
    let n = alerts.0.lock().map(|a| a.len()).unwrap_or(0);
    println!("admin alerts: {n}");
    let _ = stop.send(());
    let _ = worker.await;
    println!("whole flow in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
