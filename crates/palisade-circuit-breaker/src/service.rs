//! The service: admission in `poll_ready`, the decision carried into `call`.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::{BoxError, CircuitOpen, Classify, ErrorsAsFailures, Outcome};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Kind, ResponseFuture};
use crate::handle::CircuitBreakerHandle;
use crate::layer::Shared;
use crate::state::{Admit, Now, State, nanos_since};

/// A service guarded by a circuit breaker; built by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` decides whether the next call may pass (see the crate's
/// Backpressure section); a rejected call fails at once from its future with
/// [`CircuitOpen`], without reaching the inner service. Clones share the
/// breaker but not readiness: a clone starts unready and holds no probe permit.
pub struct CircuitBreaker<S, C = ErrorsAsFailures> {
    inner: S,
    gate: Gate<C>,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C>>) -> Self {
        Self {
            inner,
            gate: Gate::new(shared),
        }
    }

    /// A handle to read and control the breaker.
    #[must_use]
    pub fn handle(&self) -> CircuitBreakerHandle {
        self.gate.handle()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the breaker, returning the inner service (a probe permit held
    /// by a pending readiness is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    /// The clone shares the breaker, but not readiness: it must be polled
    /// ready itself, and holds no probe permit.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.gate
            .poll_ready(&mut self.inner, cx)
            .map_err(Into::into)
    }

    /// # Panics
    ///
    /// If called without a successful `poll_ready` first.
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.gate.call(&mut self.inner, req))
    }
}

// ===== Gate =====

/// The admission logic shared by the plain and the HTTP service.
pub(crate) struct Gate<C> {
    shared: Arc<Shared<C>>,
    ready: Option<Ready<C>>,
}

/// The decision `poll_ready` took for the next call.
enum Ready<C> {
    /// Disabled: pass, record nothing (the ticket detects a state change).
    Pass(u64),
    /// Closed or MetricsOnly: pass and record under this ticket.
    Record(u64),
    /// HalfOpen: a probe permit, held until the call completes.
    Probe(Recorder<C>),
    /// Reject from the call's future.
    Reject {
        state: State,
        retry_after: Option<std::time::Duration>,
    },
}

impl<C> Gate<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>) -> Self {
        Self {
            shared,
            ready: None,
        }
    }

    pub(crate) fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(&self.shared.core))
    }

    fn admit(&self) -> Ready<C> {
        let core = &self.shared.core;
        match core.admit(&mut Now::lazy(core.base())) {
            Admit::Pass => Ready::Pass(core.word()),
            Admit::Record(ticket) => Ready::Record(ticket),
            Admit::Probe(ticket) => {
                Ready::Probe(Recorder::new(Arc::clone(&self.shared), ticket, true))
            }
            Admit::Reject { state, retry_after } => Ready::Reject { state, retry_after },
        }
    }

    /// `poll_ready` for an inner service.
    #[inline]
    pub(crate) fn poll_ready<S, Req>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), S::Error>>
    where
        S: Service<Req>,
    {
        let core = &self.shared.core;
        // A decision already taken stands, unless the breaker moved since
        // (then a stale probe permit is given back by its drop).
        let keep = match &self.ready {
            None => false,
            Some(Ready::Reject { .. }) => return Poll::Ready(Ok(())),
            Some(Ready::Pass(t) | Ready::Record(t)) => core.is_current(*t),
            Some(Ready::Probe(r)) => core.is_current(r.ticket),
        };
        if !keep {
            self.ready = None;
            match self.admit() {
                reject @ Ready::Reject { .. } => {
                    // Rejected from the future: never poll the inner service
                    // for a call that will not reach it.
                    self.ready = Some(reject);
                    return Poll::Ready(Ok(()));
                }
                ready => self.ready = Some(ready),
            }
        }
        match inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.ready = None;
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                // Nothing is held while the inner service is not ready, except
                // a probe permit (giving it back and taking it again on every
                // poll would let other callers steal it in between).
                if !matches!(self.ready, Some(Ready::Probe(_))) {
                    self.ready = None;
                }
                Poll::Pending
            }
        }
    }

    /// `call` for an inner service: the call's future, or its rejection.
    #[inline]
    pub(crate) fn call<S, Req>(&mut self, inner: &mut S, req: Req) -> Kind<S::Future, C>
    where
        S: Service<Req>,
    {
        let ready = self.ready.take().expect(
            "CircuitBreaker::call without poll_ready: call poll_ready (or ServiceExt::ready) first",
        );
        let core = &self.shared.core;
        // The inner service is ready; make sure the breaker still admits the
        // call (it may have opened since poll_ready). One load when it has not
        // moved.
        let ready = match ready {
            Ready::Pass(t) | Ready::Record(t) if !core.is_current(t) => self.admit(),
            Ready::Probe(r) if !core.is_current(r.ticket) => {
                drop(r);
                self.admit()
            }
            ready => ready,
        };
        match ready {
            Ready::Pass(_) => Kind::called(inner.call(req), None),
            Ready::Record(ticket) => {
                let mut recorder = Recorder::new(Arc::clone(&self.shared), ticket, false);
                recorder.start_clock();
                Kind::called(inner.call(req), Some(recorder))
            }
            Ready::Probe(mut recorder) => {
                recorder.start_clock();
                Kind::called(inner.call(req), Some(recorder))
            }
            Ready::Reject { state, retry_after } => {
                core.count_rejection();
                let telemetry = core.observer();
                telemetry.not_permitted(state, retry_after);
                Kind::rejected(CircuitOpen::new(Arc::clone(telemetry.name()), retry_after))
            }
        }
    }
}

impl<C> Clone for Gate<C> {
    /// Shares the breaker; never copies a reservation.
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.shared))
    }
}

impl<C> fmt::Debug for Gate<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = match &self.ready {
            None => "none",
            Some(Ready::Pass(_)) => "pass",
            Some(Ready::Record(_)) => "record",
            Some(Ready::Probe(_)) => "probe",
            Some(Ready::Reject { .. }) => "reject",
        };
        f.debug_struct("Gate")
            .field("name", &self.shared.core.observer().name())
            .field("ready", &ready)
            .finish()
    }
}

// ===== Recorder =====

/// Carried by an admitted call to record its outcome. A probe's permit is
/// given back if the recorder is dropped without recording (the service was
/// dropped before `call`, the future before completion).
pub(crate) struct Recorder<C> {
    shared: Arc<Shared<C>>,
    ticket: u64,
    probe: bool,
    start: Option<Instant>,
    pending: bool,
}

impl<C> Recorder<C> {
    fn new(shared: Arc<Shared<C>>, ticket: u64, probe: bool) -> Self {
        Self {
            shared,
            ticket,
            probe,
            start: None,
            pending: true,
        }
    }

    #[inline]
    fn start_clock(&mut self) {
        if self.shared.timed {
            self.start = Some(Instant::now());
        }
    }

    /// Classifies and records the call's result.
    #[inline]
    pub(crate) fn finish<T, E>(mut self, result: &Result<T, E>)
    where
        C: Classify<T, E>,
    {
        self.pending = false;
        let shared = &*self.shared;
        let core = &shared.core;
        let outcome = shared.classifier.classify(result);
        let base = core.base();
        let (duration, mut now) = match self.start {
            Some(start) => {
                let end = Instant::now();
                (
                    Some(end.saturating_duration_since(start)),
                    Now::at(base, nanos_since(base, end)),
                )
            }
            None => (None, Now::lazy(base)),
        };
        let slow = outcome != Outcome::Ignored
            && matches!((duration, core.config().summary.slow_call_duration), (Some(d), Some(limit)) if d >= limit);
        core.observer().outcome(outcome, slow, duration, self.probe);
        match outcome {
            Outcome::Ignored => {
                if self.probe {
                    core.release_probe(self.ticket);
                }
            }
            Outcome::Success | Outcome::Failure => {
                core.record(
                    self.ticket,
                    self.probe,
                    outcome == Outcome::Failure,
                    slow,
                    &mut now,
                );
            }
        }
    }
}

impl<C> Drop for Recorder<C> {
    fn drop(&mut self) {
        if self.probe && self.pending {
            self.shared.core.release_probe(self.ticket);
        }
    }
}
