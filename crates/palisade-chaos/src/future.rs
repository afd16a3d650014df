//! The response future of [`Chaos`](crate::Chaos).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The response future of [`Chaos`](crate::Chaos): an optional delay (a
    /// pinned [`Sleep`], no allocation), then the inner future, an injected
    /// result, or an abort that never resolves.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        delay: Option<Sleep>,
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F>
    where
        F: Future,
    {
        Call { #[pin] future: F },
        Inject { result: Option<F::Output> },
        Abort,
    }
}

impl<F: Future> ResponseFuture<F> {
    fn sleep(delay: Option<Duration>) -> Option<Sleep> {
        delay.map(tokio::time::sleep)
    }

    pub(crate) fn call(delay: Option<Duration>, future: F) -> Self {
        Self {
            delay: Self::sleep(delay),
            kind: Kind::Call { future },
        }
    }

    pub(crate) fn inject(delay: Option<Duration>, result: F::Output) -> Self {
        Self {
            delay: Self::sleep(delay),
            kind: Kind::Inject {
                result: Some(result),
            },
        }
    }

    pub(crate) fn abort(delay: Option<Duration>) -> Self {
        Self {
            delay: Self::sleep(delay),
            kind: Kind::Abort,
        }
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(sleep) = this.delay.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.delay.set(None);
        }
        match this.kind.project() {
            KindProj::Call { future } => future.poll(cx),
            KindProj::Inject { result } => match result.take() {
                Some(result) => Poll::Ready(result),
                // Polled after completion: the contract is broken by the
                // caller; stay pending rather than panic.
                None => Poll::Pending,
            },
            // An abort never answers: the caller's timeout or cancellation
            // ends it. No waker is kept, so nothing is held but this future.
            KindProj::Abort => Poll::Pending,
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Call { .. } => "call",
            Kind::Inject { .. } => "inject",
            Kind::Abort => "abort",
        };
        f.debug_struct("ResponseFuture")
            .field("delayed", &self.delay.is_some())
            .field("kind", &kind)
            .finish()
    }
}
