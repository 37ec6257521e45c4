//! The metrics a job's life emits through the `metrics` facade, read with a recorder of the
//! test's own: transitions, submits by outcome, call latency, webhooks by outcome, credits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use jilo_core::testing::{SimFailure, SimProvider, SIM_MODEL};
use jilo_core::{
    Grant, InMemoryStore, JobState, QuotaStore, Studio, Timestamp, UserId, VideoRequest,
    WebhookDelivery,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// `name{label=value,…}` → value, counters summed, histograms counted.
fn read(snapshotter: &metrics_util::debugging::Snapshotter) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let mut labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
        let n = match value {
            DebugValue::Counter(c) => c,
            DebugValue::Histogram(h) => h.len() as u64,
            DebugValue::Gauge(_) => 0,
        };
        *out.entry(name).or_default() += n;
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_over_job_is_counted_from_hold_to_settle() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's recorder: the current-thread runtime runs the whole flow on it.
    let _guard = metrics::set_default_local_recorder(&recorder);

    let store = Arc::new(InMemoryStore::new());
    let primary = Arc::new(SimProvider::new("primary"));
    primary.fail_next_submits(SimFailure::OutOfFunds, 1);
    let backup = Arc::new(SimProvider::new("backup"));
    let studio = Studio::builder()
        .provider(primary)
        .provider(backup.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let user = UserId::new("counted-user");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    let job = studio
        .generate(
            &user,
            VideoRequest::new("A lighthouse in a storm at night", SIM_MODEL, 5),
        )
        .await
        .unwrap();
    let credits = studio.job(&job).await.unwrap().credits;
    let request = studio.job(&job).await.unwrap().provider_request_id.unwrap();
    let delivery = backup.succeeded(&request, "https://cdn.example/lighthouse.mp4");
    studio
        .handle_webhook(&"backup".into(), &delivery)
        .await
        .unwrap();
    studio
        .handle_webhook(&"backup".into(), &delivery)
        .await
        .unwrap();
    let forged = WebhookDelivery::new(vec![], br#"{"request_id":"x"}"#.to_vec());
    assert!(studio
        .handle_webhook(&"backup".into(), &forged)
        .await
        .is_err());
    studio.tick().await.unwrap();
    assert_eq!(studio.job(&job).await.unwrap().state, JobState::Completed);

    let m = read(&snapshotter);
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    assert_eq!(
        get("jilo_provider_submits_total{outcome=out_of_funds,provider=primary}"),
        1,
        "{m:#?}"
    );
    assert_eq!(
        get("jilo_provider_submits_total{outcome=accepted,provider=backup}"),
        1
    );
    assert_eq!(
        get("jilo_provider_call_seconds{call=submit,provider=primary}")
            + get("jilo_provider_call_seconds{call=submit,provider=backup}"),
        2
    );
    assert_eq!(
        get("jilo_webhooks_total{outcome=applied,provider=backup}"),
        1
    );
    assert_eq!(
        get("jilo_webhooks_total{outcome=duplicate,provider=backup}"),
        1
    );
    assert_eq!(
        get("jilo_webhooks_total{outcome=refused,provider=backup}"),
        1
    );
    assert_eq!(
        get("jilo_job_transitions_total{provider=primary,state=queued}"),
        1
    );
    assert_eq!(
        get("jilo_job_transitions_total{provider=backup,state=completed}"),
        1
    );
    let credits = u64::try_from(credits).unwrap();
    assert_eq!(get("jilo_credits_total{movement=held}"), credits);
    assert_eq!(get("jilo_credits_total{movement=settled}"), credits);
    assert_eq!(get("jilo_credits_total{movement=refunded}"), 0);
    // The out-of-funds provider was alerted once.
    assert_eq!(get("jilo_alerts_total{kind=provider_out_of_funds}"), 1);
}
