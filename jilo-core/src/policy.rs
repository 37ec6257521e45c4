//! Policies as plain configuration: pricing, attempts, deadlines, failover, the daily cap.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::ids::ProviderId;
use crate::traits::SubmissionKey;
use crate::video::ModelSpec;

/// What a generation costs in credits, per model and duration.
///
/// An entry here wins over the provider's [`ModelSpec`] price, so a host sets its own prices
/// (the seed: 15 credits a video) whatever the provider charges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pricing {
    credits: HashMap<(String, u32), i64>,
}

impl Pricing {
    /// No overrides: the providers' prices apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the credits for one model and duration.
    pub fn with_price(
        mut self,
        model: impl Into<String>,
        duration_secs: u32,
        credits: i64,
    ) -> Self {
        self.credits.insert((model.into(), duration_secs), credits);
        self
    }

    /// The credits a request costs: the override, else the spec's price.
    pub fn credits_for(&self, spec: &ModelSpec, duration_secs: u32) -> Option<i64> {
        self.credits
            .get(&(spec.id.clone(), duration_secs))
            .copied()
            .or_else(|| spec.price(duration_secs).map(|p| p.credits))
    }
}

/// Exponential back-off with full jitter for resubmissions and store retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the delay before try `attempt` (1-based): `base * 2^(attempt-1)`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A delay drawn uniformly from half the ceiling up to the ceiling (jitter keeps many
    /// failed jobs from coming back at once).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let span = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        if span == 0 {
            return ceiling;
        }
        // uuid v4 is the random source already in the dependency tree.
        let random = (uuid::Uuid::new_v4().as_u128() as u64) % (span + 1);
        half + Duration::from_millis(random)
    }
}

/// Everything the Studio decides by rule rather than by code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Most submissions per job to one provider (the seed: 3); a job that spends them moves to
    /// the next provider offering its model, and fails at the last.
    pub max_attempts: u32,
    /// A job without a result this long after creation times out (the seed: 15 minutes); a
    /// finished video's copy is retried for this long after the result arrived.
    pub deadline: Duration,
    /// How often a job without webhooks is polled.
    pub poll_interval: Duration,
    /// How often a job with a webhook is polled anyway, in case deliveries are lost.
    pub webhook_backstop: Duration,
    /// The delay before resubmitting after a retryable failure.
    pub retry_backoff: Backoff,
    /// How often [`crate::Studio::run`] ticks.
    pub tick_interval: Duration,
    /// How long a worker's claim on a job holds. While an effect runs (a submit, a poll, a
    /// video copy of any length) the worker renews it every third of this, so a live worker
    /// keeps its job and a dead one's job is resumed this long after it died.
    pub lease: Duration,
    /// How many due jobs one claim takes at most.
    pub claim_batch: usize,
    /// The longest a provider call (a submit, a status, a lookup) may take, leases renewed,
    /// before the worker gives up on it: a submit cut off this way is an unknown outcome and
    /// reconciled; a status is asked again later.
    pub call_timeout: Duration,
    /// The longest copying a finished video into media storage may take before the try counts
    /// as failed (and is retried, with back-off, until the deadline counted from the result).
    pub store_timeout: Duration,
    /// How long [`crate::Studio::run`] waits, on shutdown, for the jobs in hand to rest.
    pub shutdown_grace: Duration,
    /// How many claimed jobs one process works on at once (submits, polls and video copies);
    /// a slow copy takes one place and leaves the others to the rest.
    pub worker_concurrency: usize,
    /// After a submit whose answer was lost (or a crash mid-submit), how long to wait for the
    /// attempt's webhook before asking the provider about it
    /// ([`crate::VideoProvider::find_submission`]); without an answer either way the job waits
    /// for the webhook until its deadline, never resubmitting an attempt that may be running.
    pub submit_grace: Duration,
    /// Credits per model and duration.
    pub pricing: Pricing,
    /// Provider ids in failover order; providers not named keep their registration order after
    /// those named.
    pub failover_order: Vec<ProviderId>,
    /// The global cap on generations per UTC day (the seed's cost control), if any.
    pub daily_generation_cap: Option<u32>,
    /// Repeats of the same alert within this window are dropped (one alert, not one per job).
    pub alert_cooldown: Duration,
    /// A provider found out of funds or with a rejected key is skipped for new jobs this long.
    pub provider_cooldown: Duration,
    /// After this many retryable submit failures in a row at one provider (5xx, refused
    /// connections, time-outs), it is cooled like one out of funds, and the admin told it is
    /// degraded: new jobs go to the others first. A success resets the count.
    pub breaker_failures: u32,
    /// A discovery repeated within this window is answered from the store, without a new
    /// (paid) search of the platforms (the seed: 1 hour).
    pub trend_cache_window: Duration,
    /// A platform search that failed is tried again after this, not before (so a repeat at
    /// once does not pay for another failing run).
    pub trend_failure_window: Duration,
    /// How many creative-model analyses one discovery runs at once (the model's own client
    /// keeps its rate limit).
    pub analysis_concurrency: usize,
    /// How often [`crate::Studio::run`] reads the providers' balances.
    pub balance_check_interval: Duration,
    /// A provider whose balance falls under its amount here (in its currency's minor units,
    /// e.g. 10,000 fen = 100 元, the seed's "about 90 videos") alerts the admin before users
    /// meet an empty account.
    pub low_balance: BTreeMap<ProviderId, i64>,
    /// The base URL webhooks are delivered to; the provider id, the job and the attempt are
    /// appended as path segments (`https://host/webhooks` →
    /// `https://host/webhooks/fal/{job}/{attempt}`), so a delivery whose request id the Studio
    /// never learned still names its job. `None`: poll only.
    pub webhook_base_url: Option<String>,
    /// How long a process holds an upload to a channel; renewed with every confirmed chunk
    /// (and every third of it), so a dead uploader's publication is resumed this long after
    /// it died.
    pub publish_lease: Duration,
    /// Uploads of one publication (the first and each resumption) before it is ended as
    /// failed, so an upload that cannot finish does not spend the platform's quota forever.
    pub publish_max_attempts: u32,
    /// How often [`crate::Studio::run`] looks for uploads a dead process left.
    pub publish_check_interval: Duration,
    /// How often [`crate::Studio::run`] reads published videos' statistics (each video at
    /// most once per interval).
    pub stats_interval: Duration,
    /// The plans users subscribe to ([`crate::Studio::subscribe_plan`]); ids are unique.
    pub plans: Vec<crate::plans::Plan>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            deadline: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(10),
            webhook_backstop: Duration::from_secs(60),
            retry_backoff: Backoff {
                base: Duration::from_secs(5),
                max: Duration::from_secs(120),
            },
            tick_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            claim_batch: 32,
            call_timeout: Duration::from_secs(2 * 60),
            store_timeout: Duration::from_secs(60 * 60),
            shutdown_grace: Duration::from_secs(30),
            worker_concurrency: 8,
            submit_grace: Duration::from_secs(60),
            pricing: Pricing::default(),
            failover_order: Vec::new(),
            daily_generation_cap: None,
            alert_cooldown: Duration::from_secs(60 * 60),
            provider_cooldown: Duration::from_secs(5 * 60),
            breaker_failures: 5,
            balance_check_interval: Duration::from_secs(10 * 60),
            low_balance: BTreeMap::new(),
            trend_cache_window: Duration::from_secs(60 * 60),
            trend_failure_window: Duration::from_secs(5 * 60),
            analysis_concurrency: 4,
            webhook_base_url: None,
            publish_lease: Duration::from_secs(2 * 60),
            publish_max_attempts: 5,
            publish_check_interval: Duration::from_secs(30),
            stats_interval: Duration::from_secs(6 * 60 * 60),
            plans: Vec::new(),
        }
    }
}

impl Policy {
    /// The webhook URL of one submission, when webhooks are on:
    /// `{base}/{provider}/{job}/{attempt}`. A host routes `{base}/{provider}/{job}/{attempt}`
    /// to [`crate::Studio::handle_webhook`] with the delivery's
    /// [`crate::WebhookDelivery::submission`] set from the last two segments.
    pub fn webhook_url(&self, provider: &ProviderId, key: &SubmissionKey) -> Option<String> {
        self.webhook_base_url.as_ref().map(|base| {
            format!(
                "{}/{}/{}/{}",
                base.trim_end_matches('/'),
                provider,
                key.job,
                key.attempt
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::{AspectRatio, ModelPrice};

    #[test]
    fn overrides_win_over_provider_prices() {
        let spec = ModelSpec {
            id: "veo3".into(),
            provider_model: "x".into(),
            durations: vec![8],
            aspect_ratios: vec![AspectRatio::Landscape],
            prices: vec![ModelPrice {
                duration_secs: 8,
                credits: 20,
                provider_cost_minor: 110,
                currency: "CNY".into(),
            }],
        };
        assert_eq!(Pricing::new().credits_for(&spec, 8), Some(20));
        assert_eq!(
            Pricing::new()
                .with_price("veo3", 8, 15)
                .credits_for(&spec, 8),
            Some(15)
        );
        assert_eq!(Pricing::new().credits_for(&spec, 9), None);
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let b = Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.ceiling(1), Duration::from_secs(5));
        assert_eq!(b.ceiling(3), Duration::from_secs(20));
        assert_eq!(b.ceiling(10), Duration::from_secs(30));
        for attempt in 1..6 {
            let d = b.delay(attempt);
            assert!(d <= b.ceiling(attempt) && d >= b.ceiling(attempt) / 2);
        }
    }

    #[test]
    fn webhook_urls_name_the_provider_job_and_attempt() {
        let p = Policy {
            webhook_base_url: Some("https://h.example/hooks/".into()),
            ..Policy::default()
        };
        let key = SubmissionKey::new("j-1".into(), 2);
        let url = p.webhook_url(&ProviderId::new("fal"), &key);
        assert_eq!(url.as_deref(), Some("https://h.example/hooks/fal/j-1/2"));
        let tail: Vec<&str> = url
            .as_deref()
            .unwrap_or_default()
            .rsplit('/')
            .take(2)
            .collect();
        assert_eq!(
            SubmissionKey::from_route(tail[1], tail[0]).ok(),
            Some(key.clone())
        );
        assert_eq!(
            Policy::default().webhook_url(&ProviderId::new("fal"), &key),
            None
        );
        assert!(SubmissionKey::from_route("j-1", "0").is_err());
        assert!(SubmissionKey::from_route("", "1").is_err());
        assert!(SubmissionKey::from_route("j-1", "x").is_err());
    }
}
