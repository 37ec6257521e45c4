//! The metrics jilo emits, through the [`metrics`](https://docs.rs/metrics) facade: nothing is
//! recorded until the host installs a recorder (a Prometheus exporter, StatsD, …), and jilo
//! ships none of its own.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `jilo_job_transitions_total` | counter | `state`, `provider` | jobs entering each state |
//! | `jilo_provider_submits_total` | counter | `provider`, `outcome` | submits: `accepted`, `out_of_funds`, `key_rejected`, `retryable`, `unknown`, `permanent` |
//! | `jilo_provider_call_seconds` | histogram | `provider`, `call` | latency of `submit`, `status`, `cancel`, `balance` |
//! | `jilo_webhooks_total` | counter | `provider`, `outcome` | deliveries: `applied`, `absorbed` (late or earlier attempt), `duplicate`, `refused` (bad signature), `unknown` (no such job), `invalid` |
//! | `jilo_credits_total` | counter | `movement` | credits `held`, `settled`, `refunded`, `granted_free_retry` |
//! | `jilo_upload_bytes_total` | counter | — | bytes of videos published |
//! | `jilo_alerts_total` | counter | `kind` | admin alerts sent (after the cooldown) |

use std::time::Duration;

use crate::alert::AlertKind;
use crate::ids::ProviderId;
use crate::job::JobState;
use crate::traits::FailureClass;

/// Jobs entering each state.
pub const JOB_TRANSITIONS: &str = "jilo_job_transitions_total";
/// Submits by outcome.
pub const PROVIDER_SUBMITS: &str = "jilo_provider_submits_total";
/// Provider call latency.
pub const PROVIDER_CALL_SECONDS: &str = "jilo_provider_call_seconds";
/// Webhook deliveries by outcome.
pub const WEBHOOKS: &str = "jilo_webhooks_total";
/// Credits moved, by movement.
pub const CREDITS: &str = "jilo_credits_total";
/// Bytes of videos published.
pub const UPLOAD_BYTES: &str = "jilo_upload_bytes_total";
/// Admin alerts sent.
pub const ALERTS: &str = "jilo_alerts_total";

fn provider_label(provider: Option<&ProviderId>) -> String {
    provider.map_or_else(|| "-".to_owned(), |p| p.as_str().to_owned())
}

pub(crate) fn job_transition(state: JobState, provider: Option<&ProviderId>) {
    metrics::counter!(JOB_TRANSITIONS, "state" => state.as_str(), "provider" => provider_label(provider))
        .increment(1);
}

pub(crate) fn credits(movement: &'static str, credits: i64) {
    if let Ok(n) = u64::try_from(credits) {
        metrics::counter!(CREDITS, "movement" => movement).increment(n);
    }
}

pub(crate) fn submit(provider: &ProviderId, failure: Option<FailureClass>, took: Duration) {
    let outcome = match failure {
        None => "accepted",
        Some(FailureClass::OutOfFunds) => "out_of_funds",
        Some(FailureClass::KeyRejected) => "key_rejected",
        Some(FailureClass::Retryable) => "retryable",
        Some(FailureClass::Unknown) => "unknown",
        Some(FailureClass::Permanent) => "permanent",
    };
    metrics::counter!(PROVIDER_SUBMITS, "provider" => provider.as_str().to_owned(), "outcome" => outcome)
        .increment(1);
    provider_call(provider, "submit", took);
}

pub(crate) fn provider_call(provider: &ProviderId, call: &'static str, took: Duration) {
    metrics::histogram!(PROVIDER_CALL_SECONDS, "provider" => provider.as_str().to_owned(), "call" => call)
        .record(took.as_secs_f64());
}

pub(crate) fn webhook(provider: &ProviderId, outcome: &'static str) {
    metrics::counter!(WEBHOOKS, "provider" => provider.as_str().to_owned(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn uploaded(bytes: u64) {
    metrics::counter!(UPLOAD_BYTES).increment(bytes);
}

pub(crate) fn alert(kind: &AlertKind) {
    let name = match kind {
        AlertKind::ProviderOutOfFunds { .. } => "provider_out_of_funds",
        AlertKind::BalanceLow { .. } => "balance_low",
        AlertKind::KeyRejected { .. } => "key_rejected",
        AlertKind::ProviderDegraded { .. } => "provider_degraded",
        AlertKind::DailyCapReached { .. } => "daily_cap_reached",
        AlertKind::CopyFailed { .. } => "copy_failed",
    };
    metrics::counter!(ALERTS, "kind" => name).increment(1);
}
