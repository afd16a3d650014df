//! The builder, its validation and the configuration it produces.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};

use crate::event::CircuitBreakerEvent;
use crate::handle::CircuitBreakerHandle;
use crate::layer::{CircuitBreakerLayer, build_core};
use crate::state::{MAX_PROBES, State};
use crate::window::{MAX_COUNT_WINDOW, MAX_TIME_WINDOW_SECS};

/// The longest duration any setting accepts: one year (365 days).
///
/// A longer wait means "never", which a breaker cannot mean: a breaker that
/// never probes again needs `ForcedOpen`. The bound keeps every deadline the
/// breaker computes (a wait grown by the multiplier, jittered, added to the
/// current time) far from overflowing its nanosecond clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The default [`minimum_calls`](CircuitBreakerBuilder::minimum_calls) of a
/// count window (capped at the window's size): Resilience4j's.
pub const DEFAULT_MINIMUM_CALLS: u32 = 100;

/// The default [`minimum_calls`](CircuitBreakerBuilder::minimum_calls) of a
/// time window.
///
/// A time window holds whatever the traffic brings, so a minimum the traffic
/// never reaches would keep the breaker from ever opening: 100 calls in a
/// 60 s window needs nearly 2 calls a second. Ten calls is reached by a
/// service called once every 6 s, and still too few for one or two failures
/// to trip the breaker alone at the default 50 %.
pub const DEFAULT_TIME_WINDOW_MINIMUM_CALLS: u32 = 10;

/// How the breaker's window is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlidingWindow {
    /// The last N calls, exactly (1 to 1 000 000).
    Count(u32),
    /// The calls of the last N seconds, in one-second buckets (1 s to 1 h,
    /// whole seconds).
    Time(Duration),
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
#[non_exhaustive]
pub struct ConfigSummary {
    /// The window.
    pub sliding_window: SlidingWindow,
    /// The failure rate (percent) at or above which the breaker opens; `None`
    /// when failure-rate trips are off.
    pub failure_rate_threshold: Option<f64>,
    /// Calls that take at least this long are slow; `None`: no slow-call
    /// detection.
    pub slow_call_duration: Option<Duration>,
    /// The slow-call rate (percent) at or above which the breaker opens;
    /// `None` without a slow-call duration.
    pub slow_call_rate_threshold: Option<f64>,
    /// Failures in a row that open the breaker, whatever the window says.
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before its rates are judged.
    pub minimum_calls: u32,
    /// The wait in the open state after the first trip.
    pub wait_in_open: Duration,
    /// The factor the wait grows by on each further trip without closing.
    pub wait_in_open_multiplier: f64,
    /// The longest wait in the open state.
    pub max_wait_in_open: Duration,
    /// The random spread of each wait: `0.2` is ±20 %.
    pub wait_in_open_jitter: f64,
    /// Probe calls admitted in the half-open state.
    pub permitted_calls_in_half_open: u32,
    /// How long the probes may take to decide before the breaker re-opens.
    pub max_wait_in_half_open: Duration,
    /// The state the breaker starts in.
    pub initial_state: State,
}

/// The validated configuration the state machine runs on.
#[derive(Clone, Debug)]
pub(crate) struct Config {
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

/// What the builder hands to the breaker besides the configuration.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) name: Arc<str>,
    pub(crate) listeners: Listeners<CircuitBreakerEvent>,
    pub(crate) seed: u64,
}

/// Builds a [`CircuitBreakerLayer`]; start with
/// [`CircuitBreakerLayer::builder`].
///
/// Every setter is named after its setting (the gateway's TOML keys use the
/// same names). Nothing is checked until [`build`](Self::build), which
/// returns a [`ConfigError`] naming the first bad setting. Durations are
/// bounded by [`MAX_DURATION`] (one year).
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`count_window`](Self::count_window) / [`time_window`](Self::time_window) | count window of 100 calls | 1 to 1 000 000 calls / 1 s to 1 h, whole seconds |
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
/// | [`permitted_calls_in_half_open`](Self::permitted_calls_in_half_open) | 10 | 1 to 4 095 |
/// | [`max_wait_in_half_open`](Self::max_wait_in_half_open) | 60 s | > 0, ≤ 1 year |
/// | [`initial_state`](Self::initial_state) | `Closed` | `Closed`, `Disabled`, `MetricsOnly`, `ForcedOpen` |
/// | [`classifier`](Self::classifier) | [`ErrorsAsFailures`] | any [`Classify`](palisade_core::Classify) |
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakerBuilder<C = ErrorsAsFailures> {
    name: Arc<str>,
    sliding_window: SlidingWindow,
    failure_rate_threshold: f64,
    trip_on_failure_rate: bool,
    slow_call_duration: Option<Duration>,
    slow_call_rate_threshold: Option<f64>,
    consecutive_failures: Option<u32>,
    minimum_calls: Option<u32>,
    wait_in_open: Duration,
    wait_in_open_multiplier: f64,
    max_wait_in_open: Option<Duration>,
    wait_in_open_jitter: f64,
    permitted_calls_in_half_open: u32,
    max_wait_in_half_open: Duration,
    initial_state: State,
    jitter_seed: Option<u64>,
    listeners: Listeners<CircuitBreakerEvent>,
    registry: Option<Registry<CircuitBreakerHandle>>,
    classifier: C,
}

impl CircuitBreakerBuilder<ErrorsAsFailures> {
    /// A builder for the breaker called `name`, with the defaults above.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            sliding_window: SlidingWindow::Count(100),
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
            permitted_calls_in_half_open: 10,
            max_wait_in_half_open: Duration::from_secs(60),
            initial_state: State::Closed,
            jitter_seed: None,
            listeners: Listeners::new(),
            registry: None,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> CircuitBreakerBuilder<C> {
    /// Judge the last `calls` calls (a count window, the default, of 100).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.sliding_window = SlidingWindow::Count(calls);
        self
    }

    /// Judge the calls of the last `duration` (a time window in one-second
    /// buckets; whole seconds, 1 s to 1 h). The cost per call does not
    /// depend on the call rate.
    pub fn time_window(mut self, duration: Duration) -> Self {
        self.sliding_window = SlidingWindow::Time(duration);
        self
    }

    /// Sets the window directly.
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.sliding_window = window;
        self
    }

    /// Open when at least `percent` of the calls in the window failed
    /// (default 50; in (0, 100]).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate_threshold = percent;
        self
    }

    /// Whether the failure rate opens the breaker (default `true`). Turn it
    /// off to trip on [`consecutive_failures`](Self::consecutive_failures)
    /// (and/or slow calls) only; a half-open probe that fails then re-opens
    /// the breaker.
    pub fn trip_on_failure_rate(mut self, enabled: bool) -> Self {
        self.trip_on_failure_rate = enabled;
        self
    }

    /// Calls that take at least `duration` (from `call` until the inner
    /// future completes) are slow. Enables slow-call detection (off by
    /// default).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = Some(duration);
        self
    }

    /// Open when at least `percent` of the calls in the window were slow
    /// (default 100; in (0, 100]). Needs a
    /// [`slow_call_duration`](Self::slow_call_duration).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_call_rate_threshold = Some(percent);
        self
    }

    /// Open after `failures` failures in a row, without waiting for the
    /// minimum number of calls (off by default). Combines with the rate
    /// thresholds: whichever is reached first opens the breaker.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// Do not judge the rates before the window holds `calls` calls.
    ///
    /// Default: for a count window [`DEFAULT_MINIMUM_CALLS`] (100), capped at
    /// the window's size; for a time window
    /// [`DEFAULT_TIME_WINDOW_MINIMUM_CALLS`] (10). A count window's size caps
    /// any value; a time window keeps the value set, so set one the traffic
    /// reaches within the window (calls per second × the window's seconds):
    /// a minimum above it means the breaker never opens on the rates.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = Some(calls);
        self
    }

    /// How long the breaker stays open after the first trip (default 30 s).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait_in_open = wait;
        self
    }

    /// Each further opening without closing in between waits this many times
    /// longer than the last (default 1: no growth), up to
    /// [`max_wait_in_open`](Self::max_wait_in_open).
    pub fn wait_in_open_multiplier(mut self, factor: f64) -> Self {
        self.wait_in_open_multiplier = factor;
        self
    }

    /// The longest wait in the open state, jitter included (default 10 ×
    /// [`wait_in_open`](Self::wait_in_open), at most [`MAX_DURATION`]).
    pub fn max_wait_in_open(mut self, max: Duration) -> Self {
        self.max_wait_in_open = Some(max);
        self
    }

    /// Spreads each wait at random by up to `fraction` of itself either way
    /// (default 0; `0.2` is ±20 %), so breakers that tripped together do not
    /// probe together.
    pub fn wait_in_open_jitter(mut self, fraction: f64) -> Self {
        self.wait_in_open_jitter = fraction;
        self
    }

    /// Seeds the jitter's random generator, for reproducible waits (default:
    /// a random seed).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Probe calls admitted in the half-open state (default 10; 1 to 4 095).
    /// The breaker decides as soon as the outcome is certain: it re-opens
    /// once the probes' failure (or slow-call) rate over all permitted calls
    /// is bound to reach its threshold, and closes once it cannot.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.permitted_calls_in_half_open = calls;
        self
    }

    /// If every probe permit is taken and the probes have not decided within
    /// this time of entering the half-open state (hung calls), the breaker
    /// re-opens (default 60 s). It is never stuck half-open.
    pub fn max_wait_in_half_open(mut self, max: Duration) -> Self {
        self.max_wait_in_half_open = max;
        self
    }

    /// The state the breaker starts in (default `Closed`; also `Disabled`,
    /// `MetricsOnly` or `ForcedOpen`).
    pub fn initial_state(mut self, state: State) -> Self {
        self.initial_state = state;
        self
    }

    /// Decides how each completed call counts (default [`ErrorsAsFailures`];
    /// with the `http` feature, `StatusClassifier::server_errors()` suits
    /// `http::Response`s). A closure `Fn(&Result<T, E>) -> Outcome` works.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2> {
        CircuitBreakerBuilder {
            name: self.name,
            sliding_window: self.sliding_window,
            failure_rate_threshold: self.failure_rate_threshold,
            trip_on_failure_rate: self.trip_on_failure_rate,
            slow_call_duration: self.slow_call_duration,
            slow_call_rate_threshold: self.slow_call_rate_threshold,
            consecutive_failures: self.consecutive_failures,
            minimum_calls: self.minimum_calls,
            wait_in_open: self.wait_in_open,
            wait_in_open_multiplier: self.wait_in_open_multiplier,
            max_wait_in_open: self.max_wait_in_open,
            wait_in_open_jitter: self.wait_in_open_jitter,
            permitted_calls_in_half_open: self.permitted_calls_in_half_open,
            max_wait_in_half_open: self.max_wait_in_half_open,
            initial_state: self.initial_state,
            jitter_seed: self.jitter_seed,
            listeners: self.listeners,
            registry: self.registry,
            classifier,
        }
    }

    /// Calls `listener` with every [`CircuitBreakerEvent`]: each state
    /// transition (once, on the thread that performed it), each rejected
    /// call, and each admitted call that completes. With a listener, calls
    /// are timed even without a slow-call duration (for the outcome's
    /// duration). A listener that panics is caught and logged.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the breaker in `registry` under its name. If a breaker of
    /// that name is already registered, [`build`](Self::build) returns a layer
    /// over it: one breaker per downstream, however many times the stack is
    /// built. The builder is validated all the same; only its classifier is
    /// used then (the registered breaker keeps its settings and listeners).
    ///
    /// ```
    /// use palisade_circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, Registry, State};
    ///
    /// let registry = Registry::<CircuitBreakerHandle>::new();
    /// // Built once per route, one breaker all the same.
    /// let a = CircuitBreakerLayer::builder("orders").registry(&registry).build().unwrap();
    /// let b = CircuitBreakerLayer::builder("orders").registry(&registry).build().unwrap();
    /// assert!(a.handle().same_as(&b.handle()));
    ///
    /// registry.get("orders").unwrap().force_open();
    /// let snapshots = registry.snapshots();
    /// assert_eq!(snapshots.len(), 1);
    /// assert_eq!(snapshots[0].state, State::ForcedOpen);
    /// ```
    pub fn registry(mut self, registry: &Registry<CircuitBreakerHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates the settings and builds the layer: one breaker, shared by
    /// every service the layer (or a clone of it) builds. With a
    /// [`registry`](Self::registry), the registered breaker of this name if
    /// there is one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose `field` is the name of the first invalid
    /// setter.
    pub fn build(mut self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let registry = self.registry.take();
        let (config, parts, classifier) = self.into_parts()?;
        match registry {
            None => Ok(CircuitBreakerLayer::from_parts(config, parts, classifier)),
            Some(registry) => {
                let name = Arc::clone(&parts.name);
                let handle = registry.get_or_insert_with(&name, || {
                    CircuitBreakerHandle::new(build_core(config, parts))
                });
                Ok(handle.layer_with(classifier))
            }
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Validates and splits the builder.
    pub(crate) fn into_parts(self) -> Result<(Config, Parts, C), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
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
            failure_ppm: self.trip_on_failure_rate.then_some(failure_ppm),
            slow_ppm: self.slow_call_duration.map(|_| slow_ppm),
            initial_state: self.initial_state,
            summary,
        };
        let seed = self.jitter_seed.unwrap_or_else(random_seed);
        let parts = Parts {
            name: self.name,
            listeners: self.listeners,
            seed,
        };
        Ok((config, parts, self.classifier))
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

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // std's hasher keys are random per process and per `RandomState`.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5EED);
    hasher.finish()
}

impl<C> fmt::Debug for CircuitBreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("sliding_window", &self.sliding_window)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("trip_on_failure_rate", &self.trip_on_failure_rate)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("minimum_calls", &self.minimum_calls)
            .field("wait_in_open", &self.wait_in_open)
            .field("wait_in_open_multiplier", &self.wait_in_open_multiplier)
            .field("max_wait_in_open", &self.max_wait_in_open)
            .field("wait_in_open_jitter", &self.wait_in_open_jitter)
            .field(
                "permitted_calls_in_half_open",
                &self.permitted_calls_in_half_open,
            )
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .field("initial_state", &self.initial_state)
            .finish_non_exhaustive()
    }
}
