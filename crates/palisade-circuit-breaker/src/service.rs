//! The service: admission in `poll_ready`, the decision carried into `call`.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::{BoxError, CircuitOpen, Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::future::{Kind, Recorder, ResponseFuture};
use crate::handle::CircuitBreakerHandle;
use crate::shared::Shared;
use crate::state::{Admit, Now, State};

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
}

// The clone shares the breaker, but not readiness: it must be polled ready
// itself, and holds no probe permit (`Gate`'s clone never copies one).
palisade_core::inner_service! {
    CircuitBreaker<S, C> {
        inner: S,
        clone: { share: [gate] },
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

/// The decision `poll_ready` took for the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Nothing decided: `poll_ready` has not returned `Ready` since the last
    /// call.
    None,
    /// Disabled: pass, record nothing (the ticket detects a state change).
    Pass,
    /// Closed or MetricsOnly: pass and record under the ticket.
    Record,
    /// HalfOpen: a probe permit is held under the ticket until the call
    /// completes (or the gate is dropped).
    Probe,
    /// Reject from the call's future.
    Reject,
}

/// The admission logic shared by the plain and the HTTP service.
///
/// Its state is a few scalars rather than an enum carrying a recorder: the
/// closed path moves nothing bigger than a word.
pub(crate) struct Gate<C> {
    shared: Arc<Shared<C>>,
    decision: Decision,
    /// The state word the decision was taken under.
    ticket: u64,
    /// For `Reject`: the state that rejected and the time until the next
    /// probe.
    rejected_by: State,
    retry_after: Option<std::time::Duration>,
}

impl<C> Gate<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>) -> Self {
        Self {
            shared,
            decision: Decision::None,
            ticket: 0,
            rejected_by: State::Open,
            retry_after: None,
        }
    }

    pub(crate) fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(&self.shared.core))
    }

    /// Forgets the decision, giving back a probe permit if one is held.
    #[inline]
    fn forget(&mut self) {
        if self.decision == Decision::Probe {
            self.shared.core.release_probe(self.ticket);
        }
        self.decision = Decision::None;
    }

    /// Decides the fate of the next call. Closed is one load, inline.
    #[inline]
    fn decide(&mut self) {
        let word = self.shared.core.word();
        if state_allows_recording(word) {
            self.decision = Decision::Record;
            self.ticket = word;
        } else {
            self.decide_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn decide_slow(&mut self) {
        let core = &self.shared.core;
        match core.admit(&mut Now::lazy(core.base())) {
            Admit::Pass => {
                self.decision = Decision::Pass;
                self.ticket = core.word();
            }
            Admit::Record(ticket) => {
                self.decision = Decision::Record;
                self.ticket = ticket;
            }
            Admit::Probe(ticket) => {
                self.decision = Decision::Probe;
                self.ticket = ticket;
            }
            Admit::Reject { state, retry_after } => {
                self.decision = Decision::Reject;
                self.rejected_by = state;
                self.retry_after = retry_after;
            }
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
        match self.decision {
            Decision::None => self.decide(),
            // Rejected from the future: never poll the inner service for a
            // call that will not reach it.
            Decision::Reject => return Poll::Ready(Ok(())),
            // A decision already taken stands, unless the breaker moved since.
            Decision::Pass | Decision::Record | Decision::Probe => {
                if !self.shared.core.is_current(self.ticket) {
                    self.forget();
                    self.decide();
                }
            }
        }
        if self.decision == Decision::Reject {
            return Poll::Ready(Ok(()));
        }
        match inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.forget();
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                // Nothing is held while the inner service is not ready, except
                // a probe permit (giving it back and taking it again on every
                // poll would let other callers steal it in between).
                if self.decision != Decision::Probe {
                    self.decision = Decision::None;
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
        // The inner service is ready; make sure the breaker still admits the
        // call (it may have opened since poll_ready): one load when it has
        // not moved.
        if self.decision == Decision::Record && self.shared.core.is_current(self.ticket) {
            self.decision = Decision::None;
            let recorder = Recorder::new(self.shared.stripe(), self.ticket, false);
            return Kind::called(inner.call(req), Some(recorder));
        }
        self.call_slow(inner, req)
    }

    #[inline(never)]
    fn call_slow<S, Req>(&mut self, inner: &mut S, req: Req) -> Kind<S::Future, C>
    where
        S: Service<Req>,
    {
        assert!(
            self.decision != Decision::None,
            "CircuitBreaker::call without poll_ready: call poll_ready (or ServiceExt::ready) first"
        );
        if matches!(
            self.decision,
            Decision::Pass | Decision::Record | Decision::Probe
        ) && !self.shared.core.is_current(self.ticket)
        {
            self.forget();
            self.decide();
        }
        let decision = std::mem::replace(&mut self.decision, Decision::None);
        match decision {
            Decision::Pass => Kind::called(inner.call(req), None),
            Decision::Record | Decision::Probe => {
                // A probe's permit moves into the recorder.
                let recorder = Recorder::new(
                    self.shared.stripe(),
                    self.ticket,
                    decision == Decision::Probe,
                );
                Kind::called(inner.call(req), Some(recorder))
            }
            Decision::Reject | Decision::None => {
                let core = &self.shared.core;
                core.count_rejection();
                let telemetry = core.observer();
                telemetry.not_permitted(self.rejected_by, self.retry_after);
                Kind::rejected(CircuitOpen::new(
                    Arc::clone(telemetry.name()),
                    self.retry_after,
                ))
            }
        }
    }
}

/// `true` for the states whose calls pass and are recorded (Closed,
/// MetricsOnly), without a transition under way.
#[inline]
fn state_allows_recording(word: u64) -> bool {
    crate::state::records(word)
}

impl<C> Drop for Gate<C> {
    /// Gives back a probe permit taken by `poll_ready` for a call that never
    /// came.
    fn drop(&mut self) {
        self.forget();
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
        f.debug_struct("Gate")
            .field("name", &self.shared.core.observer().name())
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}
