//! Backoff schedules: how long to wait before each retry.
//!
//! Everything here is pure: a delay is a function of the retry number, the
//! previous delay (for decorrelated jitter) and one random sample in `[0, 1)`
//! supplied by the caller, so schedules are tested without a clock or an RNG.
//!
//! | schedule | delay before retry `n` (1-based), before jitter |
//! |---|---|
//! | [`Backoff::fixed(d)`](Backoff::fixed) | `d` |
//! | [`Backoff::exponential(base, m, cap)`](Backoff::exponential) | `min(cap, base × m^(n−1))` |
//! | [`Backoff::decorrelated(base, cap)`](Backoff::decorrelated) | `min(cap, uniform(base, 3 × previous))`, its own jitter |
//!
//! | jitter | delay for a computed `d` |
//! |---|---|
//! | [`Jitter::None`] | `d` |
//! | [`Jitter::Full`] (default) | `uniform(0, d)` |
//! | [`Jitter::Equal`] | `d/2 + uniform(0, d/2)` |
//!
//! Full jitter spreads retries the most and is what AWS's analysis and
//! Envoy recommend; equal jitter keeps a floor of half the delay.
//! Decorrelated jitter (AWS's "decorrelated jitter") grows from the previous
//! delay and ignores the [`Jitter`] setting.
//!
//! ```
//! use palisade_retry::{Backoff, Jitter};
//! use std::time::Duration;
//!
//! let backoff = Backoff::exponential(Duration::from_millis(100), 2.0, Duration::from_secs(1));
//! let ms = |n| backoff.delay(n, Duration::ZERO, Jitter::None, 0.0).as_millis();
//! assert_eq!([ms(1), ms(2), ms(3), ms(4), ms(5)], [100, 200, 400, 800, 1000]);
//!
//! // Full jitter scales the delay by the sample.
//! let jittered = backoff.delay(2, Duration::ZERO, Jitter::Full, 0.25);
//! assert_eq!(jittered, Duration::from_millis(50));
//! ```

use std::fmt;
use std::time::Duration;

use palisade_core::ConfigError;

/// How the delay before each retry grows. Build one with
/// [`fixed`](Self::fixed), [`exponential`](Self::exponential) or
/// [`decorrelated`](Self::decorrelated); the retry builder validates it.
///
/// With the `serde` feature it is a table tagged by `kind`, durations as
/// strings (`"250ms"`, `"2s"`); a field left out takes the default shown:
///
/// | `kind` | fields (default) |
/// |---|---|
/// | `none` | none: retry at once, same as `fixed` with `delay = "0s"` |
/// | `fixed` | `delay` (`"50ms"`) |
/// | `exponential` | `base` (`"50ms"`), `multiplier` (2.0), `cap` (`"2s"`) |
/// | `decorrelated` | `base` (`"50ms"`), `cap` (`"2s"`) |
///
/// ```toml
/// backoff = { kind = "exponential", base = "25ms", multiplier = 2.0, cap = "1s" }
/// ```
#[derive(Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "repr::Repr", into = "repr::Repr")
)]
pub struct Backoff(Schedule);

#[derive(Clone, Copy, PartialEq)]
enum Schedule {
    Fixed(Duration),
    Exponential {
        base: Duration,
        multiplier: f64,
        cap: Duration,
    },
    Decorrelated {
        base: Duration,
        cap: Duration,
    },
}

/// Randomisation applied to a fixed or exponential delay, so that clients
/// that failed together do not retry together.
///
/// With the `serde` feature: `"none"`, `"full"` or `"equal"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Jitter {
    /// The computed delay, exactly. Deterministic; meant for tests and for
    /// a single client.
    None,
    /// A uniform delay in `[0, d]`: the widest spread (the default).
    #[default]
    Full,
    /// `d/2` plus a uniform delay in `[0, d/2]`: keeps at least half the delay.
    Equal,
}

impl Jitter {
    /// A lowercase label for logs: `none`, `full`, `equal`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Full => "full",
            Self::Equal => "equal",
        }
    }
}

impl Backoff {
    /// The same delay before every retry (`Duration::ZERO` retries at once).
    /// Valid up to `MAX_DURATION` (one year).
    #[must_use]
    pub const fn fixed(delay: Duration) -> Self {
        Self(Schedule::Fixed(delay))
    }

    /// No delay at all: retry at once. Same as `fixed(Duration::ZERO)`.
    #[must_use]
    pub const fn none() -> Self {
        Self::fixed(Duration::ZERO)
    }

    /// `base` before the first retry, multiplied by `multiplier` for each
    /// later one, never more than `cap`. Valid when `multiplier` is finite and
    /// at least 1 and `base <= cap <= MAX_DURATION` (one year).
    #[must_use]
    pub const fn exponential(base: Duration, multiplier: f64, cap: Duration) -> Self {
        Self(Schedule::Exponential {
            base,
            multiplier,
            cap,
        })
    }

    /// AWS's decorrelated jitter: each delay is uniform between `base` and
    /// three times the previous delay, never more than `cap`. Random by
    /// construction: the [`Jitter`] setting does not apply. Valid when
    /// `0 < base <= cap <= MAX_DURATION` (one year).
    #[must_use]
    pub const fn decorrelated(base: Duration, cap: Duration) -> Self {
        Self(Schedule::Decorrelated { base, cap })
    }

    /// The delay before retry `retry` (1-based) before any jitter; for
    /// decorrelated jitter, the largest delay it can pick after `previous`.
    #[must_use]
    pub fn ceiling(&self, retry: u32, previous: Duration) -> Duration {
        match self.0 {
            Schedule::Fixed(delay) => delay,
            Schedule::Exponential {
                base,
                multiplier,
                cap,
            } => exponential(base, multiplier, cap, retry),
            Schedule::Decorrelated { base, cap } => decorrelated_upper(base, cap, previous),
        }
    }

    /// The delay before retry `retry` (1-based; retry 1 is the second attempt).
    ///
    /// `previous` is the delay used before the previous retry (zero before the
    /// first); only decorrelated jitter reads it. `sample` is a uniform random
    /// number in `[0, 1)`; values outside are clamped, NaN counts as 0.
    #[must_use]
    pub fn delay(&self, retry: u32, previous: Duration, jitter: Jitter, sample: f64) -> Duration {
        let sample = clamp_sample(sample);
        match self.0 {
            Schedule::Fixed(delay) => apply_jitter(delay, jitter, sample),
            Schedule::Exponential {
                base,
                multiplier,
                cap,
            } => apply_jitter(exponential(base, multiplier, cap, retry), jitter, sample),
            Schedule::Decorrelated { base, cap } => {
                let upper = decorrelated_upper(base, cap, previous);
                base + scale(upper.saturating_sub(base), sample).min(upper.saturating_sub(base))
            }
        }
    }

    /// Checks the parameters; `field` names the setter for the error. Every
    /// duration must be at most `max` (the settings pass
    /// [`MAX_DURATION`](crate::MAX_DURATION), one year).
    pub(crate) fn validate(&self, field: &'static str, max: Duration) -> Result<(), ConfigError> {
        let bounded = |what: &str, d: Duration| {
            if d > max {
                return Err(ConfigError::new(
                    field,
                    format!("{what} must be at most one year ({max:?}), got {d:?}"),
                ));
            }
            Ok(())
        };
        match self.0 {
            Schedule::Fixed(delay) => bounded("fixed delay", delay),
            Schedule::Exponential {
                base,
                multiplier,
                cap,
            } => {
                bounded("exponential base", base)?;
                bounded("exponential cap", cap)?;
                if !multiplier.is_finite() || multiplier < 1.0 {
                    return Err(ConfigError::new(
                        field,
                        format!("exponential multiplier must be finite and >= 1, got {multiplier}"),
                    ));
                }
                if base > cap {
                    return Err(ConfigError::new(
                        field,
                        format!("exponential base ({base:?}) must not exceed its cap ({cap:?})"),
                    ));
                }
                Ok(())
            }
            Schedule::Decorrelated { base, cap } => {
                bounded("decorrelated base", base)?;
                bounded("decorrelated cap", cap)?;
                if base.is_zero() {
                    return Err(ConfigError::new(
                        field,
                        "decorrelated base must be greater than zero, got 0s",
                    ));
                }
                if base > cap {
                    return Err(ConfigError::new(
                        field,
                        format!("decorrelated base ({base:?}) must not exceed its cap ({cap:?})"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// `true` for decorrelated jitter, whose delays are random on their own.
    pub(crate) const fn is_decorrelated(&self) -> bool {
        matches!(self.0, Schedule::Decorrelated { .. })
    }
}

impl Default for Backoff {
    /// Exponential from 50 ms, doubling, capped at 2 s.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(50), 2.0, Duration::from_secs(2))
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Schedule::Fixed(delay) => f.debug_tuple("Fixed").field(&delay).finish(),
            Schedule::Exponential {
                base,
                multiplier,
                cap,
            } => f
                .debug_struct("Exponential")
                .field("base", &base)
                .field("multiplier", &multiplier)
                .field("cap", &cap)
                .finish(),
            Schedule::Decorrelated { base, cap } => f
                .debug_struct("Decorrelated")
                .field("base", &base)
                .field("cap", &cap)
                .finish(),
        }
    }
}

/// The `serde` form of a [`Backoff`]: a table tagged by `kind`.
#[cfg(feature = "serde")]
mod repr {
    use std::time::Duration;

    use super::{Backoff, Schedule};

    const fn base() -> Duration {
        Duration::from_millis(50)
    }

    const fn cap() -> Duration {
        Duration::from_secs(2)
    }

    const fn multiplier() -> f64 {
        2.0
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    pub(super) enum Repr {
        None,
        Fixed {
            #[serde(with = "humantime_serde", default = "base")]
            delay: Duration,
        },
        Exponential {
            #[serde(with = "humantime_serde", default = "base")]
            base: Duration,
            #[serde(default = "multiplier")]
            multiplier: f64,
            #[serde(with = "humantime_serde", default = "cap")]
            cap: Duration,
        },
        Decorrelated {
            #[serde(with = "humantime_serde", default = "base")]
            base: Duration,
            #[serde(with = "humantime_serde", default = "cap")]
            cap: Duration,
        },
    }

    impl From<Repr> for Backoff {
        fn from(repr: Repr) -> Self {
            match repr {
                Repr::None => Self::none(),
                Repr::Fixed { delay } => Self::fixed(delay),
                Repr::Exponential {
                    base,
                    multiplier,
                    cap,
                } => Self::exponential(base, multiplier, cap),
                Repr::Decorrelated { base, cap } => Self::decorrelated(base, cap),
            }
        }
    }

    impl From<Backoff> for Repr {
        fn from(backoff: Backoff) -> Self {
            match backoff.0 {
                Schedule::Fixed(delay) if delay.is_zero() => Self::None,
                Schedule::Fixed(delay) => Self::Fixed { delay },
                Schedule::Exponential {
                    base,
                    multiplier,
                    cap,
                } => Self::Exponential {
                    base,
                    multiplier,
                    cap,
                },
                Schedule::Decorrelated { base, cap } => Self::Decorrelated { base, cap },
            }
        }
    }
}

fn clamp_sample(sample: f64) -> f64 {
    if sample.is_nan() {
        0.0
    } else {
        sample.clamp(0.0, 1.0)
    }
}

/// `min(cap, base × multiplier^(retry−1))`, computed in nanoseconds so that
/// integer multipliers stay exact.
fn exponential(base: Duration, multiplier: f64, cap: Duration, retry: u32) -> Duration {
    let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let nanos = nanos_f64(base) * multiplier.powi(exp);
    if nanos.is_finite() && nanos < nanos_f64(cap) {
        from_nanos_f64(nanos).min(cap)
    } else {
        cap
    }
}

fn decorrelated_upper(base: Duration, cap: Duration, previous: Duration) -> Duration {
    previous
        .max(base)
        .saturating_mul(3)
        .min(cap)
        .max(base.min(cap))
}

fn apply_jitter(delay: Duration, jitter: Jitter, sample: f64) -> Duration {
    match jitter {
        Jitter::None => delay,
        Jitter::Full => scale(delay, sample).min(delay),
        Jitter::Equal => {
            let half = delay / 2;
            let rest = delay - half;
            (half + scale(rest, sample).min(rest)).min(delay)
        }
    }
}

/// `d × sample`, rounded down to the nanosecond.
fn scale(d: Duration, sample: f64) -> Duration {
    from_nanos_f64((nanos_f64(d) * sample).floor())
}

// Delays above 2^53 ns (104 days) lose sub-microsecond precision, which no
// backoff needs.
fn nanos_f64(d: Duration) -> f64 {
    d.as_nanos() as f64
}

/// Rounds a finite, non-negative nanosecond count to a `Duration`, saturating.
fn from_nanos_f64(nanos: f64) -> Duration {
    if nanos.is_nan() || nanos <= 0.0 {
        return Duration::ZERO;
    }
    let max = u64::MAX as f64;
    if nanos >= max {
        return Duration::from_nanos(u64::MAX);
    }
    Duration::from_nanos(nanos.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fixed_is_constant() {
        let b = Backoff::fixed(MS * 30);
        for n in [1, 2, 10, u32::MAX] {
            assert_eq!(b.delay(n, Duration::ZERO, Jitter::None, 0.9), MS * 30);
        }
        assert_eq!(
            Backoff::none().delay(3, MS, Jitter::Full, 0.5),
            Duration::ZERO
        );
    }

    #[test]
    fn exponential_doubles_then_caps() {
        let b = Backoff::exponential(MS * 100, 2.0, MS * 1000);
        let got: Vec<_> = (1..=6).map(|n| b.ceiling(n, Duration::ZERO)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000].map(|m| MS * m));
        assert_eq!(b.ceiling(u32::MAX, Duration::ZERO), MS * 1000);
        let b = Backoff::exponential(MS * 100, 1.5, Duration::from_secs(10));
        assert_eq!(b.ceiling(3, Duration::ZERO), MS * 225);
    }

    #[test]
    fn jitter_shapes() {
        let d = MS * 100;
        let b = Backoff::fixed(d);
        assert_eq!(
            b.delay(1, Duration::ZERO, Jitter::Full, 0.0),
            Duration::ZERO
        );
        assert_eq!(b.delay(1, Duration::ZERO, Jitter::Full, 0.5), MS * 50);
        assert_eq!(b.delay(1, Duration::ZERO, Jitter::Equal, 0.0), MS * 50);
        assert_eq!(b.delay(1, Duration::ZERO, Jitter::Equal, 0.5), MS * 75);
        // Out-of-range samples are clamped, NaN is zero.
        assert_eq!(b.delay(1, Duration::ZERO, Jitter::Full, 7.0), d);
        assert_eq!(
            b.delay(1, Duration::ZERO, Jitter::Full, f64::NAN),
            Duration::ZERO
        );
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay() {
        let b = Backoff::decorrelated(MS * 10, MS * 1000);
        assert_eq!(b.delay(1, Duration::ZERO, Jitter::None, 0.0), MS * 10);
        assert_eq!(b.delay(1, Duration::ZERO, Jitter::None, 0.5), MS * 20);
        assert_eq!(b.delay(2, MS * 100, Jitter::None, 0.5), MS * 155);
        // Three times 900 ms is capped at 1 s: uniform in [10 ms, 1 s].
        assert_eq!(b.delay(9, MS * 900, Jitter::None, 0.5), MS * 505);
        assert_eq!(b.ceiling(9, MS * 900), MS * 1000);
    }

    #[test]
    fn validation() {
        let max = Duration::from_secs(365 * 24 * 60 * 60);
        let ok = |b: Backoff| b.validate("backoff", max).is_ok();
        assert!(ok(Backoff::fixed(Duration::ZERO)));
        assert!(ok(Backoff::default()));
        assert!(!ok(Backoff::exponential(MS, 0.5, MS * 10)));
        assert!(!ok(Backoff::exponential(MS, f64::NAN, MS * 10)));
        assert!(!ok(Backoff::exponential(MS, f64::INFINITY, MS * 10)));
        assert!(!ok(Backoff::exponential(MS * 20, 2.0, MS * 10)));
        assert!(!ok(Backoff::decorrelated(Duration::ZERO, MS * 10)));
        assert!(!ok(Backoff::decorrelated(MS * 20, MS * 10)));
        let err = Backoff::exponential(MS, 0.5, MS)
            .validate("backoff", max)
            .unwrap_err();
        assert_eq!(err.field(), "backoff");
    }
}
