//! [`ChaosSettings`]: what a chaos layer injects, its defaults and bounds.
//!
//! Plain data: what the builder starts from, what
//! [`ChaosHandle`](crate::ChaosHandle) reads and switches at runtime, and
//! what [`ChaosHandle::reset`](crate::ChaosHandle::reset) returns to. The
//! builder's setters, the gateway's TOML keys and the handle's snapshot use
//! these field names. With the `serde` feature the settings (de)serialize,
//! unknown keys are refused, and durations are strings (`"250ms"`, `"2s"`).

use std::time::Duration;

use palisade_core::ConfigError;

/// What a chaos layer is set to inject: the figures a
/// [`ChaosHandle`](crate::ChaosHandle) reads and writes, and what
/// [`ChaosBuilder`](crate::ChaosBuilder) starts from. `Default` injects
/// nothing.
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`enabled`](Self::enabled) | `true` | |
/// | [`outage`](Self::outage) | `false` | |
/// | [`latency_rate`](Self::latency_rate) | 0 | in `[0, 1]` |
/// | [`latency_min`](Self::latency_min), [`latency_max`](Self::latency_max) | 0 s, 0 s | `latency_min <= latency_max` |
/// | [`error_rate`](Self::error_rate) | 0 | in `[0, 1]` |
/// | [`abort_rate`](Self::abort_rate) | 0 | in `[0, 1]` |
///
/// The seed of the decision sequence is not a setting here: it is fixed when
/// the layer is built ([`ChaosBuilder::seed`](crate::ChaosBuilder::seed)),
/// while these can change at any time.
///
/// ```
/// use palisade_chaos::ChaosSettings;
/// use std::time::Duration;
///
/// let slow = ChaosSettings {
///     latency_rate: 0.5,
///     latency_min: Duration::from_millis(100),
///     latency_max: Duration::from_millis(300),
///     ..ChaosSettings::default()
/// };
/// assert!(slow.validate().is_ok());
/// let bad = ChaosSettings { error_rate: 1.5, ..ChaosSettings::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), "error_rate");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ChaosSettings {
    /// Master switch: when `false` nothing is injected, outage included.
    pub enabled: bool,
    /// When `true` (and enabled), every call fails at once.
    pub outage: bool,
    /// Fraction of calls, in `[0, 1]`, that get added latency.
    pub latency_rate: f64,
    /// The least latency added to a delayed call.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub latency_min: Duration,
    /// The most latency added to a delayed call; the amount is uniform in
    /// `[latency_min, latency_max]`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub latency_max: Duration,
    /// Fraction of calls, in `[0, 1]`, that fail with an injected error.
    pub error_rate: f64,
    /// Fraction of calls, in `[0, 1]`, that never answer.
    pub abort_rate: f64,
}

impl Default for ChaosSettings {
    /// Enabled, with every rate at zero and no outage: nothing is injected
    /// until a rate or the outage is set.
    fn default() -> Self {
        Self {
            enabled: true,
            outage: false,
            latency_rate: 0.0,
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            error_rate: 0.0,
            abort_rate: 0.0,
        }
    }
}

impl ChaosSettings {
    /// Checks every rate is in `[0, 1]` and `latency_min <= latency_max`;
    /// has no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: `latency_rate`,
    /// `error_rate` or `abort_rate` outside `[0, 1]`, or `latency` when the
    /// minimum is above the maximum.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, rate) in [
            ("latency_rate", self.latency_rate),
            ("error_rate", self.error_rate),
            ("abort_rate", self.abort_rate),
        ] {
            check_rate(field, rate)?;
        }
        check_latency(self.latency_min, self.latency_max)
    }
}

/// `Ok` for a rate in `[0, 1]`; a [`ConfigError`] on `field` otherwise.
pub(crate) fn check_rate(field: &'static str, rate: f64) -> Result<(), ConfigError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a fraction in [0, 1], got {rate}"),
        ))
    }
}

/// `Ok` for `min <= max`; a [`ConfigError`] on `latency` otherwise.
pub(crate) fn check_latency(min: Duration, max: Duration) -> Result<(), ConfigError> {
    if min > max {
        return Err(ConfigError::new(
            "latency",
            format!("the minimum {min:?} is above the maximum {max:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_validation() {
        assert!(check_rate("r", 0.0).is_ok());
        assert!(check_rate("r", 1.0).is_ok());
        assert!(check_rate("r", 0.25).is_ok());
        assert!(check_rate("r", -0.1).is_err());
        assert!(check_rate("r", 1.01).is_err());
        assert!(check_rate("r", f64::NAN).is_err());
        assert!(check_rate("r", f64::INFINITY).is_err());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let d = ChaosSettings::default;
        assert!(d().validate().is_ok());
        let cases = [
            (
                ChaosSettings {
                    latency_rate: 2.0,
                    ..d()
                },
                "latency_rate",
            ),
            (
                ChaosSettings {
                    error_rate: -1.0,
                    ..d()
                },
                "error_rate",
            ),
            (
                ChaosSettings {
                    abort_rate: f64::NAN,
                    ..d()
                },
                "abort_rate",
            ),
            (
                ChaosSettings {
                    latency_min: Duration::from_secs(2),
                    latency_max: Duration::from_secs(1),
                    ..d()
                },
                "latency",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(settings.validate().unwrap_err().field(), field);
        }
    }
}
