//! [`ResponseFuture`]: drives the chosen shard's service to readiness (with a
//! bound), calls it, and records the call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker, ready};

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
    #[project_replace = StateReplace]
    enum State<S, Req, F, R> {
        // The chosen replica was not ready at once: driving it to readiness,
        // with the bound (the timer is created on the first `Pending`).
        Waiting {
            service: S,
            request: Req,
            timer: Option<Pin<Box<Sleep>>>,
            retry: Option<Box<R>>,
        },
        // The call is in flight, with the second chance it may get.
        Called {
            #[pin]
            future: F,
            retry: Option<Box<R>>,
        },
        // Failed before any call (no key, or the replica's `poll_ready`).
        Failed { error: BoxError },
        // Completed.
        Done,
    }
}

/// The state of a [`ResponseFuture`].
type CallState<S, Req, P> = State<S, Req, <S as Service<Req>>::Future, Retry<S, Req, P>>;

/// A second chance during a move: the previous owner and a copy of the
/// request. Boxed in the future: it exists only for a key that moved while a
/// [`FallBack`](crate::FallBack) policy keeps the previous map, so every
/// other call carries one pointer for it, not a second request and service.
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
    /// It owns the call of the chosen replica's service (a clone of it),
    /// made in `call` when the service is ready at once, as it usually is.
    /// Otherwise it owns the clone and the request and, on each poll, drives
    /// the service to readiness (tower's `oneshot`), waiting at most the
    /// router's `ready_timeout` (the timer is created only then), then calls
    /// it. Dropping it drops the clone and the call: whatever the shard's
    /// stack reserved in its `poll_ready` is released by that stack's own
    /// guards.
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
        state: CallState<S, Req, P>,
        // Kept (one reference count) only when the call needs its shard
        // afterwards: to time it, to update a replica's load, to wait, or to
        // fall back.
        slot: Option<Arc<Slot<S>>>,
        replica: usize,
        // When the call was made, for the latency histogram and the
        // replica's load; `None` when neither is wanted.
        started: Option<Instant>,
        timed: bool,
        // A replica's call counted in flight (replicated shards only).
        in_flight: bool,
        span: Span,
    }

    impl<S, Req, P> PinnedDrop for ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.in_flight
                && let Some(slot) = this.slot.as_ref() {
                    let now = slot.nanos_since_base(Instant::now());
                    slot.replicas[*this.replica].load.finish(None, now);
                }
        }
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    /// A call of replica `replica` of `slot` with `request`; `now` is the
    /// time the replica was picked at, if the pick read the clock.
    ///
    /// The chosen service's `poll_ready` is tried once here, with a no-op
    /// waker: most services are ready at once, and then the call is made
    /// right away and the future only polls its response. Otherwise the
    /// future polls `poll_ready` again with the caller's waker (which then
    /// replaces the no-op one, as the `Service` contract requires of any
    /// service that returned `Pending`), with the bound.
    #[inline]
    pub(crate) fn routed(
        shared: &Shared<S>,
        slot: &Arc<Slot<S>>,
        replica: usize,
        now: Option<Instant>,
        request: Req,
        retry: Option<Box<Retry<S, Req, P>>>,
    ) -> Self
    where
        S: Clone,
        S::Error: Into<BoxError>,
    {
        let chosen = &slot.replicas[replica];
        let mut service = chosen.service.clone();
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
        let (state, keep, started) = {
            let _entered = span.enter();
            match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => {
                    // The pick's clock reading serves as the start: the
                    // call is made right after it.
                    let started = if timed || multi {
                        Some(now.unwrap_or_else(Instant::now))
                    } else {
                        None
                    };
                    let keep = timed || multi || retry.is_some();
                    let future = service.call(request);
                    (State::Called { future, retry }, keep, started)
                }
                Poll::Ready(Err(error)) => (
                    State::Failed {
                        error: error.into(),
                    },
                    multi,
                    None,
                ),
                Poll::Pending => (
                    State::Waiting {
                        service,
                        request,
                        timer: None,
                        retry,
                    },
                    true,
                    None,
                ),
            }
        };
        // Counted last: the atomic add orders the memory accesses around it,
        // so everything else is done by then.
        slot.requests.fetch_add(1, Ordering::Relaxed);
        slot.metrics.requests.increment(1);
        Self {
            state,
            slot: keep.then(|| Arc::clone(slot)),
            replica,
            started,
            timed,
            in_flight: multi,
            span,
        }
    }

    /// A future that fails at once with `error` (a request without a key).
    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error },
            slot: None,
            replica: 0,
            started: None,
            timed: false,
            in_flight: false,
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
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future, .. } => {
                    let result = ready!(future.poll(cx));
                    // Timed calls keep their slot (see `routed`).
                    if let (Some(started), Some(slot)) = (*this.started, this.slot.as_ref()) {
                        let now = Instant::now();
                        let rtt = now.saturating_duration_since(started);
                        if *this.timed {
                            slot.metrics.duration.record(rtt);
                        }
                        if *this.in_flight {
                            let rtt = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
                            slot.replicas[*this.replica]
                                .load
                                .finish(Some(rtt), slot.nanos_since_base(now));
                            *this.in_flight = false;
                        }
                    }
                    // The finished call is dropped here, in place; the
                    // second chance, if any, comes out.
                    let retry = match this.state.as_mut().project_replace(State::Done) {
                        StateReplace::Called { retry, .. } => retry,
                        _ => None,
                    };
                    if let Some(retry) = retry
                        && retry.policy.falls_back(&result)
                    {
                        fall_back(
                            this.state.as_mut(),
                            this.slot,
                            this.replica,
                            this.started,
                            this.in_flight,
                            *retry,
                        );
                        continue;
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Waiting { service, timer, .. } => {
                    match service.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error.into()));
                        }
                        Poll::Pending => {
                            let slot = this.slot.as_ref().expect("a routed call has a slot");
                            let timeout = slot.ready_timeout;
                            let sleep =
                                timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                            ready!(sleep.as_mut().poll(cx));
                            // The wait is over and the service is still not
                            // ready: give up without calling it.
                            this.state.set(State::Done);
                            slot.not_ready.fetch_add(1, Ordering::Relaxed);
                            slot.metrics.not_ready.increment(1);
                            tracing::debug!(
                                shard = %slot.name,
                                waited = ?timeout,
                                "shard not ready in time"
                            );
                            return Poll::Ready(Err(ShardNotReady::new(
                                Arc::clone(&slot.router),
                                Arc::clone(&slot.name),
                                timeout,
                            )
                            .into()));
                        }
                    }
                    if *this.timed || *this.in_flight {
                        *this.started = Some(Instant::now());
                    }
                    if let StateReplace::Waiting {
                        mut service,
                        request,
                        retry,
                        ..
                    } = this.state.as_mut().project_replace(State::Done)
                    {
                        let future = service.call(request);
                        this.state.set(State::Called { future, retry });
                    }
                }
                StateProj::Failed { .. } => {
                    if let StateReplace::Failed { error } =
                        this.state.as_mut().project_replace(State::Done)
                    {
                        return Poll::Ready(Err(error));
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Sends the kept copy to the previous owner: back to `Waiting` with its
/// service.
fn fall_back<S, Req, P>(
    mut state: Pin<&mut CallState<S, Req, P>>,
    slot: &mut Option<Arc<Slot<S>>>,
    replica: &mut usize,
    started: &mut Option<Instant>,
    in_flight: &mut bool,
    retry: Retry<S, Req, P>,
) where
    S: Service<Req>,
{
    let from = slot.take().expect("a routed call has a slot");
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
    *in_flight = multi;
    *started = None;
    *replica = retry.replica;
    *slot = Some(retry.slot);
    state.set(State::Waiting {
        service: retry.service,
        request: retry.request,
        timer: None,
        retry: None,
    });
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
