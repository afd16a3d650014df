//! [`RateLimitLayer`]: owns the limiter's state.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::handle::RateLimitHandle;
use crate::key::Unkeyed;
use crate::service::RateLimit;
use crate::shared::Shared;

/// Applies a [`RateLimit`] to services; see the [crate docs](crate).
///
/// The layer owns the limiter's state (its tiers, limits and keys) in an
/// `Arc`: every service it builds, every clone of the layer and of those
/// services, and every [`RateLimitHandle`] share it. Cloning the layer or the
/// service does not create new state, and calling [`Layer::layer`] again (axum
/// does, once per route) does not either: one limit holds across all of
/// them. Build another layer (or use another name in a registry) for a
/// separate limit.
///
/// ```
/// use palisade_rate_limit::{Rate, RateLimitLayer};
/// use tower::{Layer, service_fn};
///
/// let layer = RateLimitLayer::builder("api").rate(Rate::per_second(10)).build().unwrap();
/// let a = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let b = layer.clone().layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert!(a.handle().same_limiter(&b.handle()));
/// ```
pub struct RateLimitLayer<K = Unkeyed> {
    shared: Arc<Shared>,
    key: K,
}

impl<K> RateLimitLayer<K> {
    pub(crate) const fn from_shared(shared: Arc<Shared>, key: K) -> Self {
        Self { shared, key }
    }

    pub(crate) fn into_key(self) -> K {
        self.key
    }

    #[cfg(feature = "http")]
    pub(crate) const fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    #[cfg(feature = "http")]
    pub(crate) const fn key(&self) -> &K {
        &self.key
    }

    /// The handle to read figures and change limits at runtime.
    #[must_use]
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(Arc::clone(&self.shared))
    }

    /// The limiter's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A layer over the same limiter that keys requests with `key` instead
    /// (for another route's request type, say).
    #[must_use]
    pub fn with_key<K2>(&self, key: K2) -> RateLimitLayer<K2> {
        RateLimitLayer::from_shared(Arc::clone(&self.shared), key)
    }
}

impl<K: Clone> Clone for RateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            key: self.key.clone(),
        }
    }
}

impl<K> fmt::Debug for RateLimitLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.shared.name)
            .field("backend", &self.shared.backend.kind())
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.shared), self.key.clone())
    }
}
