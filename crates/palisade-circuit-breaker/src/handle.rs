//! The runtime handle: read a breaker's state and figures, change its mode.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::Handle;
use tokio::time::Instant;

use crate::settings::{CircuitBreakerSettings, ConfigSummary};
use crate::shared::BreakerCore;
use crate::state::{Now, State, nanos_since};

/// Reads and controls one breaker at runtime. Cheap to clone; every clone
/// (and every layer and service of the breaker) sees the same breaker. What a
/// [`Registry<CircuitBreakerHandle>`](palisade_core::Registry) holds.
///
/// Reading the state performs the transitions that are due (an open breaker
/// whose wait has elapsed reports `HalfOpen`), exactly as the next call would.
///
/// ```
/// use palisade_circuit_breaker::{CircuitBreakerLayer, State};
///
/// let layer = CircuitBreakerLayer::builder("orders").build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.state(), State::Closed);
/// handle.force_open();
/// assert_eq!(handle.state(), State::ForcedOpen);
/// handle.reset();
/// assert_eq!(handle.snapshot().calls, 0);
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    core: Arc<BreakerCore>,
}

/// The figures of a half-open breaker's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HalfOpenProbes {
    /// Probe calls admitted in this half-open period.
    pub permitted: u32,
    /// Probes admitted and not yet completed.
    pub in_flight: u32,
    /// Probes that completed and were recorded.
    pub completed: u32,
    /// Recorded probes that failed.
    pub failed: u32,
    /// Recorded probes that were slow.
    pub slow: u32,
}

/// A breaker's state and figures at one instant, for admin APIs and
/// dashboards. Plain data: serialize it as you like.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CircuitBreakerSnapshot {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state.
    pub state: State,
    /// Failure rate over the window's calls, in percent (0 when empty).
    pub failure_rate: f64,
    /// Slow-call rate over the window's calls, in percent (0 when empty).
    pub slow_call_rate: f64,
    /// Calls in the window. In Open and HalfOpen, the window that tripped the
    /// breaker; a new, empty window starts when it closes.
    pub calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `true` once the window holds enough calls for its rates to count.
    pub minimum_calls_reached: bool,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// Calls rejected since the breaker was built.
    pub not_permitted_calls: u64,
    /// Open: the time until the next probe is admitted.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub next_probe_in: Option<Duration>,
    /// HalfOpen: the probes' figures.
    pub half_open: Option<HalfOpenProbes>,
    /// The effective configuration.
    pub config: ConfigSummary,
}

impl CircuitBreakerHandle {
    pub(crate) const fn new(core: Arc<BreakerCore>) -> Self {
        Self { core }
    }

    /// The breaker's state machine, shared with every layer over it.
    pub(crate) const fn core(&self) -> &Arc<BreakerCore> {
        &self.core
    }

    fn now(&self) -> Now {
        Now::lazy(self.core.base())
    }

    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.core.observer().name()
    }

    /// The current state, after the transitions that are due.
    #[must_use]
    pub fn state(&self) -> State {
        self.core.state(&mut self.now())
    }

    /// The effective configuration.
    #[must_use]
    pub fn config(&self) -> &ConfigSummary {
        &self.core.config().summary
    }

    /// The settings the breaker was built with, as given (see
    /// [`config`](Self::config) for the effective values, defaults filled
    /// in).
    #[must_use]
    pub fn settings(&self) -> &CircuitBreakerSettings {
        &self.core.config().settings
    }

    /// Calls rejected since the breaker was built.
    #[must_use]
    pub fn not_permitted_calls(&self) -> u64 {
        self.core.not_permitted()
    }

    /// The state and figures now.
    #[must_use]
    pub fn snapshot(&self) -> CircuitBreakerSnapshot {
        let f = self.core.figures(&mut self.now());
        let config = self.config().clone();
        let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        CircuitBreakerSnapshot {
            name: Arc::clone(self.core.observer().name()),
            state: f.state,
            failure_rate: f.totals.failure_rate(),
            slow_call_rate: f.totals.slow_call_rate(),
            calls: f.totals.calls,
            failed_calls: f.totals.failed,
            slow_calls: f.totals.slow,
            minimum_calls_reached: f.totals.calls >= u64::from(config.minimum_calls),
            consecutive_failures: f.consecutive_failures,
            not_permitted_calls: f.not_permitted,
            next_probe_in: f.next_probe_in,
            half_open: f.probes.map(|p| HalfOpenProbes {
                permitted: config.permitted_calls_in_half_open,
                in_flight: narrow(p.issued.saturating_sub(p.done)),
                completed: narrow(p.done),
                failed: narrow(p.failed),
                slow: narrow(p.slow),
            }),
            config,
        }
    }

    /// Back to Closed with an empty window, and the open wait back to its
    /// base value. Calls in flight are not recorded.
    pub fn reset(&self) {
        self.core.force(State::Closed, None, &mut self.now());
    }

    /// Disabled: every call passes, nothing is recorded, until changed by
    /// hand.
    pub fn disable(&self) {
        self.core.force(State::Disabled, None, &mut self.now());
    }

    /// MetricsOnly: every call passes and is recorded and reported, but the
    /// breaker never opens, until changed by hand. Starts an empty window.
    pub fn metrics_only(&self) {
        self.core.force(State::MetricsOnly, None, &mut self.now());
    }

    /// ForcedOpen: every call is rejected until changed by hand.
    pub fn force_open(&self) {
        self.core.force(State::ForcedOpen, None, &mut self.now());
    }

    /// Open for `duration`, then half-open as usual (for instance for the
    /// `Retry-After` a downstream asked for).
    pub fn open_for(&self, duration: Duration) {
        let mut now = self.now();
        let until = now.get().saturating_add(crate::state::nanos_of(duration));
        self.core.force(State::Open, Some(until), &mut now);
    }

    /// Open until `deadline`, then half-open as usual.
    pub fn open_until(&self, deadline: Instant) {
        let until = nanos_since(self.core.base(), deadline);
        self.core.force(State::Open, Some(until), &mut self.now());
    }

    /// HalfOpen now, with a fresh set of probe permits.
    pub fn half_open(&self) {
        self.core.force(State::HalfOpen, None, &mut self.now());
    }

    /// Moves the breaker to `state` by hand: `Closed` is [`reset`](Self::reset),
    /// `Open` opens for the configured wait (growing as on a trip), the others
    /// as their methods.
    pub fn transition_to(&self, state: State) {
        self.core.force(state, None, &mut self.now());
    }

    /// `true` if both handles control the same breaker.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }
}

impl Handle for CircuitBreakerHandle {
    type Snapshot = CircuitBreakerSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> CircuitBreakerSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.core.state_now())
            .finish_non_exhaustive()
    }
}
