//! [`RateLimit`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tower_service::Service;

use crate::future::{Core, ResponseFuture};
use crate::handle::RateLimitHandle;
use crate::key::{KeyExtractor, Unkeyed};
use crate::shared::{LimitsCache, Shared};

/// Limits the rate of calls to the inner service; see the [crate
/// docs](crate). Built by [`RateLimitLayer`](crate::RateLimitLayer).
///
/// `Send + Sync + Clone` whenever the inner service and the key extractor
/// are. A clone shares the limiter; it reserves nothing, so there is no
/// readiness to share.
pub struct RateLimit<S, K = Unkeyed> {
    inner: S,
    shared: Arc<Shared>,
    limits: LimitsCache,
    key: K,
}

impl<S, K> RateLimit<S, K> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, key: K) -> Self {
        Self {
            inner,
            limits: shared.limits_cache(),
            shared,
            key,
        }
    }

    /// A handle to read and change the limiter.
    #[must_use]
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(Arc::clone(&self.shared))
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the limiter, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K: Clone> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            Arc::clone(&self.shared),
            self.key.clone(),
        )
    }
}

impl<S: fmt::Debug, K> fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.shared.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, Req> Service<Req> for RateLimit<S, K>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: KeyExtractor<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    /// Polls the inner service; the limiter reserves nothing here (the key
    /// is only known in `call`).
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Decides the call. Admitted: the inner service is called at once.
    /// Throttled or asked of a remote backend: the ready inner service and
    /// the request move into the future (a clone takes the service's place,
    /// to be polled ready before the next call). Refused: the inner service
    /// is not called.
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let limits = self.limits.load();
        let admission = self
            .shared
            .admit(limits, self.key.extract(&req), K::UNKEYED);
        ResponseFuture::new(Core::start(admission, &mut self.inner, req))
    }
}
