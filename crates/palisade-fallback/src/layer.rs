//! [`FallbackLayer`].

use std::fmt;
use std::sync::Arc;

use palisade_core::ErrorsAsFailures;
use palisade_core::stripe::Striped;
use tower_layer::Layer;

use crate::handle::FallbackHandle;
use crate::service::Fallback;
use crate::shared::Shared;
use crate::source::Plain;

/// Answers failed calls from a fallback. See the [crate docs](crate).
///
/// Cloning the layer, or a service it built, does not create new state.
pub struct FallbackLayer<F, C = ErrorsAsFailures, K = Plain> {
    /// The state, behind per-thread references: each call takes its
    /// thread's, so calls on different cores do not bounce one count.
    pub(crate) shared: Arc<Striped<Shared<F, C, K>>>,
}

impl<F, C, K> Clone for FallbackLayer<F, C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F, C, K> FallbackLayer<F, C, K> {
    /// A handle to the layer's figures.
    #[must_use]
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle {
            stats: Arc::clone(&self.shared.stats),
        }
    }

    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.stats.name
    }
}

impl<F, C, K> fmt::Debug for FallbackLayer<F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FallbackLayer")
            .field(self.shared.get())
            .finish()
    }
}

impl<S, F, C, K> Layer<S> for FallbackLayer<F, C, K> {
    type Service = Fallback<S, F, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, Arc::clone(&self.shared))
    }
}
