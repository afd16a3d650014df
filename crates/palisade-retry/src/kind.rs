//! How requests are kept for replay, and what a response says about retrying.
//!
//! A [`RetryLayer`](crate::RetryLayer) is generic over a *kind*:
//!
//! - [`Plain`] (the default): any request that is `Clone`. The layer keeps
//!   one copy per call, and clones it again for each retry but the last.
//! - `http::Http` (feature `http`): `http::Request<B>` for any
//!   body. Idempotency rules decide what may be replayed, bodies are buffered
//!   up to a limit, and the inner service receives
//!   `http::Request<RetryBody<B>>`. Responses carry `Retry-After`.
//!
//! Both traits are sealed: the kinds are the ones this crate ships.

use std::convert::Infallible;
use std::future::{Future, Pending};
use std::time::Duration;

use std::sync::Arc;

use palisade_core::{BoxError, ConfigError};

use crate::settings::RetrySettings;

mod sealed {
    use super::{Arc, ConfigError, RetrySettings};

    pub trait Sealed {
        /// Takes the kind's own settings from the layer's (validated)
        /// settings when the layer is built.
        fn configure(
            &mut self,
            name: &Arc<str>,
            settings: &RetrySettings,
        ) -> Result<(), ConfigError>;
    }
}
pub(crate) use sealed::Sealed;

/// How the first attempt of a call starts.
#[derive(Debug)]
pub enum Start<F, P> {
    /// The first attempt was sent at once: its response future.
    Sent(F),
    /// Finish `P` first (buffering a request body), then hand what it yields
    /// to [`Replay::prepared`] for the request to send.
    Prepare(P),
}

/// How a request of type `Req` is sent and kept for retries. Sealed.
pub trait Replay<Req>: Sealed {
    /// The request the inner service receives.
    type Sent;
    /// The copy kept for later attempts.
    type Held;
    /// What the preparation yields.
    type Prepared;
    /// Work to finish before the first attempt can be sent.
    type Prepare: Future<Output = Result<Self::Prepared, BoxError>>;

    /// Starts a call, writing the copy to keep (if the request can be
    /// replayed) into `held`, and sending the first attempt through `send`
    /// when nothing needs preparing. `replay` is `false` when no retry can
    /// ever happen (`max_attempts` is 1), so nothing needs to be kept.
    ///
    /// `send` is called where the request is built, so a request of a few
    /// hundred bytes is not moved once more on its way to the inner service.
    fn start<F>(
        &self,
        req: Req,
        held: &mut Option<Self::Held>,
        replay: bool,
        send: impl FnOnce(Self::Sent) -> F,
    ) -> Start<F, Self::Prepare>;

    /// The first request to send once the preparation is done; updates (or
    /// clears) the kept copy. `None` only if `held` lost what `start` put in.
    fn prepared(
        &self,
        held: &mut Option<Self::Held>,
        prepared: Self::Prepared,
    ) -> Option<Self::Sent>;

    /// The request for attempt `attempt` (2 or more) from the kept copy;
    /// `last` when no later attempt can follow, so the copy may be consumed.
    fn resend(&self, held: &mut Option<Self::Held>, attempt: u32, last: bool)
    -> Option<Self::Sent>;

    /// The deadline the request carries (a [`palisade_core::Deadline`] set
    /// by a layer above), if the kind can read one: HTTP requests carry it
    /// in their extensions; plain requests carry none.
    #[inline]
    fn carried_deadline(&self, _req: &Req) -> Option<tokio::time::Instant> {
        None
    }
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

impl Sealed for Plain {
    fn configure(&mut self, _: &Arc<str>, _: &RetrySettings) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl<Req: Clone> Replay<Req> for Plain {
    type Sent = Req;
    type Held = Req;
    type Prepared = Infallible;
    type Prepare = Pending<Result<Infallible, BoxError>>;

    #[inline]
    fn start<F>(
        &self,
        req: Req,
        held: &mut Option<Req>,
        replay: bool,
        send: impl FnOnce(Req) -> F,
    ) -> Start<F, Self::Prepare> {
        if replay {
            *held = Some(req.clone());
        }
        Start::Sent(send(req))
    }

    #[inline]
    fn prepared(&self, _: &mut Option<Req>, prepared: Infallible) -> Option<Req> {
        match prepared {}
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
