//! [`Hedge`]: the service a [`HedgeLayer`](crate::HedgeLayer) builds.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::stripe::Striped;
use palisade_core::{BoxError, Classify};
use palisade_retry::kind::Replay;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::shared::Shared;

/// Hedges slow calls to `S`. Built by a [`HedgeLayer`](crate::HedgeLayer);
/// see the [crate docs](crate).
///
/// `S` must be `Clone`: a call takes the inner service `poll_ready` readied
/// into its response future (a fresh clone stays behind for the next call),
/// and that future drives it to readiness again, only when a hedge is due.
pub struct Hedge<S, C, K> {
    inner: S,
    shared: Arc<Striped<Shared<C, K>>>,
}

// ===== impl Hedge =====

impl<S, C, K> Hedge<S, C, K> {
    pub(crate) const fn new(inner: S, shared: Arc<Striped<Shared<C, K>>>) -> Self {
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

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, K> Clone for Hedge<S, C, K> {
    /// Clones the inner service and shares the layer's state. The layer
    /// reserves nothing of its own in `poll_ready`; the inner clone starts
    /// as unready as the inner service's `Clone` makes it.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, K> fmt::Debug for Hedge<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("layer", self.shared.get())
            .finish()
    }
}

impl<S, Req, C, K> Service<Req> for Hedge<S, C, K>
where
    K: Replay<Req>,
    S: Service<K::Sent> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.shared.stats.budget.deposit();
        // The ready service goes with the call; a fresh clone stays for the
        // next `poll_ready`.
        let fresh = self.inner.clone();
        let ready = mem::replace(&mut self.inner, fresh);
        ResponseFuture::new(ready, self.shared.stripe(), req)
    }
}
