//! Support for Palisade's benchmarks: drive a tower service by hand, without a
//! runtime's scheduler in the measurement.
//!
//! Every benchmarked service here is ready at once and answers with a future
//! that completes on its first poll, so one call is `poll_ready`, `call` and a
//! single `poll`, all with a no-op waker. What remains in the measurement is
//! the layer's own work. [`enter_runtime`] gives the calling thread a tokio
//! context for layers that create timers (tower's `Timeout`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::Service;

/// Calls `svc` once with `req`: `poll_ready`, `call`, then polls the response
/// future to completion with a no-op waker.
///
/// # Panics
///
/// If the service is not ready at once or its future does not complete within
/// a bounded number of polls: the benchmark would be measuring a stall.
#[inline]
pub fn call_now<S, Req>(svc: &mut S, req: Req) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("benchmarked service was not ready at once"),
    }
    let fut = svc.call(req);
    poll_now(fut)
}

/// Polls `fut` with a no-op waker until it completes (at most 64 polls).
///
/// # Panics
///
/// If the future is still pending after 64 polls.
#[inline]
pub fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    for _ in 0..64 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("benchmarked future did not complete");
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Runs `f` inside a tokio runtime context on this thread (a per-thread
/// runtime, built once), so layers that create timers can be driven by
/// [`call_now`].
pub fn enter_runtime<T>(f: impl FnOnce() -> T) -> T {
    RUNTIME.with(|rt| {
        let _guard = rt.enter();
        f()
    })
}

/// An always-ready identity service whose future is ready on first poll: the
/// bare inner service every benchmark is measured against. `Clone`, `Send`,
/// `Sync`, and inlined away entirely.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<T> Service<T> for Identity {
    type Response = T;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<T, std::convert::Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: T) -> Self::Future {
        std::future::ready(Ok(req))
    }
}
