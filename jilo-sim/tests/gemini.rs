//! jilo's Gemini client against the Gemini simulator: the three calls answered from their
//! schemas alone (a host's own prompt templates change nothing), blocked prompts, and the
//! fault switches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::{CreativeModel, ErrorKind, MetadataBrief, Platform, PromptBrief, TrendingVideo};
use jilo_providers::gemini::GeminiModel;
use jilo_providers::http::RetryPolicy;
use jilo_sim::gemini::{GeminiSim, KEY};
use jilo_sim::Service;

/// A change of switches.
type Flip = fn(&mut jilo_sim::ServiceFaults);

fn model(sim: &GeminiSim) -> GeminiModel {
    GeminiModel::new(KEY)
        .unwrap()
        .with_base_url(&sim.url)
        .unwrap()
        .with_retries(RetryPolicy::once())
}

fn video() -> TrendingVideo {
    TrendingVideo {
        platform: Platform::TikTok,
        video_id: "7351234567890123456".into(),
        url: "https://www.tiktok.com/@a/video/7351234567890123456".into(),
        title: "This AI tool edits your videos".into(),
        description: Some("three clicks".into()),
        author: Some("aicreator".into()),
        views: 2_400_000,
        likes: 310_000,
        comments: 4_100,
        shares: 12_000,
        published_at: None,
        thumbnail_url: None,
        video_url: None,
        duration_secs: Some(21),
    }
}

#[tokio::test]
async fn analysis_prompt_and_metadata_satisfy_what_the_client_checks() {
    let sim = GeminiSim::start().await.unwrap();
    let gemini = model(&sim);
    let analysis = gemini.analyze(&video()).await.unwrap();
    assert!((1..=10).contains(&analysis.score));
    assert!((3..=5).contains(&analysis.success_factors.len()));
    let prompt = gemini
        .write_prompt(&PromptBrief {
            video: video(),
            analysis: Some(analysis.clone()),
            duration_secs: 5,
        })
        .await
        .unwrap();
    assert!((100..=300).contains(&prompt.chars().count()), "{prompt}");
    let meta = gemini
        .suggest_metadata(&MetadataBrief {
            prompt: prompt.clone(),
            duration_secs: 5,
            keywords: vec!["origami".into()],
        })
        .await
        .unwrap();
    assert_eq!(meta.titles.len(), 3);
    assert!((10..=15).contains(&meta.tags.len()));
    // The same request gets the same answer (stable for the seed).
    assert_eq!(gemini.analyze(&video()).await.unwrap(), analysis);
    let s = sim.lock();
    assert_eq!(s.answered, 4);
    assert_eq!(s.schemas_seen[1], vec!["prompt".to_owned()]);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(s.requests.iter().all(|l| !l.contains(KEY)));
}

#[tokio::test]
async fn every_fault_switch_reads_as_the_client_expects() {
    let sim = GeminiSim::start().await.unwrap();
    let gemini = model(&sim);
    let cases: Vec<(Flip, ErrorKind)> = vec![
        (|f| f.block_prompts = true, ErrorKind::Moderation),
        (|f| f.key_rejected = true, ErrorKind::Unauthorized),
        (|f| f.rate_limited = Some(1), ErrorKind::RateLimited),
        (|f| f.quota_exhausted = true, ErrorKind::RateLimited),
        (|f| f.down = true, ErrorKind::Unavailable),
    ];
    for (i, (switch, kind)) in cases.into_iter().enumerate() {
        sim.switches().clear();
        sim.switches().update(Service::Gemini, switch);
        let err = gemini.analyze(&video()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "case {i}: {err}");
    }
    // A burst of 5xx is retried through by the client's own policy.
    sim.switches().clear();
    sim.switches()
        .update(Service::Gemini, |f| f.server_errors = 1);
    let patient = GeminiModel::new(KEY)
        .unwrap()
        .with_base_url(&sim.url)
        .unwrap()
        .with_retries(RetryPolicy {
            base: std::time::Duration::from_millis(5),
            max_delay: std::time::Duration::from_millis(20),
            ..RetryPolicy::default()
        });
    assert!(patient.analyze(&video()).await.is_ok());
}
