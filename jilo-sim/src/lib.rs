//! jilo-sim: every service jilo talks to, simulated on its real wire protocol on loopback.
//!
//! FAL's queue, 速创's asynchronous API and its hotlink-protected CDN, Apify's three trend
//! actors, Gemini's `generateContent` and Google's OAuth with YouTube's Data API and upload
//! server: each is written from the protocol notes in the project's `specs/`, so jilo's real
//! clients (and any other client) talk to a simulator with only a base URL and a key changed.
//! Each keeps its state per run (a job progresses across polls, an upload keeps its bytes),
//! checks what it receives (a malformed request is answered as the real service answers it and
//! recorded as a violation) and can be broken on purpose through [`Switches`]: out of funds, a
//! rejected key, 429 with `Retry-After`, 5xx bursts, a dropped upload, a late, duplicated or
//! never-sent webhook, an answer lost after a paid submit, an expired upload session, an
//! exhausted quota. The switches are set at start and flipped at runtime, in-process or over
//! the admin endpoint (`GET /faults`, `POST /faults/{service}` with a JSON patch).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use jilo_sim::{Pace, Service, SimConfig, Simulators};
//!
//! let sims = Simulators::start(SimConfig::default().with_pace(Pace::Instant)).await?;
//! // Point a host at them: FAL_QUEUE_URL=…, SUCHUANG_API_URL=…, keys included.
//! println!("{}", sims.env_lines());
//! // Break a service mid-flow.
//! sims.switches.update(Service::Suchuang, |f| f.out_of_funds = true);
//! # Ok(()) }
//! ```
//!
//! The binary (`cargo run -p jilo-sim`) starts them all and prints the same lines.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod apify;
pub mod fal;
pub mod gemini;
pub mod google;
mod server;
pub mod suchuang;
mod switches;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use server::{Answer, Req};
pub use switches::{parse_fault, Service, ServiceFaults, Switches, WebhookFault};

/// How fast simulated work goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// No waiting: each status read moves a job one stage on, and a job that is only
    /// watched by webhook finishes at once. For tests.
    Instant,
    /// Real time divided by this factor: at 30, a generation that takes FAL 90 s takes 3 s.
    Speed(f64),
}

impl Pace {
    /// How far along (0.0 to 1.0) a piece of work of `nominal` length is, `elapsed` after it
    /// began and after `polls` status reads.
    pub fn fraction(&self, nominal: Duration, elapsed: Duration, polls: u32) -> f64 {
        match *self {
            Pace::Instant => (f64::from(polls) / 3.0).min(1.0),
            Pace::Speed(speed) => {
                let nominal = nominal.as_secs_f64();
                if nominal <= 0.0 || !speed.is_finite() || speed <= 0.0 {
                    1.0
                } else {
                    (elapsed.as_secs_f64() * speed / nominal).min(1.0)
                }
            }
        }
    }

    /// The real wait for a simulated `nominal` delay.
    pub fn wait(&self, nominal: Duration) -> Duration {
        match *self {
            Pace::Instant => Duration::ZERO,
            Pace::Speed(speed) if speed.is_finite() && speed > 0.0 => {
                Duration::try_from_secs_f64(nominal.as_secs_f64() / speed)
                    .unwrap_or(Duration::MAX)
                    .min(Duration::from_secs(3600))
            }
            Pace::Speed(_) => Duration::ZERO,
        }
    }
}

impl Default for Pace {
    /// The demo's pace: minutes compressed to seconds.
    fn default() -> Self {
        Pace::Speed(30.0)
    }
}

/// How the simulators start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How fast work goes.
    pub pace: Pace,
    /// Seeds what is made up (trend items, scores, view counts): the same seed, the same data.
    pub seed: u64,
    /// The address to listen on (loopback by default).
    pub host: IpAddr,
    /// The first of six consecutive ports (FAL, 速创, Apify, Gemini, Google, admin); free
    /// ports when `None`.
    pub first_port: Option<u16>,
    /// The fault switches, as set at start.
    pub switches: Switches,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            pace: Pace::default(),
            seed: 7,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            first_port: None,
            switches: Switches::default(),
        }
    }
}

impl SimConfig {
    /// At this pace.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// With this seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Listening from this port on.
    pub fn with_first_port(mut self, port: u16) -> Self {
        self.first_port = Some(port);
        self
    }

    /// Following these switches (shared: flipping them later reaches the simulators).
    pub fn with_switches(mut self, switches: Switches) -> Self {
        self.switches = switches;
        self
    }

    fn addr(&self, index: u16) -> SocketAddr {
        SocketAddr::new(
            self.host,
            self.first_port.map_or(0, |p| p.saturating_add(index)),
        )
    }
}

/// Every simulator, started together.
#[derive(Clone, Debug)]
pub struct Simulators {
    /// FAL's queue, webhooks and result files.
    pub fal: fal::FalSim,
    /// 速创's API and CDN.
    pub suchuang: suchuang::SuchuangSim,
    /// Apify's actors, runs and datasets.
    pub apify: apify::ApifySim,
    /// Gemini's `generateContent`.
    pub gemini: gemini::GeminiSim,
    /// Google OAuth and YouTube.
    pub google: google::GoogleSim,
    /// The fault switches every simulator follows.
    pub switches: Switches,
    /// The admin endpoint (`GET /faults`, `POST /faults/{service}`).
    pub admin_url: String,
    _admin: std::sync::Arc<Task>,
}

impl Simulators {
    /// Starts every simulator.
    pub async fn start(config: SimConfig) -> std::io::Result<Self> {
        let switches = config.switches.clone();
        let fal = fal::FalSim::start_on(config.addr(0), switches.clone(), config.pace).await?;
        let suchuang =
            suchuang::SuchuangSim::start_on(config.addr(1), switches.clone(), config.pace).await?;
        let apify =
            apify::ApifySim::start_on(config.addr(2), switches.clone(), config.pace, config.seed)
                .await?;
        let gemini =
            gemini::GeminiSim::start_on(config.addr(3), switches.clone(), config.seed).await?;
        let google =
            google::GoogleSim::start_on(config.addr(4), switches.clone(), config.pace).await?;
        let (admin_url, admin) = switches::serve_admin(config.addr(5), switches.clone()).await?;
        Ok(Self {
            fal,
            suchuang,
            apify,
            gemini,
            google,
            switches,
            admin_url,
            _admin: std::sync::Arc::new(admin),
        })
    }

    /// The environment a host exports to talk to these simulators instead of the services,
    /// keys included, in the names of jilo's configuration table.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FAL_KEY", fal::KEY.to_owned()),
            ("FAL_QUEUE_URL", self.fal.url.clone()),
            ("FAL_JWKS_URL", self.fal.jwks_url()),
            ("FAL_USER_ID", fal::USER_ID.to_owned()),
            ("SUCHUANG_API_KEY", suchuang::KEY.to_owned()),
            ("SUCHUANG_API_URL", self.suchuang.url.clone()),
            ("APIFY_TOKEN", apify::TOKEN.to_owned()),
            ("APIFY_API_URL", self.apify.url.clone()),
            ("GEMINI_API_KEY", gemini::KEY.to_owned()),
            ("GEMINI_API_URL", self.gemini.url.clone()),
            ("YOUTUBE_CLIENT_ID", google::CLIENT_ID.to_owned()),
            ("YOUTUBE_CLIENT_SECRET", google::CLIENT_SECRET.to_owned()),
            (
                "GOOGLE_OAUTH_URL",
                format!("{}/o/oauth2/v2/auth", self.google.url),
            ),
            ("GOOGLE_TOKEN_URL", format!("{}/token", self.google.url)),
            ("GOOGLE_REVOKE_URL", format!("{}/revoke", self.google.url)),
            (
                "GOOGLE_USERINFO_URL",
                format!("{}/v1/userinfo", self.google.url),
            ),
            ("YOUTUBE_API_URL", self.google.url.clone()),
            ("YOUTUBE_UPLOAD_URL", self.google.url.clone()),
            ("JILO_SIM_ADMIN_URL", self.admin_url.clone()),
        ]
    }

    /// [`env`](Self::env) as `NAME=value` lines.
    pub fn env_lines(&self) -> String {
        self.env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }
}

/// A server task, aborted when the last simulator handle holding it is dropped.
#[derive(Debug, Default)]
pub(crate) struct Task(Option<tokio::task::JoinHandle<()>>);

impl Task {
    pub(crate) fn new(handle: tokio::task::JoinHandle<()>) -> Self {
        Self(Some(handle))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// A real clip that browsers play: 2 s of ffmpeg's `testsrc2` pattern, 180×320, VP9 in MP4
/// (`-movflags +faststart`: `ftyp`, `moov`, then `mdat`).
const CLIP: &[u8] = include_bytes!("../assets/clip.mp4");

/// What the simulators serve as a generated video, `len` bytes: a real, playable MP4 (the clip
/// above) followed by a `free` box of filler that depends on `id`, which players skip. So each
/// job's video has its own bytes and the size a real one has, and a `<video>` element plays
/// it. Below the clip's size: an `ftyp` box and filler, not playable.
pub fn sample_video(id: &str, len: usize) -> bytes::Bytes {
    use sha2::{Digest, Sha256};
    let seed = Sha256::digest(id.as_bytes());
    let free = len.saturating_sub(CLIP.len());
    let mut body = match u32::try_from(free) {
        Ok(size) if free >= 8 => {
            let mut body = Vec::with_capacity(len);
            body.extend_from_slice(CLIP);
            body.extend_from_slice(&size.to_be_bytes());
            body.extend_from_slice(b"free");
            body
        }
        _ => b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec(),
    };
    let mut i = 0usize;
    while body.len() < len {
        body.push(seed[i % seed.len()] ^ (i as u8));
        i += 1;
    }
    body.truncate(len.max(24));
    bytes::Bytes::from(body)
}

/// POSTs `body` to a plain-HTTP URL (a webhook receiver on loopback or a LAN) and answers the
/// status.
pub(crate) async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(String, String)],
) -> Result<u16, String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: the simulator delivers over plain HTTP only"
        ));
    }
    let mut request = hyper::Request::post(uri).header("content-type", content_type);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "no answer in 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(answer.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::{sample_video, CLIP};

    #[test]
    fn sample_videos_are_the_clip_then_a_free_box_of_their_own_filler() {
        let a = sample_video("job-a", 100_000);
        let b = sample_video("job-b", 100_000);
        assert_eq!(a.len(), 100_000);
        assert_eq!(&a[..CLIP.len()], CLIP);
        assert_eq!(&a[4..8], b"ftyp");
        let free = &a[CLIP.len()..];
        assert_eq!(
            u32::from_be_bytes([free[0], free[1], free[2], free[3]]) as usize,
            free.len()
        );
        assert_eq!(&free[4..8], b"free");
        assert_ne!(a, b);
        assert_eq!(a, sample_video("job-a", 100_000));
        let short = sample_video("job-a", 100);
        assert_eq!((short.len(), &short[4..8]), (100, &b"ftyp"[..]));
    }
}
