//! [`ResponseFuture`]: drives the chosen shard's service to readiness (with a
//! bound), calls it, and records the call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use tracing::Span;

use crate::error::ShardNotReady;
use crate::event::ShardEvent;
use crate::fallback::MoveFallback;
use crate::shared::{Shared, Slot};

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Driving the chosen replica to readiness.
        Ready,
        // The call is in flight.
        Called { #[pin] future: F },
        // Completed.
        Done,
    }
}

/// A second chance during a move: the previous owner and a copy of the
/// request.
pub(crate) struct Retry<S, Req, P> {
    pub(crate) policy: Arc<P>,
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) slot: Arc<Slot<S>>,
    pub(crate) replica: usize,
    pub(crate) service: S,
    pub(crate) request: Req,
}

pin_project! {
    /// The response future of [`ShardRouter`](crate::ShardRouter) and
    /// [`ShardService`](crate::ShardService).
    ///
    /// It owns a clone of the chosen replica's service and the request. On
    /// each poll it first drives that service to readiness (tower's
    /// `oneshot`), waiting at most the router's `ready_timeout` (the timer is
    /// created only if the service is not ready at once), then calls it and
    /// polls the call. Dropping it drops the clone and the call: whatever the
    /// shard's stack reserved in its `poll_ready` is released by that
    /// stack's own guards.
    ///
    /// # Panics
    ///
    /// If polled again after it completed.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // Created only when the service is not ready at once: boxed, so that
        // the common path carries no timer in the future.
        timer: Option<Pin<Box<Sleep>>>,
        service: Option<S>,
        request: Option<Req>,
        error: Option<BoxError>,
        slot: Option<Arc<Slot<S>>>,
        replica: usize,
        ready_timeout: Duration,
        timed: bool,
        started: Option<Instant>,
        in_flight: bool,
        base: Option<Instant>,
        retry: Option<Retry<S, Req, P>>,
        span: Span,
    }

    impl<S, Req, P> PinnedDrop for ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.in_flight {
                if let Some(slot) = this.slot.as_ref() {
                    let now = this.base.map_or(0, |base| nanos(Instant::now(), base));
                    slot.replicas[*this.replica].load.finish(None, now);
                }
            }
        }
    }
}

fn nanos(at: Instant, base: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    /// A call of replica `replica` of `slot` with `request`.
    ///
    /// The chosen service's `poll_ready` is tried once here, with a no-op
    /// waker: most services are ready at once, and then the call is made
    /// right away and the future only polls its response. Otherwise the
    /// future polls `poll_ready` again with the caller's waker (which then
    /// replaces the no-op one, as the `Service` contract requires of any
    /// service that returned `Pending`), with the bound. The slot is kept
    /// (one reference count) only when the call needs it afterwards: to
    /// time it, to update a replica's load, to wait, or to fall back.
    pub(crate) fn routed(
        shared: &Shared<S>,
        slot: &Arc<Slot<S>>,
        replica: usize,
        request: Req,
        retry: Option<Retry<S, Req, P>>,
    ) -> Self
    where
        S: Clone,
        S::Error: Into<BoxError>,
    {
        let chosen = &slot.replicas[replica];
        let mut service = chosen.service.clone();
        slot.requests.fetch_add(1, Ordering::Relaxed);
        slot.metrics.requests.increment(1);
        let multi = slot.replicas.len() > 1;
        if multi {
            chosen.requests.fetch_add(1, Ordering::Relaxed);
            chosen.load.start();
        }
        let span = tracing::debug_span!(
            "shard",
            name = %shared.name,
            shard = %slot.name,
            replica = %chosen.name,
        );
        let timed = shared.settings.record_latency;
        let mut this = Self {
            state: State::Ready,
            timer: None,
            service: None,
            request: None,
            error: None,
            started: None,
            in_flight: multi,
            base: multi.then_some(shared.base),
            slot: None,
            replica,
            ready_timeout: shared.settings.ready_timeout,
            timed,
            retry,
            span,
        };
        let ready = {
            let _entered = this.span.enter();
            service.poll_ready(&mut Context::from_waker(Waker::noop()))
        };
        match ready {
            Poll::Ready(Ok(())) => {
                if timed || multi {
                    this.started = Some(Instant::now());
                }
                let future = {
                    let _entered = this.span.enter();
                    service.call(request)
                };
                this.state = State::Called { future };
                if timed || multi || this.retry.is_some() {
                    this.slot = Some(Arc::clone(slot));
                }
            }
            Poll::Ready(Err(error)) => {
                this.error = Some(error.into());
                if multi {
                    this.slot = Some(Arc::clone(slot));
                }
            }
            Poll::Pending => {
                this.service = Some(service);
                this.request = Some(request);
                this.slot = Some(Arc::clone(slot));
            }
        }
        this
    }

    /// A future that fails at once with `error` (a request without a key).
    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Ready,
            timer: None,
            service: None,
            request: None,
            error: Some(error),
            slot: None,
            replica: 0,
            ready_timeout: Duration::ZERO,
            timed: false,
            started: None,
            in_flight: false,
            base: None,
            retry: None,
            span: Span::none(),
        }
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: MoveFallback<Req, S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // Owned, so that the projection stays free for the fallback.
        let _entered = this.span.clone().entered();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready => {
                    if let Some(error) = this.error.take() {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(error));
                    }
                    let service = this
                        .service
                        .as_mut()
                        .expect("ResponseFuture polled after completion");
                    match service.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error.into()));
                        }
                        Poll::Pending => {
                            let timeout = *this.ready_timeout;
                            let sleep = this
                                .timer
                                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                            ready!(sleep.as_mut().poll(cx));
                            // The wait is over and the service is still not
                            // ready: give up without calling it.
                            this.state.set(State::Done);
                            let slot = this.slot.as_ref().expect("a routed call has a slot");
                            slot.not_ready.fetch_add(1, Ordering::Relaxed);
                            slot.metrics.not_ready.increment(1);
                            tracing::debug!(
                                shard = %slot.name,
                                waited = ?*this.ready_timeout,
                                "shard not ready in time"
                            );
                            return Poll::Ready(Err(ShardNotReady::new(
                                Arc::clone(&slot.router),
                                Arc::clone(&slot.name),
                                *this.ready_timeout,
                            )
                            .into()));
                        }
                    }
                    let mut service = this.service.take().expect("checked above");
                    let request = this
                        .request
                        .take()
                        .expect("the request waits with its service");
                    if *this.timed || this.base.is_some() {
                        *this.started = Some(Instant::now());
                    }
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    // Timed calls keep their slot (see `routed`).
                    if let (Some(started), Some(slot)) = (*this.started, this.slot.as_ref()) {
                        let now = Instant::now();
                        let rtt = now.saturating_duration_since(started);
                        if *this.timed {
                            slot.metrics.duration.record(rtt);
                        }
                        if let Some(base) = *this.base {
                            let rtt = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
                            slot.replicas[*this.replica]
                                .load
                                .finish(Some(rtt), nanos(now, base));
                            *this.in_flight = false;
                        }
                    }
                    if this.retry.is_some() {
                        let falls_back = this
                            .retry
                            .as_ref()
                            .is_some_and(|retry| retry.policy.falls_back(&result));
                        let retry = this.retry.take().expect("checked above");
                        if falls_back {
                            this.fall_back(retry);
                            continue;
                        }
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Req, P> ResponseFutureProj<'_, S, Req, P>
where
    S: Service<Req>,
{
    /// Sends the kept copy to the previous owner: back to `Ready` with its
    /// service.
    fn fall_back(&mut self, retry: Retry<S, Req, P>) {
        let from = self.slot.take().expect("a routed call has a slot");
        from.fallbacks.fetch_add(1, Ordering::Relaxed);
        from.metrics.fallbacks.increment(1);
        tracing::debug!(from = %from.name, to = %retry.slot.name, "moved key: asking the previous owner");
        retry.shared.listeners.emit_with(|| ShardEvent::FellBack {
            router: Arc::clone(&retry.shared.name),
            from: Arc::clone(&from.name),
            to: Arc::clone(&retry.slot.name),
        });
        let chosen = &retry.slot.replicas[retry.replica];
        retry.slot.requests.fetch_add(1, Ordering::Relaxed);
        retry.slot.metrics.requests.increment(1);
        let multi = retry.slot.replicas.len() > 1;
        if multi {
            chosen.requests.fetch_add(1, Ordering::Relaxed);
            chosen.load.start();
        }
        *self.in_flight = multi;
        *self.base = multi.then_some(retry.shared.base);
        *self.started = None;
        *self.replica = retry.replica;
        *self.service = Some(retry.service);
        *self.request = Some(retry.request);
        *self.slot = Some(retry.slot);
        *self.timer = None;
        self.state.set(State::Ready);
    }
}

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("shard", &self.slot.as_ref().map(|s| &s.name))
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}
