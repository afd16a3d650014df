//! [`Shared`]: what a layer owns in one `Arc` (the breaker's state machine
//! with its telemetry, the classifier), and what the builder hands over to
//! build it.

use std::sync::Arc;

use palisade_core::Listeners;
use palisade_core::stripe::{Stripe, Striped};
use tokio::time::Instant;

use crate::event::CircuitBreakerEvent;
use crate::metrics::Telemetry;
use crate::settings::Config;
use crate::state::Core;

/// What the builder hands to the breaker besides the configuration.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) name: Arc<str>,
    pub(crate) listeners: Listeners<CircuitBreakerEvent>,
    pub(crate) seed: u64,
}

/// The state machine with its telemetry: one per breaker.
pub(crate) type BreakerCore = Core<Telemetry>;

/// What a call needs when it completes: the breaker and the classifier.
pub(crate) struct Calls<C> {
    pub(crate) core: Arc<BreakerCore>,
    pub(crate) classifier: C,
    /// Whether calls are timed: slow-call detection or an outcome listener.
    pub(crate) timed: bool,
}

/// What every service of one layer shares.
pub(crate) struct Shared<C> {
    /// The breaker, for admission.
    pub(crate) core: Arc<BreakerCore>,
    /// What calls in flight hold, through the stripe of the thread they
    /// start on ([`palisade_core::stripe`]): threads do not bounce one
    /// reference count between cores.
    calls: Striped<Calls<C>>,
}

impl<C> Shared<C> {
    pub(crate) fn new(core: Arc<BreakerCore>, classifier: C) -> Self {
        let timed = core.config().times_calls() || core.observer().wants_outcomes();
        let calls = Striped::new(Calls {
            core: Arc::clone(&core),
            classifier,
            timed,
        });
        Self { core, calls }
    }

    /// A reference for a call starting on this thread.
    #[inline]
    pub(crate) fn stripe(&self) -> Arc<Stripe<Calls<C>>> {
        self.calls.stripe()
    }
}

pub(crate) fn build_core(config: Config, parts: Parts) -> Arc<BreakerCore> {
    let telemetry = Telemetry::new(parts.name, parts.listeners, config.initial_state);
    Arc::new(Core::new(config, telemetry, Instant::now(), parts.seed))
}
