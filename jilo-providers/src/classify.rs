//! One mapping from a service's failed answer to jilo's [`Error`].
//!
//! The rules, from the seed's incident report and the services' specs:
//! - 402, or a 4xx (not 429) whose body says the account's balance is short (`余额`,
//!   `积分不足`, `额度不足`, `insufficient balance`, `insufficient credits`, `exhausted
//!   balance`, …: whole phrases, not a lone word like `credit` that an unrelated body may hold),
//!   is [`Error::ProviderOutOfFunds`]: the provider's account cannot pay. A 5xx never is, whatever
//!   its body says: a failing server is unavailable, not unpaid.
//! - 401 and 403 are [`Error::Unauthorized`] (the key is wrong or lacks rights), unless the body
//!   says the balance is short (速创 answers some balance failures with 403).
//! - 429, or a body that says it is rate limited (`频繁`, `限流`, `rate limit`), is
//!   [`Error::RateLimited`] with the `Retry-After` the caller parsed.
//! - 404 is [`Error::NotFound`].
//! - 400 and 422 are [`Error::InvalidInput`]: the service refused what we sent.
//! - 408 and 504 are [`Error::Timeout`]; other 5xx are [`Error::Unavailable`].
//! - Anything else is [`Error::Protocol`].
//!
//! Services like 速创 put an error `code` inside an HTTP 200 body; pass that code as `status`
//! when it is an HTTP-like number, or the HTTP status otherwise. The body kept in the error is
//! truncated and never contains the request, so no key can leak through it.

use std::time::Duration;

use jilo_core::{Error, HttpFailure};

/// Phrases that say the account's balance is short, matched in lower case.
const BALANCE_PHRASES: [&str; 14] = [
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
];
const RATE_WORDS: [&str; 4] = ["频繁", "限流", "rate limit", "too many requests"];

fn mentions(body: &str, words: &[&str]) -> bool {
    let lower = body.to_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// Parses a `Retry-After` value given in seconds. (HTTP-dates are read by the HTTP layer,
/// which knows the current time.)
pub fn retry_after_seconds(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Maps a failed answer to an [`Error`]. `status` is the HTTP status (or the service's
/// HTTP-like body code), `body` the response body, `retry_after` what the service asked.
pub fn http_error(service: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Error {
    let service = service.to_owned();
    let response = Some(HttpFailure::new(status, body));
    let client_error = (400..500).contains(&status) && status != 429;
    if status == 402 || (client_error && mentions(body, &BALANCE_PHRASES)) {
        return Error::ProviderOutOfFunds {
            service,
            response,
            source: None,
        };
    }
    if status == 429 || mentions(body, &RATE_WORDS) {
        return Error::RateLimited {
            service,
            retry_after,
            response,
            source: None,
        };
    }
    match status {
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
    fn balance_and_rate_words_in_bodies_win() {
        let e = http_error(
            "suchuang",
            400,
            r#"{"code":400,"msg":"账户余额不足"}"#,
            None,
        );
        assert_eq!(e.kind(), ErrorKind::ProviderOutOfFunds);
        let e = http_error("suchuang", 403, "余额不足，请充值", None);
        assert_eq!(e.kind(), ErrorKind::ProviderOutOfFunds);
        let e = http_error(
            "fal",
            403,
            "User is locked. Reason: Exhausted balance.",
            None,
        );
        assert_eq!(e.kind(), ErrorKind::ProviderOutOfFunds);
        let e = http_error(
            "suchuang",
            400,
            "请求过于频繁",
            Some(Duration::from_secs(3)),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.http().map(|h| h.status), Some(400));
    }

    #[test]
    fn the_balance_rule_needs_a_client_error_and_a_whole_phrase() {
        let kind = |status, body| http_error("p", status, body, None).kind();
        assert_eq!(
            kind(500, "upstream: insufficient balance on worker"),
            ErrorKind::Unavailable,
            "a 5xx is never out of funds"
        );
        assert_eq!(kind(503, "余额服务维护中"), ErrorKind::Unavailable);
        assert_eq!(
            kind(400, r#"{"error":"credit_card field is not allowed"}"#),
            ErrorKind::InvalidInput,
            "a lone word in an unrelated body is not a balance"
        );
        assert_eq!(
            kind(422, "balance the colours of the scene"),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(400, "Insufficient credits to run this model"),
            ErrorKind::ProviderOutOfFunds
        );
        assert_eq!(
            kind(403, "Your balance is not enough"),
            ErrorKind::ProviderOutOfFunds
        );
        assert_eq!(kind(401, "invalid key"), ErrorKind::Unauthorized);
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
