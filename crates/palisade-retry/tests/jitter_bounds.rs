//! Property tests for the pure backoff module against a small reference model.

use std::time::Duration;

use palisade_retry::{Backoff, Jitter};
use proptest::prelude::*;

fn duration() -> impl Strategy<Value = Duration> {
    (0u64..=60_000_000_000).prop_map(Duration::from_nanos)
}

fn sample() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..1.0f64,
        1 => Just(0.0),
        1 => Just(0.999_999_999_999),
        1 => any::<f64>(),
    ]
}

/// `min(cap, base × m^(retry−1))` in integer nanoseconds.
fn model_exponential(base: Duration, multiplier: u32, cap: Duration, retry: u32) -> Duration {
    let mut nanos = base.as_nanos();
    for _ in 1..retry {
        nanos = nanos.saturating_mul(u128::from(multiplier));
        if nanos >= cap.as_nanos() {
            return cap;
        }
    }
    Duration::from_nanos(u64::try_from(nanos.min(cap.as_nanos())).unwrap())
}

proptest! {
    #[test]
    fn full_jitter_is_within_zero_and_the_delay(d in duration(), u in sample(), n in 1u32..50) {
        let got = Backoff::fixed(d).delay(n, Duration::ZERO, Jitter::Full, u);
        prop_assert!(got <= d, "{got:?} > {d:?}");
    }

    #[test]
    fn equal_jitter_is_within_half_and_the_delay(d in duration(), u in sample()) {
        let got = Backoff::fixed(d).delay(1, Duration::ZERO, Jitter::Equal, u);
        prop_assert!(got >= d / 2 && got <= d, "{got:?} not in [{:?}, {d:?}]", d / 2);
    }

    #[test]
    fn no_jitter_is_exact(d in duration(), u in sample()) {
        prop_assert_eq!(Backoff::fixed(d).delay(3, Duration::ZERO, Jitter::None, u), d);
    }

    #[test]
    fn exponential_matches_the_model(
        base_ms in 0u64..2_000,
        extra_ms in 0u64..60_000,
        multiplier in 1u32..5,
        retry in 1u32..80,
        u in sample(),
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base + Duration::from_millis(extra_ms);
        let backoff = Backoff::exponential(base, f64::from(multiplier), cap);
        let expected = model_exponential(base, multiplier, cap, retry);
        prop_assert_eq!(backoff.ceiling(retry, Duration::ZERO), expected);
        prop_assert_eq!(backoff.delay(retry, Duration::ZERO, Jitter::None, u), expected);
        let full = backoff.delay(retry, Duration::ZERO, Jitter::Full, u);
        prop_assert!(full <= expected);
        let equal = backoff.delay(retry, Duration::ZERO, Jitter::Equal, u);
        prop_assert!(equal >= expected / 2 && equal <= expected);
    }

    #[test]
    fn exponential_never_exceeds_its_cap_for_fractional_multipliers(
        base_ms in 1u64..1_000,
        extra_ms in 0u64..10_000,
        multiplier in 1.0f64..10.0,
        retry in 1u32..1_000,
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base + Duration::from_millis(extra_ms);
        let got = Backoff::exponential(base, multiplier, cap).ceiling(retry, Duration::ZERO);
        prop_assert!(got >= base && got <= cap, "{got:?} outside [{base:?}, {cap:?}]");
    }

    #[test]
    fn decorrelated_stays_between_base_and_three_times_the_previous(
        base_ms in 1u64..1_000,
        extra_ms in 0u64..30_000,
        previous in duration(),
        u in sample(),
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base + Duration::from_millis(extra_ms);
        let got = Backoff::decorrelated(base, cap).delay(2, previous, Jitter::None, u);
        let upper = previous.max(base).saturating_mul(3).min(cap);
        prop_assert!(got >= base && got <= upper, "{got:?} outside [{base:?}, {upper:?}]");
        // The jitter setting does not apply to decorrelated delays.
        prop_assert_eq!(got, Backoff::decorrelated(base, cap).delay(2, previous, Jitter::Full, u));
    }

    #[test]
    fn decorrelated_chains_stay_bounded(
        base_ms in 1u64..100,
        extra_ms in 0u64..5_000,
        samples in proptest::collection::vec(0.0..1.0f64, 1..40),
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base + Duration::from_millis(extra_ms);
        let backoff = Backoff::decorrelated(base, cap);
        let mut previous = Duration::ZERO;
        for (i, u) in samples.into_iter().enumerate() {
            let next = backoff.delay(u32::try_from(i).unwrap() + 1, previous, Jitter::None, u);
            prop_assert!(next >= base && next <= cap);
            prop_assert!(next <= previous.max(base) * 3);
            previous = next;
        }
    }
}
