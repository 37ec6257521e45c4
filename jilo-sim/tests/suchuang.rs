//! jilo's 速创 client against the 速创 simulator: submit and detail in the envelope, both key
//! forms, both status numberings, the hotlink-protected CDN, and every fault switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use jilo_core::testing::video_provider_suite;
use jilo_core::{
    ErrorKind, FailureClass, JobId, ProviderStatus, StatusQuery, SubmitRequest, VideoProvider,
    VideoRequest,
};
use jilo_providers::http::RetryPolicy;
use jilo_providers::suchuang::{SuchuangProvider, VEO3};
use jilo_sim::suchuang::{SuchuangSim, CDN_REFERER, KEY};
use jilo_sim::Service;

/// A change of switches.
type Flip = fn(&mut jilo_sim::ServiceFaults);

fn client(sim: &SuchuangSim) -> SuchuangProvider {
    SuchuangProvider::new(KEY)
        .unwrap()
        .with_base_url(&sim.url)
        .unwrap()
        .with_retries(RetryPolicy::once())
}

fn request(job: &str) -> SubmitRequest {
    SubmitRequest::new(
        JobId::new(job),
        1,
        VideoRequest::new("A lantern festival over a river at night", VEO3, 8),
        "veo3.1_fast",
    )
}

fn query(id: &str) -> StatusQuery {
    StatusQuery {
        request_id: id.into(),
        provider_model: "veo3.1_fast".into(),
    }
}

async fn run_to_end(p: &SuchuangProvider, id: &str) -> (Vec<ProviderStatus>, ProviderStatus) {
    let mut seen = Vec::new();
    for _ in 0..10 {
        match p.status(&query(id)).await.unwrap() {
            s @ (ProviderStatus::Succeeded { .. } | ProviderStatus::Failed { .. }) => {
                return (seen, s)
            }
            s => seen.push(s),
        }
    }
    panic!("the task never ended: {seen:?}");
}

#[tokio::test]
async fn a_task_runs_to_a_video_the_cdn_serves_only_with_its_referer() {
    let sim = SuchuangSim::start().await.unwrap();
    let p = client(&sim);
    let sub = p.submit(&request("job-1")).await.unwrap();
    let (seen, end) = run_to_end(&p, &sub.request_id).await;
    assert!(matches!(seen[0], ProviderStatus::Queued { .. }), "{seen:?}");
    assert!(seen
        .iter()
        .any(|s| matches!(s, ProviderStatus::Running { .. })));
    let ProviderStatus::Succeeded { video: Some(video) } = end else {
        panic!("{end:?}")
    };
    assert_eq!(video.url, sim.video_url(&sub.request_id));
    let http = common::http();
    let bare = http.get(&video.url).send().await.unwrap();
    assert_eq!(bare.status(), 403, "a bare download is refused");
    let mut call = http.get(&video.url);
    for (k, v) in &video.headers {
        call = call.header(k, v);
    }
    let served = call.send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.bytes().await.unwrap().len(),
        jilo_sim::suchuang::VIDEO_BYTES
    );
    assert!(video
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("referer") && v == CDN_REFERER));
    let s = sim.lock();
    assert_eq!((s.downloads_refused, s.downloads_served), (1, 1));
    assert_eq!(s.tasks[&sub.request_id].input["aspectRatio"], "9:16");
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(
        s.requests.iter().all(|l| !l.contains(KEY)),
        "the log keeps no key"
    );
}

#[tokio::test]
async fn the_key_in_the_query_alone_is_accepted_and_two_keys_must_agree() {
    let sim = SuchuangSim::start().await.unwrap();
    let http = common::http();
    let url = format!("{}/api/async/video_veo3.1_fast", sim.url);
    let body = serde_json::json!({"prompt": "a cat", "aspectRatio": "9:16", "size": "720p"});
    let ok: serde_json::Value = http
        .post(&url)
        .query(&[("key", KEY)])
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["code"], 200, "{ok}");
    let refused: serde_json::Value = http
        .post(&url)
        .query(&[("key", KEY)])
        .header("authorization", "another-key")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["code"], 403, "{refused}");
}

#[tokio::test]
async fn numeric_task_ids_read_the_same() {
    let sim = SuchuangSim::start().await.unwrap();
    sim.lock().numeric_ids = true;
    let p = client(&sim);
    let sub = p.submit(&request("job-numeric")).await.unwrap();
    assert!(
        sub.request_id.chars().all(|c| c.is_ascii_digit()),
        "{}",
        sub.request_id
    );
    let (_, end) = run_to_end(&p, &sub.request_id).await;
    assert!(
        matches!(end, ProviderStatus::Succeeded { video: Some(_) }),
        "{end:?}"
    );
}

/// The legacy VEO endpoints keep their own numbering: 1 is success, 3 is generating.
#[tokio::test]
async fn the_legacy_endpoints_answer_in_the_legacy_numbering() {
    let sim = SuchuangSim::start().await.unwrap();
    let http = common::http();
    let submitted: serde_json::Value = http
        .post(format!("{}/api/video/veoPlus", sim.url))
        .header("authorization", KEY)
        .json(
            &serde_json::json!({"model": "veo3-fast", "prompt": "a lantern festival",
            "type": "text2video", "ratio": "9:16"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["data"]["id"].as_u64().expect("a numeric id");
    let mut seen = Vec::new();
    let content = loop {
        let d: serde_json::Value = http
            .get(format!("{}/api/video/veoDetail", sim.url))
            .query(&[("key", KEY), ("id", &id.to_string())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = d["data"]["status"].as_u64().unwrap();
        seen.push(status);
        if status == 1 {
            break d["data"]["content"].as_str().unwrap().to_owned();
        }
        assert!(seen.len() < 10, "{seen:?}");
    };
    assert_eq!(seen, vec![0, 3, 3, 1]);
    assert_eq!(content, sim.video_url(&id.to_string()));
}

#[tokio::test]
async fn the_client_passes_the_conformance_suite_on_the_simulator() {
    let sim = SuchuangSim::start().await.unwrap();
    video_provider_suite(&client(&sim)).await;
}

#[tokio::test]
async fn every_fault_switch_reads_as_the_client_expects() {
    let sim = SuchuangSim::start().await.unwrap();
    let p = client(&sim);
    let cases: Vec<(Flip, ErrorKind)> = vec![
        (|f| f.out_of_funds = true, ErrorKind::ProviderOutOfFunds),
        (|f| f.key_rejected = true, ErrorKind::Unauthorized),
        (|f| f.rate_limited = Some(2), ErrorKind::RateLimited),
        (|f| f.down = true, ErrorKind::Unavailable),
        (|f| f.server_errors = 1, ErrorKind::Unavailable),
        (|f| f.lose_submit_answers = 1, ErrorKind::OutcomeUnknown),
    ];
    for (i, (switch, kind)) in cases.into_iter().enumerate() {
        sim.switches().clear();
        sim.switches().update(Service::Suchuang, switch);
        let err = p.submit(&request(&format!("f-{i}"))).await.unwrap_err();
        assert_eq!(err.kind(), kind, "case {i}: {err}");
        assert!(!format!("{err:?}").contains(KEY));
    }
    assert_eq!(
        sim.lock().accepted.len(),
        1,
        "only the lost answer was billed"
    );
    sim.switches().clear();
    sim.switches()
        .update(Service::Suchuang, |f| f.fail_jobs = true);
    let sub = p.submit(&request("f-fail")).await.unwrap();
    let (_, end) = run_to_end(&p, &sub.request_id).await;
    assert!(
        matches!(&end, ProviderStatus::Failed { class: FailureClass::Permanent, reason } if reason.contains("审核")),
        "{end:?}"
    );
}
