//! `GET /api/dashboard/user/{id}`: one user's dashboard gathered from the
//! branches of `[aggregator]` with `palisade-fan-out`.
//!
//! Each branch calls its upstream's own stack (overall timeout, retry,
//! circuit breaker, per-attempt timeout, bulkhead, client) under a
//! [`ParseJsonLayer`](palisade::fan_out::http::ParseJsonLayer), so one
//! failing backend trips only its own breaker. The answer is
//! [`JsonResponse::keyed`]: `200` with one key per branch, `x-palisade-completed:
//! false` and an `errors` object when an optional branch is missing, a
//! problem+json `502`/`503`/`504` when a required one failed or the
//! deadline passed with it pending. The gather also ends when the deadline
//! the request carries passes (`[deadline]`, or the caller's header), and
//! each branch's request carries it on.
//!
//! A branch with a fallback (`[aggregator.branches.fallback]`, [`fallback`])
//! answers its configured JSON when it fails or is refused: the answer then
//! says so (`x-palisade-fallback` naming those branches,
//! `x-palisade-completed: false`), and the fallback crate counts it.
//!
//! # The waterfall
//!
//! Each branch's service is [`Timed`] and the route is [`Gathered`]: every
//! answer carries a `Server-Timing` header with each branch's start and
//! duration and the whole gather's, and one gather every [`SAMPLE_EVERY`]
//! is kept ([`Waterfall`]) for the dashboard, which draws it against the
//! branches' durations added up (what calling them one after another would
//! take). The spans travel in a tokio task-local set around the fan-out,
//! which polls its branches within its own future: nothing is shared
//! between requests but the sample.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use palisade::fan_out::http::{JsonResponse, Route};
use palisade::fan_out::{Branch, FanOut};
use palisade::{BoxError, ConfigError};
use pin_project_lite::pin_project;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// The aggregator's config section: `[aggregator]`.
pub use crate::config::{AGGREGATOR_ROUTE, AggregatorConfig, BranchConfig};
use crate::logs::FailureReason;
use crate::shared::X_REQUEST_ID;

pub mod fallback;

/// The aggregator's service: an axum route as it is (`Infallible`, `Clone +
/// Send + Sync`).
pub type Aggregator<S> = FanOut<S, Request<Body>, Request<Body>, JsonResponse<Body>>;

/// Builds the aggregator of `config`; `branch` gives each branch's service
/// (answering JSON, e.g. an upstream stack under `ParseJsonLayer`) and the
/// base URL its path is under (the upstream's `url`).
///
/// The branch requests are `GET`s with the incoming `x-request-id`, built
/// from the route's `{id}` and the branch's `path` template.
///
/// # Errors
///
/// The fan-out builder's or a target template's [`ConfigError`] (the config
/// checks the same settings, branch names and templates at load time, so a
/// loaded config builds).
pub fn build<S>(
    config: &AggregatorConfig,
    mut branch: impl FnMut(&BranchConfig) -> (S, String),
) -> Result<Aggregator<S>, ConfigError>
where
    S: Service<Request<Body>, Response = Value> + Clone,
    S::Error: Into<BoxError>,
{
    let route = Route::new(AGGREGATOR_ROUTE)?;
    let mut builder = FanOut::builder("dashboard")
        .settings(config.settings.clone())
        .carried_deadline(palisade::fan_out::http::request_deadline);
    for b in &config.branches {
        let (service, base) = branch(b);
        let target = route
            .target(&base, &b.path)?
            .method(http::Method::GET)
            .forward_header(X_REQUEST_ID);
        builder =
            builder.branch(Branch::http(b.name.clone(), service, target).settings(b.settings));
    }
    builder.merge(JsonResponse::<Body>::keyed()).build()
}

// ===== the waterfall: how one gather's branches ran =====

tokio::task_local! {
    /// The branch spans of the gather running on this task (set by
    /// [`Gathered`] around the fan-out, filled by each [`Timed`] branch).
    static SPANS: RefCell<Vec<BranchSpan>>;
}

/// How often at most a gather is kept as the dashboard's sample.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One branch call of one gather: when it began (readiness included) and
/// ended, and how.
#[derive(Clone, Copy, Debug)]
struct BranchSpan {
    branch: usize,
    start: Instant,
    end: Instant,
    outcome: &'static str,
}

/// A branch's service, timed: the span from its first `poll_ready` to its
/// answer (or to being dropped unanswered: cut by its timeout or the
/// deadline, or cancelled because a required branch failed) goes to the
/// gather it runs in. Outside a [`Gathered`] call it only passes through.
#[derive(Debug)]
pub struct Timed<S> {
    inner: S,
    branch: usize,
    started: Option<Instant>,
}

impl<S> Timed<S> {
    /// `inner`, the service of branch number `branch` (in the config's
    /// order).
    pub const fn new(inner: S, branch: usize) -> Self {
        Self {
            inner,
            branch,
            started: None,
        }
    }
}

impl<S: Clone> Clone for Timed<S> {
    /// A fresh service: the clone has not been polled ready.
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.branch)
    }
}

impl<S, R> Service<R> for Timed<S>
where
    S: Service<R, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.started.get_or_insert_with(Instant::now);
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        TimedFuture {
            inner: self.inner.call(req),
            branch: self.branch,
            start: self.started.take().unwrap_or_else(Instant::now),
            done: false,
        }
    }
}

fn record(span: BranchSpan) {
    let _ = SPANS.try_with(|spans| spans.borrow_mut().push(span));
}

pin_project! {
    /// The future of [`Timed`].
    pub struct TimedFuture<F> {
        #[pin]
        inner: F,
        branch: usize,
        start: Instant,
        done: bool,
    }

    impl<F> PinnedDrop for TimedFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                record(BranchSpan {
                    branch: *this.branch,
                    start: *this.start,
                    end: Instant::now(),
                    outcome: "cancelled",
                });
            }
        }
    }
}

impl<F, T> Future for TimedFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        *this.done = true;
        record(BranchSpan {
            branch: *this.branch,
            start: *this.start,
            end: Instant::now(),
            outcome: match &out {
                Ok(_) => "ok",
                Err(err) => FailureReason::of(&**err).as_str(),
            },
        });
        Poll::Ready(out)
    }
}

/// One branch in a [`GatherView`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BranchView {
    /// The branch's name.
    pub name: String,
    /// `true` if the answer fails without it.
    pub required: bool,
    /// When it began, ms after the gather began (`None`: never started).
    pub start_ms: Option<f64>,
    /// How long it ran, ms (until answered, or until cut or cancelled).
    pub duration_ms: Option<f64>,
    /// `ok`; `fallback` (answered by its fallback); a failure's reason
    /// (`error`, `timeout`, `circuit_open`,
    /// `bulkhead_full`, `unreachable`, ...); `cancelled` (cut by its
    /// timeout or the deadline, or no longer needed); `not_started`.
    pub outcome: &'static str,
}

/// One gather of the aggregator, branch by branch: what the dashboard draws
/// as a waterfall, against what the branches would take one after another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GatherView {
    /// When it ended, ms since the Unix epoch.
    pub at_ms: u64,
    /// The request's path (`/api/dashboard/user/7`).
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// The whole gather, ms: the branches in parallel, plus the merge.
    pub total_ms: f64,
    /// The branches' durations added up, ms: what calling them one after
    /// another would take.
    pub sequential_ms: f64,
    /// Every branch, in the config's order.
    pub branches: Vec<BranchView>,
}

/// The last gather kept for the dashboard: at most one every
/// [`SAMPLE_EVERY`], so whatever the aggregator's traffic, the mutex behind
/// it is taken a few times a second (the gate is one atomic load per
/// gather).
#[derive(Debug)]
pub struct Waterfall {
    epoch: Instant,
    next_ms: AtomicU64,
    last: Mutex<Option<GatherView>>,
}

impl Default for Waterfall {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }
}

impl Waterfall {
    /// Keeps the gather `make` builds, unless one was kept less than
    /// [`SAMPLE_EVERY`] ago.
    fn offer(&self, make: impl FnOnce() -> GatherView) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Acquire);
        let every = u64::try_from(SAMPLE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(every),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return;
        }
        let view = make();
        if let Ok(mut last) = self.last.lock() {
            *last = Some(view);
        }
    }

    /// The last gather kept, if any.
    #[must_use]
    pub fn last(&self) -> Option<GatherView> {
        self.last.lock().ok().and_then(|last| last.clone())
    }
}

/// The aggregator's route, timed: runs `inner` (the fan-out over
/// [`Timed`] branches) with a span list of its own, adds a `Server-Timing`
/// header with every branch's span and the gather's (`user;start=0.02;dur=5.31;desc=ok, ..., gather;dur=21.3`,
/// ms; devtools show it), and offers the gather to the dashboard's
/// [`Waterfall`].
#[derive(Clone, Debug)]
pub struct Gathered<A> {
    inner: A,
    branches: Arc<[(String, bool)]>,
    waterfall: Arc<Waterfall>,
}

impl<A> Gathered<A> {
    /// `inner` over `config`'s branches, kept in `waterfall`.
    #[must_use]
    pub fn new(inner: A, config: &AggregatorConfig, waterfall: Arc<Waterfall>) -> Self {
        Self {
            inner,
            branches: config
                .branches
                .iter()
                .map(|b| (b.name.clone(), b.settings.required))
                .collect(),
            waterfall,
        }
    }
}

impl<A> Service<Request<Body>> for Gathered<A>
where
    A: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    A::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone polled ready answers; a fresh clone stays behind.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let branches = Arc::clone(&self.branches);
        let waterfall = Arc::clone(&self.waterfall);
        let uri = req.uri().clone();
        Box::pin(SPANS.scope(
            RefCell::new(Vec::with_capacity(branches.len())),
            async move {
                let start = Instant::now();
                let (Ok(mut res), answered) = fallback::scope(ready.oneshot(req)).await;
                let total = start.elapsed();
                let mut spans = SPANS.with(RefCell::take);
                for span in &mut spans {
                    if span.outcome == "ok" && answered.contains(&span.branch) {
                        span.outcome = "fallback";
                    }
                }
                mark_fallbacks(&mut res, &branches, &answered);
                if let Ok(value) =
                    HeaderValue::from_str(&server_timing(&branches, &spans, start, total))
                {
                    res.headers_mut().insert(SERVER_TIMING, value);
                }
                waterfall.offer(|| {
                    gather_view(&branches, &spans, start, total, uri.path(), res.status())
                });
                Ok(res)
            },
        ))
    }
}

/// Marks an aggregate some of whose branches (`answered`) are their
/// fallbacks': [`FALLBACK_HEADER`](fallback::FALLBACK_HEADER) with their
/// names, `x-palisade-completed: false`, `cache-control: no-store`.
fn mark_fallbacks(res: &mut Response<Body>, branches: &[(String, bool)], answered: &[usize]) {
    if answered.is_empty() || !res.status().is_success() {
        return;
    }
    let names: Vec<&str> = answered
        .iter()
        .filter_map(|i| branches.get(*i).map(|(name, _)| name.as_str()))
        .collect();
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        headers.insert(fallback::FALLBACK_HEADER, value);
    }
    headers.insert(
        palisade::fan_out::http::COMPLETED_HEADER,
        HeaderValue::from_static("false"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
}

/// The `Server-Timing` header.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `name;start=..;dur=..;desc=outcome` per branch span, then `gather;dur=..`.
fn server_timing(
    branches: &[(String, bool)],
    spans: &[BranchSpan],
    start: Instant,
    total: Duration,
) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(48 * (spans.len() + 1));
    // In the config's order (they end in any order).
    let mut ordered: Vec<&BranchSpan> = spans.iter().collect();
    ordered.sort_by_key(|s| s.branch);
    for span in ordered {
        let Some((name, _)) = branches.get(span.branch) else {
            continue;
        };
        let _ = write!(
            out,
            "{name};start={:.2};dur={:.2};desc={}, ",
            ms(span.start.saturating_duration_since(start)),
            ms(span.end.saturating_duration_since(span.start)),
            span.outcome
        );
    }
    let _ = write!(out, "gather;dur={:.2}", ms(total));
    out
}

fn gather_view(
    branches: &[(String, bool)],
    spans: &[BranchSpan],
    start: Instant,
    total: Duration,
    path: &str,
    status: http::StatusCode,
) -> GatherView {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let views: Vec<BranchView> = branches
        .iter()
        .enumerate()
        .map(|(i, (name, required))| {
            let span = spans.iter().find(|s| s.branch == i);
            BranchView {
                name: name.clone(),
                required: *required,
                start_ms: span.map(|s| ms(s.start.saturating_duration_since(start))),
                duration_ms: span.map(|s| ms(s.end.saturating_duration_since(s.start))),
                outcome: span.map_or("not_started", |s| s.outcome),
            }
        })
        .collect();
    GatherView {
        at_ms,
        path: path.to_owned(),
        status: status.as_u16(),
        total_ms: ms(total),
        sequential_ms: views.iter().filter_map(|b| b.duration_ms).sum(),
        branches: views,
    }
}
