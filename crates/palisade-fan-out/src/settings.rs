//! [`FanOutSettings`] and [`BranchSettings`]: every setting of a fan-out and
//! of its branches that is plain data, with its default.
//!
//! The builder's and the branch's setters, the gateway's TOML keys and the
//! snapshot use these field names. With the `serde` feature the settings
//! (de)serialize, unknown keys are refused, and durations are strings
//! (`"250ms"`, `"2s"`; humantime's syntax).
//!
//! What is code rather than data stays on the builder and the branch: each
//! branch's service and request mapping (or HTTP target), its fallback, and
//! the merge.

use std::time::Duration;

use palisade_core::ConfigError;

/// The settings of a whole fan-out. `Default`: no deadline, every branch at
/// once.
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`deadline`](Self::deadline) | none | > 0 |
/// | [`max_in_flight`](Self::max_in_flight) | none: every branch at once | ≥ 1 |
///
/// ```
/// use palisade_fan_out::FanOutSettings;
/// use std::time::Duration;
///
/// let settings = FanOutSettings {
///     deadline: Some(Duration::from_millis(300)),
///     ..FanOutSettings::default()
/// };
/// assert!(settings.validate().is_ok());
/// let bad = FanOutSettings { max_in_flight: Some(0), ..settings };
/// assert_eq!(bad.validate().unwrap_err().field(), "max_in_flight");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct FanOutSettings {
    /// The deadline for the whole gather, from its first poll: when it
    /// elapses, optional branches still pending count as `deadline` failures
    /// and the answer holds what completed; a required branch still pending
    /// fails the gather. `None`: no deadline (each branch's own timeout, if
    /// any, still applies).
    #[cfg_attr(
        feature = "serde",
        serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")
    )]
    pub deadline: Option<Duration>,
    /// At most this many branches of one gather started (becoming ready or
    /// running) at once; the others start in declaration order as earlier
    /// ones finish. Per gather, not across gathers. `None`: every branch at
    /// once.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_in_flight: Option<usize>,
}

impl FanOutSettings {
    /// Checks every setting; no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: a zero `deadline`, a
    /// zero `max_in_flight`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("deadline", "must be more than zero"));
        }
        if self.max_in_flight == Some(0) {
            return Err(ConfigError::new(
                "max_in_flight",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

/// The settings of one branch. `Default`: optional, no timeout of its own.
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`required`](Self::required) | `false` | |
/// | [`timeout`](Self::timeout) | none | > 0 |
///
/// ```
/// use palisade_fan_out::BranchSettings;
/// use std::time::Duration;
///
/// let settings = BranchSettings { required: true, timeout: Some(Duration::from_millis(250)) };
/// assert!(settings.validate().is_ok());
/// let bad = BranchSettings { timeout: Some(Duration::ZERO), ..settings };
/// assert_eq!(bad.validate().unwrap_err().field(), "timeout");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BranchSettings {
    /// `true`: the gather fails without this branch (if it fails and has no
    /// fallback, the gather fails at once and the other calls are
    /// cancelled). `false`: the gather answers without it, marked partial.
    pub required: bool,
    /// The branch's own timeout, from its start (readiness included) to its
    /// answer. `None`: only the fan-out's deadline, if any, bounds it.
    #[cfg_attr(
        feature = "serde",
        serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")
    )]
    pub timeout: Option<Duration>,
}

impl BranchSettings {
    /// Checks every setting; no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `timeout` when it is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("timeout", "must be more than zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(FanOutSettings::default().validate().is_ok());
        assert!(BranchSettings::default().validate().is_ok());
        assert!(!BranchSettings::default().required);
    }

    #[test]
    fn each_bad_setting_is_named() {
        let zero = Some(Duration::ZERO);
        let cases = [
            (
                FanOutSettings {
                    deadline: zero,
                    ..FanOutSettings::default()
                }
                .validate(),
                "deadline",
            ),
            (
                FanOutSettings {
                    max_in_flight: Some(0),
                    ..FanOutSettings::default()
                }
                .validate(),
                "max_in_flight",
            ),
            (
                BranchSettings {
                    timeout: zero,
                    ..BranchSettings::default()
                }
                .validate(),
                "timeout",
            ),
        ];
        for (result, field) in cases {
            assert_eq!(result.unwrap_err().field(), field);
        }
        // Huge values are valid: the gather never overflows an instant.
        let huge = FanOutSettings {
            deadline: Some(Duration::MAX),
            max_in_flight: Some(usize::MAX),
        };
        assert!(huge.validate().is_ok());
    }
}
