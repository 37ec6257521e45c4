//! The environment lines the simulators print are what jilo's clients read: each client built
//! with `from_env` from those lines alone talks to its simulator (one test in its own process:
//! it sets the process environment).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::{
    CreativeModel, JobId, Platform, SubmitRequest, Timestamp, TrendQuery, TrendSource,
    TrendingVideo, VideoProvider, VideoRequest,
};
use jilo_providers::apify::ApifySource;
use jilo_providers::fal::{FalProvider, KLING_T2V};
use jilo_providers::gemini::GeminiModel;
use jilo_providers::suchuang::{SuchuangProvider, VEO3};
use jilo_providers::youtube::GoogleOAuth;
use jilo_sim::{Pace, SimConfig, Simulators};

#[tokio::test]
async fn clients_built_from_the_printed_environment_reach_their_simulators() {
    let sims = Simulators::start(SimConfig::default().with_pace(Pace::Instant))
        .await
        .unwrap();
    let lines = sims.env_lines();
    for line in lines.lines() {
        let (k, v) = line.split_once('=').unwrap();
        std::env::set_var(k, v);
    }

    let fal = FalProvider::from_env().unwrap();
    let sub = fal
        .submit(&SubmitRequest::new(
            JobId::new("env-1"),
            1,
            VideoRequest::new("A paper boat on a rainy street", KLING_T2V, 5),
            "fal-ai/kling-video/v1.6/standard/text-to-video",
        ))
        .await
        .unwrap();
    assert_eq!(sims.fal.lock().accepted, vec![sub.request_id]);

    let suchuang = SuchuangProvider::from_env().unwrap();
    suchuang
        .submit(&SubmitRequest::new(
            JobId::new("env-2"),
            1,
            VideoRequest::new("A lantern festival", VEO3, 8),
            "veo3.1_fast",
        ))
        .await
        .unwrap();
    assert_eq!(sims.suchuang.lock().accepted.len(), 1);

    let found = ApifySource::from_env()
        .unwrap()
        .search(&TrendQuery {
            platform: Platform::TikTok,
            keyword: "AI tools".into(),
            min_views: None,
            max_views: None,
            max_age_days: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 10);

    let analysis = GeminiModel::from_env()
        .unwrap()
        .analyze(&TrendingVideo {
            platform: Platform::TikTok,
            video_id: found[0].video_id.clone(),
            url: found[0].url.clone(),
            title: found[0].title.clone(),
            description: None,
            author: None,
            views: found[0].views,
            likes: found[0].likes,
            comments: 0,
            shares: 0,
            published_at: None,
            thumbnail_url: None,
            video_url: None,
            duration_secs: None,
        })
        .await
        .unwrap();
    assert!((1..=10).contains(&analysis.score));

    // Google's consent, as a browser would follow it: the simulator approves at once and
    // redirects with a code, which the client exchanges with its PKCE verifier.
    let oauth = GoogleOAuth::from_env().unwrap();
    let pending = oauth.authorize("http://127.0.0.1:9/callback").unwrap();
    let browser = jilo_providers::http::client_builder()
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = browser.get(pending.url.as_str()).send().await.unwrap();
    assert_eq!(consent.status(), 302);
    let back = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    let tokens = oauth
        .exchange(
            &pending,
            &q["state"],
            &q["code"],
            Timestamp::from_system(std::time::SystemTime::now()),
        )
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert_eq!(sims.google.lock().issued, 1);
    assert!(
        sims.google.violations().is_empty(),
        "{:?}",
        sims.google.violations()
    );
}
