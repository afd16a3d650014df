//! Rates from the limiter's cumulative counts: the dashboard's allowed and
//! limited calls per second, per tier.
//!
//! The crate's snapshot counts calls since the limiter was built; a rate is
//! the difference of two snapshots over the time between them. The meter
//! keeps one sample a second at most (taken when the dashboard asks, so it
//! costs nothing without a dashboard), bounded by the window asked for, and
//! answers each tier's rate over the window's oldest sample.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use palisade::rate_limit::TierSnapshot;
use serde::Serialize;
use tokio::time::Instant;

/// The least time between two samples, and the least span a rate is
/// measured over.
const STEP: Duration = Duration::from_secs(1);

/// One tier's rates over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierRate {
    /// The tier's name (a key class, never a key).
    pub tier: String,
    /// Calls admitted per second (at once or after a wait).
    pub allowed_per_sec: Option<f64>,
    /// Calls refused for the limit per second.
    pub limited_per_sec: Option<f64>,
}

struct Sample {
    at: Instant,
    /// Per tier: name, admitted (at once or delayed), limited.
    counts: Vec<(String, u64, u64)>,
}

/// Samples of a limiter's counts; see the [module docs](self).
#[derive(Default)]
pub struct RateMeter {
    samples: Mutex<VecDeque<Sample>>,
}

impl std::fmt::Debug for RateMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateMeter").finish_non_exhaustive()
    }
}

impl RateMeter {
    /// Each tier's rates over the last `window` (at most), given its counts
    /// now (`tiers`, from the limiter's snapshot at `now`). A rate is `None`
    /// until the meter has a sample at least a second old that knew the
    /// tier.
    pub fn rates(&self, tiers: &[TierSnapshot], now: Instant, window: Duration) -> Vec<TierRate> {
        let counts: Vec<(String, u64, u64)> = tiers
            .iter()
            .map(|t| (t.name.clone(), t.admitted + t.delayed, t.limited))
            .collect();
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|s| now.saturating_duration_since(s.at) >= window)
        {
            samples.pop_front();
        }
        let base = samples
            .front()
            .filter(|s| now.saturating_duration_since(s.at) >= STEP);
        let rates = counts
            .iter()
            .map(|(tier, allowed, limited)| {
                let then = base.and_then(|b| {
                    let secs = now.saturating_duration_since(b.at).as_secs_f64();
                    b.counts
                        .iter()
                        .find(|(name, _, _)| name == tier)
                        .map(|(_, a, l)| (secs, *a, *l))
                });
                let per_sec = |now: u64, then: u64, secs: f64| {
                    #[allow(clippy::cast_precision_loss, reason = "call counts")]
                    let calls = now.saturating_sub(then) as f64;
                    calls / secs
                };
                TierRate {
                    tier: tier.clone(),
                    allowed_per_sec: then.map(|(secs, a, _)| per_sec(*allowed, a, secs)),
                    limited_per_sec: then.map(|(secs, _, l)| per_sec(*limited, l, secs)),
                }
            })
            .collect();
        if samples
            .back()
            .is_none_or(|s| now.saturating_duration_since(s.at) >= STEP)
        {
            samples.push_back(Sample { at: now, counts });
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade::rate_limit::{Limit, Rate, RateLimitLayer};

    fn tiers(layer: &RateLimitLayer) -> Vec<TierSnapshot> {
        layer.handle().snapshot().tiers
    }

    #[tokio::test(start_paused = true)]
    async fn rates_are_differences_over_the_window() {
        let layer = RateLimitLayer::builder("m")
            .rate(Rate::per_second(1000))
            .burst(1000)
            .tier("free", Limit::new(Rate::per_second(1), 1))
            .build()
            .unwrap();
        let meter = RateMeter::default();
        let window = Duration::from_secs(10);
        let first = meter.rates(&tiers(&layer), Instant::now(), window);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|r| r.allowed_per_sec.is_none()));
        // Twenty calls of the default tier over two seconds: 10/s.
        let handle = layer.handle();
        let mut snap = handle.snapshot().tiers;
        snap[0].admitted += 20;
        snap[1].limited += 4;
        tokio::time::advance(Duration::from_secs(2)).await;
        let rates = meter.rates(&snap, Instant::now(), window);
        assert_eq!(rates[0].tier, "default");
        assert_eq!(rates[0].allowed_per_sec, Some(10.0));
        assert_eq!(rates[1].tier, "free");
        assert_eq!(rates[1].limited_per_sec, Some(2.0));
        assert_eq!(rates[1].allowed_per_sec, Some(0.0));
        // Samples older than the window are dropped: the base moves up.
        tokio::time::advance(Duration::from_secs(20)).await;
        let later = meter.rates(&snap, Instant::now(), window);
        assert_eq!(later[0].allowed_per_sec, Some(0.0));
    }
}
