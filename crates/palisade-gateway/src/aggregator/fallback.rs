//! The aggregator's fallbacks (palisade-fallback): an optional branch that
//! fails or is refused answers the JSON of its
//! `[aggregator.branches.fallback]`, marked and counted.
//!
//! Each branch with a fallback has a [`FallbackLayer`] named after it,
//! between its upstream's stack and the JSON parsing: a failure of a class
//! its `on` names (by default every one: an error, a 5xx answer, an open
//! breaker, a full bulkhead, a rate limit, an expired deadline) is answered
//! with a `200` carrying the configured JSON and the crate's
//! `x-palisade-fallback` headers. [`Marked`], just above it, notes that
//! answer for the gather it runs in, so the aggregate's response says which
//! branches are fallbacks ([`FALLBACK_HEADER`] with their names,
//! `x-palisade-completed: false`) and the dashboard's waterfall shows them.
//! The layers register in one [`Registry`], so every worker's count the
//! same.
//!
//! A branch cut by its own `timeout` or the gather's deadline is cut above
//! the fallback: it is missing from the answer, as without one.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use http::{Request, Response};
use palisade::fallback::http::{FALLBACK_CLASS_HEADER, Http, StaticResponse};
use palisade::fallback::{FallbackHandle, FallbackLayer};
use palisade::http::StatusClassifier;
use palisade::{BoxError, ConfigError, Registry};
use pin_project_lite::pin_project;
use tower::Service;

pub use palisade::fallback::http::FALLBACK_HEADER;

use crate::config::BranchFallback;

/// A branch's fallback layer: HTTP answers, 5xx and errors failures.
pub type BranchFallbackLayer = FallbackLayer<StaticResponse, StatusClassifier, Http>;

/// The fallback layer of branch `name`, answering `config`'s value for the
/// classes it names, registered in `registry` (a layer already registered
/// under `name` shares its counters).
///
/// # Errors
///
/// The fallback builder's [`ConfigError`] (not for a loaded config, whose
/// `on` was checked), or a value that cannot be written as JSON.
pub fn layer(
    name: &str,
    config: &BranchFallback,
    registry: &Registry<FallbackHandle>,
) -> Result<BranchFallbackLayer, ConfigError> {
    let body = serde_json::to_vec(&config.value)
        .map_err(|e| ConfigError::new("value", format!("cannot be written as JSON: {e}")))?;
    FallbackLayer::http_builder(name)
        .response(StaticResponse::json(body))
        .settings(config.settings.clone())
        .registry(registry)
        .build()
}

tokio::task_local! {
    /// The branches answered by their fallback in the gather running on
    /// this task (set around the fan-out by [`scope`]).
    static ANSWERED: RefCell<Vec<usize>>;
}

/// Runs `gather` with a list of the branches its fallbacks answer; returns
/// its output and that list (branch numbers, in the order answered).
pub async fn scope<F: Future>(gather: F) -> (F::Output, Vec<usize>) {
    ANSWERED
        .scope(RefCell::new(Vec::new()), async move {
            let out = gather.await;
            (out, ANSWERED.with(RefCell::take))
        })
        .await
}

/// A branch's service above its fallback: notes an answer marked as a
/// fallback's (the `x-palisade-fallback-class` header) for the gather it
/// runs in. Outside a [`scope`] it only passes through.
#[derive(Clone, Debug)]
pub struct Marked<S> {
    inner: S,
    branch: usize,
}

impl<S> Marked<S> {
    /// `inner`, the service of branch number `branch` (in the config's
    /// order).
    pub const fn new(inner: S, branch: usize) -> Self {
        Self { inner, branch }
    }
}

impl<S> Service<Request<Body>> for Marked<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = MarkedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        MarkedFuture {
            inner: self.inner.call(req),
            branch: self.branch,
        }
    }
}

pin_project! {
    /// The future of [`Marked`].
    pub struct MarkedFuture<F> {
        #[pin]
        inner: F,
        branch: usize,
    }
}

impl<F> Future for MarkedFuture<F>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Ok(res) = &out
            && res.headers().contains_key(FALLBACK_CLASS_HEADER)
        {
            let branch = *this.branch;
            let _ = ANSWERED.try_with(|answered| answered.borrow_mut().push(branch));
        }
        Poll::Ready(out)
    }
}
