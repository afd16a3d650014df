use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use palisade_core::{BoxError, BulkheadFull, Classify};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::event::RejectReason;
use crate::future::{Deadline, ResponseFuture};
use crate::handle::BulkheadHandle;
use crate::partition::{Partition, Unpartitioned};
use crate::shared::Shared;
use crate::shared::{Enqueued, Permit, Ticket, TryAcquire};
use palisade_core::ErrorsAsFailures;

/// What `poll_ready` reserved, in `backpressure` mode.
#[derive(Debug, Default)]
enum Reservation {
    #[default]
    None,
    /// Queued for a permit since `since`; `deadline` says whether the
    /// service's sleep is armed.
    Waiting {
        ticket: Ticket,
        since: Instant,
        deadline: bool,
    },
    /// A permit, for the next `call`.
    Reserved(Permit),
    /// The wait timed out (or could not start): the next `call` fails fast.
    Rejected(BulkheadFull),
}

/// Limits how many calls are in flight to the inner service, per pool.
///
/// See the [crate docs](crate) for the semantics; built by
/// [`BulkheadLayer`](crate::BulkheadLayer).
pub struct Bulkhead<S, P = Unpartitioned, C = ErrorsAsFailures> {
    inner: S,
    shared: Arc<Shared>,
    partition: P,
    classifier: C,
    // `backpressure` mode only: the reservation made by `poll_ready`, and
    // the timer of a wait (allocated on the first wait, then reused).
    reservation: Reservation,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, P, C> Bulkhead<S, P, C> {
    pub(crate) const fn new(inner: S, shared: Arc<Shared>, partition: P, classifier: C) -> Self {
        Self {
            inner,
            shared,
            partition,
            classifier,
            reservation: Reservation::None,
            sleep: None,
        }
    }

    /// The handle of the bulkhead this service belongs to.
    #[must_use]
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(Arc::clone(&self.shared))
    }
}

// A clone shares the bulkhead's pools but not this service's reservation: it
// starts unready.
palisade_core::inner_service! {
    Bulkhead<S, P, C> {
        inner: S,
        clone: {
            share: [shared, partition, classifier],
            reset: [reservation = Reservation::None, sleep = None],
            where: [P: Clone, C: Clone],
        },
    }
}

impl<S: fmt::Debug, P, C> fmt::Debug for Bulkhead<S, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.shared.common.name)
            .field("inner", &self.inner)
            .field("reservation", &self.reservation)
            .finish_non_exhaustive()
    }
}

impl<S, P, C> Bulkhead<S, P, C> {
    /// `backpressure` mode: reserves a permit, waiting up to `max_wait`.
    /// Ready once there is a permit or a rejection for the next call.
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let pool = &self.shared.default_pool;
        loop {
            match &mut self.reservation {
                Reservation::Reserved(_) | Reservation::Rejected(_) => return Poll::Ready(()),
                Reservation::Waiting {
                    ticket,
                    since,
                    deadline,
                } => {
                    if let Poll::Ready(permit) = ticket.poll(cx) {
                        pool.record_wait(since.elapsed());
                        self.reservation = Reservation::Reserved(permit);
                        continue;
                    }
                    let sleep = match (&mut self.sleep, *deadline) {
                        (Some(sleep), true) => sleep,
                        _ => return Poll::Pending,
                    };
                    ready!(sleep.as_mut().poll(cx));
                    let Reservation::Waiting { ticket, since, .. } =
                        std::mem::take(&mut self.reservation)
                    else {
                        unreachable!("matched above")
                    };
                    self.reservation = match ticket.cancel() {
                        Some(permit) => {
                            pool.record_wait(since.elapsed());
                            Reservation::Reserved(permit)
                        }
                        None => Reservation::Rejected(
                            pool.reject(RejectReason::Timeout, Some(since.elapsed())),
                        ),
                    };
                }
                Reservation::None => {
                    match pool.try_acquire() {
                        Ok(permit) => {
                            self.reservation = Reservation::Reserved(permit);
                            continue;
                        }
                        Err(TryAcquire::Full | TryAcquire::Retired) => {}
                    }
                    let common = &self.shared.common;
                    let max_wait = common.max_wait();
                    if max_wait.is_some_and(|w| w.is_zero()) || pool.limit() == 0 {
                        self.reservation =
                            Reservation::Rejected(pool.reject(RejectReason::Full, None));
                        continue;
                    }
                    self.reservation = match pool.enqueue(common.max_queue().unwrap_or(usize::MAX))
                    {
                        Enqueued::Acquired(permit) => Reservation::Reserved(permit),
                        Enqueued::Queued(ticket) => {
                            let since = Instant::now();
                            let at = max_wait.and_then(|wait| since.checked_add(wait));
                            if let Some(at) = at {
                                match &mut self.sleep {
                                    Some(sleep) => sleep.as_mut().reset(at),
                                    None => {
                                        self.sleep = Some(Box::pin(tokio::time::sleep_until(at)))
                                    }
                                }
                            }
                            Reservation::Waiting {
                                ticket,
                                since,
                                deadline: at.is_some(),
                            }
                        }
                        Enqueued::QueueFull | Enqueued::Retired => {
                            Reservation::Rejected(pool.reject(RejectReason::QueueFull, None))
                        }
                    };
                }
            }
        }
    }
}

impl<S, P, C, Req> Service<Req> for Bulkhead<S, P, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: Partition<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.backpressure {
            ready!(self.poll_reserve(cx));
            if matches!(self.reservation, Reservation::Rejected(_)) {
                // The call will fail fast without reaching the inner service.
                return Poll::Ready(Ok(()));
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let classify = self.classifier.clone();
        if self.shared.backpressure {
            return match std::mem::take(&mut self.reservation) {
                Reservation::Reserved(mut permit) => {
                    permit.start_clock();
                    ResponseFuture::running(self.inner.call(request), permit, classify)
                }
                Reservation::Rejected(error) => ResponseFuture::rejected(error, classify),
                other @ (Reservation::None | Reservation::Waiting { .. }) => {
                    self.reservation = other;
                    panic!("bulkhead `call` before `poll_ready` returned `Ready`");
                }
            };
        }
        let shared = &*self.shared;
        loop {
            let pool = shared.select(self.partition.key(&request).as_deref());
            match pool.try_take() {
                Ok(()) => {
                    let mut permit = pool.into_permit();
                    permit.start_clock();
                    return ResponseFuture::running(self.inner.call(request), permit, classify);
                }
                Err(TryAcquire::Retired) => continue,
                Err(TryAcquire::Full) => {}
            }
            let max_wait = shared.common.max_wait();
            if max_wait.is_some_and(|w| w.is_zero()) || pool.limit() == 0 {
                return ResponseFuture::rejected(pool.reject(RejectReason::Full, None), classify);
            }
            match pool.enqueue(shared.common.max_queue().unwrap_or(usize::MAX)) {
                Enqueued::Acquired(mut permit) => {
                    permit.start_clock();
                    return ResponseFuture::running(self.inner.call(request), permit, classify);
                }
                Enqueued::Queued(ticket) => {
                    let since = Instant::now();
                    // The ready service goes with the call; a clone takes its
                    // place and is polled ready before the next call.
                    let clone = self.inner.clone();
                    let service = std::mem::replace(&mut self.inner, clone);
                    return ResponseFuture::waiting(
                        ticket,
                        Deadline::new(since, max_wait),
                        service,
                        request,
                        since,
                        classify,
                    );
                }
                Enqueued::QueueFull => {
                    return ResponseFuture::rejected(
                        pool.reject(RejectReason::QueueFull, None),
                        classify,
                    );
                }
                Enqueued::Retired => {}
            }
        }
    }
}
