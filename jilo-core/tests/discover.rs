//! `Studio::discover` and `Studio::prompt_from` (the seed's flow 3) with counting fakes of a
//! trend source and a creative model, on the in-memory store under paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jilo_core::testing::SimProvider;
use jilo_core::{
    CreativeModel, DiscoverQuery, Error, ErrorKind, InMemoryStore, MetadataBrief,
    MetadataSuggestion, Platform, PromptBrief, Studio, Timestamp, TokioClock, TrendQuery,
    TrendSource, TrendingVideo, ViralAnalysis,
};

/// A trend source answering from a table, counting its searches per platform.
#[derive(Default)]
struct Source {
    answers: HashMap<Platform, Result<Vec<TrendingVideo>, ErrorKind>>,
    calls: Mutex<HashMap<Platform, usize>>,
    queries: Mutex<Vec<TrendQuery>>,
}

impl Source {
    fn calls(&self, p: Platform) -> usize {
        self.calls.lock().unwrap().get(&p).copied().unwrap_or(0)
    }
}

#[async_trait]
impl TrendSource for Source {
    fn platforms(&self) -> Vec<Platform> {
        self.answers.keys().copied().collect()
    }

    async fn search(&self, query: &TrendQuery) -> jilo_core::Result<Vec<TrendingVideo>> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(query.platform)
            .or_default() += 1;
        self.queries.lock().unwrap().push(query.clone());
        match self.answers.get(&query.platform) {
            Some(Ok(videos)) => Ok(videos.clone()),
            Some(Err(ErrorKind::RateLimited)) => Err(Error::RateLimited {
                service: "apify".into(),
                retry_after: None,
                response: None,
                source: None,
            }),
            _ => Err(Error::Unavailable {
                service: "apify".into(),
                reason: "down".into(),
                response: None,
                source: None,
            }),
        }
    }
}

/// A creative model scoring by views, failing the first analysis of the named videos.
#[derive(Default)]
struct Model {
    fail_once: Mutex<Vec<String>>,
    analyses: Mutex<Vec<String>>,
    prompt: String,
}

#[async_trait]
impl CreativeModel for Model {
    async fn analyze(&self, video: &TrendingVideo) -> jilo_core::Result<ViralAnalysis> {
        self.analyses.lock().unwrap().push(video.video_id.clone());
        let mut failing = self.fail_once.lock().unwrap();
        if let Some(i) = failing.iter().position(|id| id == &video.video_id) {
            failing.remove(i);
            return Err(Error::Unavailable {
                service: "gemini".into(),
                reason: "overloaded".into(),
                response: None,
                source: None,
            });
        }
        Ok(ViralAnalysis {
            hook: format!("{} in the first second", video.title),
            success_factors: vec!["hook".into(), "pace".into(), "loop".into()],
            score: if video.views > 1_000_000 { 9 } else { 5 },
        })
    }

    async fn write_prompt(&self, _brief: &PromptBrief) -> jilo_core::Result<String> {
        Ok(self.prompt.clone())
    }

    async fn suggest_metadata(&self, _: &MetadataBrief) -> jilo_core::Result<MetadataSuggestion> {
        Err(Error::invalid("metadata", "not in these tests"))
    }
}

fn video(platform: Platform, id: &str, views: u64, likes: u64, days_old: u64) -> TrendingVideo {
    // TokioClock starts at the system time when the test starts: date videos from it.
    let now = jilo_core::Timestamp::from_system(std::time::SystemTime::now());
    TrendingVideo {
        platform,
        video_id: id.to_owned(),
        url: format!("https://example.com/{id}"),
        title: format!("video {id}"),
        description: None,
        author: None,
        views,
        likes,
        comments: likes / 10,
        shares: likes / 20,
        published_at: Some(Timestamp::from_millis(
            now.as_millis() - i64::try_from(days_old * 86_400_000).unwrap(),
        )),
        thumbnail_url: None,
        video_url: None,
        duration_secs: None,
    }
}

fn studio(source: Arc<Source>, model: Arc<Model>) -> Studio {
    Studio::builder()
        .provider(Arc::new(SimProvider::new("sim")))
        .store(Arc::new(InMemoryStore::new()))
        .trend_source(source)
        .creative_model(model)
        .clock(Arc::new(TokioClock::new()))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn three_platforms_one_failing_then_the_repeat_comes_from_the_store() {
    let mut answers = HashMap::new();
    answers.insert(
        Platform::TikTok,
        Ok(vec![
            video(Platform::TikTok, "tt-1", 3_000_000, 400_000, 2),
            video(Platform::TikTok, "tt-2", 80_000, 2_000, 3),
            video(Platform::TikTok, "tt-2", 80_000, 2_000, 3), // listed twice
            video(Platform::TikTok, "tt-low", 500, 10, 1),     // below the range
        ]),
    );
    answers.insert(
        Platform::YouTubeShorts,
        Ok(vec![
            video(Platform::YouTubeShorts, "yt-1", 1_500_000, 90_000, 5),
            video(Platform::YouTubeShorts, "yt-2", 400_000, 30_000, 1),
            video(Platform::YouTubeShorts, "yt-old", 900_000, 50_000, 60), // too old
        ]),
    );
    answers.insert(Platform::InstagramReels, Err(ErrorKind::RateLimited));
    let source = Arc::new(Source {
        answers,
        ..Source::default()
    });
    let model = Arc::new(Model {
        fail_once: Mutex::new(vec!["yt-2".into()]),
        ..Model::default()
    });
    let studio = studio(source.clone(), model.clone());
    let query = DiscoverQuery::new(
        "AI tools",
        [
            Platform::TikTok,
            Platform::YouTubeShorts,
            Platform::InstagramReels,
        ],
    )
    .with_views(Some(10_000), None)
    .within_days(30)
    .analyze_top(3);

    let found = studio.discover(&query).await.unwrap();
    let ids: Vec<&str> = found
        .videos
        .iter()
        .map(|v| v.video.video_id.as_str())
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort_unstable();
    assert_eq!(
        sorted_ids,
        ["tt-1", "tt-2", "yt-1", "yt-2"],
        "deduped and filtered"
    );
    assert!(
        found
            .videos
            .windows(2)
            .all(|w| w[0].score.total >= w[1].score.total),
        "best first: {ids:?}"
    );
    assert_eq!(
        found.failures.len(),
        1,
        "the failure is reported, not swallowed"
    );
    assert_eq!(found.failures[0].platform, Platform::InstagramReels);
    assert_eq!(found.failures[0].kind, ErrorKind::RateLimited);
    assert!(!found.from_cache);
    // The top 3 by the score without AI were analysed; yt-2's analysis failed.
    assert_eq!(model.analyses.lock().unwrap().len(), 3);
    let yt2 = found
        .videos
        .iter()
        .find(|v| v.video.video_id == "yt-2")
        .unwrap();
    assert!(
        yt2.analysis.is_none() && yt2.score.without_ai(),
        "scored without the AI part"
    );
    let analysed = found.videos.iter().filter(|v| v.analysis.is_some()).count();
    assert_eq!(analysed, 2);
    assert_eq!(
        source.queries.lock().unwrap()[0].limit,
        50,
        "the seed's 50 results a platform"
    );
    for p in [
        Platform::TikTok,
        Platform::YouTubeShorts,
        Platform::InstagramReels,
    ] {
        assert_eq!(source.calls(p), 1);
    }

    // The same search at once: no search is made; kept analyses are reused, only the failed
    // one is asked again.
    tokio::time::advance(Duration::from_secs(60)).await;
    let again = studio.discover(&query).await.unwrap();
    assert!(again.from_cache);
    for p in [
        Platform::TikTok,
        Platform::YouTubeShorts,
        Platform::InstagramReels,
    ] {
        assert_eq!(source.calls(p), 1, "{p:?} was not searched again");
    }
    assert_eq!(
        again.fetched_at, found.fetched_at,
        "the answer says when it was fetched"
    );
    assert_eq!(model.analyses.lock().unwrap().len(), 4);
    assert!(again
        .videos
        .iter()
        .all(|v| v.video.video_id != "yt-2" || v.analysis.is_some()));

    // After the failure window the failed platform is tried again, the others still kept.
    tokio::time::advance(studio.policy().trend_failure_window).await;
    let later = studio.discover(&query).await.unwrap();
    assert_eq!(source.calls(Platform::InstagramReels), 2);
    assert_eq!(source.calls(Platform::TikTok), 1);
    assert!(!later.from_cache);
    // After the cache window everything is searched again.
    tokio::time::advance(studio.policy().trend_cache_window).await;
    studio.discover(&query).await.unwrap();
    assert_eq!(source.calls(Platform::TikTok), 2);
}

#[tokio::test(start_paused = true)]
async fn bad_queries_search_nothing() {
    let mut answers = HashMap::new();
    answers.insert(Platform::TikTok, Ok(Vec::new()));
    let source = Arc::new(Source {
        answers,
        ..Source::default()
    });
    let studio = studio(source.clone(), Arc::new(Model::default()));
    let bad = [
        DiscoverQuery::new("  ", [Platform::TikTok]),
        DiscoverQuery::new("x".repeat(101), [Platform::TikTok]),
        DiscoverQuery::new("cats", Vec::<Platform>::new()),
        DiscoverQuery::new("cats", [Platform::TikTok]).with_views(Some(10), Some(5)),
    ];
    for q in bad {
        match studio.discover(&q).await {
            Err(Error::InvalidInput { .. }) => {}
            other => panic!("{q:?} must be InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(source.calls(Platform::TikTok), 0);
    // A platform no source covers is a reported failure, not an error.
    let uncovered = studio
        .discover(&DiscoverQuery::new("cats", [Platform::InstagramReels]))
        .await
        .unwrap();
    assert_eq!(uncovered.failures[0].kind, ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn a_prompt_from_a_trending_video_fits_generate() {
    let mut answers = HashMap::new();
    answers.insert(
        Platform::TikTok,
        Ok(vec![video(Platform::TikTok, "tt-1", 2_000_000, 300_000, 1)]),
    );
    let source = Arc::new(Source {
        answers,
        ..Source::default()
    });
    let written = "A golden retriever surfing a small wave at sunset, slow motion, close \
                   tracking shot, warm light, joyful mood, ends on a splash into the camera";
    let model = Arc::new(Model {
        prompt: format!("  {written}\n"),
        ..Model::default()
    });
    let studio = studio(source.clone(), model);
    let found = studio
        .discover(&DiscoverQuery::new("dogs", [Platform::TikTok]))
        .await
        .unwrap();
    let prompt = studio.prompt_from(&found.videos[0], 5).await.unwrap();
    assert_eq!(prompt, written);

    let short = Arc::new(Model {
        prompt: "A dog".into(),
        ..Model::default()
    });
    let studio = self::studio(source, short);
    match studio.prompt_from(&found.videos[0], 5).await {
        Err(Error::Protocol { reason, .. }) => assert!(reason.contains("does not fit"), "{reason}"),
        other => panic!("a prompt generate would refuse must be an error, got {other:?}"),
    }
}
