//! The layer: owns the breaker's shared state.

use std::fmt;
use std::sync::Arc;

use palisade_core::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::CircuitBreakerHandle;
use crate::service::CircuitBreaker;
use crate::settings::Config;
use crate::shared::{BreakerCore, Parts, Shared, build_core};

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

    #[cfg(feature = "http")]
    pub(crate) fn shared(&self) -> &Arc<Shared<C>> {
        &self.shared
    }
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

impl CircuitBreakerHandle {
    /// A layer over this breaker that counts outcomes with [`ErrorsAsFailures`].
    #[must_use]
    pub fn layer(&self) -> CircuitBreakerLayer<ErrorsAsFailures> {
        self.layer_with(ErrorsAsFailures)
    }

    /// A layer over this breaker that counts outcomes with `classifier`.
    pub fn layer_with<C>(&self, classifier: C) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer::from_core(Arc::clone(self.core()), classifier)
    }
}
