//! Admin alerts: what needs a person's attention.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{ProviderId, Timestamp};

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum AlertKind {
    /// A provider's account cannot pay; top it up (the seed's incident).
    ProviderOutOfFunds {
        /// The provider.
        provider: ProviderId,
    },
    /// A provider's balance fell under the configured threshold.
    BalanceLow {
        /// The provider.
        provider: ProviderId,
        /// The balance in the provider's minor units.
        balance_minor: i64,
    },
    /// A provider rejected our key.
    KeyRejected {
        /// The provider.
        provider: ProviderId,
    },
    /// A provider keeps failing.
    ProviderDegraded {
        /// The provider.
        provider: ProviderId,
    },
    /// The global daily generation cap was reached.
    DailyCapReached {
        /// The cap.
        cap: u32,
    },
    /// A provider's finished video could not be copied into media storage before the
    /// deadline: the provider billed for it, the user was refunded. One alert per job.
    CopyFailed {
        /// The provider that made the video.
        provider: ProviderId,
        /// The job.
        job: crate::ids::JobId,
    },
}

impl AlertKind {
    /// What the alert is about, for grouping: two alerts with the same subject within the
    /// cooldown are one alert.
    pub fn subject(&self) -> String {
        match self {
            AlertKind::ProviderOutOfFunds { provider } => format!("out-of-funds:{provider}"),
            AlertKind::BalanceLow { provider, .. } => format!("balance-low:{provider}"),
            AlertKind::KeyRejected { provider } => format!("key-rejected:{provider}"),
            AlertKind::ProviderDegraded { provider } => format!("degraded:{provider}"),
            AlertKind::DailyCapReached { .. } => "daily-cap".to_owned(),
            AlertKind::CopyFailed { job, .. } => format!("copy-failed:{job}"),
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertKind::ProviderOutOfFunds { provider } => {
                write!(f, "provider {provider} is out of funds: top up its account")
            }
            AlertKind::BalanceLow {
                provider,
                balance_minor,
            } => write!(
                f,
                "provider {provider} balance is low: {balance_minor} minor units"
            ),
            AlertKind::KeyRejected { provider } => {
                write!(f, "provider {provider} rejected the API key: replace it")
            }
            AlertKind::ProviderDegraded { provider } => {
                write!(f, "provider {provider} keeps failing")
            }
            AlertKind::DailyCapReached { cap } => {
                write!(f, "the daily generation cap of {cap} is reached")
            }
            AlertKind::CopyFailed { provider, job } => write!(
                f,
                "the video {provider} made for job {job} could not be copied: {provider} billed \
                 for it and the user was refunded"
            ),
        }
    }
}

/// An alert for the admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What.
    pub kind: AlertKind,
    /// Details: the provider's message (never a key).
    pub detail: String,
    /// When.
    pub at: Timestamp,
}

/// A request to send an alert on `subject` unless one went out within `cooldown`; stores
/// answer it atomically, so many processes on one store send one alert per window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertClaim {
    /// What the alert is about ([`AlertKind::subject`]).
    pub subject: String,
    /// Now, by the caller's clock.
    pub now: Timestamp,
    /// No second alert on the subject within this window.
    pub cooldown: Duration,
}

/// A provider that ran out of funds or had its key rejected: new jobs try it last until
/// `until`, in every process sharing the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderCooling {
    /// The provider.
    pub provider: ProviderId,
    /// Until when (a later cooling of the same provider extends it, an earlier one does not
    /// shorten it).
    pub until: Timestamp,
}
