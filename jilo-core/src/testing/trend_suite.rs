//! The conformance suite every [`TrendCache`] runs against itself.

use crate::creative::ViralAnalysis;
use crate::error::ErrorKind;
use crate::ids::Timestamp;
use crate::traits::{CachedSearch, SearchOutcome, TrendCache};
use crate::trend::{Platform, TrendingVideo};

fn video(id: &str, views: u64) -> TrendingVideo {
    TrendingVideo {
        platform: Platform::YouTubeShorts,
        video_id: id.to_owned(),
        url: format!("https://www.youtube.com/shorts/{id}"),
        title: "一只猫 learns to skateboard".to_owned(),
        description: Some(r#"with 'quotes' and "double" ones"#.to_owned()),
        author: Some("@cats".to_owned()),
        views,
        likes: 10,
        comments: 2,
        shares: 1,
        published_at: Some(Timestamp::from_millis(1_790_000_000_000)),
        thumbnail_url: None,
        video_url: None,
        duration_secs: None,
    }
}

/// Checks the [`TrendCache`] contract: a search reads back as stored (videos or a failure,
/// with its time), a later one under the same key replaces it, keys are separate, an
/// analysis is kept per platform and video and replaced by a later one, and what was never
/// stored is `None`. Uses random keys, so it can run on a store holding other data. Panics
/// naming the broken rule.
pub async fn trend_cache_suite<S: TrendCache + ?Sized>(store: &S) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("{run}|youtube_shorts|ai tools");
    let missing = store
        .cached_search(&key)
        .await
        .unwrap_or_else(|e| panic!("reading a search failed: {e}"));
    assert!(missing.is_none(), "a key never stored has no search");
    let found = CachedSearch {
        platform: Platform::YouTubeShorts,
        outcome: SearchOutcome::Found {
            videos: vec![
                video(&format!("{run}-a"), 1_000),
                video(&format!("{run}-b"), 5),
            ],
        },
        fetched_at: Timestamp::from_millis(1_800_000_000_000),
    };
    store
        .store_search(&key, &found)
        .await
        .unwrap_or_else(|e| panic!("keeping a search failed: {e}"));
    assert_eq!(
        store.cached_search(&key).await.ok().flatten(),
        Some(found.clone()),
        "a search reads back as stored"
    );
    let failed = CachedSearch {
        outcome: SearchOutcome::Failed {
            kind: ErrorKind::RateLimited,
            message: "apify rate limited".to_owned(),
        },
        fetched_at: Timestamp::from_millis(1_800_000_060_000),
        ..found.clone()
    };
    store
        .store_search(&key, &failed)
        .await
        .unwrap_or_else(|e| panic!("replacing a search failed: {e}"));
    assert_eq!(
        store.cached_search(&key).await.ok().flatten(),
        Some(failed),
        "a later search replaces the one before"
    );
    let other = format!("{key}|other");
    assert!(
        store.cached_search(&other).await.ok().flatten().is_none(),
        "keys are separate"
    );

    let id = format!("{run}-a");
    assert!(store
        .cached_analysis(Platform::YouTubeShorts, &id)
        .await
        .ok()
        .flatten()
        .is_none());
    let first = ViralAnalysis {
        hook: "A cat on a skateboard in the first second".to_owned(),
        success_factors: vec![
            "animal".to_owned(),
            "surprise".to_owned(),
            "loop".to_owned(),
        ],
        score: 8,
    };
    let at = Timestamp::from_millis(1_800_000_000_000);
    store
        .store_analysis(Platform::YouTubeShorts, &id, &first, at)
        .await
        .unwrap_or_else(|e| panic!("keeping an analysis failed: {e}"));
    assert_eq!(
        store
            .cached_analysis(Platform::YouTubeShorts, &id)
            .await
            .ok()
            .flatten(),
        Some(first.clone())
    );
    assert!(
        store
            .cached_analysis(Platform::TikTok, &id)
            .await
            .ok()
            .flatten()
            .is_none(),
        "analyses are per platform"
    );
    let second = ViralAnalysis { score: 9, ..first };
    store
        .store_analysis(Platform::YouTubeShorts, &id, &second, at)
        .await
        .unwrap_or_else(|e| panic!("replacing an analysis failed: {e}"));
    assert_eq!(
        store
            .cached_analysis(Platform::YouTubeShorts, &id)
            .await
            .ok()
            .flatten()
            .map(|a| a.score),
        Some(9),
        "a later analysis replaces the one before"
    );
}
