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

impl From<Refusal> for BoxError {
    fn from(refusal: Refusal) -> Self {
        refusal.into_error()
    }
}

pin_project! {
    #[project = SlowProj]
    enum Slow<S, Req, F> {
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
        // The inner call, after a wait or a remote decision.
        Called {
            #[pin]
            future: F,
        },
        // Refused by the remote decision.
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

pin_project! {
    /// A call that waits (throttled, or for a remote decision): boxed, so
    /// that the common future (admitted or refused at once) stays the size of
    /// the inner one.
    struct SlowCall<S, Req, F> {
        #[pin]
        state: Slow<S, Req, F>,
        // After a remote decision: what it left, and the limiter, for the
        // HTTP fields.
        info: Option<Info>,
        shared: Option<Arc<Shared>>,
    }
}

impl<S, Req> SlowCall<S, Req, S::Future>
where
    S: Service<Req>,
{
    fn poll_slow(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<S, Req, Refusal>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                SlowProj::Called { future } => return future.poll(cx).map(Ok),
                SlowProj::Refused { refusal } => {
                    return Poll::Ready(Err(refusal
                        .take()
                        .expect("rate limit future polled after completion")));
                }
                SlowProj::Waiting {
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
                    this.state.set(Slow::Called { future });
                }
                SlowProj::Remote {
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
                        let mut service = service.take().expect("a remote call holds its service");
                        let request = request.take().expect("a remote call holds its request");
                        match admission {
                            Admission::Now(info) => {
                                *this.info = Some(info);
                                let future = service.call(request);
                                this.state.set(Slow::Called { future });
                            }
                            Admission::Wait {
                                info,
                                until,
                                reservation,
                            } => {
                                *this.info = Some(info);
                                this.state.set(Slow::Waiting {
                                    sleep: tokio::time::sleep_until(until),
                                    service: Some(service),
                                    request: Some(request),
                                    reservation,
                                });
                            }
                            Admission::Refused(refusal) => {
                                this.state.set(Slow::Refused {
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
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F, R> {
        // Admitted at once: the inner call runs.
        Called {
            #[pin]
            future: F,
        },
        // Refused at once.
        Refused {
            refusal: Option<R>,
        },
        // Waits: throttled, or for a remote decision.
        Slow {
            slow: Pin<Box<SlowCall<S, Req, F>>>,
        },
    }
}

pin_project! {
    /// The state machine shared by the plain and the HTTP future; `R` is how
    /// a refusal decided at once is kept (a `BoxError`, or the refusal for
    /// the HTTP answer).
    pub(crate) struct Core<S, Req, R>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future, R>,
    }
}

/// How a call ends: the inner service's result, or a refusal.
pub(crate) type Outcome<S, Req, R> =
    Result<Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>, R>;

/// Swaps the ready inner service out for a clone, which must be polled
/// ready before the next call.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

impl<S, Req, R> Core<S, Req, R>
where
    S: Service<Req>,
    R: From<Refusal>,
{
    /// Starts a call the limiter decided.
    #[inline(always)]
    pub(crate) fn start(admission: Admission, inner: &mut S, request: Req) -> Self
    where
        S: Clone,
    {
        match admission {
            Admission::Now(_) | Admission::Bypass => Self {
                state: State::Called {
                    future: inner.call(request),
                },
            },
            admission => Self::start_other(admission, inner, request),
        }
    }

    /// Starts a call refused, throttled or asked of the remote backend.
    #[inline(never)]
    fn start_other(admission: Admission, inner: &mut S, request: Req) -> Self
    where
        S: Clone,
    {
        let state = match admission {
            Admission::Now(_) | Admission::Bypass => State::Called {
                future: inner.call(request),
            },
            Admission::Refused(refusal) => State::Refused {
                refusal: Some(R::from(refusal)),
            },
            Admission::Wait {
                until, reservation, ..
            } => State::Slow {
                slow: Box::pin(SlowCall {
                    state: Slow::Waiting {
                        sleep: tokio::time::sleep_until(until),
                        service: Some(take_ready(inner)),
                        request: Some(request),
                        reservation,
                    },
                    info: None,
                    shared: None,
                }),
            },
            Admission::Remote(remote) => {
                let (call, ctx) = *remote;
                State::Slow {
                    slow: Box::pin(SlowCall {
                        state: Slow::Remote {
                            call,
                            ctx: Some(ctx),
                            service: Some(take_ready(inner)),
                            request: Some(request),
                        },
                        info: None,
                        shared: None,
                    }),
                }
            }
        };
        Self { state }
    }

    /// After a remote decision: what it left, with the limiter.
    #[cfg(feature = "http")]
    pub(crate) fn remote_info(&self) -> Option<(&Arc<Shared>, &Info)> {
        match &self.state {
            State::Slow { slow } => slow.shared.as_ref().zip(slow.info.as_ref()),
            State::Called { .. } | State::Refused { .. } => None,
        }
    }

    /// The limiter, after a remote decision.
    #[cfg(feature = "http")]
    pub(crate) fn remote_shared(&self) -> Option<&Arc<Shared>> {
        match &self.state {
            State::Slow { slow } => slow.shared.as_ref(),
            State::Called { .. } | State::Refused { .. } => None,
        }
    }

    /// Drives the call to its end: the inner service's result, or the
    /// refusal.
    ///
    /// # Panics
    ///
    /// When polled again after it completed with a refusal.
    #[inline]
    pub(crate) fn poll_core(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Outcome<S, Req, R>> {
        match self.project().state.project() {
            StateProj::Called { future } => future.poll(cx).map(Ok),
            StateProj::Refused { refusal } => Poll::Ready(Err(refusal
                .take()
                .expect("rate limit future polled after completion"))),
            StateProj::Slow { slow } => slow.as_mut().poll_slow(cx).map(|r| r.map_err(R::from)),
        }
    }
}

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit).
    ///
    /// A call admitted or refused at once needs no allocation beyond the
    /// refusal's error, and the future is the inner one's size plus a word.
    /// A throttled call (or one asked of a remote backend) waits in one
    /// allocation holding the ready inner service, the request, its timer and
    /// its reserved slot; dropping it before its slot gives the slot back if
    /// no later call reserved after it.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        core: Core<S, Req, BoxError>,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) const fn new(core: Core<S, Req, BoxError>) -> Self {
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
            Err(error) => Err(error),
        })
    }
}
