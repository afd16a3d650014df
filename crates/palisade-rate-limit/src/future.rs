//! The [`RateLimit`](crate::RateLimit)'s response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::backend::RemoteCall;
use crate::shared::{Admission, Info, Refusal, RemoteCtx, Reservation, Shared};

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // Admitted: the inner call runs.
        Called {
            #[pin]
            future: F,
        },
        // Throttled: waits for its slot with the ready inner service and the
        // request; dropping it gives the slot back when nothing was reserved
        // after it.
        Waiting {
            #[pin]
            sleep: Sleep,
            service: Option<S>,
            request: Option<Req>,
            reservation: Option<Reservation>,
        },
        // Asked of the remote backend.
        Remote {
            #[pin]
            call: RemoteCall,
            ctx: Option<RemoteCtx>,
            service: Option<S>,
            request: Option<Req>,
        },
        // Refused before it started.
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

/// How a call ends: the inner service's result, or a refusal.
pub(crate) type Outcome<S, Req> =
    Result<Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>, Refusal>;

pin_project! {
    /// The state machine shared by the plain and the HTTP future.
    pub(crate) struct Core<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future>,
        info: Option<Info>,
        // The limiter, kept after a remote decision (for the HTTP fields).
        shared: Option<Arc<Shared>>,
    }
}

/// Swaps the ready inner service out for a clone, which must be polled
/// ready before the next call.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

impl<S, Req> Core<S, Req>
where
    S: Service<Req>,
{
    /// Starts a call the limiter decided.
    #[inline]
    pub(crate) fn start(admission: Admission, inner: &mut S, request: Req) -> Self
    where
        S: Clone,
    {
        let (state, info) = match admission {
            Admission::Now(info) => (
                State::Called {
                    future: inner.call(request),
                },
                Some(info),
            ),
            Admission::Bypass => (
                State::Called {
                    future: inner.call(request),
                },
                None,
            ),
            Admission::Wait {
                info,
                until,
                reservation,
            } => (
                State::Waiting {
                    sleep: tokio::time::sleep_until(until),
                    service: Some(take_ready(inner)),
                    request: Some(request),
                    reservation,
                },
                Some(info),
            ),
            Admission::Remote(call, ctx) => (
                State::Remote {
                    call,
                    ctx: Some(ctx),
                    service: Some(take_ready(inner)),
                    request: Some(request),
                },
                None,
            ),
            Admission::Refused(refusal) => (
                State::Refused {
                    refusal: Some(refusal),
                },
                None,
            ),
        };
        Self {
            state,
            info,
            shared: None,
        }
    }

    /// What the decision left for the `RateLimit` field, once decided.
    #[cfg(feature = "http")]
    pub(crate) const fn info(&self) -> Option<&Info> {
        self.info.as_ref()
    }

    /// The limiter, after a remote decision.
    #[cfg(feature = "http")]
    pub(crate) const fn remote_shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// Drives the call to its end: the inner service's result, or the
    /// refusal.
    ///
    /// # Panics
    ///
    /// When polled again after it completed.
    pub(crate) fn poll_core(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<S, Req>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map(Ok),
                StateProj::Waiting {
                    sleep,
                    service,
                    request,
                    reservation,
                } => {
                    ready!(sleep.poll(cx));
                    if let Some(reservation) = reservation.take() {
                        reservation.spend();
                    }
                    let mut service = service.take().expect("a waiting call holds its service");
                    let request = request.take().expect("a waiting call holds its request");
                    // `service` was polled ready before `call` moved it here.
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Remote {
                    call,
                    ctx,
                    service,
                    request,
                } => {
                    #[cfg(feature = "redis")]
                    {
                        let admission = {
                            let c = ctx.as_ref().expect("a remote call holds its context");
                            let crate::backend::Backend::Redis(store) = &c.shared.backend else {
                                unreachable!("remote calls come from the remote backend")
                            };
                            let remote =
                                ready!(call.poll_decide(cx, store, c.key(), c.max_delay, || {
                                    c.shared.now()
                                }));
                            c.shared.finish_remote(c, remote)
                        };
                        *this.shared = ctx.take().map(|c| c.shared);
                        let service = service.take().expect("a remote call holds its service");
                        let request = request.take().expect("a remote call holds its request");
                        match admission {
                            Admission::Now(info) => {
                                *this.info = Some(info);
                                let mut service = service;
                                let future = service.call(request);
                                this.state.set(State::Called { future });
                            }
                            Admission::Wait {
                                info,
                                until,
                                reservation,
                            } => {
                                *this.info = Some(info);
                                this.state.set(State::Waiting {
                                    sleep: tokio::time::sleep_until(until),
                                    service: Some(service),
                                    request: Some(request),
                                    reservation,
                                });
                            }
                            Admission::Refused(refusal) => {
                                this.state.set(State::Refused {
                                    refusal: Some(refusal),
                                });
                            }
                            Admission::Bypass | Admission::Remote(..) => {
                                unreachable!("a remote decision admits, delays or refuses")
                            }
                        }
                    }
                    #[cfg(not(feature = "redis"))]
                    {
                        let _ = (ctx, service, request);
                        match *call.get_mut() {}
                    }
                }
                StateProj::Refused { refusal } => {
                    return Poll::Ready(Err(refusal
                        .take()
                        .expect("rate limit future polled after completion")));
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit).
    ///
    /// No allocation and no boxing for a call decided in process. A
    /// throttled call waits in it, holding the ready inner service, the
    /// request and its reserved slot; dropping it before its slot gives the
    /// slot back if no later call reserved after it.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        core: Core<S, Req>,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) const fn new(core: Core<S, Req>) -> Self {
        Self { core }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    /// # Panics
    ///
    /// When polled again after it completed with a refusal.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().core.poll_core(cx)) {
            Ok(result) => result.map_err(Into::into),
            Err(refusal) => Err(refusal.into_error()),
        })
    }
}
