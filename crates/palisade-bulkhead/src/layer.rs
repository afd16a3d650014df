//! [`BulkheadLayer`]: the layer, which owns the bulkhead's state and applies
//! a [`Bulkhead`] to services.

use std::fmt;
use std::sync::Arc;

use palisade_core::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::BulkheadHandle;
use crate::partition::Unpartitioned;
use crate::service::Bulkhead;
use crate::shared::Shared;

/// Applies a [`Bulkhead`] to services.
///
/// The layer owns the bulkhead's state (its pools, limits and counters) in an
/// `Arc`: every service it builds, every clone of the layer and of those
/// services, and every [`BulkheadHandle`] share it. Cloning the layer or the
/// service does not create new state; calling [`Layer::layer`] again does not
/// either. Build another layer (or use another name in a registry) for a
/// separate bulkhead.
///
/// Built with [`BulkheadLayer::builder`].
pub struct BulkheadLayer<P = Unpartitioned, C = ErrorsAsFailures> {
    shared: Arc<Shared>,
    partition: P,
    classifier: C,
}

impl<P: Clone, C: Clone> Clone for BulkheadLayer<P, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            partition: self.partition.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<P, C> fmt::Debug for BulkheadLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("name", &self.shared.common.name)
            .field("partitioned", &self.shared.partitions.is_some())
            .finish_non_exhaustive()
    }
}

impl<P, C> BulkheadLayer<P, C> {
    /// A layer over `shared` (built by the builder).
    pub(crate) const fn new(shared: Arc<Shared>, partition: P, classifier: C) -> Self {
        Self {
            shared,
            partition,
            classifier,
        }
    }

    /// The handle to read figures and change limits at runtime.
    #[must_use]
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(Arc::clone(&self.shared))
    }

    /// The bulkhead's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.common.name
    }
}

impl<S, P: Clone, C: Clone> Layer<S> for BulkheadLayer<P, C> {
    type Service = Bulkhead<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(
            inner,
            Arc::clone(&self.shared),
            self.partition.clone(),
            self.classifier.clone(),
        )
    }
}
