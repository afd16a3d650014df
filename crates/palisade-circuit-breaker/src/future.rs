//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::{BoxError, CircuitOpen, Classify};
use pin_project_lite::pin_project;

use crate::service::Recorder;

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
