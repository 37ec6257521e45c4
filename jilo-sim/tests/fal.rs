//! jilo's FAL client against the FAL simulator: the whole queue protocol, signed webhooks
//! verified with the simulator's JWKS, the conformance suite, and every fault switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use jilo_core::testing::video_provider_suite;
use jilo_core::{
    CancelOutcome, ErrorKind, FailureClass, JobId, ProviderStatus, StatusQuery, SubmitRequest,
    VideoProvider, VideoRequest, WebhookDelivery,
};
use jilo_providers::fal::{FalProvider, KLING_T2V};
use jilo_providers::http::RetryPolicy;
use jilo_sim::fal::{FalSim, KEY, USER_ID};
use jilo_sim::{Service, WebhookFault};

const KLING: &str = "fal-ai/kling-video/v1.6/standard/text-to-video";

/// A change of switches.
type Flip = fn(&mut jilo_sim::ServiceFaults);

fn client(sim: &FalSim) -> FalProvider {
    FalProvider::new(KEY)
        .unwrap()
        .with_queue_url(&sim.url, None)
        .unwrap()
        .with_jwks_url(sim.jwks_url())
        .unwrap()
        .with_user_id(USER_ID)
        .with_retries(RetryPolicy::once())
}

fn request(job: &str, webhook: Option<String>) -> SubmitRequest {
    let r = SubmitRequest::new(
        JobId::new(job),
        1,
        VideoRequest::new("A paper boat on a rainy street at night", KLING_T2V, 5),
        KLING,
    );
    match webhook {
        Some(w) => r.with_webhook_url(w),
        None => r,
    }
}

fn query(id: &str) -> StatusQuery {
    StatusQuery {
        request_id: id.into(),
        provider_model: KLING.into(),
    }
}

#[tokio::test]
async fn a_generation_goes_through_the_queue_and_its_video_downloads() {
    let sim = FalSim::start().await.unwrap();
    let fal = client(&sim);
    let sub = fal.submit(&request("job-1", None)).await.unwrap();
    let mut seen = Vec::new();
    let video = loop {
        match fal.status(&query(&sub.request_id)).await.unwrap() {
            ProviderStatus::Succeeded { .. } => {
                break fal.result(&query(&sub.request_id)).await.unwrap()
            }
            other => seen.push(other),
        }
        assert!(seen.len() < 10, "the run ends: {seen:?}");
    };
    assert!(
        matches!(seen[0], ProviderStatus::Queued { position: Some(p) } if p > 0),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| matches!(s, ProviderStatus::Running { stage: Some(st), .. } if st.starts_with("step "))),
        "{seen:?}"
    );
    let bytes = common::http()
        .get(&video.url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len(), jilo_sim::fal::VIDEO_BYTES);
    assert_eq!(&bytes[4..8], b"ftyp");
    let s = sim.lock();
    assert_eq!(s.accepted, vec![sub.request_id.clone()]);
    assert_eq!(s.requests[&sub.request_id].input["duration"], "5");
    assert!(s.violations.is_empty(), "{:?}", s.violations);
}

#[tokio::test]
async fn the_webhook_is_signed_as_fal_signs_and_verifies_with_the_published_key() {
    let sim = FalSim::start().await.unwrap();
    let fal = client(&sim);
    let mut hook = common::Receiver::start().await;
    let sub = fal
        .submit(&request(
            "job-2",
            Some(format!("{}/webhooks/fal/job-2/1", hook.url)),
        ))
        .await
        .unwrap();
    let delivery = hook.next().await;
    assert_eq!(delivery.path, "/webhooks/fal/job-2/1");
    let event = fal
        .parse_webhook(&WebhookDelivery::new(
            delivery.headers.clone(),
            delivery.body.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(event.request_id, sub.request_id);
    let ProviderStatus::Succeeded { video: Some(video) } = event.status else {
        panic!("{:?}", event.status)
    };
    assert_eq!(video.url, sim.video_url(&sub.request_id));
    // A body changed on the way does not verify.
    let mut forged = delivery.body.clone();
    forged[2] ^= 1;
    let refused = fal
        .parse_webhook(&WebhookDelivery::new(delivery.headers, forged))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn duplicated_and_never_sent_webhooks() {
    let sim = FalSim::start().await.unwrap();
    let fal = client(&sim);
    let mut hook = common::Receiver::start().await;
    sim_switch(&sim, |f| f.webhooks = WebhookFault::Duplicated);
    fal.submit(&request("job-3", Some(format!("{}/h", hook.url))))
        .await
        .unwrap();
    let (a, b) = (hook.next().await, hook.next().await);
    assert_eq!(a.body, b.body, "a redelivery carries the same bytes");
    let (ea, eb) = (
        fal.parse_webhook(&WebhookDelivery::new(a.headers, a.body))
            .await
            .unwrap(),
        fal.parse_webhook(&WebhookDelivery::new(b.headers, b.body))
            .await
            .unwrap(),
    );
    assert_eq!(ea.delivery_id, eb.delivery_id);

    sim_switch(&sim, |f| f.webhooks = WebhookFault::Never);
    let sub = fal
        .submit(&request("job-4", Some(format!("{}/h", hook.url))))
        .await
        .unwrap();
    // Without a webhook the run is still found finished by polling.
    let mut polls = 0;
    while !matches!(
        fal.status(&query(&sub.request_id)).await.unwrap(),
        ProviderStatus::Succeeded { .. }
    ) {
        polls += 1;
        assert!(polls < 10);
    }
    assert!(hook.rx.try_recv().is_err(), "no webhook was sent");
}

fn sim_switch(sim: &FalSim, change: impl FnOnce(&mut jilo_sim::ServiceFaults)) {
    sim.switches().update(Service::Fal, change);
}

#[tokio::test]
async fn cancel_answers_by_where_the_request_is() {
    let sim = FalSim::start().await.unwrap();
    let fal = client(&sim);
    let queued = fal.submit(&request("job-5", None)).await.unwrap();
    assert_eq!(
        fal.cancel(&query(&queued.request_id)).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let running = fal.submit(&request("job-6", None)).await.unwrap();
    fal.status(&query(&running.request_id)).await.unwrap();
    fal.status(&query(&running.request_id)).await.unwrap();
    assert_eq!(
        fal.cancel(&query(&running.request_id)).await.unwrap(),
        CancelOutcome::TooLate
    );
    let err = fal.status(&query("no-such-request")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn the_client_passes_the_conformance_suite_on_the_simulator() {
    let sim = FalSim::start().await.unwrap();
    video_provider_suite(&client(&sim)).await;
}

#[tokio::test]
async fn every_fault_switch_reads_as_the_client_expects() {
    let sim = FalSim::start().await.unwrap();
    let fal = client(&sim);
    let cases: Vec<(Flip, ErrorKind)> = vec![
        (|f| f.out_of_funds = true, ErrorKind::ProviderOutOfFunds),
        (|f| f.key_rejected = true, ErrorKind::Unauthorized),
        (|f| f.rate_limited = Some(3), ErrorKind::RateLimited),
        (|f| f.down = true, ErrorKind::Unavailable),
        (|f| f.server_errors = 1, ErrorKind::Unavailable),
        (|f| f.lose_submit_answers = 1, ErrorKind::OutcomeUnknown),
    ];
    for (i, (switch, kind)) in cases.into_iter().enumerate() {
        sim.switches().clear();
        sim_switch(&sim, switch);
        let err = fal
            .submit(&request(&format!("f-{i}"), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "case {i}: {err}");
    }
    // The answer lost after the submit was billed: the simulator took exactly one request.
    assert_eq!(sim.lock().accepted.len(), 1);
    // A run that fails says so in its status, as a retryable failure.
    sim.switches().clear();
    sim_switch(&sim, |f| f.fail_jobs = true);
    let sub = fal.submit(&request("f-fail", None)).await.unwrap();
    let failed = loop {
        if let s @ ProviderStatus::Failed { .. } =
            fal.status(&query(&sub.request_id)).await.unwrap()
        {
            break s;
        }
    };
    assert!(
        matches!(
            failed,
            ProviderStatus::Failed {
                class: FailureClass::Retryable,
                ..
            }
        ),
        "{failed:?}"
    );
    assert!(sim.lock().violations.is_empty());
}
