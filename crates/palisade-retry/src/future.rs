//! The response future of [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use palisade_core::stripe::Stripe;
use palisade_core::{BoxError, Classify, DeadlineExpired, Outcome, is_caused_by, is_rejection};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::error::{AttemptTimedOut, DeadlineExceeded, NoTimeToRetry, RequestLost};
use crate::event::{RetryEvent, RetryReason, StopReason};
use crate::kind::{Inspect, Replay, ServerDelay, Start};
use crate::shared::Shared;
use crate::state::backoff::Jitter;

pin_project! {
    /// The future returned by [`Retry`](crate::Retry): the attempt loop.
    ///
    /// It owns the inner service readied for the call, the copy of the
    /// request kept for retries, and at most one timer (the attempt's
    /// timeout or the deadline, or the backoff). Dropping it drops the
    /// attempt in flight and the timer at once: nothing is spawned, so no
    /// attempt starts after the drop.
    ///
    /// # Panics
    ///
    /// If polled again after it completed, like any future that is not
    /// fused.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, C, K>
    where
        K: Replay<Req>,
        S: Service<K::Sent>,
    {
        svc: S,
        stripe: Arc<Stripe<Shared<C, K>>>,
        held: Option<K::Held>,
        attempt: u32,
        deadline: Option<Instant>,
        // The deadline the request carried, when it is the one in force
        // (earlier than the layer's own).
        carried: Option<Instant>,
        previous_delay: Duration,
        timer_armed: bool,
        #[pin]
        timer: Option<Sleep>,
        #[pin]
        state: State<S::Future, K::Prepare>,
        _req: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, P> {
        // Buffering the request body before the first attempt.
        Preparing { #[pin] prepare: P },
        // An attempt is in flight.
        Called { #[pin] future: F },
        // Waiting out the backoff before the next attempt.
        Backoff,
        // Driving the inner service to readiness for the next attempt.
        Ready,
        // Completed.
        Done,
    }
}

impl<S, Req, C, K> ResponseFuture<S, Req, C, K>
where
    K: Replay<Req>,
    S: Service<K::Sent>,
{
    /// Starts the first attempt (or the body buffering before it). `svc` has
    /// been polled ready.
    #[inline]
    pub(crate) fn new(mut svc: S, stripe: Arc<Stripe<Shared<C, K>>>, req: Req) -> Self {
        let shared = stripe.get();
        let replay = shared.max_attempts() > 1;
        let carried = shared.kind.carried_deadline(&req);
        let now = (shared.timed() || carried.is_some()).then(Instant::now);
        let own = now.and_then(|now| shared.deadline().and_then(|d| now.checked_add(d)));
        // The earlier deadline is in force: the caller's, or the layer's own.
        let (deadline, carried) = match (own, carried) {
            (Some(own), Some(carried)) if carried < own => (Some(carried), Some(carried)),
            (Some(own), _) => (Some(own), None),
            (None, carried) => (carried, carried),
        };
        shared.metrics.attempts.increment(1);
        let mut held = None;
        let (state, timer_at) = match shared
            .kind
            .start(req, &mut held, replay, |sent| svc.call(sent))
        {
            Start::Sent(future) => {
                let at = now.and_then(|now| attempt_end(now, shared.attempt_timeout(), deadline));
                (State::Called { future }, at)
            }
            // The attempt is counted now: it starts as soon as the body is in.
            Start::Prepare(prepare) => (State::Preparing { prepare }, deadline),
        };
        // One literal, not a value built and then filled in field by field:
        // that one is copied out whole with wide loads right after its narrow
        // stores, and the loads stall (a third slower on the `u64` path),
        // costing more than the moves it saves.
        Self {
            svc,
            stripe,
            held,
            attempt: 1,
            deadline,
            carried,
            previous_delay: Duration::ZERO,
            timer_armed: timer_at.is_some(),
            timer: timer_at.map(sleep_until),
            state,
            _req: PhantomData,
        }
    }
}

/// When the attempt starting at `now` must end: its timeout or the
/// deadline, whichever comes first.
fn attempt_end(
    now: Instant,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> Option<Instant> {
    match (timeout.and_then(|t| now.checked_add(t)), deadline) {
        (Some(a), Some(d)) => Some(a.min(d)),
        (a, d) => a.or(d),
    }
}

/// Points the one timer at `at` (creating it the first time), or disarms it.
fn arm(mut timer: Pin<&mut Option<Sleep>>, armed: &mut bool, at: Option<Instant>) {
    *armed = at.is_some();
    let Some(at) = at else { return };
    match timer.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => timer.set(Some(sleep_until(at))),
    }
}

/// `true` once the armed timer has fired (it is then disarmed).
fn fired(timer: Pin<&mut Option<Sleep>>, armed: &mut bool, cx: &mut Context<'_>) -> bool {
    if !*armed {
        return false;
    }
    let done = timer
        .as_pin_mut()
        .is_some_and(|sleep| sleep.poll(cx).is_ready());
    if done {
        *armed = false;
    }
    done
}

/// What to do with a completed attempt.
enum Decision {
    /// Return the outcome: `success` unless it is a failure.
    Return {
        success: bool,
        stop: Option<StopReason>,
    },
    Retry {
        delay: Duration,
        /// When the backoff ends; `None` only for a zero delay.
        wake: Option<Instant>,
        reason: RetryReason,
        retry_after: bool,
    },
}

impl<S, Req, C, K> Future for ResponseFuture<S, Req, C, K>
where
    K: Replay<Req> + Inspect<S::Response>,
    S: Service<K::Sent>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The fast path: the first attempt, without a timer, that does not
        // fail.
        if *this.attempt == 1
            && !*this.timer_armed
            && let StateProj::Called { future } = this.state.as_mut().project()
        {
            let (result, outcome) = classified(this.stripe.get(), ready!(future.poll(cx)));
            this.state.set(State::Done);
            if first_attempt_succeeded(this.stripe.get(), &result, outcome) {
                return Poll::Ready(result);
            }
            return poll_slow(this, cx, Some((result, outcome)));
        }
        poll_slow(this, cx, None)
    }
}

/// Classifies an attempt's own result (the inner service's `Result`, as
/// every layer's classifier sees it), then boxes its error.
#[inline]
fn classified<C, K, Res, E>(
    shared: &Shared<C, K>,
    result: Result<Res, E>,
) -> (Result<Res, BoxError>, Outcome)
where
    C: Classify<Res, E>,
    E: Into<BoxError>,
{
    let outcome = shared.classifier.classify(&result);
    (result.map_err(Into::into), outcome)
}

/// Counts and returns `true` if a first attempt's result is not a failure.
#[inline]
fn first_attempt_succeeded<C, K, Res>(
    shared: &Shared<C, K>,
    result: &Result<Res, BoxError>,
    outcome: Outcome,
) -> bool
where
    K: Inspect<Res>,
{
    let ok = match result {
        Ok(res) => !K::is_rejection_response(res) && outcome != Outcome::Failure,
        Err(_) => false,
    };
    if ok {
        shared.metrics.success_without_retry.increment(1);
    }
    ok
}

/// Everything but the fast path: preparing, timers, failed attempts,
/// backoff, readiness for the next attempt. `completed` is an attempt that
/// just finished (its future already dropped), with its classification.
#[inline(never)]
fn poll_slow<S, Req, C, K>(
    mut this: ResponseFutureProj<'_, S, Req, C, K>,
    cx: &mut Context<'_>,
    mut completed: Option<(Result<S::Response, BoxError>, Outcome)>,
) -> Poll<Result<S::Response, BoxError>>
where
    K: Replay<Req> + Inspect<S::Response>,
    S: Service<K::Sent>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    let shared: &Shared<C, K> = this.stripe.get();
    loop {
        if let Some((result, outcome)) = completed.take() {
            let decision = decide(
                shared,
                &result,
                outcome,
                *this.attempt,
                this.held.is_some(),
                *this.previous_delay,
                *this.deadline,
            );
            match decision {
                Decision::Return { success, stop } => {
                    report_return(shared, *this.attempt, success, stop);
                    if stop == Some(StopReason::Deadline) && this.carried.is_some() {
                        // The caller's deadline leaves no room for another
                        // attempt: an error says so.
                        return Poll::Ready(result.map_err(|error| {
                            let left = this
                                .deadline
                                .map(|d| d.saturating_duration_since(Instant::now()))
                                .unwrap_or_default();
                            NoTimeToRetry::new(*this.attempt, left, error).into()
                        }));
                    }
                    return Poll::Ready(result);
                }
                Decision::Retry {
                    delay,
                    wake,
                    reason,
                    retry_after,
                } => {
                    // Release the failed response (and its connection) now.
                    drop(result);
                    report_retry(shared, *this.attempt + 1, reason, delay, retry_after);
                    *this.previous_delay = delay;
                    match wake {
                        Some(at) if !delay.is_zero() => {
                            arm(this.timer.as_mut(), this.timer_armed, Some(at));
                            this.state.set(State::Backoff);
                        }
                        _ => {
                            this.state.set(State::Ready);
                            arm(this.timer.as_mut(), this.timer_armed, *this.deadline);
                        }
                    }
                }
            }
        }
        match this.state.as_mut().project() {
            StateProj::Preparing { prepare } => match prepare.poll(cx) {
                Poll::Ready(Ok(prepared)) => {
                    let Some(sent) = shared.kind.prepared(this.held, prepared) else {
                        this.state.set(State::Done);
                        report_return(shared, *this.attempt, false, None);
                        return Poll::Ready(Err(RequestLost::new(*this.attempt).into()));
                    };
                    let future = this.svc.call(sent);
                    this.state.set(State::Called { future });
                    let at = (shared.timed() || this.deadline.is_some())
                        .then(|| {
                            attempt_end(Instant::now(), shared.attempt_timeout(), *this.deadline)
                        })
                        .flatten();
                    arm(this.timer.as_mut(), this.timer_armed, at);
                }
                Poll::Ready(Err(error)) => {
                    // The request body failed before anything was sent.
                    this.state.set(State::Done);
                    report_return(shared, *this.attempt, false, None);
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => {
                    if fired(this.timer.as_mut(), this.timer_armed, cx) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(deadline_exceeded(
                            shared,
                            *this.attempt,
                            this.carried.is_some(),
                        )));
                    }
                    return Poll::Pending;
                }
            },
            StateProj::Called { future } => {
                let (result, outcome) = match future.poll(cx) {
                    Poll::Ready(result) => classified(shared, result),
                    Poll::Pending => {
                        if !fired(this.timer.as_mut(), this.timer_armed, cx) {
                            return Poll::Pending;
                        }
                        if this.deadline.is_some_and(|d| Instant::now() >= d) {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(deadline_exceeded(
                                shared,
                                *this.attempt,
                                this.carried.is_some(),
                            )));
                        }
                        let after = shared.attempt_timeout().unwrap_or_default();
                        // The layer's own error: the classifier, which judges
                        // the inner service's results, never sees it.
                        let outcome = if shared.settings.retry_on_attempt_timeout {
                            Outcome::Failure
                        } else {
                            Outcome::Ignored
                        };
                        let error = AttemptTimedOut::new(*this.attempt, after);
                        (Err(error.into()), outcome)
                    }
                };
                // Drops the attempt's future (cancelling it on timeout).
                this.state.set(State::Done);
                *this.timer_armed = false;
                if *this.attempt == 1 && first_attempt_succeeded(shared, &result, outcome) {
                    return Poll::Ready(result);
                }
                completed = Some((result, outcome));
            }
            StateProj::Backoff => {
                // Entered only with the timer armed at the backoff's end.
                debug_assert!(*this.timer_armed);
                if let Some(sleep) = this.timer.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                this.state.set(State::Ready);
                arm(this.timer.as_mut(), this.timer_armed, *this.deadline);
            }
            StateProj::Ready => match this.svc.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let attempt = *this.attempt + 1;
                    let last = attempt >= shared.max_attempts();
                    let Some(sent) = shared.kind.resend(this.held, attempt, last) else {
                        // `decide` only retries while a copy is held.
                        this.state.set(State::Done);
                        report_return(
                            shared,
                            *this.attempt,
                            false,
                            Some(StopReason::NotReplayable),
                        );
                        return Poll::Ready(Err(RequestLost::new(attempt).into()));
                    };
                    *this.attempt = attempt;
                    shared.metrics.attempts.increment(1);
                    let future = this.svc.call(sent);
                    this.state.set(State::Called { future });
                    let at = (shared.timed() || this.deadline.is_some())
                        .then(|| {
                            attempt_end(Instant::now(), shared.attempt_timeout(), *this.deadline)
                        })
                        .flatten();
                    arm(this.timer.as_mut(), this.timer_armed, at);
                }
                Poll::Ready(Err(error)) => {
                    // A readiness error ends the call, as in tower.
                    this.state.set(State::Done);
                    report_return(shared, *this.attempt, false, None);
                    return Poll::Ready(Err(error.into()));
                }
                Poll::Pending => {
                    if fired(this.timer.as_mut(), this.timer_armed, cx) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(deadline_exceeded(
                            shared,
                            *this.attempt,
                            this.carried.is_some(),
                        )));
                    }
                    return Poll::Pending;
                }
            },
            StateProj::Done => panic!("retry ResponseFuture polled after completion"),
        }
    }
}

fn decide<C, K, Res>(
    shared: &Shared<C, K>,
    result: &Result<Res, BoxError>,
    outcome: Outcome,
    attempt: u32,
    can_replay: bool,
    previous_delay: Duration,
    deadline: Option<Instant>,
) -> Decision
where
    K: Inspect<Res>,
{
    let fail = |stop| Decision::Return {
        success: false,
        stop: Some(stop),
    };
    // Overload signals first: no classifier can make them retryable.
    let rejected = match result {
        Err(error) => is_rejection(&**error),
        Ok(res) => K::is_rejection_response(res),
    };
    if rejected {
        return fail(StopReason::Rejected);
    }
    if outcome != Outcome::Failure {
        return Decision::Return {
            success: true,
            stop: None,
        };
    }
    let reason = match result {
        Err(error) if is_caused_by::<AttemptTimedOut>(&**error) => RetryReason::Timeout,
        Err(_) => RetryReason::Error,
        Ok(_) => RetryReason::Response,
    };
    if attempt >= shared.max_attempts() {
        return fail(StopReason::MaxAttempts);
    }
    if !can_replay {
        return fail(StopReason::NotReplayable);
    }
    let server_delay = match result {
        Ok(res) => shared.kind.retry_after(res),
        Err(_) => None,
    };
    let (delay, retry_after) = match server_delay {
        Some(ServerDelay::Wait(delay)) => (delay, true),
        Some(ServerDelay::TooLong(_)) => return fail(StopReason::RetryAfterTooLong),
        None => {
            let random =
                shared.settings.backoff.is_decorrelated() || shared.settings.jitter != Jitter::None;
            let sample = if random {
                shared.core.rng.sample()
            } else {
                0.0
            };
            let delay = shared.settings.backoff.delay(
                attempt,
                previous_delay,
                shared.settings.jitter,
                sample,
            );
            (delay, false)
        }
    };
    // When the backoff ends. An instant the clock cannot represent is never
    // "now": the last outcome is returned instead.
    let wake = if delay.is_zero() && deadline.is_none() {
        None
    } else {
        match Instant::now().checked_add(delay) {
            Some(at) => Some(at),
            None if retry_after => return fail(StopReason::RetryAfterTooLong),
            None => return fail(StopReason::DelayTooLong),
        }
    };
    if let (Some(deadline), Some(at)) = (deadline, wake)
        && at >= deadline
    {
        return fail(StopReason::Deadline);
    }
    // The budget last, so that a retry refused for another reason spends
    // nothing.
    if let Some(budget) = &shared.budget
        && !budget.withdraw()
    {
        return fail(StopReason::BudgetExhausted);
    }
    Decision::Retry {
        delay,
        wake,
        reason,
        retry_after,
    }
}

fn report_retry<C, K>(
    shared: &Shared<C, K>,
    attempt: u32,
    reason: RetryReason,
    delay: Duration,
    retry_after: bool,
) {
    shared.metrics.retry(reason);
    tracing::debug!(
        name = %shared.name(),
        attempt,
        reason = reason.as_str(),
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        retry_after,
        "retrying"
    );
    shared.core.listeners.emit_with(|| RetryEvent::Retry {
        name: Arc::clone(shared.name()),
        attempt,
        reason,
        delay,
        retry_after,
    });
}

fn report_return<C, K>(
    shared: &Shared<C, K>,
    attempts: u32,
    success: bool,
    stop: Option<StopReason>,
) {
    shared.metrics.outcome(success, attempts > 1);
    if success {
        if attempts > 1 {
            shared.core.listeners.emit_with(|| RetryEvent::Recovered {
                name: Arc::clone(shared.name()),
                attempts,
            });
        }
        return;
    }
    let Some(reason) = stop else { return };
    if reason == StopReason::BudgetExhausted {
        shared.metrics.budget_exhausted.increment(1);
        tracing::debug!(
            name = %shared.name(),
            attempts,
            "retry budget exhausted; returning the last outcome"
        );
    } else {
        tracing::debug!(name = %shared.name(), attempts, reason = reason.as_str(), "not retrying");
    }
    shared.core.listeners.emit_with(|| RetryEvent::Stopped {
        name: Arc::clone(shared.name()),
        attempts,
        reason,
    });
}

/// The error for a deadline that passed: the caller's deadline carried with
/// the request ([`DeadlineExpired`], palisade-core's), or the layer's own
/// ([`DeadlineExceeded`]).
fn deadline_exceeded<C, K>(shared: &Shared<C, K>, attempts: u32, carried: bool) -> BoxError {
    report_return(shared, attempts, false, Some(StopReason::Deadline));
    if carried {
        return DeadlineExpired::new(Arc::clone(shared.name())).into();
    }
    DeadlineExceeded::new(attempts, shared.deadline().unwrap_or_default()).into()
}

impl<S, Req, C, K> fmt::Debug for ResponseFuture<S, Req, C, K>
where
    K: Replay<Req>,
    S: Service<K::Sent>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Preparing { .. } => "preparing",
            State::Called { .. } => "called",
            State::Backoff => "backoff",
            State::Ready => "ready",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("name", self.stripe.name())
            .field("attempt", &self.attempt)
            .field("state", &state)
            .field("deadline", &self.deadline)
            .field("carried", &self.carried.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! Delays whose end the clock cannot represent. The builder refuses the
    //! settings that lead there, so these build without its duration checks:
    //! the future must still never read such a delay as "retry now".

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use palisade_core::BoxError;
    use tokio::time::Instant;
    use tower::{Layer, ServiceExt};

    use crate::{Backoff, Jitter, RetryEvent, RetryLayer, StopReason};

    type Stops = Arc<Mutex<Vec<StopReason>>>;

    fn stops() -> (Stops, impl Fn(&RetryEvent) + Send + Sync + 'static) {
        let stops = Stops::default();
        let sink = Arc::clone(&stops);
        let listener = move |e: &RetryEvent| {
            if let RetryEvent::Stopped { reason, .. } = e {
                sink.lock().unwrap().push(*reason);
            }
        };
        (stops, listener)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_unrepresentable_backoff_returns_the_last_outcome() {
        let (stops, listener) = stops();
        let layer = RetryLayer::builder("huge")
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::MAX))
            .jitter(Jitter::None)
            .no_budget()
            .on_event(listener)
            .build_unbounded()
            .unwrap();
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        let inner = tower::service_fn(move |_: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, BoxError>("down".into()) }
        });
        let start = Instant::now();
        let err = layer.layer(inner).oneshot(1).await.unwrap_err();
        assert_eq!(err.to_string(), "down");
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "retried at once");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(*stops.lock().unwrap(), [StopReason::DelayTooLong]);
    }

    #[cfg(feature = "http")]
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_unrepresentable_retry_after_returns_the_response() {
        use http::header::RETRY_AFTER;
        use http::{Request, Response, StatusCode};

        let (stops, listener) = stops();
        let layer = RetryLayer::http_builder("huge")
            .max_attempts(3)
            .max_retry_after(Duration::MAX)
            .no_budget()
            .on_event(listener)
            .build_unbounded()
            .unwrap();
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        let inner = tower::service_fn(move |_: Request<_>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                let res = Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .header(RETRY_AFTER, u64::MAX.to_string())
                    .body(String::new())
                    .unwrap();
                Ok::<_, BoxError>(res)
            }
        });
        let req = Request::get("/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let start = Instant::now();
        let res = layer.layer(inner).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "retried at once");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(*stops.lock().unwrap(), [StopReason::RetryAfterTooLong]);
    }
}
