//! Adaptive concurrency limits: the pure algorithms behind
//! [`BulkheadBuilder::adaptive`](crate::BulkheadBuilder::adaptive).
//!
//! A [`Limiter`] receives one [`Sample`] per completed call (its round-trip
//! time, how many calls were in flight when it started, and whether it
//! succeeded) and answers with the limit the pool should have now. It does no
//! I/O, reads no clock and takes no lock: the bulkhead measures, feeds it under
//! the pool's own lock and applies the answer with the same resize that
//! [`BulkheadHandle::set_limit`](crate::BulkheadHandle::set_limit) uses, so
//! in-flight calls are never revoked.
//!
//! Two algorithms, after Netflix's
//! [concurrency-limits](https://github.com/Netflix/concurrency-limits):
//!
//! - [`Aimd`]: additive increase, multiplicative decrease, as TCP's
//!   congestion window. A success faster than the latency threshold while
//!   the pool is at least half used adds `increase_by`; a failure, or a call
//!   slower than the threshold, multiplies the limit by `decrease_factor`.
//!
//!   ```text
//!   failure or rtt > latency_threshold:    limit ← max(min, ⌊limit · decrease_factor⌋)
//!   success and 2 · in_flight ≥ limit:     limit ← min(max, limit + increase_by)
//!   ```
//!
//! - [`Gradient`] (Netflix's `Gradient2Limit`): compares each call's RTT with
//!   a long exponential average of RTTs. When latency rises above the average
//!   (beyond `rtt_tolerance`), queueing has started downstream and the limit
//!   shrinks in proportion; when latency is at or below the average, the
//!   limit grows by `queue_size` per sample, smoothed:
//!
//!   ```text
//!   long      ← EWMA(rtt) over long_window samples (plain mean for the first 10)
//!   if long / rtt > 2:           long ← 0.95 · long      (recover fast after an incident)
//!   if in_flight < limit / 2:    no change                (the caller, not the pool, is the bottleneck)
//!   gradient  = clamp(rtt_tolerance · long / rtt, 0.5, 1.0)
//!   target    = limit · gradient + queue_size
//!   limit     ← clamp(limit · (1 − smoothing) + target · smoothing, min, max)
//!   failure:  limit ← max(min, limit · decrease_factor)   (an addition to Gradient2)
//!   ```
//!
//! A call that was cancelled (its response future dropped, say by a timeout
//! outside the bulkhead) gives no outcome, only a lower bound on its RTT: AIMD
//! counts it as a failure when it had already run past the latency threshold;
//! the gradient uses it as an RTT sample when it had already run longer than
//! the long average. Otherwise it is not a signal. Calls the classifier
//! [ignores](palisade_core::Outcome::Ignored) are not sampled.
//!
//! ```
//! use palisade_bulkhead::limiter::{Aimd, Limiter, Sample, Signal};
//! use std::time::Duration;
//!
//! let mut limiter = Limiter::new(Aimd::new().initial_limit(10).min_limit(2).max_limit(20));
//! let ok = Sample::new(Duration::from_millis(5), 10, Signal::Success);
//! assert_eq!(limiter.sample(ok), 11);
//! let failed = Sample::new(Duration::from_millis(5), 10, Signal::Failure);
//! assert_eq!(limiter.sample(failed), 9); // ⌊11 · 0.9⌋
//! ```

use std::time::Duration;

pub use crate::settings::{AdaptiveLimit, Aimd, Gradient};
use crate::settings::{Algorithm, MAX_LIMIT};

/// How a sampled call ended, as the limiter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// The classifier counted the call as a success.
    Success,
    /// The classifier counted the call as a failure (an error, a timeout
    /// inside the bulkhead, an overload status): the downstream is in
    /// trouble.
    Failure,
    /// The call's response future was dropped before it completed; the RTT
    /// is how long it had run.
    Cancelled,
}

/// One completed (or cancelled) call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// From the permit being granted to the call completing.
    pub rtt: Duration,
    /// Calls in flight in the pool when this one started, itself included.
    pub in_flight: usize,
    /// How the call ended.
    pub signal: Signal,
}

impl Sample {
    /// A sample.
    #[must_use]
    pub const fn new(rtt: Duration, in_flight: usize, signal: Signal) -> Self {
        Self {
            rtt,
            in_flight,
            signal,
        }
    }
}

// ===== Limiter =====

/// An exponential moving average that starts as a plain mean (Netflix's
/// `ExpAvgMeasurement`, 10 warm-up samples).
#[derive(Clone, Debug)]
struct ExpAvg {
    value: f64,
    count: u32,
    factor: f64,
}

const WARMUP: u32 = 10;

impl ExpAvg {
    fn new(window: u32) -> Self {
        Self {
            value: 0.0,
            count: 0,
            factor: 2.0 / (f64::from(window) + 1.0),
        }
    }

    fn add(&mut self, x: f64) -> f64 {
        if self.count < WARMUP {
            self.count += 1;
            self.value += (x - self.value) / f64::from(self.count);
        } else {
            self.value = self.value * (1.0 - self.factor) + x * self.factor;
        }
        self.value
    }
}

#[derive(Clone, Debug)]
enum State {
    Aimd(Aimd),
    Gradient { config: Gradient, long_rtt: ExpAvg },
}

/// The state of one adaptive limit. Feed it [`Sample`]s; it answers with the
/// limit to apply. Pure and synchronous.
#[derive(Clone, Debug)]
pub struct Limiter {
    state: State,
    /// The estimate, fractional for the gradient; the limit is its floor.
    estimate: f64,
    min: usize,
    max: usize,
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "limits are at most MAX_LIMIT (2^29): exact in f64, and the estimate is clamped to [min, max] before it is truncated"
)]
impl Limiter {
    /// A limiter at the configuration's initial limit. The configuration is
    /// expected to be [valid](AdaptiveLimit::validate); out-of-range bounds
    /// are repaired (min at least 1, max at least min) rather than trusted.
    pub fn new(config: impl Into<AdaptiveLimit>) -> Self {
        let config = config.into();
        let (min, max) = config.bounds();
        let min = min.clamp(1, MAX_LIMIT);
        let max = max.clamp(min, MAX_LIMIT);
        let estimate = config.initial_limit().clamp(min, max) as f64;
        let state = match config.0 {
            Algorithm::Aimd(a) => State::Aimd(a),
            Algorithm::Gradient(g) => State::Gradient {
                long_rtt: ExpAvg::new(g.long_window.max(1)),
                config: g,
            },
        };
        Self {
            state,
            estimate,
            min,
            max,
        }
    }

    /// The current limit.
    #[must_use]
    pub fn limit(&self) -> usize {
        (self.estimate.floor() as usize).clamp(self.min, self.max)
    }

    /// The `(min, max)` bounds.
    #[must_use]
    pub const fn bounds(&self) -> (usize, usize) {
        (self.min, self.max)
    }

    /// Sets the limit by hand (clamped to the bounds) and returns the limit
    /// now in force; the algorithm carries on from there.
    pub fn set_limit(&mut self, limit: usize) -> usize {
        self.estimate = limit.clamp(self.min, self.max) as f64;
        self.limit()
    }

    fn clamp(&self, x: f64) -> f64 {
        if x.is_nan() {
            return self.estimate;
        }
        x.clamp(self.min as f64, self.max as f64)
    }

    /// Takes one sample into account and returns the new limit.
    pub fn sample(&mut self, sample: Sample) -> usize {
        let estimate = self.estimate;
        let next = match &mut self.state {
            State::Aimd(a) => {
                let slow = sample.rtt > a.latency_threshold;
                match sample.signal {
                    Signal::Failure => Some((estimate * a.decrease_factor).floor()),
                    Signal::Cancelled | Signal::Success if slow => {
                        Some((estimate * a.decrease_factor).floor())
                    }
                    Signal::Success if sample.in_flight.saturating_mul(2) as f64 >= estimate => {
                        Some(estimate + a.increase_by as f64)
                    }
                    Signal::Success | Signal::Cancelled => None,
                }
            }
            State::Gradient { config, long_rtt } => {
                // An RTT of zero (a clock that did not move) would divide by
                // zero: count it as one nanosecond.
                let short = sample.rtt.as_secs_f64().max(1e-9);
                match sample.signal {
                    Signal::Failure => Some(estimate * config.decrease_factor),
                    Signal::Cancelled if long_rtt.count == 0 || short <= long_rtt.value => None,
                    Signal::Success | Signal::Cancelled => {
                        let long = long_rtt.add(short);
                        if long / short > 2.0 {
                            long_rtt.value *= 0.95;
                        }
                        if (sample.in_flight as f64) < estimate / 2.0 {
                            None
                        } else {
                            let gradient = (config.rtt_tolerance * long / short).clamp(0.5, 1.0);
                            let target = estimate * gradient + config.queue_size;
                            Some(estimate * (1.0 - config.smoothing) + target * config.smoothing)
                        }
                    }
                }
            }
        };
        if let Some(next) = next {
            self.estimate = self.clamp(next);
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn aimd_increases_only_when_half_used() {
        let mut l = Limiter::new(Aimd::new().initial_limit(10).max_limit(12));
        assert_eq!(l.sample(Sample::new(ms(1), 4, Signal::Success)), 10);
        assert_eq!(l.sample(Sample::new(ms(1), 5, Signal::Success)), 11);
        assert_eq!(l.sample(Sample::new(ms(1), 11, Signal::Success)), 12);
        assert_eq!(l.sample(Sample::new(ms(1), 12, Signal::Success)), 12, "max");
    }

    #[test]
    fn aimd_decreases_on_failure_and_slowness_down_to_min() {
        let mut l = Limiter::new(
            Aimd::new()
                .initial_limit(20)
                .min_limit(3)
                .latency_threshold(ms(100)),
        );
        assert_eq!(l.sample(Sample::new(ms(1), 20, Signal::Failure)), 18);
        assert_eq!(l.sample(Sample::new(ms(101), 20, Signal::Success)), 16);
        assert_eq!(l.sample(Sample::new(ms(101), 20, Signal::Cancelled)), 14);
        // A quick cancellation is no signal.
        assert_eq!(l.sample(Sample::new(ms(1), 20, Signal::Cancelled)), 14);
        for _ in 0..50 {
            l.sample(Sample::new(ms(1), 20, Signal::Failure));
        }
        assert_eq!(l.limit(), 3);
    }

    #[test]
    fn gradient_holds_at_steady_latency_and_grows_by_queue_size() {
        let mut l = Limiter::new(Gradient::new().initial_limit(20).max_limit(100));
        // Steady RTT: gradient = min(1, 1.5) = 1, so each sample moves the
        // estimate by smoothing · queue_size = 0.8.
        let mut last = 20;
        for _ in 0..10 {
            last = l.sample(Sample::new(ms(10), 20, Signal::Success));
        }
        assert_eq!(last, 28);
    }

    #[test]
    fn gradient_shrinks_when_latency_rises_and_recovers() {
        let mut l = Limiter::new(
            Gradient::new()
                .initial_limit(50)
                .min_limit(5)
                .max_limit(100),
        );
        for _ in 0..200 {
            l.sample(Sample::new(ms(10), 100, Signal::Success));
        }
        assert_eq!(l.limit(), 100, "steady fast calls grow to max");
        for _ in 0..40 {
            l.sample(Sample::new(ms(100), 100, Signal::Success));
        }
        let shrunk = l.limit();
        assert!(shrunk < 20, "10x latency shrinks the limit, got {shrunk}");
        for _ in 0..200 {
            l.sample(Sample::new(ms(10), 100, Signal::Success));
        }
        assert_eq!(l.limit(), 100, "back to max once latency is normal");
    }

    #[test]
    fn gradient_does_not_move_when_app_limited() {
        let mut l = Limiter::new(Gradient::new().initial_limit(40));
        for _ in 0..20 {
            l.sample(Sample::new(ms(10), 40, Signal::Success));
        }
        let before = l.limit();
        for _ in 0..20 {
            l.sample(Sample::new(ms(100), 3, Signal::Success));
        }
        assert_eq!(l.limit(), before);
    }

    #[test]
    fn gradient_failures_back_off() {
        let mut l = Limiter::new(Gradient::new().initial_limit(100).max_limit(100));
        assert_eq!(l.sample(Sample::new(ms(10), 1, Signal::Failure)), 90);
        let mut g = Limiter::new(Gradient::new().initial_limit(100).decrease_factor(1.0));
        assert_eq!(g.sample(Sample::new(ms(10), 1, Signal::Failure)), 100);
    }

    #[test]
    fn gradient_cancellations_count_only_when_slow() {
        let mut l = Limiter::new(Gradient::new().initial_limit(50).max_limit(100));
        // No average yet: a cancellation says nothing.
        assert_eq!(l.sample(Sample::new(ms(500), 50, Signal::Cancelled)), 50);
        for _ in 0..20 {
            l.sample(Sample::new(ms(10), 50, Signal::Success));
        }
        let before = l.limit();
        assert_eq!(l.sample(Sample::new(ms(5), 50, Signal::Cancelled)), before);
        assert!(l.sample(Sample::new(ms(500), 100, Signal::Cancelled)) < before);
    }

    #[test]
    fn zero_rtt_is_not_a_division_by_zero() {
        let mut l = Limiter::new(Gradient::new());
        for _ in 0..20 {
            let limit = l.sample(Sample::new(Duration::ZERO, 200, Signal::Success));
            assert!((1..=200).contains(&limit));
        }
    }

    #[test]
    fn set_limit_clamps() {
        let mut l = Limiter::new(Aimd::new().min_limit(2).max_limit(10).initial_limit(5));
        assert_eq!(l.set_limit(100), 10);
        assert_eq!(l.set_limit(0), 2);
        assert_eq!(l.bounds(), (2, 10));
    }

    #[test]
    fn validation_names_the_setter() {
        let field = |c: AdaptiveLimit| c.validate().unwrap_err().field().to_owned();
        assert_eq!(field(Aimd::new().min_limit(0).into()), "min_limit");
        assert_eq!(field(Aimd::new().min_limit(30).into()), "initial_limit");
        assert_eq!(field(Aimd::new().min_limit(300).into()), "min_limit");
        assert_eq!(field(Aimd::new().max_limit(usize::MAX).into()), "max_limit");
        assert_eq!(
            field(Aimd::new().initial_limit(500).into()),
            "initial_limit"
        );
        assert_eq!(field(Aimd::new().increase_by(0).into()), "increase_by");
        assert_eq!(
            field(Aimd::new().decrease_factor(1.0).into()),
            "decrease_factor"
        );
        assert_eq!(
            field(Aimd::new().latency_threshold(Duration::ZERO).into()),
            "latency_threshold"
        );
        assert_eq!(field(Gradient::new().smoothing(0.0).into()), "smoothing");
        assert_eq!(
            field(Gradient::new().rtt_tolerance(0.9).into()),
            "rtt_tolerance"
        );
        assert_eq!(
            field(Gradient::new().rtt_tolerance(f64::NAN).into()),
            "rtt_tolerance"
        );
        assert_eq!(field(Gradient::new().long_window(0).into()), "long_window");
        assert_eq!(field(Gradient::new().queue_size(-1.0).into()), "queue_size");
        assert_eq!(
            field(Gradient::new().decrease_factor(0.0).into()),
            "decrease_factor"
        );
        assert!(AdaptiveLimit::from(Gradient::new()).validate().is_ok());
        assert!(AdaptiveLimit::from(Aimd::new()).validate().is_ok());
        assert_eq!(AdaptiveLimit::from(Aimd::new()).algorithm(), "aimd");
    }

    fn signal() -> impl Strategy<Value = Signal> {
        prop_oneof![
            Just(Signal::Success),
            Just(Signal::Failure),
            Just(Signal::Cancelled)
        ]
    }

    proptest! {
        #[test]
        fn limit_stays_within_bounds(
            gradient in any::<bool>(),
            min in 1usize..50,
            span in 0usize..200,
            samples in proptest::collection::vec((0u64..10_000_000, 0usize..400, signal()), 0..300),
        ) {
            let max = min + span;
            let mut l = if gradient {
                Limiter::new(Gradient::new().min_limit(min).max_limit(max).initial_limit(min))
            } else {
                Limiter::new(Aimd::new().min_limit(min).max_limit(max).initial_limit(max))
            };
            for (rtt, in_flight, signal) in samples {
                let limit = l.sample(Sample::new(Duration::from_nanos(rtt), in_flight, signal));
                prop_assert!(limit >= min && limit <= max, "{limit} outside {min}..={max}");
                prop_assert_eq!(limit, l.limit());
            }
        }

        #[test]
        fn aimd_matches_its_formula(
            samples in proptest::collection::vec((0u64..200, 0usize..100, signal()), 0..200),
        ) {
            // Reference model: the AIMD formula on integers.
            let (min, max, threshold) = (2usize, 60usize, 100u64);
            let mut model = 30usize;
            let mut l = Limiter::new(
                Aimd::new().min_limit(min).max_limit(max).initial_limit(30)
                    .latency_threshold(Duration::from_millis(threshold)),
            );
            for (rtt, in_flight, signal) in samples {
                let slow = rtt > threshold;
                let decrease = signal == Signal::Failure || slow;
                if decrease {
                    model = ((model * 9) / 10).max(min);
                } else if signal == Signal::Success && in_flight * 2 >= model {
                    model = (model + 1).min(max);
                }
                let got = l.sample(Sample::new(Duration::from_millis(rtt), in_flight, signal));
                prop_assert_eq!(got, model);
            }
        }
    }
}
