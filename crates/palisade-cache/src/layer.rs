//! [`CacheLayer`]: owns a cache's shared state.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::handle::CacheHandle;
use crate::policy::Storage;
use crate::service::Cache;
use crate::shared::Shared;

/// Applies a cache to a service; see the [crate docs](crate).
///
/// The layer owns the cache: its entries, flights and figures are created
/// once, when it is built, and every service it builds, through every
/// `layer()` call and every clone of the layer or of a service, shares them.
/// Cloning this layer does not create new state.
///
/// ```
/// use palisade_cache::CacheLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CacheLayer::builder("squares").key(|n: &u64| Some(*n)).build().unwrap();
/// let square = service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n * n) });
/// let a = layer.layer(square);
/// let b = layer.clone().layer(square);
/// assert!(a.handle().same_as(&b.handle()));
/// assert_eq!(a.oneshot(3).await.unwrap(), 9);
/// assert_eq!(b.oneshot(3).await.unwrap(), 9); // a hit: a's entry
/// assert_eq!(layer.handle().snapshot().hits, 1);
/// # }
/// ```
pub struct CacheLayer<P: Storage> {
    shared: Arc<Shared<P>>,
}

impl<P: Storage> CacheLayer<P> {
    pub(crate) const fn from_shared(shared: Arc<Shared<P>>) -> Self {
        Self { shared }
    }

    /// A handle to invalidate entries and read the figures.
    #[must_use]
    pub fn handle(&self) -> CacheHandle {
        CacheHandle::new(Arc::clone(&self.shared))
    }

    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.shared.name()
    }
}

impl<P: Storage> Clone for CacheLayer<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Storage> fmt::Debug for CacheLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl<S, P: Storage> Layer<S> for CacheLayer<P> {
    type Service = Cache<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache::new(inner, Arc::clone(&self.shared))
    }
}
