//! The conformance suite every [`VideoProvider`] runs against itself (against a local
//! server speaking the service's protocol, in tests).

use crate::error::{Error, ErrorKind};
use crate::ids::JobId;
use crate::traits::{StatusQuery, SubmitRequest, VideoProvider, WebhookDelivery};
use crate::video::VideoRequest;

/// Checks the [`VideoProvider`] contract:
/// - it has an id and offers at least one model, each with durations, aspect ratios and a
///   positive credit price (and a non-negative provider cost) for every duration;
/// - a valid submit of its first model is accepted with a request id, whose status then reads;
/// - the status of a request it never saw is [`Error::NotFound`];
/// - a webhook with no signature and an empty body is refused ([`ErrorKind::Unauthorized`] or
///   [`ErrorKind::Protocol`]), never accepted;
/// - `balance` answers (a service without a balance endpoint answers `None`).
///
/// The server behind the provider must accept one submit of the first model's first duration
/// and ratio, answer its status, answer 404 for the request id `jilo-conformance-unknown`, and
/// answer the balance call if the service has one. Panics naming the broken rule.
pub async fn video_provider_suite(provider: &dyn VideoProvider) {
    let id = provider.id();
    assert!(!id.as_str().trim().is_empty(), "a provider has an id");
    let models = provider.models();
    assert!(
        !models.is_empty(),
        "provider {id} offers at least one model"
    );
    for m in &models {
        assert!(
            !m.id.is_empty() && !m.provider_model.is_empty(),
            "model ids are set"
        );
        assert!(!m.durations.is_empty(), "model {} offers a duration", m.id);
        assert!(
            !m.aspect_ratios.is_empty(),
            "model {} offers an aspect ratio",
            m.id
        );
        for d in &m.durations {
            let price = m
                .price(*d)
                .unwrap_or_else(|| panic!("model {} has no price for {d}s", m.id));
            assert!(price.credits > 0, "model {} {d}s costs credits", m.id);
            assert!(
                price.provider_cost_minor >= 0,
                "provider cost is not negative"
            );
            assert_eq!(price.currency.len(), 3, "currency is an ISO 4217 code");
        }
    }

    let model = &models[0];
    let request = SubmitRequest::new(
        JobId::random(),
        1,
        VideoRequest::new(
            "A calm lake at dawn, mist drifting over the water",
            model.id.clone(),
            model.durations[0],
        )
        .with_aspect_ratio(model.aspect_ratios[0]),
        model.provider_model.clone(),
    );
    let submission = provider
        .submit(&request)
        .await
        .unwrap_or_else(|e| panic!("provider {id}: a valid submit failed: {e}"));
    assert!(
        !submission.request_id.trim().is_empty(),
        "a submission has a request id"
    );
    let query = StatusQuery {
        request_id: submission.request_id.clone(),
        provider_model: model.provider_model.clone(),
    };
    if let Err(e) = provider.status(&query).await {
        panic!("provider {id}: the status of an accepted request failed: {e}");
    }

    let unknown = StatusQuery {
        request_id: "jilo-conformance-unknown".to_owned(),
        provider_model: model.provider_model.clone(),
    };
    match provider.status(&unknown).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("provider {id}: an unknown request must be NotFound, got {other:?}"),
    }

    match provider.parse_webhook(&WebhookDelivery::default()).await {
        Err(e) if matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::Protocol) => {}
        other => panic!("provider {id}: an unsigned empty webhook must be refused, got {other:?}"),
    }

    if let Err(e) = provider.balance().await {
        panic!("provider {id}: balance failed: {e}");
    }
}
