//! YouTube's error answers as jilo's errors, read from the Google error body
//! (`error.errors[0].reason`, then `error.status` and `error.message`).

use std::time::Duration;

use jilo_core::{Error, HttpFailure, QuotaLimit, Timestamp};
use serde::Deserialize;

pub(crate) const SERVICE: &str = "youtube";

#[derive(Deserialize, Default)]
struct Body {
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    errors: Vec<Item>,
}

#[derive(Deserialize, Default)]
struct Item {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// The first `reason` of a Google error body (or its `status`), and its message.
pub(crate) fn reason_of(body: &str) -> (String, String) {
    let parsed: Body = serde_json::from_str(body).unwrap_or_default();
    let error = parsed.error.unwrap_or_default();
    let reason = error
        .errors
        .first()
        .map(|i| i.reason.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or(error.status);
    // The top message, and the first item's when it says more.
    let mut message = error.message;
    if let Some(item) = error.errors.first() {
        if !item.message.is_empty() && !message.contains(&item.message) {
            message = format!("{message} {}", item.message).trim().to_owned();
        }
    }
    (reason, message)
}

/// YouTube's quotas reset at midnight in this zone.
const QUOTA_ZONE: &str = "America/Los_Angeles";

/// The next midnight in Pacific Time after `now`: when YouTube's daily quotas reset. The
/// time-zone database is bundled (jiff), so daylight saving is right on any host; were the
/// zone ever missing, midnight at UTC-8 is the answer rather than a panic.
pub fn next_pacific_midnight(now: Timestamp) -> Timestamp {
    static PACIFIC: std::sync::LazyLock<Option<jiff::tz::TimeZone>> =
        std::sync::LazyLock::new(|| jiff::tz::TimeZone::get(QUOTA_ZONE).ok());
    let zone = PACIFIC
        .clone()
        .unwrap_or_else(|| jiff::tz::TimeZone::fixed(jiff::tz::offset(-8)));
    let next = jiff::Timestamp::from_millisecond(now.as_millis())
        .ok()
        .and_then(|t| t.to_zoned(zone.clone()).date().tomorrow().ok())
        .and_then(|day| day.to_zoned(zone).ok());
    match next {
        Some(midnight) => Timestamp::from_millis(midnight.timestamp().as_millisecond()),
        // Past the years a calendar names: a day later.
        None => now.plus(Duration::from_secs(86_400)),
    }
}

/// An error answer of the YouTube API or upload server as jilo's error. Quotas and upload
/// caps are [`Error::QuotaExceeded`] (never retried, with when to try again); short-term rate
/// limits are [`Error::RateLimited`]; 500, 502, 503 and 504 are [`Error::Unavailable`], and
/// any other answer (another 5xx too) is permanent.
pub(crate) fn youtube_error(
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
    now: Timestamp,
) -> Error {
    let (reason, message) = reason_of(body);
    let response = Some(HttpFailure::new(status, body));
    let service = SERVICE.to_owned();
    let quota = |limit: QuotaLimit, retry_at: Timestamp| Error::QuotaExceeded {
        service: SERVICE.to_owned(),
        limit,
        retry_at: Some(retry_at),
        response: Some(HttpFailure::new(status, body)),
    };
    // The upload bucket's exhaustion is a rate-limit reason whose quota Google names in its
    // message; only that reason's message is read (other messages may quote the metadata).
    let per_day = matches!(reason.as_str(), "rateLimitExceeded" | "")
        && message.contains("Video Uploads per day");
    match (status, reason.as_str()) {
        (400, "uploadLimitExceeded") => quota(
            QuotaLimit::ChannelUploads,
            now.plus(Duration::from_secs(24 * 3600)),
        ),
        (403, "quotaExceeded" | "dailyLimitExceeded") => {
            quota(QuotaLimit::ProjectDaily, next_pacific_midnight(now))
        }
        (403 | 429, _) if per_day => quota(QuotaLimit::UploadsDaily, next_pacific_midnight(now)),
        (_, "uploadRateLimitExceeded") => quota(
            QuotaLimit::Thumbnails,
            now.plus(Duration::from_secs(24 * 3600)),
        ),
        (429, _) | (403, "rateLimitExceeded" | "userRateLimitExceeded") => Error::RateLimited {
            service,
            retry_after,
            response,
            source: None,
        },
        (401, "youtubeSignupRequired") => Error::NotAllowed {
            reason: "the Google account has no YouTube channel; create one and connect again"
                .to_owned(),
        },
        (401, _)
        | (
            403,
            "insufficientPermissions"
            | "forbidden"
            | "authenticatedUserAccountClosed"
            | "authenticatedUserAccountSuspended"
            | "authenticatedUserNotChannel",
        ) => Error::Unauthorized {
            service,
            response,
            source: None,
        },
        (400, r) if r.starts_with("invalid") || r == "defaultLanguageNotSet" => {
            let field = match r {
                "invalidTitle" => "title",
                "invalidDescription" => "description",
                "invalidTags" => "tags",
                "invalidCategoryId" => "category_id",
                "invalidPublishAt" => "publish_at",
                "invalidImage" => "thumbnail",
                _ => "metadata",
            };
            Error::invalid(field, format!("YouTube refused it ({r}): {message}"))
        }
        (404, _) => Error::NotFound {
            entity: "youtube resource",
            id: if reason.is_empty() {
                "(not found)".to_owned()
            } else {
                reason
            },
        },
        // Google's resumable failures; any other 5xx is permanent (a retry answers the same).
        (500 | 502 | 503 | 504, _) => Error::Unavailable {
            service,
            reason: format!("HTTP {status}"),
            response,
            source: None,
        },
        (s, _) => Error::Protocol {
            service,
            reason: format!("HTTP {s} {reason}: {message}"),
            response,
            source: None,
        },
    }
}

pub(super) fn protocol(reason: impl Into<String>) -> Error {
    Error::Protocol {
        service: SERVICE.to_owned(),
        reason: reason.into(),
        response: None,
        source: None,
    }
}

/// YouTube asked for a pause longer than the back-off allows: this try ends, and the record
/// is left alone until then ([`Error::retry_after`]).
pub(super) fn asked_to_wait(asked: Duration) -> Error {
    Error::RateLimited {
        service: SERVICE.to_owned(),
        retry_after: Some(asked),
        response: None,
        source: None,
    }
}

/// What one call's failure means for the upload loop.
pub(super) enum Failure {
    /// Try again after a back-off (at least what the server asked for), asking the server
    /// what it holds first.
    Transient(Error, Option<Duration>),
    /// The access token was refused: refresh it, then ask what the server holds.
    Auth(Error),
    /// Stop.
    Fatal(Error),
}

impl Failure {
    pub(super) fn transient(e: Error) -> Self {
        Failure::Transient(e, None)
    }
}

pub(super) fn failure(
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
    now: Timestamp,
) -> Failure {
    let e = youtube_error(status, body, retry_after, now);
    match (status, &e) {
        (401, Error::Unauthorized { .. }) => Failure::Auth(e),
        // The resumable failures; `Retry-After` is honoured on them too.
        (500 | 502 | 503 | 504, _) => Failure::Transient(e, retry_after),
        (_, Error::RateLimited { .. }) => Failure::transient(e),
        _ => Failure::Fatal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
        let utc = jiff::civil::date(y, m, d)
            .at(h, min, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or_default();
        Timestamp::from_millis(utc)
    }

    #[test]
    fn quotas_reset_at_pacific_midnight_across_daylight_saving() {
        // Winter (PST, UTC-8): 2026-12-02 10:00 UTC is 02:00 PST; midnight is 08:00 UTC next day.
        assert_eq!(
            next_pacific_midnight(at(2026, 12, 2, 10, 0)),
            at(2026, 12, 3, 8, 0)
        );
        // Summer (PDT, UTC-7): midnight is 07:00 UTC.
        assert_eq!(
            next_pacific_midnight(at(2026, 7, 1, 6, 59)),
            at(2026, 7, 1, 7, 0)
        );
        assert_eq!(
            next_pacific_midnight(at(2026, 7, 1, 7, 0)),
            at(2026, 7, 2, 7, 0)
        );
        // 2026: DST starts Sunday 8 March, ends Sunday 1 November.
        assert_eq!(
            next_pacific_midnight(at(2026, 3, 8, 12, 0)),
            at(2026, 3, 9, 7, 0)
        );
        assert_eq!(
            next_pacific_midnight(at(2026, 3, 7, 12, 0)),
            at(2026, 3, 8, 8, 0),
            "the night before the change is still PST"
        );
        assert_eq!(
            next_pacific_midnight(at(2026, 10, 31, 12, 0)),
            at(2026, 11, 1, 7, 0)
        );
        assert_eq!(
            next_pacific_midnight(at(2026, 11, 1, 12, 0)),
            at(2026, 11, 2, 8, 0)
        );
    }

    #[test]
    fn an_instant_past_the_calendar_gets_a_day_later_not_a_panic() {
        let end = Timestamp::from_millis(i64::MAX - 1);
        assert!(next_pacific_midnight(end) >= end);
    }

    #[test]
    fn only_googles_resumable_5xx_are_retried() {
        let now = at(2026, 12, 2, 10, 0);
        for status in [500, 502, 503, 504] {
            let e = youtube_error(status, "", None, now);
            assert!(
                matches!(e, Error::Unavailable { .. }) && e.is_retryable(),
                "{status}: {e:?}"
            );
        }
        for status in [501, 505, 507, 511] {
            let e = youtube_error(status, "", None, now);
            assert!(
                matches!(e, Error::Protocol { .. }) && !e.is_retryable(),
                "{status} is permanent: {e:?}"
            );
        }
    }

    #[test]
    fn quota_answers_are_typed_and_never_retried() {
        let now = at(2026, 12, 2, 10, 0);
        let body = |code: u16, reason: &str, message: &str| {
            format!(
                r#"{{"error":{{"code":{code},"message":"{message}","errors":[{{"message":"{message}","domain":"youtube.quota","reason":"{reason}"}}]}}}}"#
            )
        };
        let e = youtube_error(
            403,
            &body(403, "quotaExceeded", "The request cannot be completed because you have exceeded your \\u003ca href=\\\"/youtube/v3/getting-started#quota\\\"\\u003equota\\u003c/a\\u003e."),
            None,
            now,
        );
        assert!(matches!(
            e,
            Error::QuotaExceeded { limit: QuotaLimit::ProjectDaily, retry_at: Some(t), .. } if t == at(2026, 12, 3, 8, 0)
        ));
        assert!(!e.is_retryable());
        let e = youtube_error(
            429,
            &body(429, "rateLimitExceeded", "Quota exceeded for quota metric 'Video Uploads' and limit 'Video Uploads per day' of service 'youtube.googleapis.com'"),
            Some(Duration::from_secs(30)),
            now,
        );
        assert!(matches!(
            e,
            Error::QuotaExceeded {
                limit: QuotaLimit::UploadsDaily,
                ..
            }
        ));
        assert!(!e.is_retryable());
        let e = youtube_error(
            400,
            &body(
                400,
                "uploadLimitExceeded",
                "The user has exceeded the number of videos they may upload.",
            ),
            None,
            now,
        );
        assert!(matches!(
            e,
            Error::QuotaExceeded { limit: QuotaLimit::ChannelUploads, retry_at: Some(t), .. } if t == now.plus(Duration::from_secs(86_400))
        ));
        let e = youtube_error(
            403,
            &body(403, "userRateLimitExceeded", "slow down"),
            Some(Duration::from_secs(3)),
            now,
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e = youtube_error(400, &body(400, "invalidTitle", "bad"), None, now);
        assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "title"));
        let e = youtube_error(503, &body(503, "backendError", "try later"), None, now);
        assert!(e.is_retryable());
        let e = youtube_error(
            401,
            &body(401, "youtubeSignupRequired", "no channel"),
            None,
            now,
        );
        assert!(matches!(e, Error::NotAllowed { .. }));
        let e = youtube_error(
            403,
            &body(403, "insufficientPermissions", "scope"),
            None,
            now,
        );
        assert!(matches!(e, Error::Unauthorized { .. }));
    }
}
