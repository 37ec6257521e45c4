//! The HTTP layer the clients share: one retry loop per call path, which retries only what is
//! safe to send again, with exponential back-off and jitter above each service's floor
//! ([`RetryPolicy`]), bounded in attempts and time, honouring `Retry-After` (seconds or an HTTP
//! date).
//!
//! A call that starts paid work ([`CallKind::PaidStart`]: an actor run, a video submit) is
//! retried only when the service is known not to have taken it: a refused connection or a
//! 429. Reads ([`CallKind::Read`]) are retried on every retryable failure.

use std::time::{Duration, SystemTime};

use jilo_core::{Error, HttpFailure};

use crate::classify;

/// Installs rustls's ring crypto provider as the process default, unless one is installed
/// already. jilo does not need it: its clients carry their own TLS configuration on ring
/// ([`client_builder`]). It is here for a host that builds a plain `reqwest::Client` itself
/// (reqwest is built without a provider of its own) and has none of its own to install.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race: either way a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The TLS configuration of jilo's clients: rustls on ring, chosen here rather than through
/// the process default (a host's own default is neither overridden nor needed), with the
/// platform's certificate verifier. Fails with the cause when no root certificates load (a
/// slim container without CA certificates, an `SSL_CERT_FILE` naming no file).
pub fn tls_config() -> Result<rustls::ClientConfig, Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let refused = |e: rustls::Error| {
        Error::invalid(
            "TLS",
            format!(
                "no TLS configuration could be made ({e}); install the CA certificates \
                 (e.g. the ca-certificates package) or point SSL_CERT_FILE at a bundle"
            ),
        )
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_platform_verifier()
        .map_err(refused)?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A `reqwest::ClientBuilder` with jilo's TLS configuration ([`tls_config`]) and a connect
/// time-out of 10 s: what a host starts from to inject its own client (a proxy, other
/// time-outs) through a client's `with_client`.
pub fn client_builder() -> Result<reqwest::ClientBuilder, Error> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .connect_timeout(Duration::from_secs(10)))
}

/// Builds a client, with the cause when it cannot be built.
pub fn build_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, Error> {
    builder.build().map_err(|e| {
        Error::invalid(
            "HTTP client",
            format!("could not be built: {}", jilo_core::error::chain_text(&e)),
        )
    })
}

/// The HTTP client a service client gets unless the host injects its own:
/// [`client_builder`] with a whole-call time-out of `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, Error> {
    build_client(client_builder()?.timeout(timeout))
}

/// The call's result with a client's secrets taken out of any error (a service may echo the
/// request, its URL or headers included, in an error body): what every client call returns.
pub async fn redacted<T>(
    secret: &str,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    call.await.map_err(|e| e.redact(&[secret]))
}

/// An environment variable's value, `None` when unset or blank.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An environment variable that must be set: its value, or [`Error::InvalidInput`] naming it
/// with `hint` (what to set it to).
pub fn required_env(name: &str, hint: &str) -> Result<String, Error> {
    env_var(name).ok_or_else(|| Error::invalid(name, format!("is not set: {hint}")))
}

/// A key or token checked as [`jilo_core::config::secret`] does, refused under `name` (the
/// variable it is read from).
pub fn secret(name: &str, value: impl Into<String>) -> Result<secrecy::SecretString, Error> {
    let value = value.into();
    jilo_core::config::secret(name, &value)?;
    Ok(secrecy::SecretString::from(value))
}

/// How often and how long a call is tried.
///
/// The back-off before the `n`th retry is drawn uniformly between
/// `floor * 2^(n-1)` and `base * 2^(n-1)`, both capped at `max_delay`, and is never shorter
/// than what the service asked for (`Retry-After`, Gemini's `retryDelay`). A floor of zero is
/// full jitter; each service's own policy ([`RetryPolicy::apify`], [`RetryPolicy::gemini`],
/// [`RetryPolicy::fal`], [`RetryPolicy::suchuang`]) keeps the first wait its documentation
/// asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// No try starts after this much time since the first.
    pub max_elapsed: Duration,
    /// The first back-off's ceiling; it doubles each try.
    pub base: Duration,
    /// The first back-off's least value; it doubles each try (zero: full jitter).
    pub floor: Duration,
    /// The largest back-off.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(60),
            base: Duration::from_millis(500),
            floor: Duration::ZERO,
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// No retries: one try.
    pub fn once() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Apify's documented back-off on 429: start at 500 ms, wait a random time between the
    /// delay and twice it, doubling each time.
    pub fn apify() -> Self {
        Self {
            floor: Duration::from_millis(500),
            base: Duration::from_secs(1),
            ..Self::default()
        }
    }

    /// Google's own SDK policy for Gemini: 5 tries, starting at 1 s and doubling with up to
    /// 1 s of jitter, at most 60 s a wait and 3 minutes in all.
    pub fn gemini() -> Self {
        Self {
            max_attempts: 5,
            floor: Duration::from_secs(1),
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(180),
        }
    }

    /// fal's client policy: a 1 s base, doubling, ±25 % jitter, at most 30 s a wait.
    pub fn fal() -> Self {
        Self {
            floor: Duration::from_millis(750),
            base: Duration::from_millis(1_250),
            max_delay: Duration::from_secs(30),
            ..Self::default()
        }
    }

    /// 速创 documents none: the clients its spec drew on wait about a second, doubling.
    pub fn suchuang() -> Self {
        Self {
            floor: Duration::from_millis(500),
            base: Duration::from_secs(1),
            ..Self::default()
        }
    }

    /// The back-off before try `attempt + 1` (after `attempt` failures): drawn uniformly from
    /// `floor * 2^(attempt-1)` to `base * 2^(attempt-1)`, both at most `max_delay`, and never
    /// shorter than what the service asked for.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        let low = self.floor.saturating_mul(factor).min(self.max_delay);
        let high = self
            .base
            .saturating_mul(factor)
            .min(self.max_delay)
            .max(low);
        let span = u64::try_from((high - low).as_millis()).unwrap_or(u64::MAX);
        let drawn = if span == 0 {
            low
        } else {
            // uuid v4 is the random source already in the tree.
            low + Duration::from_millis((uuid::Uuid::new_v4().as_u128() as u64) % (span + 1))
        };
        asked.map_or(drawn, |a| a.max(drawn))
    }
}

/// Whether a call may be sent again after a failure whose outcome is unclear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// Reading: safe to repeat.
    Read,
    /// Starting paid work: repeated only when the service surely did not take it.
    PaidStart,
}

/// `Retry-After` as seconds or an HTTP date, from now.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    classify::retry_after_seconds(value).or_else(|| {
        let at = httpdate::parse_http_date(value.trim()).ok()?;
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    })
}

/// A transport failure as jilo's error. Nothing was sent when the request could not be built
/// (a header value with a newline, a URL that is not one) or the connection was never made
/// (refused, DNS): that is `Unavailable` with no answer, which a paid start may send again
/// and the Studio retries or fails over, never reconciles. A time-out is `Timeout`; anything
/// after the request may have left is `OutcomeUnknown` for a paid start and `Unavailable` for
/// a read. The URL (which may carry a token) is dropped.
pub fn transport_error(service: &str, kind: CallKind, e: reqwest::Error) -> Error {
    let e = e.without_url();
    let service = service.to_owned();
    if e.is_builder() {
        return Error::Unavailable {
            service,
            reason: "the request could not be built, so nothing was sent".to_owned(),
            response: None,
            source: Some(Box::new(e)),
        };
    }
    if e.is_connect() {
        return Error::Unavailable {
            service,
            reason: "connection failed".to_owned(),
            response: None,
            source: Some(Box::new(e)),
        };
    }
    if e.is_timeout() {
        return Error::Timeout {
            service,
            response: None,
            source: Some(Box::new(e)),
        };
    }
    match kind {
        CallKind::PaidStart => Error::OutcomeUnknown {
            service,
            reason: "the connection failed after the request was sent".to_owned(),
            source: Some(Box::new(e)),
        },
        CallKind::Read => Error::Unavailable {
            service,
            reason: "the connection failed".to_owned(),
            response: None,
            source: Some(Box::new(e)),
        },
    }
}

/// Whether an error of this kind of call may be retried.
fn may_retry(kind: CallKind, error: &Error) -> bool {
    match kind {
        CallKind::Read => error.is_retryable(),
        CallKind::PaidStart => matches!(
            error,
            Error::RateLimited { .. } | Error::Unavailable { response: None, .. }
        ),
    }
}

/// A failed answer: the status, the body, and what the service asked.
pub struct Failed {
    /// The HTTP status.
    pub status: u16,
    /// The body (for the caller's own error mapping).
    pub body: String,
    /// The `Retry-After` it gave.
    pub retry_after: Option<Duration>,
}

impl Failed {
    /// The shared mapping of this answer.
    pub fn into_error(self, service: &str) -> Error {
        classify::http_error(service, self.status, &self.body, self.retry_after)
    }

    /// This answer's error given what the service's own fields say ([`classify::Says`]).
    pub fn into_error_saying(self, service: &str, says: classify::Says) -> Error {
        classify::error_from(service, self.status, &self.body, self.retry_after, says)
    }

    /// The status and the truncated body, for errors a client builds itself.
    pub fn http(&self) -> HttpFailure {
        HttpFailure::new(self.status, &self.body)
    }
}

/// Sends one request inside a span naming the service, the method, the path (never the query
/// string, where some services take their key) and the try, recording the answer's status and
/// the latency, with a debug event when it ends. Every client's calls go through it (directly,
/// or through [`send`]).
pub async fn traced(
    service: &str,
    attempt: u32,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    use tracing::Instrument;
    let (client, request) = request.build_split();
    let request = request?;
    let span = tracing::info_span!(
        "http",
        service,
        method = %request.method(),
        path = %request.url().path(),
        attempt,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let answer = client.execute(request).instrument(span.clone()).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.record("latency_ms", latency_ms);
    match &answer {
        Ok(response) => {
            let status = response.status().as_u16();
            span.record("status", status);
            span.in_scope(|| tracing::debug!(status, latency_ms, "answered"));
        }
        Err(e) => {
            // The error's text names the URL, query included: only its kind is logged.
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            span.in_scope(|| tracing::debug!(kind, latency_ms, "no answer"));
        }
    }
    answer
}

/// [`traced`] as a method of a request builder, for the calls that handle their own answers.
pub trait TracedSend {
    /// Sends in a span naming `service` (the first try; see [`traced`]).
    fn traced_send(
        self,
        service: &'static str,
    ) -> impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>> + Send;
}

impl TracedSend for reqwest::RequestBuilder {
    fn traced_send(
        self,
        service: &'static str,
    ) -> impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>> + Send {
        traced(service, 1, self)
    }
}

/// Sends the request `make` builds, retrying as `kind` and `policy` allow. Returns the first
/// successful response, or a non-success answer `accept` lets through (e.g. a 408 the caller
/// handles), or the error of the last try. `map` turns a failed answer into an error (the
/// service's own reading of its body, or [`Failed::into_error`]).
pub async fn send(
    service: &str,
    kind: CallKind,
    policy: &RetryPolicy,
    accept: impl Fn(u16) -> bool,
    map: impl Fn(Failed) -> Error,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, Error> {
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match traced(service, attempt, make()).await {
            Ok(resp) if resp.status().is_success() || accept(resp.status().as_u16()) => {
                return Ok(resp)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = retry_after(resp.headers());
                let body = resp.text().await.unwrap_or_default();
                map(Failed {
                    status,
                    body,
                    retry_after,
                })
            }
            Err(e) => transport_error(service, kind, e),
        };
        let delay = policy.delay(attempt, error.retry_after());
        let in_time = started.elapsed() + delay < policy.max_elapsed;
        if attempt >= policy.max_attempts || !in_time || !may_retry(kind, &error) {
            return Err(error);
        }
        tracing::debug!(service, attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
        tokio::time::sleep(delay).await;
    }
}

/// A client-side rate limit: at most `limit` calls per `period`, in bursts of up to `limit`
/// (the generic cell rate algorithm). Calls over it wait their turn, in order.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    /// When the next call would be due if calls were evenly spaced.
    next: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl RateLimiter {
    /// `limit` calls per `period` (a `limit` of 0 is taken as 1).
    pub fn new(limit: u32, period: Duration) -> Self {
        let interval = period / limit.max(1);
        Self {
            interval,
            tolerance: period.saturating_sub(interval),
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// `limit` calls a minute.
    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// Waits until a call may go.
    pub async fn acquire(&self) {
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        let due = next.map_or(now, |t| t.max(now));
        let allowed_at = due.checked_sub(self.tolerance).unwrap_or(now);
        *next = Some(due + self.interval);
        if allowed_at > now {
            // Holding the lock keeps later callers behind this one.
            tokio::time::sleep_until(allowed_at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_allows_a_burst_then_spaces_calls() {
        let limit = RateLimiter::new(3, Duration::from_secs(3));
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            limit.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a burst of the limit goes at once"
        );
        limit.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        limit.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // 6 calls in 3 s at most, then one a second.
        tokio::time::advance(Duration::from_secs(10)).await;
        let again = tokio::time::Instant::now();
        for _ in 0..3 {
            limit.acquire().await;
        }
        assert_eq!(
            again.elapsed(),
            Duration::ZERO,
            "an idle limiter refills its burst"
        );
    }

    #[test]
    fn each_service_waits_at_least_its_floor_and_at_most_its_ceiling() {
        for (name, p) in [
            ("apify", RetryPolicy::apify()),
            ("gemini", RetryPolicy::gemini()),
            ("fal", RetryPolicy::fal()),
            ("suchuang", RetryPolicy::suchuang()),
        ] {
            for attempt in 1..8 {
                let factor = 1 << (attempt - 1);
                let low = (p.floor * factor).min(p.max_delay);
                let high = (p.base * factor).min(p.max_delay).max(low);
                for _ in 0..50 {
                    let d = p.delay(attempt, None);
                    assert!(d >= low && d <= high, "{name} try {attempt}: {d:?}");
                }
            }
        }
        // Apify's own words: the first wait is random between 500 ms and 1 s.
        let first = RetryPolicy::apify().delay(1, None);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling_and_honours_the_ask() {
        let p = RetryPolicy::default();
        for attempt in 1..8 {
            let ceiling = (p.base * (1 << (attempt - 1))).min(p.max_delay);
            for _ in 0..50 {
                assert!(p.delay(attempt, None) <= ceiling);
            }
        }
        assert!(p.delay(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            "12".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        let later = SystemTime::now() + Duration::from_secs(90);
        let date = httpdate::fmt_http_date(later);
        h.insert(
            reqwest::header::RETRY_AFTER,
            date.parse().unwrap_or_else(|_| unreachable!()),
        );
        let d = retry_after(&h).unwrap_or_default();
        assert!(
            d > Duration::from_secs(80) && d <= Duration::from_secs(90),
            "{d:?}"
        );
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
    }
}
