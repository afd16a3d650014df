//! The response future of [`DeadlineService`](crate::DeadlineService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::stripe::Stripe;
use palisade_core::{BoxError, DeadlineExpired};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::shared::Shared;

pin_project! {
    /// The future of a call through a deadline layer: the call below, raced
    /// against the deadline. An error from below that arrives once the
    /// deadline has passed is reported as [`DeadlineExpired`], with that error
    /// as its source.
    ///
    /// The timer is created only if the call below is not done at its first
    /// poll, so an answer that is ready at once costs no timer. Dropping the
    /// future drops the call below and the timer.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        // No deadline to enforce: the call below as it is.
        Plain { #[pin] future: F },
        // The call below, cut off at `at`.
        Enforced {
            #[pin]
            future: F,
            #[pin]
            sleep: Option<Sleep>,
            at: Instant,
            budget: Duration,
            shared: Arc<Stripe<Shared>>,
        },
        // No time was left on arrival: the call below was never made.
        Expired { error: Option<DeadlineExpired> },
        // Completed: the call below and the timer are gone.
        Done,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) const fn plain(future: F) -> Self {
        Self {
            inner: Inner::Plain { future },
        }
    }

    pub(crate) const fn enforced(
        future: F,
        at: Instant,
        budget: Duration,
        shared: Arc<Stripe<Shared>>,
    ) -> Self {
        Self {
            inner: Inner::Enforced {
                future,
                sleep: None,
                at,
                budget,
                shared,
            },
        }
    }

    pub(crate) const fn expired(error: DeadlineExpired) -> Self {
        Self {
            inner: Inner::Expired { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    /// # Panics
    ///
    /// If polled again after it returned an expired deadline.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        match inner.as_mut().project() {
            InnerProj::Plain { future } => future.poll(cx).map_err(Into::into),
            InnerProj::Enforced {
                future,
                mut sleep,
                at,
                budget,
                shared,
            } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result.map_err(|error| {
                        let error: BoxError = error.into();
                        if Instant::now() < *at || palisade_core::is_deadline_expired(&*error) {
                            return error;
                        }
                        // The call below failed once the deadline had passed
                        // (its own timer fired in the same instant as ours):
                        // the caller's deadline is what passed.
                        shared.expired(*budget, false);
                        DeadlineExpired::new(Arc::clone(&shared.name))
                            .with_budget(*budget)
                            .with_source(error)
                            .into()
                    }));
                }
                if sleep.is_none() {
                    sleep.set(Some(sleep_until(*at)));
                }
                let Some(timer) = sleep.as_pin_mut() else {
                    return Poll::Pending;
                };
                if timer.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                shared.expired(*budget, false);
                let error = DeadlineExpired::new(Arc::clone(&shared.name)).with_budget(*budget);
                // Drop the call below (and what it holds: a permit, a
                // connection) now, not when this future is dropped.
                inner.set(Inner::Done);
                Poll::Ready(Err(error.into()))
            }
            InnerProj::Expired { error } => Poll::Ready(Err(error
                .take()
                .expect("deadline ResponseFuture polled after completion")
                .into())),
            InnerProj::Done => panic!("deadline ResponseFuture polled after completion"),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Plain { .. } => "plain",
            Inner::Enforced { .. } => "enforced",
            Inner::Expired { .. } => "expired",
            Inner::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
