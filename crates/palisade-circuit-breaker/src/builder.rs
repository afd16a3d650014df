//! [`CircuitBreakerBuilder`]: the settings, the classifier, listeners and a
//! registry, validated once by `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};

use crate::event::CircuitBreakerEvent;
use crate::handle::CircuitBreakerHandle;
use crate::layer::CircuitBreakerLayer;
use crate::settings::{CircuitBreakerSettings, Config, SlidingWindow};
use crate::shared::{Parts, build_core};
use crate::state::State;

impl CircuitBreakerLayer<ErrorsAsFailures> {
    /// A builder for the breaker called `name` (it labels metrics, logs,
    /// errors and registry entries).
    pub fn builder(name: impl Into<Arc<str>>) -> CircuitBreakerBuilder<ErrorsAsFailures> {
        CircuitBreakerBuilder::new(name)
    }
}

/// Builds a [`CircuitBreakerLayer`]; start with
/// [`CircuitBreakerLayer::builder`].
///
/// Every setter is named after its setting (the gateway's TOML keys use the
/// same names). Nothing is checked until [`build`](Self::build), which
/// returns a [`ConfigError`] naming the first bad setting. Durations are
/// bounded by [`MAX_DURATION`](crate::MAX_DURATION) (one year).
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
    settings: CircuitBreakerSettings,
    listeners: Listeners<CircuitBreakerEvent>,
    registry: Option<Registry<CircuitBreakerHandle>>,
    classifier: C,
}

impl CircuitBreakerBuilder<ErrorsAsFailures> {
    /// A builder for the breaker called `name`, with the defaults above.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            settings: CircuitBreakerSettings::default(),
            listeners: Listeners::new(),
            registry: None,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> CircuitBreakerBuilder<C> {
    /// Takes every plain-data setting at once, replacing what the setters
    /// set so far (later setters still apply on top). [`build`](Self::build)
    /// validates them.
    pub fn settings(mut self, settings: CircuitBreakerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Judge the last `calls` calls (a count window, the default, of 100).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.settings.sliding_window = SlidingWindow::Count(calls);
        self
    }

    /// Judge the calls of the last `duration` (a time window in one-second
    /// buckets; whole seconds, 1 s to 1 h). The cost per call does not
    /// depend on the call rate.
    pub fn time_window(mut self, duration: Duration) -> Self {
        self.settings.sliding_window = SlidingWindow::Time(duration);
        self
    }

    /// Sets the window directly.
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.settings.sliding_window = window;
        self
    }

    /// Open when at least `percent` of the calls in the window failed
    /// (default 50; in (0, 100]).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.settings.failure_rate_threshold = percent;
        self
    }

    /// Whether the failure rate opens the breaker (default `true`). Turn it
    /// off to trip on [`consecutive_failures`](Self::consecutive_failures)
    /// (and/or slow calls) only; a half-open probe that fails then re-opens
    /// the breaker.
    pub fn trip_on_failure_rate(mut self, enabled: bool) -> Self {
        self.settings.trip_on_failure_rate = enabled;
        self
    }

    /// Calls that take at least `duration` (from `call` until the inner
    /// future completes) are slow. Enables slow-call detection (off by
    /// default).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.settings.slow_call_duration = Some(duration);
        self
    }

    /// Open when at least `percent` of the calls in the window were slow
    /// (default 100; in (0, 100]). Needs a
    /// [`slow_call_duration`](Self::slow_call_duration).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.settings.slow_call_rate_threshold = Some(percent);
        self
    }

    /// Open after `failures` failures in a row, without waiting for the
    /// minimum number of calls (off by default). Combines with the rate
    /// thresholds: whichever is reached first opens the breaker.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.settings.consecutive_failures = Some(failures);
        self
    }

    /// Do not judge the rates before the window holds `calls` calls.
    ///
    /// Default: for a count window [`DEFAULT_MINIMUM_CALLS`](crate::DEFAULT_MINIMUM_CALLS) (100), capped at
    /// the window's size; for a time window
    /// [`DEFAULT_TIME_WINDOW_MINIMUM_CALLS`](crate::DEFAULT_TIME_WINDOW_MINIMUM_CALLS) (10). A count window's size caps
    /// any value; a time window keeps the value set, so set one the traffic
    /// reaches within the window (calls per second × the window's seconds):
    /// a minimum above it means the breaker never opens on the rates.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.settings.minimum_calls = Some(calls);
        self
    }

    /// How long the breaker stays open after the first trip (default 30 s).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.settings.wait_in_open = wait;
        self
    }

    /// Each further opening without closing in between waits this many times
    /// longer than the last (default 1: no growth), up to
    /// [`max_wait_in_open`](Self::max_wait_in_open).
    pub fn wait_in_open_multiplier(mut self, factor: f64) -> Self {
        self.settings.wait_in_open_multiplier = factor;
        self
    }

    /// The longest wait in the open state, jitter included (default 10 ×
    /// [`wait_in_open`](Self::wait_in_open), at most [`MAX_DURATION`](crate::MAX_DURATION)).
    pub fn max_wait_in_open(mut self, max: Duration) -> Self {
        self.settings.max_wait_in_open = Some(max);
        self
    }

    /// Spreads each wait at random by up to `fraction` of itself either way
    /// (default 0; `0.2` is ±20 %), so breakers that tripped together do not
    /// probe together.
    pub fn wait_in_open_jitter(mut self, fraction: f64) -> Self {
        self.settings.wait_in_open_jitter = fraction;
        self
    }

    /// Seeds the jitter's random generator, for reproducible waits (default:
    /// a random seed).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.settings.jitter_seed = Some(seed);
        self
    }

    /// Probe calls admitted in the half-open state (default 10; 1 to 4 095).
    /// The breaker decides as soon as the outcome is certain: it re-opens
    /// once the probes' failure (or slow-call) rate over all permitted calls
    /// is bound to reach its threshold, and closes once it cannot.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.settings.permitted_calls_in_half_open = calls;
        self
    }

    /// If every probe permit is taken and the probes have not decided within
    /// this time of entering the half-open state (hung calls), the breaker
    /// re-opens (default 60 s). It is never stuck half-open.
    pub fn max_wait_in_half_open(mut self, max: Duration) -> Self {
        self.settings.max_wait_in_half_open = max;
        self
    }

    /// The state the breaker starts in (default `Closed`; also `Disabled`,
    /// `MetricsOnly` or `ForcedOpen`).
    pub fn initial_state(mut self, state: State) -> Self {
        self.settings.initial_state = state;
        self
    }

    /// Decides how each completed call counts (default [`ErrorsAsFailures`];
    /// with the `http` feature, `StatusClassifier::server_errors()` suits
    /// `http::Response`s). A closure `Fn(&Result<T, E>) -> Outcome` works.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2> {
        CircuitBreakerBuilder {
            name: self.name,
            settings: self.settings,
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
        let config = self.settings.resolve()?;
        let seed = self.settings.jitter_seed.unwrap_or_else(random_seed);
        let parts = Parts {
            name: self.name,
            listeners: self.listeners,
            seed,
        };
        Ok((config, parts, self.classifier))
    }
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
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
