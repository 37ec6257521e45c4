//! The provider and its settings: fal's hosts, the client's pace, and the constructors (from
//! a key, from the environment, or with each `with_` call).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::VerifyingKey;
use jilo_core::config;
use jilo_core::{Error, ModelSpec, ProviderId, Result};
use secrecy::{ExposeSecret, SecretString};

use crate::http::{self, RateLimiter, RetryPolicy};

use super::wire::catalog;

/// fal's queue host.
pub const DEFAULT_QUEUE_URL: &str = "https://queue.fal.run";
/// The backup queue host, tried when the first refuses the connection.
pub const BACKUP_QUEUE_URL: &str = "https://queue.falrun.com";
/// Where fal publishes its webhook signing keys.
pub const DEFAULT_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";
/// Calls a minute the client allows itself by default (fal's suggested pace).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 100;
/// How far a webhook's timestamp may be from now.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

pub(super) const SERVICE: &str = "fal";
pub(super) const JWKS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The least time between two fetches of the keys for signatures that do not verify.
pub const JWKS_REFETCH_GAP: Duration = Duration::from_secs(60);

/// The keys fetched, and when.
pub(super) struct Jwks {
    pub(super) keys: Vec<VerifyingKey>,
    pub(super) fetched: Option<Instant>,
}

/// The FAL provider.
pub struct FalProvider {
    pub(super) id: ProviderId,
    pub(super) key: SecretString,
    pub(super) queue: String,
    pub(super) backup: Option<String>,
    pub(super) jwks_url: String,
    pub(super) user_id: Option<String>,
    pub(super) http: reqwest::Client,
    pub(super) reads: RetryPolicy,
    pub(super) jwks: tokio::sync::Mutex<Jwks>,
    pub(super) refetch_gap: Duration,
    pub(super) limit: RateLimiter,
    pub(super) models: Vec<ModelSpec>,
    pub(super) clock: Mutex<Option<SystemTime>>,
}

impl fmt::Debug for FalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalProvider")
            .field("id", &self.id)
            .field("key", &"***")
            .field("queue", &config::redact_url(&self.queue))
            .finish_non_exhaustive()
    }
}

impl FalProvider {
    pub(super) fn now(&self) -> SystemTime {
        self.clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(SystemTime::now)
    }

    pub(super) fn auth(&self) -> String {
        format!("Key {}", self.key.expose_secret())
    }
}

impl FalProvider {
    /// A provider named `fal` with this key (`FAL_KEY`, or `KEY_ID:KEY_SECRET`), on fal's
    /// hosts, offering [`catalog`]. A key with whitespace around it or a control character
    /// is refused ([`Error::InvalidInput`] on `FAL_KEY`), and so is a machine whose TLS
    /// roots cannot load.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = http::secret("FAL_KEY", key)?;
        let http = http::client(Duration::from_secs(60))?;
        Ok(Self {
            id: ProviderId::new("fal"),
            key,
            queue: DEFAULT_QUEUE_URL.to_owned(),
            backup: Some(BACKUP_QUEUE_URL.to_owned()),
            jwks_url: DEFAULT_JWKS_URL.to_owned(),
            user_id: None,
            http,
            reads: RetryPolicy::fal(),
            jwks: tokio::sync::Mutex::new(Jwks {
                keys: Vec::new(),
                fetched: None,
            }),
            refetch_gap: JWKS_REFETCH_GAP,
            limit: RateLimiter::per_minute(DEFAULT_REQUESTS_PER_MINUTE),
            models: catalog(),
            clock: Mutex::new(None),
        })
    }

    /// `FAL_KEY` (required), `FAL_USER_ID` (your fal user id: webhooks signed for another
    /// account are refused; without it a warning is logged), `FAL_QUEUE_URL`, `FAL_JWKS_URL`,
    /// and `FAL_REQUESTS_PER_MINUTE` (the client's own pace, default 100: raise it with your
    /// fal plan's limit).
    /// Each value is checked; a bad one is [`Error::InvalidInput`] naming its variable.
    pub fn from_env() -> Result<Self> {
        let var = http::env_var;
        let mut fal = Self::new(http::required_env("FAL_KEY", "set it to a fal key")?)?;
        if let Some(url) = var("FAL_QUEUE_URL") {
            fal.queue = config::base_url("FAL_QUEUE_URL", &url)?;
            fal.backup = None;
        }
        if let Some(url) = var("FAL_JWKS_URL") {
            fal.jwks_url = config::http_url("FAL_JWKS_URL", &url)?.to_string();
        }
        if let Some(limit) = var("FAL_REQUESTS_PER_MINUTE") {
            let limit = limit
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| {
                    Error::invalid("FAL_REQUESTS_PER_MINUTE", "a whole number of calls above 0")
                })?;
            fal = fal.with_requests_per_minute(limit);
        }
        match var("FAL_USER_ID") {
            Some(user) => {
                config::secret("FAL_USER_ID", &user)?;
                fal = fal.with_user_id(user);
            }
            None => tracing::warn!(
                "FAL_USER_ID is not set: webhooks signed by any fal account will be accepted"
            ),
        }
        Ok(fal)
    }

    /// Other queue hosts: the first, and a backup tried when it refuses the connection. Each
    /// must be an http(s) base URL ([`Error::InvalidInput`] on `FAL_QUEUE_URL` otherwise).
    pub fn with_queue_url(
        mut self,
        url: impl Into<String>,
        backup: Option<String>,
    ) -> Result<Self> {
        self.queue = config::base_url("FAL_QUEUE_URL", &url.into())?;
        self.backup = backup
            .map(|b| config::base_url("FAL_QUEUE_URL", &b))
            .transpose()?;
        Ok(self)
    }

    /// Another JWKS URL ([`Error::InvalidInput`] on `FAL_JWKS_URL` when it is not http(s)).
    pub fn with_jwks_url(mut self, url: impl Into<String>) -> Result<Self> {
        self.jwks_url = config::http_url("FAL_JWKS_URL", &url.into())?.to_string();
        Ok(self)
    }

    /// Your fal user id: webhooks signed for another account are refused.
    pub fn with_user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Another name in jilo (for two fal accounts side by side).
    pub fn with_id(mut self, id: impl Into<ProviderId>) -> Self {
        self.id = id.into();
        self
    }

    /// Another HTTP client.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Another retry policy for reads (status, result, keys).
    pub fn with_retries(mut self, reads: RetryPolicy) -> Self {
        self.reads = reads;
        self
    }

    /// Another client-side rate limit: `limit` calls to the queue a minute.
    pub fn with_requests_per_minute(mut self, limit: u32) -> Self {
        self.limit = RateLimiter::per_minute(limit);
        self
    }

    /// Another least time between refetches of the keys (default [`JWKS_REFETCH_GAP`]).
    pub fn with_jwks_refetch_gap(mut self, gap: Duration) -> Self {
        self.refetch_gap = gap;
        self
    }

    /// Checks webhook timestamps against this time instead of the system clock (tests).
    pub fn with_fixed_now(self, now: SystemTime) -> Self {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        self
    }
}
