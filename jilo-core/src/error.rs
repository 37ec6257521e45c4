//! The one error type of jilo's core boundary.
//!
//! Every failure carries a [`ErrorKind`] a caller can match on and says whether trying again
//! may help ([`Error::is_retryable`]). Errors from services keep the HTTP status and a short,
//! truncated body ([`HttpFailure`]) and never an API key: providers build them from the
//! response, never from their own request.

use crate::ids::Timestamp;
use std::fmt;
use std::time::Duration;

/// A boxed error kept as the source of a storage failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result with jilo's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most bytes of a service's response body kept in an error.
pub const MAX_BODY_IN_ERROR: usize = 512;

/// What a caller can do about an error: the kind, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The user has too few credits; nothing was charged.
    Insufficient,
    /// The global daily generation cap is reached; try tomorrow (UTC).
    DailyCapReached,
    /// A service asked us to slow down.
    RateLimited,
    /// The provider's own account cannot pay (the seed's 速创 incident).
    ProviderOutOfFunds,
    /// A key or token was rejected.
    Unauthorized,
    /// The caller's input is wrong; the field and reason say how.
    InvalidInput,
    /// The prompt was refused by moderation; nothing was charged.
    Moderation,
    /// A service is down or failing (5xx, connection refused).
    Unavailable,
    /// A call did not answer in time.
    Timeout,
    /// A service answered something we cannot read.
    Protocol,
    /// The thing asked for does not exist.
    NotFound,
    /// Another writer changed the record first (a compare-and-set saw another version):
    /// read it again and retry.
    LostRace,
    /// The record to create exists already (a job id, a delivery, an idempotency key).
    AlreadyExists,
    /// The record's state does not allow the request (cancel a storing job, settle a hold
    /// that was refunded); retrying the same call cannot help.
    NotAllowed,
    /// A paid call was sent but its answer was lost (timed out or cut off after the request
    /// left): the service may have accepted it. Reconcile before sending it again.
    OutcomeUnknown,
    /// A store failed.
    Storage,
    /// A platform quota or upload cap is used up; retrying before it resets cannot help.
    QuotaExceeded,
    /// A connected account's grant was revoked or expired: the user must connect it again.
    ReconnectRequired,
}

/// The status and the start of the body of a failed HTTP answer.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpFailure {
    /// The HTTP status code.
    pub status: u16,
    /// The body, cut to at most [`MAX_BODY_IN_ERROR`] bytes on a character boundary.
    pub body: String,
}

impl HttpFailure {
    /// Keeps the status and a truncated copy of the body.
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            body: truncate(body, MAX_BODY_IN_ERROR).to_owned(),
        }
    }
}

impl fmt::Debug for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {:?}", self.status, self.body)
    }
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.body.is_empty() {
            write!(f, "HTTP {}", self.status)
        } else {
            write!(f, "HTTP {}: {}", self.status, self.body)
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn http_suffix(response: &Option<HttpFailure>) -> String {
    response
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// `: <cause>` when a store's error has one: a storage failure shows its driver's words.
fn cause_suffix(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// Which platform quota or cap ran out ([`Error::QuotaExceeded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuotaLimit {
    /// The API project's daily units (YouTube: 10,000 a day, reset at midnight Pacific).
    ProjectDaily,
    /// The project's own bucket of uploads a day (YouTube since 2026-06: `videos.insert`).
    UploadsDaily,
    /// The channel's own daily upload cap, shared by web, app and API (about 24 hours).
    ChannelUploads,
    /// Too many thumbnails set in 24 hours.
    Thumbnails,
}

impl fmt::Display for QuotaLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaLimit::ProjectDaily => "the project's daily API quota",
            QuotaLimit::UploadsDaily => "the project's daily upload quota",
            QuotaLimit::ChannelUploads => "the channel's daily upload limit",
            QuotaLimit::Thumbnails => "the daily thumbnail limit",
        })
    }
}

/// jilo's error. Match on the variant, or on [`Error::kind`] when only the kind matters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user's available credits are below what the job costs. Nothing changed.
    #[error("insufficient credits: {available} available, {needed} needed")]
    Insufficient {
        /// Credits the user has free right now.
        available: i64,
        /// Credits the request costs.
        needed: i64,
    },
    /// The global daily generation cap is reached. Nothing changed.
    #[error("the daily generation cap of {cap} is reached; try again tomorrow (UTC)")]
    DailyCapReached {
        /// The cap in force.
        cap: u32,
    },
    /// The input is wrong. Nothing changed.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field, e.g. `prompt` or `credits`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// Moderation refused the prompt. Nothing was charged.
    #[error("the prompt contains disallowed terms: {}", terms.join(", "))]
    Moderation {
        /// The offending terms, as found in the prompt's word list.
        terms: Vec<String>,
    },
    /// The entity does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked up: `job`, `user`, `hold`, `provider`, …
        entity: &'static str,
        /// The id looked up.
        id: String,
    },
    /// Another writer changed the record first; read it again and retry.
    #[error("lost a race: {reason}")]
    LostRace {
        /// What changed under the caller.
        reason: String,
    },
    /// The record to create exists already.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// What was created: `job`, `delivery`, `hold`, …
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// The record's state does not allow the request.
    #[error("not allowed: {reason}")]
    NotAllowed {
        /// Why, in words a user can read.
        reason: String,
    },
    /// A paid call left but its answer was lost: the service may have accepted it.
    #[error("{service}: the outcome of the call is unknown: {reason}")]
    OutcomeUnknown {
        /// The service (provider id).
        service: String,
        /// What cut the call off.
        reason: String,
        /// The transport's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The service asked us to slow down.
    #[error("{service} rate limited{}{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default(), http_suffix(response))]
    RateLimited {
        /// The service (provider id).
        service: String,
        /// When the service said to come back, if it said.
        retry_after: Option<Duration>,
        /// The HTTP answer, when there was one.
        response: Option<HttpFailure>,
        /// The transport's or parser's error, when there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// The provider's own account has no funds; an admin must top it up.
    #[error("{service} account is out of funds{}", http_suffix(response))]
    ProviderOutOfFunds {
        /// The service (provider id).
        service: String,
        /// The HTTP answer, when there was one.
        response: Option<HttpFailure>,
        /// The transport's or parser's error, when there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// A key or token was rejected.
    #[error("{service} rejected the credentials{}", http_suffix(response))]
    Unauthorized {
        /// The service (provider id) or `webhook` for a bad signature.
        service: String,
        /// The HTTP answer, when there was one.
        response: Option<HttpFailure>,
        /// The transport's or parser's error, when there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// The service is down or failing.
    #[error("{service} unavailable: {reason}{}", http_suffix(response))]
    Unavailable {
        /// The service (provider id).
        service: String,
        /// What failed.
        reason: String,
        /// The HTTP answer, when there was one.
        response: Option<HttpFailure>,
        /// The transport's or parser's error, when there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// The call did not answer in time.
    #[error("{service} timed out{}", http_suffix(response))]
    Timeout {
        /// The service (provider id).
        service: String,
        /// The HTTP answer (408, 504), when there was one.
        response: Option<HttpFailure>,
        /// The transport's error, when there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// The service answered something we cannot read.
    #[error("{service} protocol error: {reason}{}", http_suffix(response))]
    Protocol {
        /// The service (provider id).
        service: String,
        /// What could not be read.
        reason: String,
        /// The HTTP answer, when there was one.
        response: Option<HttpFailure>,
        /// The transport's or parser's error, when there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// A platform quota or upload cap is used up. Not retryable: `retry_at` says when it
    /// resets, when that is known.
    #[error("{service}: {limit} used up{}{}", retry_at.map(|t| format!("; it resets at {t}")).unwrap_or_default(), http_suffix(response))]
    QuotaExceeded {
        /// The service.
        service: String,
        /// Which quota or cap.
        limit: QuotaLimit,
        /// When to try again, when known.
        retry_at: Option<Timestamp>,
        /// The HTTP answer.
        response: Option<HttpFailure>,
    },
    /// A connected account's grant was revoked or has expired (OAuth `invalid_grant`): the
    /// user must connect the account again. Not retryable.
    #[error("{service}: account {account} must be connected again: {reason}")]
    ReconnectRequired {
        /// The service.
        service: String,
        /// The account (e.g. a YouTube channel id).
        account: String,
        /// What the service said.
        reason: String,
    },
    /// A store failed.
    #[error("storage error: {reason}{}", cause_suffix(source))]
    Storage {
        /// What failed.
        reason: String,
        /// Whether the same call may succeed if tried again (a busy database, a lost connection).
        retryable: bool,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Insufficient { .. } => ErrorKind::Insufficient,
            Error::DailyCapReached { .. } => ErrorKind::DailyCapReached,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Moderation { .. } => ErrorKind::Moderation,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::LostRace { .. } => ErrorKind::LostRace,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::NotAllowed { .. } => ErrorKind::NotAllowed,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::ProviderOutOfFunds { .. } => ErrorKind::ProviderOutOfFunds,
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Storage { .. } => ErrorKind::Storage,
            Error::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            Error::ReconnectRequired { .. } => ErrorKind::ReconnectRequired,
        }
    }

    /// Whether the same call may succeed later: rate limits, outages, time-outs, lost
    /// compare-and-set races and transient storage failures. A paid submit is still never
    /// re-sent blindly: a time-out or [`Error::OutcomeUnknown`] of a submit is reconciled
    /// first (see [`crate::FailureClass::Unknown`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. }
            | Error::Unavailable { .. }
            | Error::Timeout { .. }
            | Error::LostRace { .. } => true,
            Error::Storage { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// How long the service asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, id: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::LostRace`].
    pub fn lost_race(reason: impl Into<String>) -> Self {
        Error::LostRace {
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(entity: &'static str, id: impl fmt::Display) -> Self {
        Error::AlreadyExists {
            entity,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::NotAllowed`].
    pub fn not_allowed(reason: impl Into<String>) -> Self {
        Error::NotAllowed {
            reason: reason.into(),
        }
    }

    /// Shorthand for a [`Error::Storage`] failure with its driver error kept as the source.
    pub fn storage(
        reason: impl Into<String>,
        retryable: bool,
        source: impl Into<Option<BoxError>>,
    ) -> Self {
        Error::Storage {
            reason: reason.into(),
            retryable,
            source: source.into(),
        }
    }

    /// The same error with every occurrence of these secrets (as given and as URL-encoded,
    /// e.g. a key a service echoed from the query string) replaced by `***` in every text it
    /// holds: reasons, ids, the kept HTTP body, and the source's text (a source that mentions
    /// a secret is replaced by its redacted text). A body cut short right inside a secret
    /// loses the secret's start too. Clients call it on every error they return, so no key
    /// reaches a caller, a log or a stored job's failure.
    pub fn redact(self, secrets: &[&str]) -> Self {
        let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
        if secrets.is_empty() {
            return self;
        }
        let text = |t: String| crate::redact::redact(t, &secrets);
        let response = |r: Option<HttpFailure>| {
            r.map(|r| HttpFailure {
                status: r.status,
                body: crate::redact::redact(r.body, &secrets),
            })
        };
        let source = |s: Option<BoxError>| s.map(|s| redact_source(s, &secrets));
        match self {
            Error::InvalidInput { field, reason } => Error::InvalidInput {
                field: text(field),
                reason: text(reason),
            },
            Error::Moderation { terms } => Error::Moderation {
                terms: terms.into_iter().map(text).collect(),
            },
            Error::NotFound { entity, id } => Error::NotFound {
                entity,
                id: text(id),
            },
            Error::LostRace { reason } => Error::LostRace {
                reason: text(reason),
            },
            Error::AlreadyExists { entity, id } => Error::AlreadyExists {
                entity,
                id: text(id),
            },
            Error::NotAllowed { reason } => Error::NotAllowed {
                reason: text(reason),
            },
            Error::OutcomeUnknown {
                service,
                reason,
                source: s,
            } => Error::OutcomeUnknown {
                service,
                reason: text(reason),
                source: source(s),
            },
            Error::RateLimited {
                service,
                retry_after,
                response: r,
                source: s,
            } => Error::RateLimited {
                service,
                retry_after,
                response: response(r),
                source: source(s),
            },
            Error::ProviderOutOfFunds {
                service,
                response: r,
                source: s,
            } => Error::ProviderOutOfFunds {
                service,
                response: response(r),
                source: source(s),
            },
            Error::Unauthorized {
                service,
                response: r,
                source: s,
            } => Error::Unauthorized {
                service,
                response: response(r),
                source: source(s),
            },
            Error::Unavailable {
                service,
                reason,
                response: r,
                source: s,
            } => Error::Unavailable {
                service,
                reason: text(reason),
                response: response(r),
                source: source(s),
            },
            Error::Timeout {
                service,
                response: r,
                source: s,
            } => Error::Timeout {
                service,
                response: response(r),
                source: source(s),
            },
            Error::Protocol {
                service,
                reason,
                response: r,
                source: s,
            } => Error::Protocol {
                service,
                reason: text(reason),
                response: response(r),
                source: source(s),
            },
            Error::QuotaExceeded {
                service,
                limit,
                retry_at,
                response: r,
            } => Error::QuotaExceeded {
                service,
                limit,
                retry_at,
                response: response(r),
            },
            Error::ReconnectRequired {
                service,
                account,
                reason,
            } => Error::ReconnectRequired {
                service,
                account,
                reason: text(reason),
            },
            Error::Storage {
                reason,
                retryable,
                source: s,
            } => Error::Storage {
                reason: text(reason),
                retryable,
                source: source(s),
            },
            e @ (Error::Insufficient { .. } | Error::DailyCapReached { .. }) => e,
        }
    }

    /// The HTTP answer behind this error, when a service gave one.
    pub fn http(&self) -> Option<&HttpFailure> {
        match self {
            Error::RateLimited { response, .. }
            | Error::ProviderOutOfFunds { response, .. }
            | Error::Unauthorized { response, .. }
            | Error::Unavailable { response, .. }
            | Error::Timeout { response, .. }
            | Error::Protocol { response, .. } => response.as_ref(),
            _ => None,
        }
    }
}

/// A source error's text with the secrets taken out.
#[derive(Debug)]
struct RedactedSource(String);

impl fmt::Display for RedactedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedactedSource {}

/// An error's text followed by its sources', joined by `: `.
pub fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        // An error that shows its cause already (a storage error) is not repeated.
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// The source as it is when no secret shows in its chain's text or `Debug`, else its chain's
/// text redacted (the typed source is dropped: it cannot be cleaned in place).
fn redact_source(source: BoxError, secrets: &[&str]) -> BoxError {
    let chain = chain_text(source.as_ref());
    let debug = format!("{source:?}");
    let shows = |t: &str| {
        secrets
            .iter()
            .flat_map(|s| crate::redact::secret_forms(s))
            .any(|form| t.contains(&form))
    };
    if shows(&chain) || shows(&debug) {
        Box::new(RedactedSource(crate::redact::redact(chain, secrets)))
    } else {
        source
    }
}

#[cfg(test)]
mod cause_tests {
    use super::*;

    #[test]
    fn a_storage_error_shows_its_cause_once() {
        let e = Error::storage(
            "saving the job failed",
            true,
            Some(Box::new(std::io::Error::other("disk full")) as BoxError),
        );
        assert_eq!(
            e.to_string(),
            "storage error: saving the job failed: disk full"
        );
        assert_eq!(chain_text(&e), e.to_string());
        assert_eq!(
            Error::storage("the map is poisoned", false, None).to_string(),
            "storage error: the map is poisoned"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_takes_secrets_out_of_every_text() {
        let key = "sk-live+abc/123";
        let body = format!(
            r#"{{"msg":"bad url https://api.example/x?key=sk-live%2Babc%2F123 and {key}"}}"#
        );
        let e = Error::Protocol {
            service: "suchuang".into(),
            reason: format!("echoed {key}"),
            response: Some(HttpFailure::new(400, &body)),
            source: Some(Box::new(std::io::Error::other(format!("io {key}")))),
        }
        .redact(&[key]);
        let shown = format!(
            "{e} {e:?} {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains("***"));
        // A body cut short inside the key loses the key's start too.
        let cut = HttpFailure::new(500, &format!("{}{key}", "x".repeat(MAX_BODY_IN_ERROR - 6)));
        let e = Error::Unavailable {
            service: "s".into(),
            reason: "HTTP 500".into(),
            response: Some(cut),
            source: None,
        }
        .redact(&[key]);
        let body = e.http().map(|h| h.body.clone()).unwrap_or_default();
        assert!(body.ends_with("x***"), "{body}");
        // Errors without secrets keep their source as it was.
        let e = Error::storage(
            "db",
            true,
            Some(Box::new(std::io::Error::other("plain")) as BoxError),
        )
        .redact(&[key]);
        assert!(matches!(
            e,
            Error::Storage {
                retryable: true,
                ..
            }
        ));
    }

    #[test]
    fn bodies_are_truncated_on_char_boundaries() {
        let body = "余".repeat(400); // 1200 bytes
        let f = HttpFailure::new(500, &body);
        assert!(f.body.len() <= MAX_BODY_IN_ERROR);
        assert!(f.body.chars().all(|c| c == '余'));
        assert_eq!(f.body.len(), 510);
    }

    #[test]
    fn kinds_and_retryability() {
        let e = Error::RateLimited {
            service: "fal".into(),
            retry_after: Some(Duration::from_secs(7)),
            response: Some(HttpFailure::new(429, "slow down")),
            source: None,
        };
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.http().map(|h| h.status), Some(429));
        assert_eq!(
            e.to_string(),
            "fal rate limited, retry after 7s (HTTP 429: slow down)"
        );
        let e = Error::Insufficient {
            available: 3,
            needed: 15,
        };
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "insufficient credits: 3 available, 15 needed"
        );
        let e = Error::Moderation {
            terms: vec!["gore".into(), "bomb".into()],
        };
        assert_eq!(
            e.to_string(),
            "the prompt contains disallowed terms: gore, bomb"
        );
        assert!(Error::storage("busy", true, None).is_retryable());
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::Unavailable {
            service: "fal".into(),
            reason: "connection reset".into(),
            response: None,
            source: Some(Box::new(cause)),
        };
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(
            source.as_deref(),
            Some("reset by peer"),
            "the cause is kept"
        );
        assert!(!Error::storage("corrupt", false, None).is_retryable());
    }
}
