//! [`HedgeLayer`].

use std::fmt;
use std::sync::Arc;

use palisade_core::ErrorsAsFailures;
use palisade_core::stripe::Striped;
use palisade_retry::kind::Plain;
use tower_layer::Layer;

use crate::handle::HedgeHandle;
use crate::service::Hedge;
use crate::shared::Shared;

/// Hedges slow requests: a second attempt after the observed latency
/// percentile, the first answer wins. See the [crate docs](crate).
///
/// Cloning the layer, or a service it built, does not create new state.
pub struct HedgeLayer<C = ErrorsAsFailures, K = Plain> {
    /// The state, behind per-thread references: each call takes its
    /// thread's, so calls on different cores do not bounce one count.
    pub(crate) shared: Arc<Striped<Shared<C, K>>>,
}

impl<C, K> Clone for HedgeLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, K> HedgeLayer<C, K> {
    /// A handle to the layer's figures.
    #[must_use]
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle {
            stats: Arc::clone(&self.shared.stats),
        }
    }

    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.stats.name
    }

    /// The budget hedges draw from: share it with a retry layer
    /// (`RetryBuilder::budget`) so both stay within one share of extra load.
    #[must_use]
    pub fn budget(&self) -> &Arc<palisade_retry::RetryBudget> {
        &self.shared.stats.budget
    }
}

impl<C, K> fmt::Debug for HedgeLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HedgeLayer")
            .field(self.shared.get())
            .finish()
    }
}

impl<S, C, K> Layer<S> for HedgeLayer<C, K> {
    type Service = Hedge<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(inner, Arc::clone(&self.shared))
    }
}
