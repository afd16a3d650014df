//! The layer: owns the breaker's shared state.

use std::fmt;
use std::sync::Arc;

use palisade_core::ErrorsAsFailures;
use palisade_core::stripe::{Stripe, Striped};
use tokio::time::Instant;
use tower_layer::Layer;

use crate::config::{CircuitBreakerBuilder, Config, Parts};
use crate::handle::CircuitBreakerHandle;
use crate::metrics::Telemetry;
use crate::service::CircuitBreaker;
use crate::state::Core;

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

/// Applies a circuit breaker to a service; see the [crate docs](crate).
///
/// The layer owns the breaker. Every service it builds, through every
/// `layer()` call and every clone of the layer or of a service, shares that
/// one breaker: cloning this layer does not create new state. Build one layer
/// per downstream and reuse it.
///
/// ```
/// use palisade_circuit_breaker::CircuitBreakerLayer;
/// use tower::{Layer, service_fn};
///
/// let layer = CircuitBreakerLayer::builder("orders").build().unwrap();
/// let a = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let b = layer.clone().layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert!(a.handle().same_as(&b.handle()));
/// ```
pub struct CircuitBreakerLayer<C = ErrorsAsFailures> {
    shared: Arc<Shared<C>>,
}

impl CircuitBreakerLayer<ErrorsAsFailures> {
    /// A builder for the breaker called `name` (it labels metrics, logs,
    /// errors and registry entries).
    pub fn builder(name: impl Into<Arc<str>>) -> CircuitBreakerBuilder<ErrorsAsFailures> {
        CircuitBreakerBuilder::new(name)
    }
}

impl<C> CircuitBreakerLayer<C> {
    pub(crate) fn from_parts(config: Config, parts: Parts, classifier: C) -> Self {
        Self::from_core(build_core(config, parts), classifier)
    }

    pub(crate) fn from_core(core: Arc<BreakerCore>, classifier: C) -> Self {
        Self {
            shared: Arc::new(Shared::new(core, classifier)),
        }
    }

    /// A handle to read and control this layer's breaker.
    #[must_use]
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(&self.shared.core))
    }

    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.shared.core.observer().name()
    }

    /// A layer over the same breaker that classifies outcomes with
    /// `classifier` instead (for instance one route's own notion of failure).
    pub fn with_classifier<C2>(&self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer::from_core(Arc::clone(&self.shared.core), classifier)
    }

    /// The same breaker as an HTTP layer that answers a rejection with a
    /// `503 Service Unavailable` response instead of an error, so the
    /// service's error type is unchanged (feature `http`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn http_layer(&self) -> crate::http::HttpCircuitBreakerLayer<C> {
        crate::http::HttpCircuitBreakerLayer::new(self.clone())
    }

    #[cfg(feature = "http")]
    pub(crate) fn shared(&self) -> &Arc<Shared<C>> {
        &self.shared
    }
}

pub(crate) fn build_core(config: Config, parts: Parts) -> Arc<BreakerCore> {
    let telemetry = Telemetry::new(parts.name, parts.listeners, config.initial_state);
    Arc::new(Core::new(config, telemetry, Instant::now(), parts.seed))
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.name())
            .field("state", &self.shared.core.state_now())
            .finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, Arc::clone(&self.shared))
    }
}
