//! [`RetryLayer`]: the layer, which owns the shared state in one `Arc`.

use std::fmt;
use std::sync::Arc;

use palisade_core::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::RetryHandle;
use crate::kind::Plain;
use crate::service::Retry;
use crate::shared::Handles;
use crate::state::budget::RetryBudget;

/// Retries failed calls to the services it wraps: backoff with jitter, a
/// shared retry budget, an overall deadline and per-attempt timeouts.
///
/// Build one with [`RetryLayer::builder`] (requests that are `Clone`) or
/// `RetryLayer::http_builder` (feature `http`, `http::Request<B>`). The
/// layer owns its state (the budget, the jitter source, the metric handles):
/// cloning the layer, or a service it built, does not create new state, and
/// every service the layer builds shares it.
pub struct RetryLayer<C = ErrorsAsFailures, K = Plain> {
    pub(crate) handles: Arc<Handles<C, K>>,
}

impl<C, K> Clone for RetryLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            handles: Arc::clone(&self.handles),
        }
    }
}

impl<C, K: fmt::Debug> fmt::Debug for RetryLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetryLayer")
            .field(self.handles.get())
            .finish()
    }
}

impl<C, K> RetryLayer<C, K> {
    /// The layer's name: the `name` label of its metrics and the `name` field
    /// of its events.
    #[must_use]
    pub fn name(&self) -> &str {
        self.handles.name()
    }

    /// The budget retries draw from, if any: share it with another layer
    /// (hedging, another route to the same downstream) through
    /// [`RetryBuilder::budget`](crate::RetryBuilder::budget).
    #[must_use]
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.handles.budget.as_ref()
    }

    /// The maximum number of attempts per call, the first included.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.handles.max_attempts()
    }

    /// The layer's handle: its name, settings in effect and budget figures
    /// ([`RetryHandle::snapshot`]).
    #[must_use]
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(Arc::clone(&self.handles.core))
    }
}

impl<S, C, K> Layer<S> for RetryLayer<C, K> {
    type Service = Retry<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.handles))
    }
}
