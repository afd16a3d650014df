//! Events a breaker reports to its listeners.
//!
//! Register listeners on the builder with
//! [`on_event`](crate::CircuitBreakerBuilder::on_event): each receives every
//! [`CircuitBreakerEvent`]. An event is only built when a listener is
//! registered, so a breaker without listeners allocates nothing for them.
//! Listeners run synchronously on the thread that caused the event (a
//! transition's listeners on the one thread that performed it): keep them
//! short, and never block in them. A listener that panics is caught and
//! logged; the call it observes is unaffected.
//!
//! [`CircuitBreakerEvent::CallOutcome`] is emitted for every admitted call
//! that completes, so registering a listener makes each call read the clock
//! twice (for its duration) and call the listeners once more; a breaker
//! without listeners does neither. For counts alone, the metrics are cheaper.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::Outcome;

use crate::state::{State, TransitionReason};

/// Something a breaker did, handed to the listeners registered with
/// [`on_event`](crate::CircuitBreakerBuilder::on_event).
///
/// ```
/// use palisade_circuit_breaker::{CircuitBreakerEvent, CircuitBreakerLayer, State};
/// use std::sync::{Arc, Mutex};
///
/// let opened = Arc::new(Mutex::new(Vec::new()));
/// let seen = Arc::clone(&opened);
/// let layer = CircuitBreakerLayer::builder("orders")
///     .on_event(move |event: &CircuitBreakerEvent| {
///         if let CircuitBreakerEvent::StateTransition(t) = event {
///             seen.lock().unwrap().push(t.to);
///         }
///     })
///     .build()
///     .unwrap();
/// layer.handle().force_open();
/// assert_eq!(*opened.lock().unwrap(), [State::ForcedOpen]);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CircuitBreakerEvent {
    /// The breaker changed state: exactly once per transition.
    StateTransition(StateTransition),
    /// A call was rejected without reaching the inner service.
    CallNotPermitted(CallNotPermitted),
    /// A call admitted by the breaker completed: once per call.
    CallOutcome(CallOutcome),
}

impl CircuitBreakerEvent {
    /// The name of the breaker that emitted it.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::StateTransition(e) => &e.name,
            Self::CallNotPermitted(e) => &e.name,
            Self::CallOutcome(e) => &e.name,
        }
    }
}

/// The breaker changed state. Emitted exactly once per transition.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StateTransition {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: TransitionReason,
    /// Calls in the figures that decided it: the window when leaving Closed
    /// or MetricsOnly, the probes when leaving HalfOpen, 0 otherwise.
    pub calls: u64,
    /// Failure rate of those figures, in percent.
    pub failure_rate: f64,
    /// Slow-call rate of those figures, in percent.
    pub slow_call_rate: f64,
    /// For a transition to Open: the time until the next probe.
    pub open_for: Option<Duration>,
}

/// A call was rejected without reaching the inner service.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallNotPermitted {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state that rejected it (Open, ForcedOpen, or HalfOpen with its
    /// probes taken).
    pub state: State,
    /// The time until the next probe, when known.
    pub retry_after: Option<Duration>,
}

/// A call admitted by the breaker completed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOutcome {
    /// The breaker's name.
    pub name: Arc<str>,
    /// How the classifier counted it.
    pub outcome: Outcome,
    /// `true` if it took at least the slow-call duration.
    pub slow: bool,
    /// How long it took, from `call` to the inner future's completion.
    pub duration: Duration,
    /// `true` if it was a half-open probe.
    pub probe: bool,
}
