//! How requests are kept for replay, and what a response says about retrying.
//!
//! A [`RetryLayer`](crate::RetryLayer) is generic over a *kind*:
//!
//! - [`Plain`] (the default): any request that is `Clone`. The layer keeps
//!   one copy per call, and clones it again for each retry but the last.
//! - [`Http`](crate::http::Http) (feature `http`): `http::Request<B>` for any
//!   body. Idempotency rules decide what may be replayed, bodies are buffered
//!   up to a limit, and the inner service receives
//!   `http::Request<RetryBody<B>>`. Responses carry `Retry-After`.
//!
//! Both traits are sealed: the kinds are the ones this crate ships.

use std::future::{Future, Pending};
use std::time::Duration;

use palisade_core::BoxError;

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// How the first attempt of a call starts.
#[derive(Debug)]
pub enum Start<Sent, Held, P> {
    /// Send this request now; keep this copy for retries (`None`: the request
    /// cannot be replayed, so it is sent once).
    Send(Sent, Option<Held>),
    /// Finish `P` first (buffering a request body), then send what it yields.
    Prepare(P),
}

/// How a request of type `Req` is sent and kept for retries. Sealed.
pub trait Replay<Req>: Sealed {
    /// The request the inner service receives.
    type Sent;
    /// The copy kept for later attempts.
    type Held;
    /// Work to finish before the first attempt can be sent.
    type Prepare: Future<Output = Result<(Self::Sent, Option<Self::Held>), BoxError>>;

    /// Starts a call. `replay` is `false` when no retry can ever happen
    /// (`max_attempts` is 1), so nothing needs to be kept.
    fn start(&self, req: Req, replay: bool) -> Start<Self::Sent, Self::Held, Self::Prepare>;

    /// The request for attempt `attempt` (2 or more) from the kept copy;
    /// `last` when no later attempt can follow, so the copy may be consumed.
    fn resend(&self, held: &mut Option<Self::Held>, attempt: u32, last: bool)
    -> Option<Self::Sent>;
}

/// The wait a server asked for before trying again (`Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerDelay {
    /// Wait this long before the next attempt, instead of the backoff.
    Wait(Duration),
    /// The server asked for a longer wait than the layer accepts: do not
    /// retry, return the response.
    TooLong(Duration),
}

/// What a successful response says about retrying. Sealed.
pub trait Inspect<Res>: Sealed {
    /// The wait the server asked for before trying again, if any.
    fn retry_after(&self, res: &Res) -> Option<ServerDelay>;

    /// `true` if the response is a rejection answered on behalf of a circuit
    /// breaker or bulkhead further down: never retried.
    fn is_rejection_response(res: &Res) -> bool;
}

/// Requests that are `Clone`: the default kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plain;

impl Sealed for Plain {}

impl<Req: Clone> Replay<Req> for Plain {
    type Sent = Req;
    type Held = Req;
    type Prepare = Pending<Result<(Req, Option<Req>), BoxError>>;

    #[inline]
    fn start(&self, req: Req, replay: bool) -> Start<Req, Req, Self::Prepare> {
        let held = if replay { Some(req.clone()) } else { None };
        Start::Send(req, held)
    }

    #[inline]
    fn resend(&self, held: &mut Option<Req>, _attempt: u32, last: bool) -> Option<Req> {
        if last { held.take() } else { held.clone() }
    }
}

impl<Res> Inspect<Res> for Plain {
    #[inline]
    fn retry_after(&self, _: &Res) -> Option<ServerDelay> {
        None
    }

    #[inline]
    fn is_rejection_response(_: &Res) -> bool {
        false
    }
}
