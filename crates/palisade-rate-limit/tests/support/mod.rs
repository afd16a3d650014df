//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use palisade_core::{BoxError, RateLimited};
use tower::Service;

/// An always-ready service answering its request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl<T> Service<T> for Echo {
    type Response = T;
    type Error = Infallible;
    type Future = std::future::Ready<Result<T, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: T) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

/// `poll_ready`, `call` and one poll with a no-op waker: `Some(result)` if
/// the call completed at once (admitted or refused), `None` if it waits.
pub fn call_now<S, Req>(svc: &mut S, req: Req) -> Option<Result<S::Response, S::Error>>
where
    S: Service<Req>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Some(Err(e)),
        Poll::Pending => panic!("the service was not ready"),
    }
    let fut = svc.call(req);
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// `true` if the call was admitted at once, `false` if refused for the rate
/// limit; panics on anything else.
pub fn admitted<S, Req>(svc: &mut S, req: Req) -> bool
where
    S: Service<Req, Error = BoxError>,
{
    match call_now(svc, req).expect("decided at once") {
        Ok(_) => true,
        Err(e) if e.is::<RateLimited>() => false,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The exact token bucket a GCRA limiter must match: `credit` nanoseconds of
/// allowance out of `burst × t`.
#[derive(Debug)]
pub struct Bucket {
    credit: i128,
    cap: i128,
    t: i128,
    last: u64,
}

impl Bucket {
    pub fn new(t: u64, burst: u32) -> Self {
        let t = i128::from(t);
        let cap = t * i128::from(burst);
        Self {
            credit: cap,
            cap,
            t,
            last: 0,
        }
    }

    /// A call at `now` (ns): `Ok(wait)` admitted (after `wait`), `Err(retry_after)`.
    pub fn call(&mut self, now: u64, max_delay: u64) -> Result<u64, u64> {
        self.credit = (self.credit + i128::from(now - self.last)).min(self.cap);
        self.last = now;
        let short = self.t - self.credit;
        if short <= 0 {
            self.credit -= self.t;
            Ok(0)
        } else if short <= i128::from(max_delay) {
            self.credit -= self.t;
            Ok(u64::try_from(short).unwrap())
        } else {
            Err(u64::try_from(short).unwrap())
        }
    }
}
