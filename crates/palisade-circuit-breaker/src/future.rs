//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use palisade_core::stripe::Stripe;
use palisade_core::{BoxError, CircuitOpen, Classify, Outcome};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::shared::Calls;
use crate::state::{Now, nanos_since};

pin_project! {
    /// The call's future, or its rejection. Records the outcome when the
    /// inner future completes; dropped before that, it records nothing and
    /// gives back a half-open probe permit. No allocation, no boxing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    /// The two shapes of a breaker's future, shared by the plain and the HTTP
    /// service.
    #[project = KindProj]
    pub(crate) enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            recorder: Option<Recorder<C>>,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> Kind<F, C> {
    #[inline]
    pub(crate) const fn called(future: F, recorder: Option<Recorder<C>>) -> Self {
        Self::Called { future, recorder }
    }

    #[inline]
    pub(crate) const fn rejected(error: CircuitOpen) -> Self {
        Self::Rejected { error: Some(error) }
    }

    /// Polls the call: `Ok(result)` when the inner future completed (and was
    /// recorded), `Err(rejection)` when the breaker refused it.
    ///
    /// # Panics
    ///
    /// A rejection polled again after completion.
    #[inline]
    pub(crate) fn poll_call<T, E>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Result<T, E>, CircuitOpen>>
    where
        F: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        match self.project() {
            KindProj::Called { future, recorder } => {
                let result = ready!(future.poll(cx));
                // Recorded in place; the recorder (and its reference to the
                // breaker) goes when the future is dropped.
                if let Some(recorder) = recorder {
                    recorder.finish(&result);
                }
                Poll::Ready(Ok(result))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("circuit breaker future polled after completion"))),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Called { .. } => "called",
            Self::Rejected { .. } => "rejected",
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) const fn new(kind: Kind<F, C>) -> Self {
        Self { kind }
    }
}

impl<F, T, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match ready!(self.project().kind.poll_call(cx)) {
            Ok(result) => Poll::Ready(result.map_err(Into::into)),
            Err(open) => Poll::Ready(Err(open.into())),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("kind", &self.kind.describe())
            .finish()
    }
}

// ===== Recorder =====

const PROBE: u8 = 0b01;
const PENDING: u8 = 0b10;
/// `start` when the call is not timed.
const UNTIMED: u64 = u64::MAX;

/// Carried by an admitted call to record its outcome. A probe's permit is
/// given back if the recorder is dropped without recording (the future was
/// dropped before completion).
pub(crate) struct Recorder<C> {
    stripe: Arc<Stripe<Calls<C>>>,
    ticket: u64,
    /// When the call started (nanos since the breaker's base), or `UNTIMED`.
    start: u64,
    flags: u8,
}

impl<C> Recorder<C> {
    #[inline]
    pub(crate) fn new(stripe: Arc<Stripe<Calls<C>>>, ticket: u64, probe: bool) -> Self {
        let calls = stripe.get();
        let start = if calls.timed {
            nanos_since(calls.core.base(), Instant::now())
        } else {
            UNTIMED
        };
        Self {
            stripe,
            ticket,
            start,
            flags: PENDING | if probe { PROBE } else { 0 },
        }
    }

    /// Classifies and records the call's result (once).
    #[inline]
    pub(crate) fn finish<T, E>(&mut self, result: &Result<T, E>)
    where
        C: Classify<T, E>,
    {
        if self.flags & PENDING == 0 {
            return;
        }
        self.flags &= !PENDING;
        let probe = self.flags & PROBE != 0;
        let calls = self.stripe.get();
        let core = &calls.core;
        let outcome = calls.classifier.classify(result);
        let base = core.base();
        let (duration, mut now) = if self.start == UNTIMED {
            (None, Now::lazy(base))
        } else {
            let end = nanos_since(base, Instant::now());
            (
                Some(std::time::Duration::from_nanos(
                    end.saturating_sub(self.start),
                )),
                Now::at(base, end),
            )
        };
        let slow = outcome != Outcome::Ignored
            && matches!((duration, core.config().summary.slow_call_duration), (Some(d), Some(limit)) if d >= limit);
        core.observer().outcome(outcome, slow, duration, probe);
        match outcome {
            Outcome::Ignored => {
                if probe {
                    core.release_probe(self.ticket);
                }
            }
            Outcome::Success | Outcome::Failure => {
                core.record(
                    self.ticket,
                    probe,
                    outcome == Outcome::Failure,
                    slow,
                    &mut now,
                );
            }
        }
    }
}

impl<C> Drop for Recorder<C> {
    #[inline]
    fn drop(&mut self) {
        if self.flags == PENDING | PROBE {
            self.stripe.core.release_probe(self.ticket);
        }
    }
}
