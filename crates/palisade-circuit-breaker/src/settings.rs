//! [`CircuitBreakerSettings`]: every setting of a circuit breaker that is
//! plain data, its default and its bounds; and the validated configuration the
//! state machine runs on.
//!
//! The builder's setters, the handle's snapshot and (with the `serde`
//! feature) a config file use these field names; unknown keys are refused and
//! durations are strings (`"250ms"`, `"30s"`, `"1m"`). What is not plain data
//! stays on the builder: the name, the classifier, listeners and a registry.

use std::fmt;
use std::time::Duration;

use palisade_core::ConfigError;

use crate::kind::State;

/// The largest count window.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1_000_000;
/// The longest time window, in seconds.
pub(crate) const MAX_TIME_WINDOW_SECS: u64 = 3_600;
/// The most probes a half-open breaker can permit.
pub(crate) const MAX_PROBES: u32 = 4_095;

/// The longest duration any setting accepts: one year (365 days).
///
/// A longer wait means "never", which a breaker cannot mean: a breaker that
/// never probes again needs `ForcedOpen`. The bound keeps every deadline the
/// breaker computes (a wait grown by the multiplier, jittered, added to the
/// current time) far from overflowing its nanosecond clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The default [`minimum_calls`](CircuitBreakerSettings::minimum_calls) of a
/// count window (capped at the window's size): Resilience4j's.
pub const DEFAULT_MINIMUM_CALLS: u32 = 100;

/// The default [`minimum_calls`](CircuitBreakerSettings::minimum_calls) of a
/// time window.
///
/// A time window holds whatever the traffic brings, so a minimum the traffic
/// never reaches would keep the breaker from ever opening: 100 calls in a
/// 60 s window needs nearly 2 calls a second. Ten calls is reached by a
/// service called once every 6 s, and still too few for one or two failures
/// to trip the breaker alone at the default 50 %.
pub const DEFAULT_TIME_WINDOW_MINIMUM_CALLS: u32 = 10;

/// How the breaker's window is measured. With the `serde` feature:
/// `{ count = 100 }` or `{ time = "60s" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SlidingWindow {
    /// The last N calls, exactly (1 to 1 000 000).
    Count(u32),
    /// The calls of the last N seconds, in one-second buckets (1 s to 1 h,
    /// whole seconds).
    Time(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
}

impl fmt::Display for SlidingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "last {n} calls"),
            Self::Time(d) => write!(f, "last {} s", d.as_secs()),
        }
    }
}

/// A breaker's effective settings, as validated by the builder (defaults
/// filled in, the minimum number of calls capped at a count window's size).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ConfigSummary {
    /// The window.
    pub sliding_window: SlidingWindow,
    /// The failure rate (percent) at or above which the breaker opens; `None`
    /// when failure-rate trips are off.
    pub failure_rate_threshold: Option<f64>,
    /// Calls that take at least this long are slow; `None`: no slow-call
    /// detection.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub slow_call_duration: Option<Duration>,
    /// The slow-call rate (percent) at or above which the breaker opens;
    /// `None` without a slow-call duration.
    pub slow_call_rate_threshold: Option<f64>,
    /// Failures in a row that open the breaker, whatever the window says.
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before its rates are judged.
    pub minimum_calls: u32,
    /// The wait in the open state after the first trip.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub wait_in_open: Duration,
    /// The factor the wait grows by on each further trip without closing.
    pub wait_in_open_multiplier: f64,
    /// The longest wait in the open state.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait_in_open: Duration,
    /// The random spread of each wait: `0.2` is ±20 %.
    pub wait_in_open_jitter: f64,
    /// Probe calls admitted in the half-open state.
    pub permitted_calls_in_half_open: u32,
    /// How long the probes may take to decide before the breaker re-opens.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait_in_half_open: Duration,
    /// The state the breaker starts in.
    pub initial_state: State,
}

/// The validated configuration the state machine runs on.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The settings as given.
    pub(crate) settings: CircuitBreakerSettings,
    pub(crate) summary: ConfigSummary,
    /// The failure-rate threshold in parts per million.
    pub(crate) failure_ppm: Option<u64>,
    /// The slow-call-rate threshold in parts per million.
    pub(crate) slow_ppm: Option<u64>,
    pub(crate) initial_state: State,
}

impl Config {
    /// `true` if calls must be timed (slow-call detection).
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.summary.slow_call_duration.is_some()
    }
}

/// Every setting of a circuit breaker that is plain data. `Default` gives the
/// documented defaults; [`validate`](Self::validate) checks the bounds, with
/// no side effect (nothing is built or registered).
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`sliding_window`](Self::sliding_window) | count window of 100 calls | 1 to 1 000 000 calls / 1 s to 1 h, whole seconds |
/// | [`failure_rate_threshold`](Self::failure_rate_threshold) | 50 % | (0, 100] |
/// | [`trip_on_failure_rate`](Self::trip_on_failure_rate) | `true` | a trip condition must remain |
/// | [`slow_call_duration`](Self::slow_call_duration) | none (no slow-call detection) | > 0, ≤ 1 year |
/// | [`slow_call_rate_threshold`](Self::slow_call_rate_threshold) | 100 % | (0, 100], needs a slow-call duration |
/// | [`consecutive_failures`](Self::consecutive_failures) | none | ≥ 1 |
/// | [`minimum_calls`](Self::minimum_calls) | count window: 100, capped at its size; time window: 10 | ≥ 1 |
/// | [`wait_in_open`](Self::wait_in_open) | 30 s | > 0, ≤ 1 year |
/// | [`wait_in_open_multiplier`](Self::wait_in_open_multiplier) | 1 (no growth) | ≥ 1, finite |
/// | [`max_wait_in_open`](Self::max_wait_in_open) | 10 × `wait_in_open`, at most 1 year | ≥ `wait_in_open`, ≤ 1 year |
/// | [`wait_in_open_jitter`](Self::wait_in_open_jitter) | 0 | [0, 1] |
/// | [`jitter_seed`](Self::jitter_seed) | none (a random seed) | |
/// | [`permitted_calls_in_half_open`](Self::permitted_calls_in_half_open) | 10 | 1 to 4 095 |
/// | [`max_wait_in_half_open`](Self::max_wait_in_half_open) | 60 s | > 0, ≤ 1 year |
/// | [`initial_state`](Self::initial_state) | `Closed` | `Closed`, `Disabled`, `MetricsOnly`, `ForcedOpen` |
///
/// ```
/// use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitBreakerSettings, SlidingWindow};
///
/// let settings = CircuitBreakerSettings {
///     sliding_window: SlidingWindow::Count(20),
///     minimum_calls: Some(10),
///     ..CircuitBreakerSettings::default()
/// };
/// assert!(settings.validate().is_ok());
/// let layer = CircuitBreakerLayer::builder("inventory").settings(settings.clone()).build()?;
/// assert_eq!(layer.handle().settings(), &settings);
///
/// let bad = CircuitBreakerSettings { failure_rate_threshold: 0.0, ..settings };
/// assert_eq!(bad.validate().unwrap_err().field(), "failure_rate_threshold");
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct CircuitBreakerSettings {
    /// The window the rates are judged over.
    pub sliding_window: SlidingWindow,
    /// Open when at least this percentage of the calls in the window failed.
    pub failure_rate_threshold: f64,
    /// Whether the failure rate opens the breaker; off, the breaker trips on
    /// `consecutive_failures` and/or slow calls only.
    pub trip_on_failure_rate: bool,
    /// Calls that take at least this long are slow (`None`: no slow-call
    /// detection).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub slow_call_duration: Option<Duration>,
    /// Open when at least this percentage of the calls in the window were
    /// slow (`None`: 100 once a slow-call duration is set).
    pub slow_call_rate_threshold: Option<f64>,
    /// Open after this many failures in a row, without waiting for the
    /// minimum number of calls.
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before its rates are judged (`None`: the
    /// window's default, [`DEFAULT_MINIMUM_CALLS`] or
    /// [`DEFAULT_TIME_WINDOW_MINIMUM_CALLS`]).
    pub minimum_calls: Option<u32>,
    /// How long the breaker stays open after the first trip.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub wait_in_open: Duration,
    /// The factor the wait grows by on each further trip without closing.
    pub wait_in_open_multiplier: f64,
    /// The longest wait in the open state (`None`: 10 × `wait_in_open`, at
    /// most [`MAX_DURATION`]).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait_in_open: Option<Duration>,
    /// The random spread of each wait: `0.2` is ±20 %.
    pub wait_in_open_jitter: f64,
    /// Seeds the jitter's generator, for reproducible waits (`None`: random).
    pub jitter_seed: Option<u64>,
    /// Probe calls admitted in the half-open state.
    pub permitted_calls_in_half_open: u32,
    /// How long the probes may take to decide before the breaker re-opens.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait_in_half_open: Duration,
    /// The state the breaker starts in.
    pub initial_state: State,
}

impl Default for CircuitBreakerSettings {
    fn default() -> Self {
        Self {
            sliding_window: SlidingWindow::Count(DEFAULT_MINIMUM_CALLS),
            failure_rate_threshold: 50.0,
            trip_on_failure_rate: true,
            slow_call_duration: None,
            slow_call_rate_threshold: None,
            consecutive_failures: None,
            minimum_calls: None,
            wait_in_open: Duration::from_secs(30),
            wait_in_open_multiplier: 1.0,
            max_wait_in_open: None,
            wait_in_open_jitter: 0.0,
            jitter_seed: None,
            permitted_calls_in_half_open: 10,
            max_wait_in_half_open: Duration::from_secs(60),
            initial_state: State::Closed,
        }
    }
}

impl CircuitBreakerSettings {
    /// Checks every setting against its bounds, without building anything.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose `field` names the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resolve().map(|_| ())
    }

    /// Validates, and fills in the defaults that depend on other settings.
    pub(crate) fn resolve(&self) -> Result<Config, ConfigError> {
        match self.sliding_window {
            SlidingWindow::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => {
                return Err(ConfigError::new(
                    "count_window",
                    format!("must be 1 to {MAX_COUNT_WINDOW} calls, got {n}"),
                ));
            }
            SlidingWindow::Time(d)
                if d.subsec_nanos() != 0
                    || d.as_secs() == 0
                    || d.as_secs() > MAX_TIME_WINDOW_SECS =>
            {
                return Err(ConfigError::new(
                    "time_window",
                    format!(
                        "must be whole seconds from 1 s to {MAX_TIME_WINDOW_SECS} s, got {d:?}"
                    ),
                ));
            }
            _ => {}
        }
        let failure_ppm = ppm("failure_rate_threshold", self.failure_rate_threshold)?;
        let slow_rate = self.slow_call_rate_threshold.unwrap_or(100.0);
        let slow_ppm = ppm("slow_call_rate_threshold", slow_rate)?;
        match self.slow_call_duration {
            Some(d) if d.is_zero() => {
                return Err(ConfigError::new(
                    "slow_call_duration",
                    "must be more than zero",
                ));
            }
            Some(d) => at_most_max("slow_call_duration", d)?,
            None if self.slow_call_rate_threshold.is_some() => {
                return Err(ConfigError::new(
                    "slow_call_rate_threshold",
                    "has no effect without a slow_call_duration",
                ));
            }
            _ => {}
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1, got 0",
            ));
        }
        if !self.trip_on_failure_rate
            && self.consecutive_failures.is_none()
            && self.slow_call_duration.is_none()
        {
            return Err(ConfigError::new(
                "trip_on_failure_rate",
                "turning it off leaves no way to open: set consecutive_failures or slow_call_duration",
            ));
        }
        let minimum_calls = match self.minimum_calls {
            Some(0) => {
                return Err(ConfigError::new(
                    "minimum_calls",
                    "must be at least 1, got 0",
                ));
            }
            Some(n) => n,
            None => match self.sliding_window {
                SlidingWindow::Count(_) => DEFAULT_MINIMUM_CALLS,
                SlidingWindow::Time(_) => DEFAULT_TIME_WINDOW_MINIMUM_CALLS,
            },
        };
        let minimum_calls = match self.sliding_window {
            SlidingWindow::Count(n) => minimum_calls.min(n),
            SlidingWindow::Time(_) => minimum_calls,
        };
        if self.wait_in_open.is_zero() {
            return Err(ConfigError::new("wait_in_open", "must be more than zero"));
        }
        at_most_max("wait_in_open", self.wait_in_open)?;
        let m = self.wait_in_open_multiplier;
        if !m.is_finite() || m < 1.0 {
            return Err(ConfigError::new(
                "wait_in_open_multiplier",
                format!("must be a finite number of at least 1, got {m}"),
            ));
        }
        let max_wait_in_open = self
            .max_wait_in_open
            .unwrap_or_else(|| self.wait_in_open.saturating_mul(10).min(MAX_DURATION));
        at_most_max("max_wait_in_open", max_wait_in_open)?;
        if max_wait_in_open < self.wait_in_open {
            return Err(ConfigError::new(
                "max_wait_in_open",
                format!(
                    "must be at least wait_in_open ({:?}), got {max_wait_in_open:?}",
                    self.wait_in_open
                ),
            ));
        }
        let j = self.wait_in_open_jitter;
        if !(0.0..=1.0).contains(&j) {
            return Err(ConfigError::new(
                "wait_in_open_jitter",
                format!("must be in [0, 1], got {j}"),
            ));
        }
        let probes = self.permitted_calls_in_half_open;
        if probes == 0 || probes > MAX_PROBES {
            return Err(ConfigError::new(
                "permitted_calls_in_half_open",
                format!("must be 1 to {MAX_PROBES}, got {probes}"),
            ));
        }
        if self.max_wait_in_half_open.is_zero() {
            return Err(ConfigError::new(
                "max_wait_in_half_open",
                "must be more than zero",
            ));
        }
        at_most_max("max_wait_in_half_open", self.max_wait_in_half_open)?;
        if matches!(self.initial_state, State::Open | State::HalfOpen) {
            return Err(ConfigError::new(
                "initial_state",
                format!(
                    "must be closed, disabled, metrics_only or forced_open, got {}",
                    self.initial_state
                ),
            ));
        }
        let summary = ConfigSummary {
            sliding_window: self.sliding_window,
            failure_rate_threshold: self
                .trip_on_failure_rate
                .then_some(self.failure_rate_threshold),
            slow_call_duration: self.slow_call_duration,
            slow_call_rate_threshold: self.slow_call_duration.map(|_| slow_rate),
            consecutive_failures: self.consecutive_failures,
            minimum_calls,
            wait_in_open: self.wait_in_open,
            wait_in_open_multiplier: m,
            max_wait_in_open,
            wait_in_open_jitter: j,
            permitted_calls_in_half_open: probes,
            max_wait_in_half_open: self.max_wait_in_half_open,
            initial_state: self.initial_state,
        };
        let config = Config {
            settings: self.clone(),
            failure_ppm: self.trip_on_failure_rate.then_some(failure_ppm),
            slow_ppm: self.slow_call_duration.map(|_| slow_ppm),
            initial_state: self.initial_state,
            summary,
        };
        Ok(config)
    }
}

/// Refuses a duration above [`MAX_DURATION`].
fn at_most_max(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d > MAX_DURATION {
        return Err(ConfigError::new(
            field,
            format!("must be at most one year ({MAX_DURATION:?}), got {d:?}"),
        ));
    }
    Ok(())
}

/// A threshold in percent as parts per million.
fn ppm(field: &'static str, percent: f64) -> Result<u64, ConfigError> {
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(ConfigError::new(
            field,
            format!("must be in (0, 100], got {percent}"),
        ));
    }
    // In (0, 1e6]: the cast is exact after rounding.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ppm = (percent * 10_000.0).round() as u64;
    if ppm == 0 {
        return Err(ConfigError::new(
            field,
            format!("must be at least 0.0001 (the resolution), got {percent}"),
        ));
    }
    Ok(ppm)
}
