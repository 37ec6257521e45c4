//! The [`TrendCache`] rules, one function each. Each uses random keys, so it runs on a store
//! holding other data. [`trend_cache_suite`] runs them all.

use crate::creative::ViralAnalysis;
use crate::error::ErrorKind;
use crate::ids::Timestamp;
use std::time::Duration;

use crate::traits::{CachedSearch, SearchOutcome, SourceRunClaim, SourceRunState, TrendCache};
use crate::trend::{Platform, TrendingVideo};

use super::support::rules;

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
/// stored is `None`; and a search's paid source run is claimed by one caller, recorded and
/// followed by the others, and freed when ended. Uses random keys, so it can run on a store holding other data. Panics
/// naming the broken rule.
pub async fn trend_cache_suite<S: TrendCache + ?Sized>(store: &S) {
    rules!(store, "trends":
        a_search_reads_back_as_stored,
        analyses_are_kept_per_platform_and_video,
        a_source_run_is_started_once_per_search,
        concurrent_first_claims_give_one_claimed,
    );
}

/// A search reads back as stored (videos or a failure, with its time), a later one under the
/// same key replaces it, keys are separate, and a key never stored is `None`.
pub async fn a_search_reads_back_as_stored<S: TrendCache + ?Sized>(store: &S) {
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
}

/// An analysis is kept per platform and video and replaced by a later one; what was never
/// stored is `None`.
pub async fn analyses_are_kept_per_platform_and_video<S: TrendCache + ?Sized>(store: &S) {
    let run = uuid::Uuid::new_v4().simple().to_string();
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

const CLAIMED_AT: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// A claim of `key` for `owner` at `now`, held for a minute.
fn claim(key: &str, owner: &str, now: Timestamp) -> SourceRunClaim {
    SourceRunClaim {
        key: key.to_owned(),
        owner: owner.to_owned(),
        now,
        claim_until: now.plus(Duration::from_secs(60)),
    }
}

/// One paid source run per search across every caller: a claim holds against others until it
/// lapses, the recorded run is found by every later claim, a lapsed claim is taken over (and
/// its late record refused), and an ended run frees the search.
pub async fn a_source_run_is_started_once_per_search<S: TrendCache + ?Sized>(store: &S) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = CLAIMED_AT;
    let ask = |c: SourceRunClaim| async move {
        store
            .claim_source_run(&c)
            .await
            .unwrap_or_else(|e| panic!("claiming a source run failed: {e}"))
    };
    let key = format!("{run}|runs|tiktok|ai");
    assert_eq!(ask(claim(&key, "a", at)).await, SourceRunState::Claimed);
    assert_eq!(
        ask(claim(&key, "b", at)).await,
        SourceRunState::Pending {
            until: at.plus(Duration::from_secs(60))
        },
        "another caller's claim holds"
    );
    store
        .record_source_run(&key, "a", "run-1", at.plus(Duration::from_secs(600)))
        .await
        .unwrap_or_else(|e| panic!("recording a run failed: {e}"));
    assert_eq!(
        ask(claim(&key, "b", at.plus(Duration::from_secs(120)))).await,
        SourceRunState::Started {
            run_id: "run-1".into()
        },
        "a recorded run is followed, never started again"
    );
    // Ending another run, or another owner's claim, leaves it.
    store
        .end_source_run(&key, "b", Some("run-0".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .end_source_run(&key, "b", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        ask(claim(&key, "c", at)).await,
        SourceRunState::Started { .. }
    ));
    store
        .end_source_run(&key, "a", Some("run-1".into()))
        .await
        .unwrap_or_else(|e| panic!("ending a run failed: {e}"));
    assert_eq!(
        ask(claim(&key, "c", at)).await,
        SourceRunState::Claimed,
        "an ended run frees the search"
    );
    // A claim that lapsed without a run is taken over; its late record is refused.
    let later = at.plus(Duration::from_secs(61));
    assert_eq!(ask(claim(&key, "d", later)).await, SourceRunState::Claimed);
    match store
        .record_source_run(&key, "c", "run-late", later.plus(Duration::from_secs(600)))
        .await
    {
        Err(crate::Error::LostRace { .. }) => {}
        other => panic!("a taken-over claim's record must be LostRace, got {other:?}"),
    }
}

/// Twenty first claims of one search at once: one is `Claimed`, the others `Pending`.
pub async fn concurrent_first_claims_give_one_claimed<S: TrendCache + ?Sized>(store: &S) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = CLAIMED_AT;
    let fresh = format!("{run}|runs|youtube|ai");
    let claims: Vec<SourceRunClaim> = (0..20)
        .map(|i| claim(&fresh, &format!("p{i}"), at))
        .collect();
    let answers = futures::future::join_all(claims.iter().map(|c| store.claim_source_run(c))).await;
    let claimed = answers
        .iter()
        .filter(|a| matches!(a, Ok(SourceRunState::Claimed)))
        .count();
    let pending = answers
        .iter()
        .filter(|a| matches!(a, Ok(SourceRunState::Pending { .. })))
        .count();
    assert_eq!(
        (claimed, pending),
        (1, 19),
        "twenty concurrent first claims: {answers:?}"
    );
}
