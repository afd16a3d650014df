//! The response future of [`Hedge`](crate::Hedge).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::stripe::Stripe;
use palisade_core::{BoxError, Classify, Outcome};
use palisade_retry::kind::{Replay, Start};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::shared::Shared;

pin_project! {
    /// The future of a hedged call: the first attempt, the hedges sent after
    /// it, and the timer for the next one.
    ///
    /// The first attempt is held inline; hedges, sent for a few requests in
    /// a hundred, are boxed as they are sent. The timer is created only if the
    /// first attempt is still pending when polled, and a hedge is due. The
    /// first answer that is not a failure wins, and every other attempt is
    /// dropped at once (cancelled). Dropping the future drops them all.
    ///
    /// # Panics
    ///
    /// If polled again after it completed, like any future that is not
    /// fused.
    pub struct ResponseFuture<S, Req, C, K>
    where
        K: Replay<Req>,
        S: Service<K::Sent>,
    {
        svc: S,
        shared: Arc<Stripe<Shared<C, K>>>,
        held: Option<K::Held>,
        // When the first attempt was sent: its latency counts from here.
        start: Instant,
        // When the last attempt was sent: the next hedge is due `delay` later.
        sent_at: Instant,
        // This request's hedge delay; `None` when it will not be hedged (any
        // more).
        delay: Option<Duration>,
        // Attempts sent, the first included.
        sent: u32,
        // A hedge is due and its budget granted: driving `svc` to readiness.
        waiting_ready: bool,
        // The latest failed answer, returned if every attempt fails.
        failed: Option<Result<S::Response, BoxError>>,
        #[pin]
        timer: Option<Sleep>,
        #[pin]
        primary: Primary<S::Future, K::Prepare>,
        hedges: Vec<Attempt<S::Future>>,
        _req: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = PrimaryProj]
    enum Primary<F, P> {
        // Buffering the request body before the first attempt.
        Preparing { #[pin] prepare: P },
        // The first attempt is in flight.
        Called { #[pin] future: F },
        // The first attempt answered (and failed), or was dropped.
        Gone,
    }
}

/// A hedge in flight.
struct Attempt<F> {
    future: Pin<Box<F>>,
    sent_at: Instant,
    attempt: u32,
}

/// What an answer settles.
enum Settled<T> {
    /// The call's result: it wins.
    Won(Result<T, BoxError>),
    /// A failed answer: the others, if any, keep running.
    Failed(Result<T, BoxError>),
}

impl<S, Req, C, K> ResponseFuture<S, Req, C, K>
where
    K: Replay<Req>,
    S: Service<K::Sent>,
{
    /// Sends the first attempt (or starts buffering its body). `svc` has
    /// been polled ready.
    #[inline]
    pub(crate) fn new(mut svc: S, shared: Arc<Stripe<Shared<C, K>>>, req: Req) -> Self {
        let now = Instant::now();
        let delay = shared.stats.delay();
        let mut held = None;
        let primary = match shared
            .kind
            .start(req, &mut held, delay.is_some(), |sent| svc.call(sent))
        {
            Start::Sent(future) => Primary::Called { future },
            Start::Prepare(prepare) => Primary::Preparing { prepare },
        };
        // No copy kept (the request cannot be replayed: a POST, a body too
        // large): never hedged.
        let delay = if held.is_some() { delay } else { None };
        Self {
            svc,
            shared,
            held,
            start: now,
            sent_at: now,
            delay,
            sent: 1,
            waiting_ready: false,
            failed: None,
            timer: None,
            primary,
            hedges: Vec::new(),
            _req: PhantomData,
        }
    }
}

/// Classifies an answer; a winner's latency (from `since`) is observed.
#[inline]
fn settle<C, K, T, E>(shared: &Shared<C, K>, result: Result<T, E>, since: Instant) -> Settled<T>
where
    C: Classify<T, E>,
    E: Into<BoxError>,
{
    let outcome = shared.classifier.classify(&result);
    let result = result.map_err(Into::into);
    match outcome {
        Outcome::Failure => Settled::Failed(result),
        Outcome::Success => {
            let now = Instant::now();
            shared
                .stats
                .record(now, now.saturating_duration_since(since));
            Settled::Won(result)
        }
        Outcome::Ignored => Settled::Won(result),
    }
}

impl<S, Req, C, K> Future for ResponseFuture<S, Req, C, K>
where
    K: Replay<Req>,
    S: Service<K::Sent>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &**this.shared;
        let max_hedges = shared.stats.settings.max_hedges;
        loop {
            // The first attempt.
            match this.primary.as_mut().project() {
                PrimaryProj::Preparing { prepare } => match prepare.poll(cx) {
                    Poll::Ready(Ok(prepared)) => {
                        let Some(sent) = shared.kind.prepared(this.held, prepared) else {
                            this.primary.set(Primary::Gone);
                            return Poll::Ready(Err("hedge: the request head was lost".into()));
                        };
                        if this.held.is_none() {
                            // The body outgrew its size hint: sent once.
                            *this.delay = None;
                        }
                        let future = this.svc.call(sent);
                        this.primary.set(Primary::Called { future });
                        *this.start = Instant::now();
                        *this.sent_at = *this.start;
                        continue;
                    }
                    Poll::Ready(Err(error)) => {
                        this.primary.set(Primary::Gone);
                        return Poll::Ready(Err(error));
                    }
                    // Nothing is hedged before the first attempt is sent.
                    Poll::Pending => return Poll::Pending,
                },
                PrimaryProj::Called { future } => {
                    if let Poll::Ready(result) = future.poll(cx) {
                        this.primary.set(Primary::Gone);
                        match settle(shared, result, *this.start) {
                            Settled::Won(result) => {
                                // Cancel the hedges still in flight.
                                this.hedges.clear();
                                return Poll::Ready(result);
                            }
                            Settled::Failed(result) => *this.failed = Some(result),
                        }
                    }
                }
                PrimaryProj::Gone => {}
            }

            // The hedges in flight.
            let mut i = 0;
            while i < this.hedges.len() {
                let Poll::Ready(result) = this.hedges[i].future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let Attempt {
                    sent_at, attempt, ..
                } = this.hedges.swap_remove(i);
                match settle(shared, result, sent_at) {
                    Settled::Won(result) => {
                        // Cancel the first attempt and the other hedges.
                        this.primary.set(Primary::Gone);
                        this.hedges.clear();
                        if result.is_ok() {
                            shared.stats.won(attempt);
                        }
                        return Poll::Ready(result);
                    }
                    Settled::Failed(result) => *this.failed = Some(result),
                }
            }

            // Every attempt answered, and failed: the last failure is the
            // answer (retrying is the retry layer's job, not hedging's).
            if matches!(*this.primary, Primary::Gone) && this.hedges.is_empty() {
                if let Some(failed) = this.failed.take() {
                    return Poll::Ready(failed);
                }
                return Poll::Ready(Err("hedge: no attempt in flight".into()));
            }

            let Some(delay) = *this.delay else {
                return Poll::Pending;
            };

            // A hedge is due: send it once the service is ready. Readiness is
            // polled only now, for a hedge about to be sent, never reserved
            // ahead.
            if *this.waiting_ready {
                match this.svc.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let attempt = *this.sent + 1;
                        let last = attempt > max_hedges;
                        let Some(req) = shared.kind.resend(this.held, attempt, last) else {
                            *this.waiting_ready = false;
                            *this.delay = None;
                            return Poll::Pending;
                        };
                        let now = Instant::now();
                        this.hedges.push(Attempt {
                            future: Box::pin(this.svc.call(req)),
                            sent_at: now,
                            attempt,
                        });
                        *this.sent = attempt;
                        *this.sent_at = now;
                        *this.waiting_ready = false;
                        shared.stats.hedged(attempt, delay);
                        if last {
                            *this.delay = None;
                        } else if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                            match now.checked_add(delay) {
                                Some(at) => timer.reset(at),
                                None => *this.delay = None,
                            }
                        }
                        // Poll the hedge just sent.
                        continue;
                    }
                    Poll::Ready(Err(error)) => {
                        // The service cannot take a hedge: the attempts in
                        // flight go on, without more hedges.
                        let error: BoxError = error.into();
                        tracing::debug!(
                            name = %shared.stats.name,
                            %error,
                            "not hedging: the service is not ready"
                        );
                        *this.waiting_ready = false;
                        *this.delay = None;
                        return Poll::Pending;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }

            // The timer for the next hedge, created the first time it is
            // needed.
            if this.timer.is_none() {
                let Some(at) = this.sent_at.checked_add(delay) else {
                    *this.delay = None;
                    return Poll::Pending;
                };
                this.timer.set(Some(sleep_until(at)));
            }
            let Some(timer) = this.timer.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            if timer.poll(cx).is_pending() {
                return Poll::Pending;
            }
            if shared.stats.budget.withdraw() {
                *this.waiting_ready = true;
            } else {
                shared.stats.exhausted();
                *this.delay = None;
                return Poll::Pending;
            }
        }
    }
}

impl<S, Req, C, K> fmt::Debug for ResponseFuture<S, Req, C, K>
where
    K: Replay<Req>,
    S: Service<K::Sent>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let primary = match self.primary {
            Primary::Preparing { .. } => "preparing",
            Primary::Called { .. } => "called",
            Primary::Gone => "gone",
        };
        f.debug_struct("ResponseFuture")
            .field("name", &self.shared.stats.name)
            .field("primary", &primary)
            .field("hedges_in_flight", &self.hedges.len())
            .field("sent", &self.sent)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}
