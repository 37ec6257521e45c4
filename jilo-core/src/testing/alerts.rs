//! The [`AlertStore`] rules, one function each. Each uses subjects and providers of its own,
//! so it shares a store with other runs safely. [`alert_store_suite`] runs them all.

use std::time::Duration;

use futures::future::join_all;

use crate::alert::{AlertClaim, ProviderCooling};
use crate::ids::ProviderId;
use crate::traits::AlertStore;

use super::support::{rules, run_scope};

/// Checks an [`AlertStore`]'s contract: one admitted claim per subject and window however many
/// ask at once, and cooling that an earlier end never shortens. Shares `store` with other
/// runs safely (its subjects and providers are this run's own).
pub async fn alert_store_suite<S>(store: &S)
where
    S: AlertStore + ?Sized,
{
    rules!(store, "alerts":
        one_alert_per_subject_and_window,
        an_earlier_end_never_shortens_cooling,
    );
}

/// One admitted claim per subject and window, however many ask at once; another subject is
/// its own.
pub async fn one_alert_per_subject_and_window<S>(store: &S)
where
    S: AlertStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let subject = format!("{prefix}-out-of-funds:sim");
    let claim = |now, secs| AlertClaim {
        subject: subject.clone(),
        now,
        cooldown: Duration::from_secs(secs),
    };
    let first_claim = claim(at, 3600);
    let first = join_all((0..8).map(|_| store.claim_alert(&first_claim))).await;
    let admitted = first.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(
        admitted, 1,
        "eight concurrent claims of one alert, one admitted"
    );
    assert_eq!(
        store
            .claim_alert(&claim(at.plus(Duration::from_secs(3599)), 3600))
            .await
            .ok(),
        Some(false),
        "within the window"
    );
    assert_eq!(
        store
            .claim_alert(&claim(at.plus(Duration::from_secs(3600)), 3600))
            .await
            .ok(),
        Some(true),
        "after the window"
    );
    let mut other_subject = claim(at, 3600);
    other_subject.subject.push_str("-other");
    assert_eq!(store.claim_alert(&other_subject).await.ok(), Some(true));
}

/// A cooled provider is cooling, for every caller, until the latest end it was given: an
/// earlier end does not shorten it.
pub async fn an_earlier_end_never_shortens_cooling<S>(store: &S)
where
    S: AlertStore + ?Sized,
{
    let (prefix, at) = run_scope();
    let cooled = ProviderId::new(format!("{prefix}-fal"));
    let cool = |until| ProviderCooling {
        provider: cooled.clone(),
        until,
    };
    store
        .cool_provider(&cool(at.plus(Duration::from_secs(300))))
        .await
        .unwrap_or_else(|e| panic!("cooling failed: {e}"));
    store
        .cool_provider(&cool(at.plus(Duration::from_secs(60))))
        .await
        .unwrap_or_else(|e| panic!("cooling failed: {e}"));
    let cooling_at = |secs| {
        let now = at.plus(Duration::from_secs(secs));
        let cooled = cooled.clone();
        async move {
            store
                .cooling_providers(now)
                .await
                .unwrap_or_else(|e| panic!("reading cooling providers failed: {e}"))
                .contains(&cooled)
        }
    };
    assert!(cooling_at(0).await, "a cooled provider is cooling");
    assert!(cooling_at(299).await, "an earlier end does not shorten it");
    assert!(!cooling_at(300).await, "cooling ends");
}
