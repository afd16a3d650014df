//! The `Chaos` service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::error::InjectedFault;
use crate::future::ResponseFuture;
use crate::handle::ChaosHandle;
use crate::inject::Injector;
use crate::shared::Shared;
use crate::state::Fault;

/// Injects faults into calls to `S`; built by [`ChaosLayer`](crate::ChaosLayer).
///
/// `poll_ready` is the inner service's: chaos reserves nothing. `call` draws
/// the call's plan from the shared sequence:
///
/// - pass: the inner service is called;
/// - latency: the inner service is called at once (its readiness is spent),
///   but its response future is not polled until the delay has elapsed, so a
///   lazy future (hyper's client, an axum handler) does its work after the
///   delay;
/// - error or outage: the inner service is not called; the future resolves
///   (after any delay) with what the injector returns;
/// - abort: the inner service is not called; the future never resolves
///   (after any delay). Only the caller's timeout or cancellation ends it.
pub struct Chaos<S, I> {
    inner: S,
    shared: Arc<Shared>,
    injector: I,
}

// ===== impl Chaos =====

impl<S, I> Chaos<S, I> {
    pub(crate) const fn new(inner: S, shared: Arc<Shared>, injector: I) -> Self {
        Self {
            inner,
            shared,
            injector,
        }
    }

    /// The handle switching this service's layer.
    #[must_use]
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

// No readiness state of its own: a clone shares the layer's state and clones
// the inner service (whose own `Clone` decides about readiness).
palisade_core::inner_service! {
    Chaos<S, I> {
        inner: S,
        clone: { share: [shared, injector], where: [I: Clone] },
    }
}

impl<S: fmt::Debug, I> fmt::Debug for Chaos<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, I, Req, T> Service<Req> for Chaos<S, I>
where
    S: Service<Req, Response = T>,
    I: Injector<T, S::Error>,
{
    type Response = T;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let plan = self.shared.plan();
        match plan.fault {
            Fault::None => ResponseFuture::call(plan.delay, self.inner.call(req)),
            Fault::Error | Fault::Outage => {
                let fault =
                    InjectedFault::new(Arc::clone(&self.shared.name), plan.fault == Fault::Outage);
                ResponseFuture::inject(plan.delay, self.injector.inject(&fault))
            }
            Fault::Abort => ResponseFuture::abort(plan.delay),
        }
    }
}
