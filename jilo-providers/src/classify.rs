//! One mapping from a service's failed answer to jilo's [`Error`].
//!
//! A failure is classified from the HTTP status and from the service's own error fields, never
//! from text the request could have put in the body: a validation error may echo the user's
//! prompt, and a prompt that mentions `余额` must not alert the admin, cool the provider for
//! everyone and tell the user the service is down. Each provider reads its service's fields
//! (速创's `code`/`msg`, fal's `detail`, Apify's `error.type`, Google's `status`/`reason`) into a
//! [`Says`], and [`error_from`] maps the status and what the service says:
//! - what the service says comes first; then the status:
//! - 402, or a service that says its account cannot pay (never on a 5xx: a failing server is
//!   unavailable, not unpaid), is [`Error::ProviderOutOfFunds`];
//! - 429, or a service that says it is rate limited, is [`Error::RateLimited`] with the
//!   `Retry-After` the caller parsed;
//! - 401 and 403, or a service that says the key is rejected, are [`Error::Unauthorized`];
//! - 404 is [`Error::NotFound`]; 400 and 422 are [`Error::InvalidInput`];
//! - 408 and 504 are [`Error::Timeout`]; other 5xx are [`Error::Unavailable`];
//! - anything else is [`Error::Protocol`].
//!
//! Where a service has no code for a failure and only words say it (速创 reports an empty
//! balance as `code: 400` with `余额` in `msg`), [`message_says`] reads the service's message
//! field alone, and only counts a phrase the request did not itself contain. The body kept in
//! the error is truncated and never contains the request's key.

use std::time::Duration;

use jilo_core::{Error, HttpFailure};

/// Phrases that say the account's balance is short, matched in lower case in a service's own
/// message field.
pub const BALANCE_PHRASES: [&str; 15] = [
    "余额",
    "积分不足",
    "额度不足",
    "欠费",
    "insufficient balance",
    "insufficient funds",
    "insufficient credit",
    "not enough credit",
    "out of credit",
    "exhausted balance",
    "balance exhausted",
    "balance is insufficient",
    "balance is not enough",
    "please top up",
    "user is locked",
];

/// Phrases that say the service is rate limiting, matched in lower case in a service's own
/// message field.
pub const RATE_PHRASES: [&str; 4] = ["频繁", "限流", "rate limit", "too many requests"];

/// What a service's own error fields say about a failure, beyond its HTTP status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Says {
    /// Nothing beyond the status.
    #[default]
    Nothing,
    /// The account cannot pay.
    OutOfFunds,
    /// Slow down.
    RateLimited,
    /// The key is wrong or lacks rights.
    KeyRejected,
    /// The service failed on its side (a run it started ended in failure).
    ServiceFailed,
}

/// Whether a service's own message field says one of `phrases` in words of its own: a phrase
/// counts only when none of the texts the request sent (`sent`: the prompt, the keyword)
/// contains it, and after those texts are taken out of the message (an echo of the request
/// says nothing about the account).
pub fn message_says(message: &str, phrases: &[&str], sent: &[&str]) -> bool {
    let sent: Vec<String> = sent
        .iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut own = message.to_lowercase();
    for s in &sent {
        own = own.replace(s.as_str(), " ");
    }
    phrases
        .iter()
        .any(|p| own.contains(p) && !sent.iter().any(|s| s.contains(p)))
}

/// What a service's message says of the balance and the rate, by [`message_says`].
pub fn says_in_message(message: &str, sent: &[&str]) -> Says {
    if message_says(message, &BALANCE_PHRASES, sent) {
        Says::OutOfFunds
    } else if message_says(message, &RATE_PHRASES, sent) {
        Says::RateLimited
    } else {
        Says::Nothing
    }
}

/// Parses a `Retry-After` value given in seconds. (HTTP-dates are read by the HTTP layer,
/// which knows the current time.)
pub fn retry_after_seconds(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Maps a failed answer by its status alone. `status` is the HTTP status (or the service's
/// HTTP-like body code), `body` the response body (kept, truncated, in the error),
/// `retry_after` what the service asked.
pub fn http_error(service: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Error {
    error_from(service, status, body, retry_after, Says::Nothing)
}

/// Maps a failed answer by its status and what the service's own fields say ([`Says`]).
pub fn error_from(
    service: &str,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
    says: Says,
) -> Error {
    let service = service.to_owned();
    let response = Some(HttpFailure::new(status, body));
    // What the service says in its own fields comes first (Apify's 402
    // `concurrent-runs-limit-exceeded` is a rate limit, not money); the status decides the rest.
    match says {
        Says::OutOfFunds if !(500..600).contains(&status) => {
            return Error::ProviderOutOfFunds {
                service,
                response,
                source: None,
            }
        }
        Says::RateLimited => {
            return Error::RateLimited {
                service,
                retry_after,
                response,
                source: None,
            }
        }
        Says::KeyRejected => {
            return Error::Unauthorized {
                service,
                response,
                source: None,
            }
        }
        Says::ServiceFailed => {
            return Error::Unavailable {
                service,
                reason: "the service failed on its side".to_owned(),
                response,
                source: None,
            }
        }
        Says::OutOfFunds | Says::Nothing => {}
    }
    match status {
        402 => Error::ProviderOutOfFunds {
            service,
            response,
            source: None,
        },
        429 => Error::RateLimited {
            service,
            retry_after,
            response,
            source: None,
        },
        401 | 403 => Error::Unauthorized {
            service,
            response,
            source: None,
        },
        404 => Error::NotFound {
            entity: "request",
            id: format!("at {service}"),
        },
        400 | 422 => Error::InvalidInput {
            field: "request".to_owned(),
            reason: format!("{service} refused it: {}", HttpFailure::new(status, body)),
        },
        408 | 504 => Error::Timeout {
            service,
            response,
            source: None,
        },
        500..=599 => Error::Unavailable {
            service,
            reason: format!("HTTP {status}"),
            response,
            source: None,
        },
        _ => Error::Protocol {
            service,
            reason: format!("unexpected HTTP {status}"),
            response,
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jilo_core::ErrorKind;

    /// The shared rule: every provider maps these answers alike.
    #[test]
    fn statuses_map_the_same_for_every_provider() {
        for service in ["fal", "suchuang", "apify", "gemini", "youtube"] {
            let kind = |status, body| http_error(service, status, body, None).kind();
            assert_eq!(kind(401, "bad key"), ErrorKind::Unauthorized);
            assert_eq!(kind(403, "forbidden"), ErrorKind::Unauthorized);
            assert_eq!(kind(402, "payment required"), ErrorKind::ProviderOutOfFunds);
            assert_eq!(kind(429, ""), ErrorKind::RateLimited);
            assert_eq!(kind(500, "oops"), ErrorKind::Unavailable);
            assert_eq!(kind(502, ""), ErrorKind::Unavailable);
            assert_eq!(kind(503, ""), ErrorKind::Unavailable);
            assert_eq!(kind(504, ""), ErrorKind::Timeout);
            assert_eq!(
                http_error(service, 504, "gateway", None)
                    .http()
                    .map(|h| h.status),
                Some(504),
                "every service error keeps its HTTP answer"
            );
            assert_eq!(kind(404, ""), ErrorKind::NotFound);
            assert_eq!(kind(422, "prompt: field required"), ErrorKind::InvalidInput);
            assert_eq!(kind(302, ""), ErrorKind::Protocol);
            assert!(http_error(service, 503, "", None).is_retryable());
            assert!(!http_error(service, 402, "", None).is_retryable());
        }
    }

    #[test]
    fn a_body_alone_never_makes_a_balance_or_a_rate_limit() {
        let kind = |status, body| http_error("p", status, body, None).kind();
        // A validation error that echoes the user's prompt.
        assert_eq!(
            kind(400, r#"{"msg":"prompt '我的余额不足' too short"}"#),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(422, "prompt: too many requests of a cat"),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(403, "余额不足，请充值"), ErrorKind::Unauthorized);
        assert_eq!(kind(200, "请求过于频繁"), ErrorKind::Protocol);
    }

    #[test]
    fn what_the_service_says_counts_only_in_its_own_words() {
        let prompt = "a fox counting the 余额 of its coins, too many requests";
        assert!(!message_says(
            "prompt 'a fox counting the 余额 of its coins, too many requests' is invalid",
            &BALANCE_PHRASES,
            &[prompt]
        ));
        assert!(
            !message_says("余额不足", &BALANCE_PHRASES, &[prompt]),
            "a phrase the request contained is never trusted"
        );
        assert!(message_says(
            "账户余额不足，请充值",
            &BALANCE_PHRASES,
            &["a lantern festival"]
        ));
        assert!(message_says(
            "User is locked. Reason: Exhausted balance.",
            &BALANCE_PHRASES,
            &[]
        ));
        assert!(!message_says(
            "credit_card field is not allowed",
            &BALANCE_PHRASES,
            &[]
        ));
        assert_eq!(
            says_in_message("请求过于频繁", &["a lantern festival"]),
            Says::RateLimited
        );
        assert_eq!(says_in_message("size must match", &[]), Says::Nothing);
    }

    #[test]
    fn what_the_service_says_maps_beside_the_status() {
        let kind = |status, says| error_from("p", status, "", None, says).kind();
        assert_eq!(kind(400, Says::OutOfFunds), ErrorKind::ProviderOutOfFunds);
        assert_eq!(kind(403, Says::OutOfFunds), ErrorKind::ProviderOutOfFunds);
        assert_eq!(
            kind(503, Says::OutOfFunds),
            ErrorKind::Unavailable,
            "a 5xx is never out of funds"
        );
        assert_eq!(kind(400, Says::RateLimited), ErrorKind::RateLimited);
        assert_eq!(kind(400, Says::KeyRejected), ErrorKind::Unauthorized);
        assert_eq!(kind(400, Says::ServiceFailed), ErrorKind::Unavailable);
        let e = error_from(
            "suchuang",
            400,
            "请求过于频繁",
            Some(Duration::from_secs(3)),
            Says::RateLimited,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.http().map(|h| h.status), Some(400));
    }

    #[test]
    fn bodies_are_truncated_in_errors() {
        let body = "x".repeat(10_000);
        let e = http_error("fal", 500, &body, None);
        assert!(e.http().unwrap().body.len() <= jilo_core::error::MAX_BODY_IN_ERROR);
        assert!(e.to_string().len() < 700);
    }

    #[test]
    fn retry_after_reads_seconds() {
        assert_eq!(retry_after_seconds(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
