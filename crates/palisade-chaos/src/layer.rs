//! [`ChaosLayer`]: the layer, which owns the shared state in one `Arc`.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::handle::ChaosHandle;
use crate::inject::{ErrorWith, InjectError};
use crate::service::Chaos;
use crate::shared::Shared;

/// Applies [`Chaos`] to a service: injects latency, errors, aborts and
/// outages at rates a [`ChaosHandle`] can change at runtime.
///
/// Built with [`ChaosLayer::builder`]. The layer owns the state (settings,
/// decision sequence, counters) in an `Arc`: cloning the layer or a service
/// it built, or calling [`layer`](Layer::layer) many times, does not create
/// new state. Every service answers to the same handle and draws from the
/// same sequence.
///
/// `I` is the [`Injector`](crate::Injector) that shapes an injected failure:
/// [`InjectError`] by default.
#[derive(Clone)]
pub struct ChaosLayer<I = InjectError> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) injector: I,
}

impl<I> ChaosLayer<I> {
    /// The handle that switches this layer (and every clone and service of
    /// it) at runtime.
    #[must_use]
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The same layer (same state and handle) with another injector, for
    /// services whose failures are not `BoxError`: [`ErrorWith`], or
    /// `InjectStatus` with the `http` feature.
    pub fn with_injector<J>(self, injector: J) -> ChaosLayer<J> {
        ChaosLayer {
            shared: self.shared,
            injector,
        }
    }

    /// Shorthand for `with_injector(ErrorWith::new(make))`: injected
    /// failures are the error `make` builds.
    pub fn error_with<F>(self, make: F) -> ChaosLayer<ErrorWith<F>> {
        self.with_injector(ErrorWith::new(make))
    }
}

impl<S, I: Clone> Layer<S> for ChaosLayer<I> {
    type Service = Chaos<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::new(inner, Arc::clone(&self.shared), self.injector.clone())
    }
}

impl<I> fmt::Debug for ChaosLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("handle", &self.handle())
            .finish_non_exhaustive()
    }
}
