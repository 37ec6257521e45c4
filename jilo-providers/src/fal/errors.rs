//! fal's failures as jilo's errors: a queue answer's status and its `detail` in fal's own
//! words, a finished request's error type, and a webhook refused.

use jilo_core::{Error, FailureClass};
use serde_json::Value;

use crate::classify::{self, Says};
use crate::http;

use super::config::SERVICE;

pub(super) fn unauthorized(reason: &str) -> Error {
    Error::Unauthorized {
        service: format!("{SERVICE} webhook ({reason})"),
        response: None,
        source: None,
    }
}

/// A failed answer of fal's queue: the status, and a `detail` string's own words (fal's
/// account errors, e.g. `User is locked. Reason: Exhausted balance.`) beside it. A `detail`
/// list is a validation error whose items quote the input: never read. `sent` are the texts
/// the request carried (the prompt), which never count.
pub(super) fn map_error(failed: http::Failed, sent: &[&str]) -> Error {
    let body: Value = serde_json::from_str(&failed.body).unwrap_or(Value::Null);
    let says = match &body["detail"] {
        Value::String(detail) => classify::says_in_message(detail, sent),
        _ => Says::Nothing,
    };
    failed.into_error_saying(SERVICE, says)
}

/// The failure class of a request fal finished with an error: its infrastructure errors are
/// worth another try (and were not billed), the rest is the input.
pub(super) fn class_of(error_type: Option<&str>) -> FailureClass {
    match error_type {
        Some(t) if t.starts_with("runner_") || t.ends_with("_timeout") => FailureClass::Retryable,
        _ => FailureClass::Permanent,
    }
}
