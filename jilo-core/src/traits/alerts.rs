use async_trait::async_trait;

use crate::alert::{AlertClaim, ProviderCooling};
use crate::error::Result;
use crate::ids::{ProviderId, Timestamp};

/// What several processes agree on about alerts and providers: which admin alert may go out
/// now, and which providers new jobs should try last.
///
/// Contract (checked by [`crate::testing::alert_store_suite`]):
/// - `claim_alert` says `true` to exactly one caller per subject and cooldown window, across
///   processes where the backend is shared, and records the claim.
/// - `cool_provider` marks a provider cooling until a time; an earlier end never shortens a
///   later one.
/// - `cooling_providers` lists the providers cooling at a time.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait AlertStore: Send + Sync + std::fmt::Debug {
    /// Whether the caller may send an alert on the subject now (and records it if so).
    async fn claim_alert(&self, claim: &AlertClaim) -> Result<bool>;

    /// Marks a provider to be tried last until a time.
    async fn cool_provider(&self, cooling: &ProviderCooling) -> Result<()>;

    /// The providers cooling at `now`.
    async fn cooling_providers(&self, now: Timestamp) -> Result<Vec<ProviderId>>;
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: AlertStore + ?Sized> AlertStore for std::sync::Arc<T> {
    async fn claim_alert(&self, claim: &AlertClaim) -> Result<bool> {
        (**self).claim_alert(claim).await
    }

    async fn cool_provider(&self, cooling: &ProviderCooling) -> Result<()> {
        (**self).cool_provider(cooling).await
    }

    async fn cooling_providers(&self, now: Timestamp) -> Result<Vec<ProviderId>> {
        (**self).cooling_providers(now).await
    }
}
