//! `Retry<S>`: the service a [`RetryLayer`](crate::RetryLayer) builds.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::stripe::thread_index;
use palisade_core::{BoxError, Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::RetryHandle;
use crate::kind::{Inspect, Plain, Replay};
use crate::shared::Handles;

/// Retries failed calls to `S`. Built by a [`RetryLayer`](crate::RetryLayer);
/// see the [crate docs](crate) for what it does.
///
/// `S` must be `Clone`: each call takes the inner service that
/// [`poll_ready`](Service::poll_ready) readied into its response future (a
/// fresh clone stays behind for the next call), and that future drives it to
/// readiness again before every retry.
pub struct Retry<S, C = ErrorsAsFailures, K = Plain> {
    inner: S,
    handles: Arc<Handles<C, K>>,
}

// ===== impl Retry =====

impl<S, C, K> Retry<S, C, K> {
    pub(crate) const fn new(inner: S, handles: Arc<Handles<C, K>>) -> Self {
        Self { inner, handles }
    }

    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.handles.name()
    }

    /// The layer's handle: its name, settings in effect and budget figures.
    #[must_use]
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(Arc::clone(&self.handles.core))
    }
}

// A clone shares the layer's state (budget, jitter source, metrics): it is
// the same retry policy, not a new one.
palisade_core::inner_service! {
    Retry<S, C, K> {
        inner: S,
        clone: { share: [handles] },
    }
}

impl<S: fmt::Debug, C, K: fmt::Debug> fmt::Debug for Retry<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", self.handles.get())
            .finish()
    }
}

impl<S, Req, C, K> Service<Req> for Retry<S, C, K>
where
    K: Replay<Req> + Inspect<S::Response>,
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
        // First, before the request's bytes are moved around: a locked
        // increment waits for every pending store to drain. The reference is
        // this thread's stripe, so cores do not bounce one counter.
        let thread = thread_index();
        let stripe = self.handles.stripe_at(thread);
        let shared = stripe.get();
        shared.metrics.requests.increment(1);
        if let Some(budget) = &shared.budget {
            budget.deposit_at(thread);
        }
        // The ready service goes with the call; a fresh clone stays for the
        // next `poll_ready`.
        let fresh = self.inner.clone();
        let ready = mem::replace(&mut self.inner, fresh);
        ResponseFuture::new(ready, stripe, req)
    }
}
