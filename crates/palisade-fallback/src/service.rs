//! [`Fallback`]: the service a [`FallbackLayer`](crate::FallbackLayer)
//! builds.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::stripe::Striped;
use palisade_core::{BoxError, Classify};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::settings::FallbackClass;
use crate::shared::Shared;
use crate::source::{Answer, Mark};
use crate::state::class_of_error;

/// Answers the failures of `S` from a fallback. Built by a
/// [`FallbackLayer`](crate::FallbackLayer); see the [crate docs](crate).
pub struct Fallback<S, F, C, K> {
    inner: S,
    shared: Arc<Striped<Shared<F, C, K>>>,
    /// A failure of the inner service's `poll_ready` the fallback answers:
    /// the next call gets the fallback without reaching the inner service.
    ready_error: Option<(BoxError, FallbackClass)>,
}

// ===== impl Fallback =====

impl<S, F, C, K> Fallback<S, F, C, K> {
    pub(crate) const fn new(inner: S, shared: Arc<Striped<Shared<F, C, K>>>) -> Self {
        Self {
            inner,
            shared,
            ready_error: None,
        }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F, C, K> Clone for Fallback<S, F, C, K> {
    /// Clones the inner service and shares the layer's state; a clone does
    /// not carry a readiness failure waiting for its call.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug, F, C, K> fmt::Debug for Fallback<S, F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("layer", self.shared.get())
            .finish_non_exhaustive()
    }
}

impl<S, Req, F, C, K> Service<Req> for Fallback<S, F, C, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Answer<Req, S::Response>,
    C: Classify<S::Response, S::Error>,
    K: Mark<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Req, F, C, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(error)) => {
                let result: Result<S::Response, S::Error> = Err(error);
                let outcome = self.shared.classifier.classify(&result);
                let Err(error) = result.map_err(Into::into) else {
                    return Poll::Ready(Ok(()));
                };
                match class_of_error(&*error, outcome) {
                    Some(class) if self.shared.stats.settings.on.contains(class) => {
                        self.ready_error = Some((error, class));
                        Poll::Ready(Ok(()))
                    }
                    _ => Poll::Ready(Err(error)),
                }
            }
            other => other.map_err(Into::into),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let kept = self.shared.answer.keep(&req);
        let shared = self.shared.stripe();
        match self.ready_error.take() {
            Some((error, class)) => ResponseFuture::answer_now(shared, kept, error, class),
            None => ResponseFuture::new(self.inner.call(req), shared, kept),
        }
    }
}
