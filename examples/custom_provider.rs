//! A provider of your own: written against `VideoProvider`, checked by the conformance suite,
//! plugged into a Studio.
//!
//! `cargo run -p jilo-examples --example custom_provider`
//!
//! The service here is 速创's legacy VEO API (`POST /api/video/veoPlus`,
//! `GET /api/video/veoDetail`), which jilo does not ship a client for; `jilo-sim` serves it on
//! loopback, so the example runs without keys. The shape is what any provider needs: map the
//! service's errors to jilo's in one place, never retry the paid submit inside the provider,
//! say what the service can do in `capabilities`, and answer an unknown request `NotFound`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use jilo::testing::video_provider_suite;
use jilo::{
    AspectRatio, CancelOutcome, Capabilities, Error, Grant, InMemoryStore, JobState, ModelPrice,
    ModelSpec, Policy, ProviderBalance, ProviderId, ProviderStatus, ProviderVideo, QuotaStore,
    Result, StatusQuery, Studio, Submission, SubmitRequest, Timestamp, UserId, VideoProvider,
    VideoRequest, WebhookDelivery, WebhookEvent,
};
use serde_json::{json, Value};

const SERVICE: &str = "veo-legacy";

fn unavailable(reason: impl Into<String>) -> Error {
    Error::Unavailable {
        service: SERVICE.into(),
        reason: reason.into(),
        response: None,
        source: None,
    }
}

fn protocol(reason: impl Into<String>) -> Error {
    Error::Protocol {
        service: SERVICE.into(),
        reason: reason.into(),
        response: None,
        source: None,
    }
}

fn unknown(reason: &str) -> Error {
    Error::OutcomeUnknown {
        service: SERVICE.into(),
        reason: reason.into(),
        source: None,
    }
}

/// 速创's legacy VEO API.
struct LegacyVeo {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl LegacyVeo {
    fn new(base: &str, key: &str) -> Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            // jilo's HTTP layer: rustls on ring, the platform's roots, no process default.
            http: jilo::providers::http::client(Duration::from_secs(60))?,
        })
    }

    /// Every answer goes through here: the `{code, msg, data}` envelope to `data`, or to
    /// jilo's error for what the service said (the key never enters an error).
    async fn read(&self, call: reqwest::RequestBuilder, paid: bool) -> Result<Value> {
        let answer = call.header("authorization", &self.key).send().await;
        let answer = match answer {
            Ok(a) => a,
            // Nothing left the process, or the service never answered: for a paid call the
            // outcome is unknown (the Studio reconciles it and never resends blindly).
            Err(e) if e.is_connect() => return Err(unavailable("the service cannot be reached")),
            Err(_) if paid => return Err(unknown("no answer after the submit was sent")),
            Err(_) => return Err(unavailable("no answer")),
        };
        let status = answer.status().as_u16();
        let body: Value = answer
            .json()
            .await
            .map_err(|e| protocol(format!("HTTP {status}, not JSON: {e}")))?;
        let code = body["code"].as_i64().unwrap_or(i64::from(status));
        let msg = body["msg"].as_str().unwrap_or_default();
        match code {
            200 => Ok(body["data"].clone()),
            401 | 403 => Err(Error::Unauthorized {
                service: SERVICE.into(),
                response: None,
                source: None,
            }),
            429 => Err(Error::RateLimited {
                service: SERVICE.into(),
                retry_after: None,
                response: None,
                source: None,
            }),
            500..=599 => Err(unavailable(format!("HTTP {code}"))),
            _ if msg.contains("余额") => Err(Error::ProviderOutOfFunds {
                service: SERVICE.into(),
                response: None,
                source: None,
            }),
            _ if msg.contains("不存在") => Err(Error::not_found("task", "")),
            _ => Err(Error::invalid("request", format!("refused ({code})"))),
        }
    }
}

#[async_trait]
impl VideoProvider for LegacyVeo {
    fn id(&self) -> ProviderId {
        ProviderId::new(SERVICE)
    }

    fn models(&self) -> Vec<ModelSpec> {
        vec![ModelSpec {
            id: "veo3-legacy".into(),
            provider_model: "veo3-fast".into(),
            durations: vec![8],
            aspect_ratios: vec![AspectRatio::Portrait, AspectRatio::Landscape],
            prices: vec![ModelPrice {
                duration_secs: 8,
                credits: 12,
                provider_cost_minor: 35,
                currency: "CNY".into(),
            }],
        }]
    }

    /// Polled: no webhooks, no cancel, no lookup, no balance.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<Submission> {
        let body = json!({
            "model": request.provider_model,
            "prompt": request.request.prompt.trim(),
            "type": "text2video",
            "ratio": request.request.aspect_ratio.as_str(),
        });
        let url = format!("{}/api/video/veoPlus", self.base);
        let data = self.read(self.http.post(url).json(&body), true).await?;
        match &data["id"] {
            Value::Number(n) => Ok(Submission {
                request_id: n.to_string(),
            }),
            _ => Err(unknown("accepted without a task id")),
        }
    }

    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus> {
        let url = format!("{}/api/video/veoDetail", self.base);
        let call = self
            .http
            .get(url)
            .query(&[("id", query.request_id.as_str())]);
        let data = self.read(call, false).await?;
        // The legacy numbering: 0 queued, 1 succeeded, 2 failed, 3 generating.
        Ok(match data["status"].as_u64() {
            Some(0) => ProviderStatus::Queued { position: None },
            Some(3) => ProviderStatus::Running {
                progress: None,
                stage: Some("generating".into()),
            },
            Some(1) => ProviderStatus::Succeeded {
                video: data["content"].as_str().map(|url| {
                    ProviderVideo::new(url)
                        .with_header("referer", "https://api.wuyinkeji.com/")
                        .with_header(
                            "user-agent",
                            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
                        )
                }),
            },
            other => ProviderStatus::Failed {
                reason: data["fail_reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .map_or_else(|| format!("status {other:?}"), str::to_owned),
                class: jilo::FailureClass::Permanent,
            },
        })
    }

    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo> {
        match self.status(query).await? {
            ProviderStatus::Succeeded { video: Some(v) } => Ok(v),
            other => Err(protocol(format!("no video yet: {other:?}"))),
        }
    }

    async fn cancel(&self, _query: &StatusQuery) -> Result<CancelOutcome> {
        Ok(CancelOutcome::Unsupported)
    }

    async fn parse_webhook(&self, _delivery: &WebhookDelivery) -> Result<WebhookEvent> {
        Err(protocol("this service sends no webhooks"))
    }

    async fn balance(&self) -> Result<Option<ProviderBalance>> {
        Ok(None)
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let sim = jilo_sim::suchuang::SuchuangSim::start().await?;
    let provider = Arc::new(LegacyVeo::new(&sim.url, jilo_sim::suchuang::KEY)?);

    // 1. The conformance suite: what every provider owes the Studio.
    video_provider_suite(provider.as_ref()).await;
    println!("conformance suite: passed");

    // 2. Plugged into a Studio like any other.
    let store = Arc::new(InMemoryStore::new());
    let studio = Studio::builder()
        .provider(provider)
        .store(store.clone())
        .policy(Policy {
            poll_interval: Duration::from_millis(300), // a polled service, asked often
            tick_interval: Duration::from_millis(100),
            ..Policy::default()
        })
        .build()?;
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
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await?;
    let job = studio
        .generate(
            &user,
            VideoRequest::new("A lantern festival over a river at night", "veo3-legacy", 8),
        )
        .await?;
    // The worker polls the job; its events say where it is.
    let mut events = studio.subscribe(&job).await?;
    let mut state = studio.job(&job).await?.state;
    while !state.is_terminal() {
        let Some(event) = events.next().await else {
            break;
        };
        println!("  {}", event.state.as_str());
        state = event.state;
    }
    let _ = stop.send(());
    worker.await?;
    let done = studio.job(&job).await?;
    println!(
        "job {job}: {} at {}; video {}",
        done.state.as_str(),
        done.provider().map(|p| p.to_string()).unwrap_or_default(),
        done.video_url.unwrap_or_default()
    );
    println!("balance: {:?}", studio.balance(&user).await?);
    if done.state != JobState::Completed {
        return Err("the job did not complete".into());
    }
    Ok(())
}
