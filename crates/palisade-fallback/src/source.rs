//! Where a fallback's answer comes from ([`Answer`]: a value, a closure, a
//! service), and how it is marked as a fallback ([`Mark`]).

use std::error::Error;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll, ready as ready_poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

use crate::settings::FallbackClass;

/// Why a fallback answers: the class of failure, the error when there was
/// one, and the layer's name.
#[derive(Clone, Copy)]
pub struct Cause<'a> {
    pub(crate) name: &'a str,
    pub(crate) class: FallbackClass,
    pub(crate) error: Option<&'a (dyn Error + 'static)>,
}

impl<'a> Cause<'a> {
    /// The class of failure answered.
    #[must_use]
    pub const fn class(&self) -> FallbackClass {
        self.class
    }

    /// The error answered, if the call failed with one (`None` for a failed
    /// response).
    #[must_use]
    pub const fn error(&self) -> Option<&'a (dyn Error + 'static)> {
        self.error
    }

    /// The fallback layer's name.
    #[must_use]
    pub const fn name(&self) -> &'a str {
        self.name
    }
}

impl fmt::Debug for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cause")
            .field("name", &self.name)
            .field("class", &self.class)
            .field("error", &self.error.map(ToString::to_string))
            .finish()
    }
}

/// How a fallback answers.
///
/// Implemented by [`Value`] (a value cloned for each answer), [`FromFn`]
/// (a closure of the [`Cause`]) and [`FromService`] (another service, called
/// with what was [kept](Self::keep) of the request). Implement it for an
/// answer of your own (a cache lookup).
pub trait Answer<Req, Res> {
    /// What is kept of each request for the fallback, taken before the
    /// request goes down the stack (`()` when the answer does not need it).
    type Kept;
    /// The answer.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// Keeps what the fallback needs of `req`: runs on every call, before
    /// anything is known to fail, so keep it cheap.
    fn keep(&self, req: &Req) -> Self::Kept;

    /// The fallback's answer for a call that failed with `cause`.
    fn answer(&self, kept: Self::Kept, cause: Cause<'_>) -> Self::Future;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A fallback source chosen on the builder (anything but [`NoFallback`]):
/// [`Value`], [`FromFn`], [`FromService`], [`Custom`] (your own
/// [`Answer`]) and, over HTTP, `StaticResponse`. Sealed: it only lets a
/// builder that has a source be built.
pub trait Source: sealed::Sealed {}

impl<T> sealed::Sealed for Value<T> {}
impl<T> Source for Value<T> {}
impl<F> sealed::Sealed for FromFn<F> {}
impl<F> Source for FromFn<F> {}
impl<S, K> sealed::Sealed for FromService<S, K> {}
impl<S, K> Source for FromService<S, K> {}
impl<F> sealed::Sealed for Custom<F> {}
impl<F> Source for Custom<F> {}

/// No fallback chosen yet: the builder's starting point. Choose one with
/// `value`, `with`, `service` or `custom`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

// ===== Value =====

/// Answers with a clone of one value.
#[derive(Clone, Debug)]
pub struct Value<T>(pub(crate) T);

impl<Req, T: Clone> Answer<Req, T> for Value<T> {
    type Kept = ();
    type Future = Ready<Result<T, BoxError>>;

    #[inline]
    fn keep(&self, _: &Req) {}

    fn answer(&self, (): (), _: Cause<'_>) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

// ===== FromFn =====

/// Answers with what a closure of the [`Cause`] returns.
#[derive(Clone)]
pub struct FromFn<F>(pub(crate) F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<Req, Res, F> Answer<Req, Res> for FromFn<F>
where
    F: Fn(Cause<'_>) -> Res,
{
    type Kept = ();
    type Future = Ready<Result<Res, BoxError>>;

    #[inline]
    fn keep(&self, _: &Req) {}

    fn answer(&self, (): (), cause: Cause<'_>) -> Self::Future {
        ready(Ok((self.0)(cause)))
    }
}

// ===== Custom =====

/// Any [`Answer`] of your own, made usable by the builder.
#[derive(Clone, Debug)]
pub struct Custom<F>(pub(crate) F);

impl<Req, Res, F: Answer<Req, Res>> Answer<Req, Res> for Custom<F> {
    type Kept = F::Kept;
    type Future = F::Future;

    #[inline]
    fn keep(&self, req: &Req) -> F::Kept {
        self.0.keep(req)
    }

    fn answer(&self, kept: F::Kept, cause: Cause<'_>) -> Self::Future {
        self.0.answer(kept, cause)
    }
}

// ===== FromService =====

/// Answers by calling another service (a replica, a cache, a degraded
/// mode) with the request `keep` made from the original.
///
/// The service is cloned for each answer and driven to readiness inside the
/// answer's future (`oneshot`): a fallback service that is not ready makes
/// the answer wait, it never holds up calls that succeed.
pub struct FromService<S, K> {
    pub(crate) service: S,
    pub(crate) keep: K,
}

impl<S: Clone, K: Clone> Clone for FromService<S, K> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            keep: self.keep.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for FromService<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromService")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl<Req, FReq, Res, S, K> Answer<Req, Res> for FromService<S, K>
where
    S: Service<FReq, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    K: Fn(&Req) -> FReq,
{
    type Kept = FReq;
    type Future = ServiceAnswer<Oneshot<S, FReq>>;

    #[inline]
    fn keep(&self, req: &Req) -> FReq {
        (self.keep)(req)
    }

    fn answer(&self, kept: FReq, _: Cause<'_>) -> Self::Future {
        ServiceAnswer {
            future: Oneshot::new(self.service.clone(), kept),
        }
    }
}

pin_project! {
    /// The answer of a [`FromService`] fallback: the service's call, its
    /// error boxed.
    pub struct ServiceAnswer<F> {
        #[pin]
        future: F,
    }
}

impl<F> fmt::Debug for ServiceAnswer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAnswer").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ServiceAnswer<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready_poll!(self.project().future.poll(cx)).map_err(Into::into))
    }
}

// ===== Mark =====

/// How an answer is marked as a fallback. [`Plain`] leaves it as it is;
/// `http::Http` (feature `http`) adds the `x-palisade-fallback` headers.
pub trait Mark<Res> {
    /// Marks `res`, the fallback's answer for a failure of `class`.
    fn mark(&self, res: &mut Res, class: FallbackClass);
}

/// Leaves answers unmarked: for responses without headers, where the
/// fallback value itself says what it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plain;

impl<Res> Mark<Res> for Plain {
    #[inline]
    fn mark(&self, _: &mut Res, _: FallbackClass) {}
}
