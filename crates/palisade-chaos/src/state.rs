//! The pure decision (a leaf): given the settings and one draw, what happens
//! to a call.
//!
//! Synchronous, no I/O, no clock. A call takes the next index of the layer's
//! sequence; [`draws`] turns `(seed, index)` into independent uniform numbers,
//! and [`decide`] turns those and the settings into a [`Plan`]. The same seed
//! and the same settings give the same plan for the same index, whatever the
//! thread or the time.

use std::time::Duration;

use crate::settings::ChaosSettings;

/// What the chaos layer does to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Latency added before the call proceeds (or fails).
    pub(crate) delay: Option<Duration>,
    /// The fault injected after the delay, if any.
    pub(crate) fault: Fault,
}

impl Plan {
    pub(crate) const PASS: Self = Self {
        delay: None,
        fault: Fault::None,
    };
}

/// The fault injected into one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The call goes through to the inner service.
    None,
    /// The call fails with an injected error (rate-based).
    Error,
    /// The call never answers.
    Abort,
    /// The call fails because an outage is switched on.
    Outage,
}

/// Four independent uniform draws for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draws {
    pub(crate) latency: u64,
    pub(crate) latency_amount: u64,
    pub(crate) abort: u64,
    pub(crate) error: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective mix with full avalanche.
#[inline]
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The draws for call number `index` of the sequence seeded by `seed`:
/// SplitMix64 stepped from `seed + (index * 4 + k) * golden`, so every
/// `(seed, index)` pair has its own four values and no state is shared
/// between calls but the index.
#[inline]
pub(crate) const fn draws(seed: u64, index: u64) -> Draws {
    let base = seed.wrapping_add(index.wrapping_mul(4).wrapping_mul(GOLDEN));
    Draws {
        latency: mix(base.wrapping_add(GOLDEN)),
        latency_amount: mix(base.wrapping_add(GOLDEN.wrapping_mul(2))),
        abort: mix(base.wrapping_add(GOLDEN.wrapping_mul(3))),
        error: mix(base.wrapping_add(GOLDEN.wrapping_mul(4))),
    }
}

/// `true` with probability `rate` for a uniform `draw`: the top 53 bits as a
/// fraction in `[0, 1)` compared with the rate. A rate of 0 never hits, 1
/// always does.
#[inline]
pub(crate) fn hit(draw: u64, rate: f64) -> bool {
    // 2^-53: the fraction has the full precision of an f64 mantissa.
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 exactly
    let fraction = (draw >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
    fraction < rate
}

/// A latency in `[min, max]`, uniform, from `draw`.
#[inline]
pub(crate) fn latency_between(min: Duration, max: Duration, draw: u64) -> Duration {
    if max <= min {
        return min;
    }
    let span = max - min;
    let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    let offset = if span_nanos == u64::MAX {
        draw
    } else {
        draw % (span_nanos + 1)
    };
    min + Duration::from_nanos(offset)
}

/// The plan for one call.
///
/// | enabled | outage | result |
/// |---|---|---|
/// | no | any | pass, nothing injected |
/// | yes | on | fail at once with an outage, no latency |
/// | yes | off | latency with `latency_rate`; then abort with `abort_rate`, else error with `error_rate`, else pass |
///
/// Latency and a fault may both apply to one call (a slow failure), as in
/// Envoy's fault filter, where a delay precedes an abort.
pub(crate) fn decide(settings: &ChaosSettings, draws: Draws) -> Plan {
    if !settings.enabled {
        return Plan::PASS;
    }
    if settings.outage {
        return Plan {
            delay: None,
            fault: Fault::Outage,
        };
    }
    let delay =
        if settings.latency_max > Duration::ZERO && hit(draws.latency, settings.latency_rate) {
            Some(latency_between(
                settings.latency_min,
                settings.latency_max,
                draws.latency_amount,
            ))
        } else {
            None
        };
    let fault = if hit(draws.abort, settings.abort_rate) {
        Fault::Abort
    } else if hit(draws.error, settings.error_rate) {
        Fault::Error
    } else {
        Fault::None
    };
    Plan { delay, fault }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings() -> ChaosSettings {
        ChaosSettings::default()
    }

    #[test]
    fn disabled_passes_even_in_an_outage() {
        let mut s = settings();
        s.enabled = false;
        s.outage = true;
        s.error_rate = 1.0;
        assert_eq!(decide(&s, draws(1, 1)), Plan::PASS);
    }

    #[test]
    fn outage_fails_at_once_without_latency() {
        let mut s = settings();
        s.outage = true;
        s.latency_rate = 1.0;
        s.latency_max = Duration::from_secs(1);
        s.latency_min = Duration::from_secs(1);
        let plan = decide(&s, draws(7, 3));
        assert_eq!(plan.fault, Fault::Outage);
        assert_eq!(plan.delay, None);
    }

    #[test]
    fn rates_of_zero_and_one_are_exact() {
        let mut s = settings();
        for i in 0..10_000 {
            assert_eq!(decide(&s, draws(3, i)), Plan::PASS);
        }
        s.error_rate = 1.0;
        for i in 0..10_000 {
            assert_eq!(decide(&s, draws(3, i)).fault, Fault::Error);
        }
        s.abort_rate = 1.0;
        for i in 0..10_000 {
            assert_eq!(decide(&s, draws(3, i)).fault, Fault::Abort, "abort wins");
        }
    }

    #[test]
    fn hit_extremes() {
        assert!(!hit(u64::MAX, 0.0));
        assert!(hit(u64::MAX, 1.0));
        assert!(hit(0, f64::MIN_POSITIVE));
        assert!(!hit(0, 0.0));
    }

    #[test]
    fn latency_with_zero_max_is_never_injected() {
        let mut s = settings();
        s.latency_rate = 1.0;
        assert_eq!(decide(&s, draws(0, 0)).delay, None);
    }

    proptest! {
        #[test]
        fn latency_stays_in_range(min in 0u64..10_000_000, extra in 0u64..10_000_000, draw: u64) {
            let min = Duration::from_nanos(min);
            let max = min + Duration::from_nanos(extra);
            let got = latency_between(min, max, draw);
            prop_assert!(got >= min && got <= max);
        }

        #[test]
        fn draws_are_a_function_of_seed_and_index(seed: u64, index: u64) {
            prop_assert_eq!(draws(seed, index), draws(seed, index));
        }

        #[test]
        fn frequency_matches_rate(seed: u64, rate in 0.0f64..=1.0) {
            // 4,000 draws: the count is within 5 standard deviations (+1 for
            // rounding) of rate * n, a bound a correct sampler misses with
            // probability below 1e-6.
            let n = 4_000u32;
            let hits = (0..u64::from(n)).filter(|&i| hit(draws(seed, i).error, rate)).count();
            let mean = rate * f64::from(n);
            let sd = (f64::from(n) * rate * (1.0 - rate)).sqrt();
            #[allow(clippy::cast_precision_loss)]
            let diff = (hits as f64 - mean).abs();
            prop_assert!(diff <= 5.0 * sd + 1.0, "rate {} hits {} of {}", rate, hits, n);
        }
    }
}
