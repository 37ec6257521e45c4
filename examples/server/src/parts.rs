//! What the server's state holds besides the Studio: the payment side, the provider status
//! cache, the Prometheus recorder, Google sign-in, the finished jobs SSE watchers share. Below `app` (the state) and the
//! handler modules (which use them through it).

use std::time::Instant;

use jilo::{Job, JobId};
use secrecy::SecretString;

/// The payment side: Stripe's API, or this server's simulated page.
#[derive(Clone)]
pub struct Payments {
    /// Whether the simulated checkout may run: only while no real provider can spend money.
    pub(crate) simulated_allowed: bool,
    pub(crate) api_key: Option<SecretString>,
    pub(crate) api_url: String,
    pub(crate) webhook_secret: SecretString,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("api_url", &self.api_url)
            .field("simulated", &self.api_key.is_none())
            .finish_non_exhaustive()
    }
}

impl Payments {
    /// From the settings.
    /// From the settings. Without a Stripe key the simulated checkout runs, but only when
    /// `simulated_allowed` (no real provider is configured): else checkout is unavailable.
    pub fn new(
        config: &crate::Config,
        webhook_secret: SecretString,
        simulated_allowed: bool,
    ) -> Self {
        Self {
            simulated_allowed,
            api_key: config.stripe_secret_key.clone(),
            api_url: config.stripe_api_url.trim_end_matches('/').to_owned(),
            webhook_secret,
        }
    }

    /// Whether checkouts run on this server's simulated page.
    pub fn simulated(&self) -> bool {
        self.api_key.is_none()
    }

    /// The webhook signing secret.
    pub fn webhook_secret(&self) -> &SecretString {
        &self.webhook_secret
    }
}

/// A provider's id, balance in minor units and currency, as last read.
pub(crate) type BalanceRead = (String, Option<i64>, Option<String>);

/// Provider balances, read at most every 30 s (each read is a call to the provider) by one
/// request at a time: the others wait for its answer.
#[derive(Default)]
pub struct StatusCache(pub(crate) tokio::sync::Mutex<Option<(Instant, Vec<BalanceRead>)>>);

/// Google's OpenID Connect userinfo endpoint.
pub const GOOGLE_USERINFO_URL: &str = "https://openidconnect.googleapis.com/v1/userinfo";

/// Sign-in with Google: the OAuth client asking for `openid email profile`, and where the
/// signed-in account is read (`GOOGLE_USERINFO_URL`).
pub struct GoogleSignIn {
    /// The client, with the sign-in scopes.
    pub oauth: jilo::providers::youtube::GoogleOAuth,
    /// The userinfo endpoint.
    pub userinfo_url: String,
}

/// Finished jobs read once for every SSE watcher that ends with them (ten thousand watchers of
/// one job cost one read), by job and version; forgotten in bulk past 1,024 entries.
pub type FinishedJobs = std::sync::Mutex<
    std::collections::HashMap<(JobId, u64), std::sync::Arc<tokio::sync::OnceCell<Job>>>,
>;

/// The process's Prometheus recorder, installed by the first server built in it (the
/// library's `metrics` go to it); `None` when another recorder was installed first.
pub fn prometheus() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "no Prometheus recorder: another is installed");
                    None
                }
            }
        })
        .as_ref()
}
