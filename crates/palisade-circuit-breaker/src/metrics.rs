//! Metrics, traces and listeners: everything a breaker tells the outside
//! world. Metric handles are resolved once, when the breaker is built.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Unit};
use palisade_core::{Listeners, Outcome};

use crate::event::{CallNotPermitted, CallOutcome, CircuitBreakerEvent, StateTransition};
use crate::state::window::Totals;
use crate::state::{Observer, State, Transition};

/// `palisade_circuit_breaker_calls_total{name, outcome}`.
pub(crate) const CALLS: &str = "palisade_circuit_breaker_calls_total";
/// `palisade_circuit_breaker_not_permitted_calls_total{name}`.
pub(crate) const NOT_PERMITTED: &str = "palisade_circuit_breaker_not_permitted_calls_total";
/// `palisade_circuit_breaker_slow_calls_total{name}`.
pub(crate) const SLOW_CALLS: &str = "palisade_circuit_breaker_slow_calls_total";
/// `palisade_circuit_breaker_state{name, state}`.
pub(crate) const STATE: &str = "palisade_circuit_breaker_state";
/// `palisade_circuit_breaker_failure_rate{name}`.
pub(crate) const FAILURE_RATE: &str = "palisade_circuit_breaker_failure_rate";
/// `palisade_circuit_breaker_slow_call_rate{name}`.
pub(crate) const SLOW_CALL_RATE: &str = "palisade_circuit_breaker_slow_call_rate";
/// `palisade_circuit_breaker_transitions_total{name, from, to}`.
pub(crate) const TRANSITIONS: &str = "palisade_circuit_breaker_transitions_total";

/// One breaker's metric handles and listeners.
#[derive(Debug)]
pub(crate) struct Telemetry {
    name: Arc<str>,
    success: Counter,
    failure: Counter,
    ignored: Counter,
    not_permitted: Counter,
    slow: Counter,
    state: [Gauge; 6],
    failure_rate: Gauge,
    slow_call_rate: Gauge,
    /// Indexed by `from * 6 + to`; same-state entries are unused.
    transitions: Box<[Counter]>,
    listeners: Listeners<CircuitBreakerEvent>,
}

fn describe() {
    metrics::describe_counter!(
        CALLS,
        Unit::Count,
        "Calls admitted by the circuit breaker that completed, by outcome"
    );
    metrics::describe_counter!(
        NOT_PERMITTED,
        Unit::Count,
        "Calls the circuit breaker rejected"
    );
    metrics::describe_counter!(
        SLOW_CALLS,
        Unit::Count,
        "Calls that took at least the slow-call duration"
    );
    metrics::describe_gauge!(
        STATE,
        "1 for the circuit breaker's current state, 0 for the others"
    );
    metrics::describe_gauge!(
        FAILURE_RATE,
        Unit::Percent,
        "Failure rate over the circuit breaker's window"
    );
    metrics::describe_gauge!(
        SLOW_CALL_RATE,
        Unit::Percent,
        "Slow-call rate over the circuit breaker's window"
    );
    metrics::describe_counter!(
        TRANSITIONS,
        Unit::Count,
        "Circuit breaker state transitions"
    );
}

impl Telemetry {
    /// Resolves every handle for the breaker `name` and sets the state gauge
    /// to `initial`.
    pub(crate) fn new(
        name: Arc<str>,
        listeners: Listeners<CircuitBreakerEvent>,
        initial: State,
    ) -> Self {
        describe();
        let calls = |outcome: &'static str| metrics::counter!(CALLS, "name" => Arc::clone(&name), "outcome" => outcome);
        let state = State::ALL
            .map(|s| metrics::gauge!(STATE, "name" => Arc::clone(&name), "state" => s.as_str()));
        let mut transitions = Vec::with_capacity(36);
        for from in State::ALL {
            for to in State::ALL {
                transitions.push(if from == to {
                    Counter::noop()
                } else {
                    metrics::counter!(TRANSITIONS, "name" => Arc::clone(&name), "from" => from.as_str(), "to" => to.as_str())
                });
            }
        }
        let telemetry = Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            not_permitted: metrics::counter!(NOT_PERMITTED, "name" => Arc::clone(&name)),
            slow: metrics::counter!(SLOW_CALLS, "name" => Arc::clone(&name)),
            state,
            failure_rate: metrics::gauge!(FAILURE_RATE, "name" => Arc::clone(&name)),
            slow_call_rate: metrics::gauge!(SLOW_CALL_RATE, "name" => Arc::clone(&name)),
            transitions: transitions.into_boxed_slice(),
            listeners,
            name,
        };
        telemetry.set_state(initial);
        telemetry.failure_rate.set(0.0);
        telemetry.slow_call_rate.set(0.0);
        telemetry
    }

    /// The breaker's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn set_state(&self, current: State) {
        for s in State::ALL {
            self.state[s.code()].set(if s == current { 1.0 } else { 0.0 });
        }
    }

    /// `true` if someone listens, and so to call outcomes (then calls are
    /// timed).
    #[inline]
    pub(crate) fn wants_outcomes(&self) -> bool {
        !self.listeners.is_empty()
    }

    /// A call admitted by the breaker completed.
    #[inline]
    pub(crate) fn outcome(
        &self,
        outcome: Outcome,
        slow: bool,
        duration: Option<Duration>,
        probe: bool,
    ) {
        match outcome {
            Outcome::Success => self.success.increment(1),
            Outcome::Failure => self.failure.increment(1),
            Outcome::Ignored => self.ignored.increment(1),
        }
        if slow {
            self.slow.increment(1);
        }
        self.listeners.emit_with(|| {
            CircuitBreakerEvent::CallOutcome(CallOutcome {
                name: Arc::clone(&self.name),
                outcome,
                slow,
                duration: duration.unwrap_or_default(),
                probe,
            })
        });
    }

    /// A call was rejected.
    #[cold]
    pub(crate) fn not_permitted(&self, state: State, retry_after: Option<Duration>) {
        self.not_permitted.increment(1);
        tracing::debug!(
            name = %self.name,
            state = state.as_str(),
            retry_after_ms = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "circuit breaker rejected a call"
        );
        self.listeners.emit_with(|| {
            CircuitBreakerEvent::CallNotPermitted(CallNotPermitted {
                name: Arc::clone(&self.name),
                state,
                retry_after,
            })
        });
    }
}

impl Observer for Telemetry {
    #[cold]
    fn transition(&self, t: &Transition) {
        if t.from != t.to {
            self.transitions[t.from.code() * 6 + t.to.code()].increment(1);
        }
        self.set_state(t.to);
        let failure_rate = t.totals.failure_rate();
        let slow_call_rate = t.totals.slow_call_rate();
        let open_for_ms = t
            .open_for
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if t.to.is_open() {
            tracing::warn!(
                name = %self.name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason.as_str(),
                calls = t.totals.calls,
                failure_rate,
                slow_call_rate,
                open_for_ms,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                name = %self.name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason.as_str(),
                calls = t.totals.calls,
                failure_rate,
                slow_call_rate,
                "circuit breaker changed state"
            );
        }
        self.listeners.emit_with(|| {
            CircuitBreakerEvent::StateTransition(StateTransition {
                name: Arc::clone(&self.name),
                from: t.from,
                to: t.to,
                reason: t.reason,
                calls: t.totals.calls,
                failure_rate,
                slow_call_rate,
                open_for: t.open_for,
            })
        });
    }

    #[inline]
    fn rates(&self, totals: &Totals) {
        self.failure_rate.set(totals.failure_rate());
        self.slow_call_rate.set(totals.slow_call_rate());
    }
}
