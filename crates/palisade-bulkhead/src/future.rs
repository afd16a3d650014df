//! The [`Bulkhead`](crate::Bulkhead)'s response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::{BoxError, BulkheadFull, Classify};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::event::RejectReason;
use crate::shared::{Permit, Ticket};

pin_project! {
    /// The deadline of a waiting call.
    #[project = DeadlineProj]
    pub(crate) enum Deadline {
        Never,
        At { #[pin] sleep: Sleep },
    }
}

impl Deadline {
    pub(crate) fn new(since: Instant, max_wait: Option<std::time::Duration>) -> Self {
        match max_wait.and_then(|wait| since.checked_add(wait)) {
            Some(at) => Self::At {
                sleep: tokio::time::sleep_until(at),
            },
            None => Self::Never,
        }
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project() {
            DeadlineProj::Never => Poll::Pending,
            DeadlineProj::At { sleep } => sleep.poll(cx),
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // Admitted: the inner call runs, holding the permit.
        Running {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        // Queued: holds the ready inner service and the request until its
        // turn comes or the deadline passes.
        Waiting {
            ticket: Option<Ticket>,
            #[pin]
            deadline: Deadline,
            service: Option<S>,
            request: Option<Req>,
            since: Instant,
        },
        // Refused before it started.
        Rejected {
            error: Option<BulkheadFull>,
        },
    }
}

pin_project! {
    /// Response future of [`Bulkhead`](crate::Bulkhead).
    ///
    /// Holds the call's permit while the inner call runs and gives it back
    /// when the call completes or the future is dropped. A call that has to
    /// wait carries the ready inner service and the request while it waits
    /// (no allocation), with its place in the pool's queue; dropping it
    /// leaves the queue.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future>,
        classify: C,
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Waiting { .. } => "waiting",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    #[inline]
    pub(crate) fn running(future: S::Future, permit: Permit, classify: C) -> Self {
        Self {
            state: State::Running {
                future,
                permit: Some(permit),
            },
            classify,
        }
    }

    pub(crate) fn waiting(
        ticket: Ticket,
        deadline: Deadline,
        service: S,
        request: Req,
        since: Instant,
        classify: C,
    ) -> Self {
        Self {
            state: State::Waiting {
                ticket: Some(ticket),
                deadline,
                service: Some(service),
                request: Some(request),
                since,
            },
            classify,
        }
    }

    pub(crate) fn rejected(error: BulkheadFull, classify: C) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
            classify,
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Running { future, permit } => {
                    let result = ready!(future.poll(cx));
                    // Give the permit back now, not when the future is dropped.
                    if let Some(permit) = permit.take()
                        && permit.is_sampling()
                    {
                        permit.finish(this.classify.classify(&result));
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Waiting {
                    ticket,
                    deadline,
                    service,
                    request,
                    since,
                } => {
                    let waiting = ticket
                        .as_mut()
                        .expect("bulkhead future polled after completion");
                    let permit = match waiting.poll(cx) {
                        Poll::Ready(permit) => permit,
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            let waiting = ticket.take().expect("checked above");
                            let pool = std::sync::Arc::clone(waiting.pool());
                            match waiting.cancel() {
                                // Granted just as the deadline passed: use it.
                                Some(permit) => permit,
                                None => {
                                    let error =
                                        pool.reject(RejectReason::Timeout, Some(since.elapsed()));
                                    this.state.set(State::Rejected { error: None });
                                    return Poll::Ready(Err(error.into()));
                                }
                            }
                        }
                    };
                    let mut permit = permit;
                    permit.pool().record_wait(since.elapsed());
                    let mut service = service.take().expect("taken once, when admitted");
                    let request = request.take().expect("taken once, when admitted");
                    permit.start_clock();
                    let future = service.call(request);
                    drop(service);
                    this.state.set(State::Running {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Rejected { error } => {
                    let error = error
                        .take()
                        .expect("bulkhead future polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
            }
        }
    }
}
