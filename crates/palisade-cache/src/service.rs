//! [`Cache`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::CacheHandle;
use crate::policy::{Policy, Storage};
use crate::shared::Shared;

/// Answers requests from the cache, and fills it from the inner service.
///
/// See the [crate docs](crate) for the semantics; built by
/// [`CacheLayer`](crate::CacheLayer).
pub struct Cache<S, P: Storage> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S, P: Storage> Cache<S, P> {
    pub(crate) const fn new(inner: S, shared: Arc<Shared<P>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The handle of the cache this service belongs to.
    #[must_use]
    pub fn handle(&self) -> CacheHandle {
        CacheHandle::new(Arc::clone(&self.shared))
    }
}

impl<S: Clone, P: Storage> Clone for Cache<S, P> {
    /// A clone shares the cache (entries, flights, figures); it holds no
    /// readiness of its own (the cache reserves none).
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), Arc::clone(&self.shared))
    }
}

impl<S: fmt::Debug, P: Storage> fmt::Debug for Cache<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", self.shared.name())
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, P, Req> Service<Req> for Cache<S, P>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    type Response = P::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    /// Always ready: the cache reserves nothing. A hit never touches the
    /// inner service; a miss drives a clone of it (`poll_ready`, then
    /// `call`) in its response future.
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let inner = &self.inner;
        ResponseFuture::start(&self.shared, || inner.clone(), request)
    }
}
