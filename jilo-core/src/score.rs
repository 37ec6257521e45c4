//! The seed's viral score ("爆款分"): `40% views + 30% engagement rate + 20% growth speed +
//! 10% AI quality`, each part normalised to 0..1, shown 0..100.
//!
//! The normalisations, chosen to be sensible at the extremes:
//! - **views**: `ln(1 + views) / ln(1 + 10^8)`, capped at 1. Logarithmic, because views span
//!   eight orders of magnitude: 0 views is 0, 1,000 is 0.37, 1 million 0.75, 100 million 1.
//! - **engagement rate**: `(likes + comments + shares) / views`, divided by 10% and capped at
//!   1: a short video engaging one viewer in ten is as good as it gets; 0 views is 0, and a
//!   count a platform did not report (missing likes) counts as 0.
//! - **growth speed**: views per hour since publication, `ln(1 + views/hour) / ln(1 + 10^6)`,
//!   capped at 1. The age counts as at least one hour, so a video published a minute ago is
//!   not credited with a burst it has not sustained; an unknown publication date gives no
//!   growth part (it is left out, and the score says so).
//! - **AI quality**: the creative model's 1..10 recommendation mapped to `(score - 1) / 9`.
//!   Without an analysis (it failed, or none was asked) the part is left out and says so.
//!
//! Parts left out do not count as zero: the remaining weights are scaled up to sum to 1, so a
//! video is not buried because a model call failed.

use serde::{Deserialize, Serialize};

use crate::creative::ViralAnalysis;
use crate::ids::Timestamp;
use crate::trend::TrendingVideo;

/// Weight of the views part.
pub const VIEWS_WEIGHT: f64 = 0.40;
/// Weight of the engagement-rate part.
pub const ENGAGEMENT_WEIGHT: f64 = 0.30;
/// Weight of the growth-speed part.
pub const GROWTH_WEIGHT: f64 = 0.20;
/// Weight of the AI-quality part.
pub const AI_WEIGHT: f64 = 0.10;

/// Views at which the views part reaches 1.
pub const VIEWS_AT_FULL: f64 = 1e8;
/// The engagement rate at which the engagement part reaches 1.
pub const ENGAGEMENT_AT_FULL: f64 = 0.10;
/// Views per hour at which the growth part reaches 1.
pub const VIEWS_PER_HOUR_AT_FULL: f64 = 1e6;

/// What the score is computed from, each already a rate where it is one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViralSignals {
    /// Views.
    pub views: u64,
    /// `(likes + comments + shares) / views`, 0 without views.
    pub engagement_rate: f64,
    /// Views per hour since publication (the age counted as at least one hour), when the
    /// publication time is known.
    pub views_per_hour: Option<f64>,
    /// The creative model's 1..10 recommendation, when an analysis exists.
    pub ai_score: Option<u8>,
}

impl ViralSignals {
    /// The signals of a video as found, at `now`, with its analysis if any.
    pub fn of(video: &TrendingVideo, analysis: Option<&ViralAnalysis>, now: Timestamp) -> Self {
        let views_per_hour = video.published_at.map(|published| {
            let hours = now.since(published).as_secs_f64() / 3600.0;
            video.views as f64 / hours.max(1.0)
        });
        Self {
            views: video.views,
            engagement_rate: video.engagement_rate(),
            views_per_hour,
            ai_score: analysis.map(|a| a.score),
        }
    }
}

/// A video's viral score with its parts, for a page that shows why.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViralScore {
    /// The score shown, 0..100.
    pub total: u8,
    /// The views part, 0..1.
    pub views: f64,
    /// The engagement part, 0..1.
    pub engagement: f64,
    /// The growth part, 0..1; `None` when the publication time is unknown.
    pub growth: Option<f64>,
    /// The AI-quality part, 0..1; `None` when there is no analysis.
    pub ai: Option<f64>,
}

impl ViralScore {
    /// Scores a set of signals (see the module docs for the normalisations).
    pub fn from_signals(s: &ViralSignals) -> Self {
        let views = log_part(s.views as f64, VIEWS_AT_FULL);
        let engagement = if s.engagement_rate.is_finite() && s.engagement_rate > 0.0 {
            (s.engagement_rate / ENGAGEMENT_AT_FULL).min(1.0)
        } else {
            0.0
        };
        let growth = s
            .views_per_hour
            .map(|vph| log_part(vph, VIEWS_PER_HOUR_AT_FULL));
        let ai = s.ai_score.map(|a| (f64::from(a.clamp(1, 10)) - 1.0) / 9.0);
        let mut weighted = VIEWS_WEIGHT * views + ENGAGEMENT_WEIGHT * engagement;
        let mut weights = VIEWS_WEIGHT + ENGAGEMENT_WEIGHT;
        if let Some(g) = growth {
            weighted += GROWTH_WEIGHT * g;
            weights += GROWTH_WEIGHT;
        }
        if let Some(a) = ai {
            weighted += AI_WEIGHT * a;
            weights += AI_WEIGHT;
        }
        let share = (weighted / weights).clamp(0.0, 1.0);
        // 0..=100 after the clamp, so the cast cannot truncate.
        let total = (share * 100.0).round() as u8;
        Self {
            total,
            views,
            engagement,
            growth,
            ai,
        }
    }

    /// Scores a video at `now` with its analysis, if any.
    pub fn of(video: &TrendingVideo, analysis: Option<&ViralAnalysis>, now: Timestamp) -> Self {
        Self::from_signals(&ViralSignals::of(video, analysis, now))
    }

    /// Whether the AI part is missing from this score.
    pub fn without_ai(&self) -> bool {
        self.ai.is_none()
    }
}

/// `ln(1 + x) / ln(1 + full)`, capped at 1; 0 for nothing (or a value that is not a number).
fn log_part(x: f64, full: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 0.0;
    }
    (x.ln_1p() / full.ln_1p()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trend::Platform;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn video(views: u64, likes: u64, hours_old: Option<u64>) -> TrendingVideo {
        TrendingVideo {
            platform: Platform::TikTok,
            video_id: "v".into(),
            url: "https://www.tiktok.com/@a/video/1".into(),
            title: "t".into(),
            description: None,
            author: None,
            views,
            likes,
            comments: 0,
            shares: 0,
            published_at: hours_old.map(|h| {
                Timestamp::from_millis(NOW.as_millis() - i64::try_from(h * 3_600_000).unwrap())
            }),
            thumbnail_url: None,
            video_url: None,
            duration_secs: None,
        }
    }

    fn analysis(score: u8) -> ViralAnalysis {
        ViralAnalysis {
            hook: "h".into(),
            success_factors: vec!["f".into()],
            score,
        }
    }

    #[test]
    fn ordering_matches_intuition() {
        let score = |v: &TrendingVideo, ai| ViralScore::of(v, ai, NOW).total;
        let viral = video(5_000_000, 600_000, Some(48));
        let steady = video(200_000, 8_000, Some(24 * 30));
        let flop = video(300, 2, Some(24 * 7));
        let a9 = analysis(9);
        assert!(score(&viral, Some(&a9)) > score(&steady, Some(&a9)));
        assert!(score(&steady, Some(&a9)) > score(&flop, Some(&a9)));
        // Same counts, younger: faster growth scores higher.
        assert!(
            score(&video(100_000, 5_000, Some(2)), None)
                > score(&video(100_000, 5_000, Some(200)), None)
        );
        // Same views, more engagement scores higher.
        assert!(
            score(&video(100_000, 9_000, Some(24)), None)
                > score(&video(100_000, 900, Some(24)), None)
        );
        // A better analysis scores higher.
        assert!(score(&steady, Some(&analysis(10))) > score(&steady, Some(&analysis(2))));
    }

    #[test]
    fn extremes_are_sensible() {
        let zero = ViralScore::of(&video(0, 0, Some(1)), None, NOW);
        assert_eq!(
            (zero.views, zero.engagement, zero.growth),
            (0.0, 0.0, Some(0.0))
        );
        assert_eq!(zero.total, 0);
        // Published a minute ago: the age counts as an hour, no runaway growth.
        let fresh = ViralScore::of(
            &TrendingVideo {
                published_at: Some(Timestamp::from_millis(NOW.as_millis() - 60_000)),
                ..video(10_000, 500, None)
            },
            None,
            NOW,
        );
        let hour = ViralScore::of(&video(10_000, 500, Some(1)), None, NOW);
        assert_eq!(fresh.growth, hour.growth);
        assert!(fresh.growth.unwrap() < 0.7);
        // Missing likes count as none; engagement above 10% is capped.
        assert_eq!(
            ViralScore::of(&video(1_000, 0, Some(5)), None, NOW).engagement,
            0.0
        );
        assert_eq!(
            ViralScore::of(&video(1_000, 5_000, Some(5)), None, NOW).engagement,
            1.0
        );
        // Huge counts stay within bounds.
        let huge = ViralScore::of(
            &video(u64::MAX, u64::MAX / 4, Some(1)),
            Some(&analysis(10)),
            NOW,
        );
        assert_eq!(huge.total, 100);
        // Unknown publication time and no analysis: those parts are left out, not zero.
        let partial = ViralScore::of(&video(1_000_000, 50_000, None), None, NOW);
        assert!(partial.growth.is_none() && partial.without_ai());
        let expected = (VIEWS_WEIGHT * partial.views + ENGAGEMENT_WEIGHT * partial.engagement)
            / (VIEWS_WEIGHT + ENGAGEMENT_WEIGHT);
        assert_eq!(partial.total, (expected * 100.0).round() as u8);
        // The documented anchors of the views part.
        assert!((log_part(1e6, VIEWS_AT_FULL) - 0.75).abs() < 0.01);
        assert!((log_part(1e3, VIEWS_AT_FULL) - 0.375).abs() < 0.01);
    }

    proptest! {
        #[test]
        fn bounded(views in any::<u64>(), rate in 0.0f64..10.0, vph in proptest::option::of(0.0f64..1e9), ai in proptest::option::of(0u8..=255)) {
            let s = ViralScore::from_signals(&ViralSignals { views, engagement_rate: rate, views_per_hour: vph, ai_score: ai });
            prop_assert!(s.total <= 100);
            for part in [Some(s.views), Some(s.engagement), s.growth, s.ai].into_iter().flatten() {
                prop_assert!((0.0..=1.0).contains(&part));
            }
        }

        #[test]
        fn monotone_in_views_and_engagement(
            views in 0u64..10_000_000_000,
            more_views in 0u64..10_000_000_000,
            rate in 0.0f64..0.5,
            more_rate in 0.0f64..0.5,
            vph in proptest::option::of(0.0f64..1e7),
            ai in proptest::option::of(1u8..=10),
        ) {
            let base = ViralSignals { views, engagement_rate: rate, views_per_hour: vph, ai_score: ai };
            let s = ViralScore::from_signals(&base);
            let bigger = ViralScore::from_signals(&ViralSignals { views: views.saturating_add(more_views), ..base });
            prop_assert!(bigger.total >= s.total, "views {views} +{more_views}");
            let engaging = ViralScore::from_signals(&ViralSignals { engagement_rate: rate + more_rate, ..base });
            prop_assert!(engaging.total >= s.total, "rate {rate} +{more_rate}");
        }
    }
}
