//! HTTP vocabulary (feature `http`): status classification, `Retry-After`,
//! `application/problem+json` responses, and [`ProblemResponseLayer`], which
//! answers a stack's errors with them.

use std::borrow::Cow;
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::classify::{Classify, Outcome};
use crate::deadline::DeadlineExpired;
use crate::reject::{BulkheadFull, CircuitOpen, RateLimited, Rejection, rejection};

/// Names the breaker that rejected a call, on a `503` answered for it.
pub const CIRCUIT_BREAKER_HEADER: HeaderName =
    HeaderName::from_static("x-palisade-circuit-breaker");
/// Names the bulkhead that rejected a call, on a `503` answered for it.
pub const BULKHEAD_HEADER: HeaderName = HeaderName::from_static("x-palisade-bulkhead");
/// Names the rate limiter that rejected a call, on a `429` answered for it.
pub const RATE_LIMIT_HEADER: HeaderName = HeaderName::from_static("x-palisade-rate-limit");
/// The media type of problem details (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

// ===== StatusSet =====

/// A set of HTTP status codes (100 to 999), stored as a bitset: `Copy`, and a
/// lookup is one shift and one mask.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatusSet([u64; 16]);

impl StatusSet {
    /// The empty set.
    #[must_use]
    pub const fn empty() -> Self {
        Self([0; 16])
    }

    /// This set plus `code`. Codes outside 100..=999 are not valid statuses and
    /// are ignored.
    #[must_use]
    pub const fn with(mut self, code: u16) -> Self {
        if code >= 100 && code <= 999 {
            self.0[(code / 64) as usize] |= 1 << (code % 64);
        }
        self
    }

    /// This set minus `code`.
    #[must_use]
    pub const fn without(mut self, code: u16) -> Self {
        if code >= 100 && code <= 999 {
            self.0[(code / 64) as usize] &= !(1 << (code % 64));
        }
        self
    }

    /// This set plus every code in `lo..=hi`.
    #[must_use]
    pub const fn with_range(mut self, lo: u16, hi: u16) -> Self {
        let mut code = lo;
        while code <= hi && code <= 999 {
            self = self.with(code);
            code += 1;
        }
        self
    }

    /// `true` if `status` is in the set.
    #[inline]
    #[must_use]
    pub const fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.0[(code / 64) as usize] & (1 << (code % 64)) != 0
    }

    /// The codes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (100..=999u16).filter(|c| self.0[(c / 64) as usize] & (1 << (c % 64)) != 0)
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

// ===== StatusClassifier =====

/// Classifies `Result<http::Response<B>, E>` by status code.
///
/// An `Err` (a transport error, a timeout) is always a failure. A response is
/// [ignored](Outcome::Ignored) if its status is in the ignored set, a failure
/// if it is in the failure set, otherwise a success. The ignored set wins when
/// a status is in both, because ignoring is always an explicit choice.
///
/// Two presets:
/// - [`server_errors`](Self::server_errors) (the default): every 5xx is a
///   failure, 4xx are not: a client's bad request says nothing about the
///   server's health. This is the circuit breaker's default.
/// - [`transient`](Self::transient): 429, 502, 503 and 504, the statuses worth
///   trying again. This is the retry layer's default.
///
/// ```
/// use http::{Response, StatusCode};
/// use palisade_core::{Classify, Outcome, http::StatusClassifier};
///
/// let classify = StatusClassifier::server_errors().ignore(StatusCode::NOT_IMPLEMENTED);
/// let res = |s: u16| Ok::<_, ()>(Response::builder().status(s).body(()).unwrap());
/// assert_eq!(classify.classify(&res(200)), Outcome::Success);
/// assert_eq!(classify.classify(&res(404)), Outcome::Success);
/// assert_eq!(classify.classify(&res(503)), Outcome::Failure);
/// assert_eq!(classify.classify(&res(501)), Outcome::Ignored);
/// assert_eq!(classify.classify(&Err::<Response<()>, _>(())), Outcome::Failure);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusClassifier {
    failures: StatusSet,
    ignored: StatusSet,
}

impl StatusClassifier {
    /// Every 5xx status is a failure.
    #[must_use]
    pub const fn server_errors() -> Self {
        Self {
            failures: StatusSet::empty().with_range(500, 599),
            ignored: StatusSet::empty(),
        }
    }

    /// 429 Too Many Requests, 502 Bad Gateway, 503 Service Unavailable and
    /// 504 Gateway Timeout are failures: the transient ones.
    #[must_use]
    pub const fn transient() -> Self {
        Self {
            failures: StatusSet::empty().with(429).with(502).with(503).with(504),
            ignored: StatusSet::empty(),
        }
    }

    /// No status is a failure (only `Err` is); build up from here.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            failures: StatusSet::empty(),
            ignored: StatusSet::empty(),
        }
    }

    /// Also count `status` as a failure.
    #[must_use]
    pub const fn failure(mut self, status: StatusCode) -> Self {
        self.failures = self.failures.with(status.as_u16());
        self
    }

    /// Also count every status in `range` as a failure.
    #[must_use]
    pub fn failures(mut self, range: RangeInclusive<u16>) -> Self {
        self.failures = self.failures.with_range(*range.start(), *range.end());
        self
    }

    /// Do not count `status` as a failure (it becomes a success).
    #[must_use]
    pub const fn not_failure(mut self, status: StatusCode) -> Self {
        self.failures = self.failures.without(status.as_u16());
        self
    }

    /// Ignore `status`: neither success nor failure.
    #[must_use]
    pub const fn ignore(mut self, status: StatusCode) -> Self {
        self.ignored = self.ignored.with(status.as_u16());
        self
    }

    /// The statuses counted as failures.
    #[must_use]
    pub const fn failure_set(&self) -> StatusSet {
        self.failures
    }

    /// How a response with `status` counts.
    #[inline]
    #[must_use]
    pub const fn classify_status(&self, status: StatusCode) -> Outcome {
        if self.ignored.contains(status) {
            Outcome::Ignored
        } else if self.failures.contains(status) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl Default for StatusClassifier {
    fn default() -> Self {
        Self::server_errors()
    }
}

impl<B, E> Classify<Response<B>, E> for StatusClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(res) => self.classify_status(res.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

// ===== Retry-After =====

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), measured from `now`.
///
/// A date in the past gives zero. Anything else (negative, fractional,
/// garbage, more seconds than a `u64` holds) gives `None`: the caller falls
/// back to its own delay.
///
/// Delta-seconds are returned as the server wrote them, however large: a
/// delay may lie past the end of any clock (`18446744073709551615`), so add
/// it with `checked_add` and treat `None` as "too long" (the retry layer
/// stops with `RetryAfterTooLong`).
///
/// ```
/// use http::HeaderValue;
/// use palisade_core::http::parse_retry_after;
/// use std::time::{Duration, SystemTime};
///
/// let now = SystemTime::now();
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("3"), now), Some(Duration::from_secs(3)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
#[must_use]
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // u64 parse fails on overflow: an absurd value is a malformed one.
        return text.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Formats `after` as a `Retry-After` delta-seconds value, rounded up so a
/// client never comes back early (`1.2 s` gives `"2"`).
#[must_use]
pub fn retry_after_value(after: Duration) -> HeaderValue {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(secs)
}

// ===== Problem details =====

/// An `application/problem+json` body (RFC 9457) with its status and headers.
///
/// ```
/// use http::StatusCode;
/// use palisade_core::http::Problem;
///
/// let res: http::Response<String> = Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
///     .kind("timeout")
///     .detail("`orders` did not answer within 2s")
///     .into_response();
/// assert_eq!(res.status(), 504);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
/// assert_eq!(body["type"], "urn:palisade:problem:timeout");
/// assert_eq!(body["status"], 504);
/// ```
#[derive(Clone, Debug)]
pub struct Problem {
    status: StatusCode,
    kind: Option<Cow<'static, str>>,
    title: Cow<'static, str>,
    detail: Option<String>,
    extensions: serde_json::Map<String, serde_json::Value>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem with `status` and a short, human-readable `title`.
    pub fn new(status: StatusCode, title: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            kind: None,
            title: title.into(),
            detail: None,
            extensions: serde_json::Map::new(),
            headers: HeaderMap::new(),
        }
    }

    /// The problem's kind, a short kebab-case word; the body's `type` member
    /// becomes `urn:palisade:problem:<kind>` (`about:blank` when unset).
    #[must_use]
    pub fn kind(mut self, kind: impl Into<Cow<'static, str>>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// The explanation specific to this occurrence.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// An extension member of the body.
    #[must_use]
    pub fn extension(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }

    /// A response header.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The body as JSON text.
    #[must_use]
    pub fn body(&self) -> String {
        let mut body = serde_json::Map::new();
        let kind = self.kind.as_ref().map_or_else(
            || "about:blank".to_owned(),
            |k| format!("urn:palisade:problem:{k}"),
        );
        body.insert("type".to_owned(), kind.into());
        body.insert("title".to_owned(), self.title.as_ref().into());
        body.insert("status".to_owned(), self.status.as_u16().into());
        if let Some(detail) = &self.detail {
            body.insert("detail".to_owned(), detail.as_str().into());
        }
        for (k, v) in &self.extensions {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        serde_json::Value::Object(body).to_string()
    }

    /// The response: status, headers, `content-type: application/problem+json`
    /// and the JSON body.
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let body = self.body();
        let mut res = Response::new(B::from(body));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

impl CircuitOpen {
    /// This rejection as a `503 Service Unavailable` problem, with
    /// `Retry-After` when the breaker knows when it will probe and an
    /// `x-palisade-circuit-breaker` header naming it.
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "circuit breaker open")
            .kind("circuit-open")
            .detail(self.to_string())
            .extension("circuit_breaker", self.name());
        if let Some(name) = header_value(self.name()) {
            problem = problem.header(CIRCUIT_BREAKER_HEADER, name);
        }
        if let Some(after) = self.retry_after() {
            problem = problem
                .header(RETRY_AFTER, retry_after_value(after))
                .extension(
                    "retry_after_ms",
                    u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                );
        }
        problem
    }
}

impl BulkheadFull {
    /// This rejection as a `503 Service Unavailable` problem with an
    /// `x-palisade-bulkhead` header naming the bulkhead.
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "bulkhead full")
            .kind("bulkhead-full")
            .detail(self.to_string())
            .extension("bulkhead", self.name());
        if let Some(partition) = self.partition() {
            problem = problem.extension("partition", partition);
        }
        if let Some(name) = header_value(self.name()) {
            problem = problem.header(BULKHEAD_HEADER, name);
        }
        problem
    }
}

impl RateLimited {
    /// This rejection as a `429 Too Many Requests` problem, with
    /// `Retry-After` when the limiter knows the next slot and an
    /// `x-palisade-rate-limit` header naming it. (The IETF `RateLimit` and
    /// `RateLimit-Policy` fields are the rate-limit layer's to add: they need
    /// the policy, which this error does not carry.)
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate limited")
            .kind("rate-limited")
            .detail(self.to_string())
            .extension("rate_limit", self.name());
        if let Some(class) = self.class() {
            problem = problem.extension("class", class);
        }
        if let Some(name) = header_value(self.name()) {
            problem = problem.header(RATE_LIMIT_HEADER, name);
        }
        if let Some(after) = self.retry_after() {
            problem = problem
                .header(RETRY_AFTER, retry_after_value(after))
                .extension(
                    "retry_after_ms",
                    u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                );
        }
        problem
    }
}

impl DeadlineExpired {
    /// This error as a `504 Gateway Timeout` problem of kind
    /// `deadline-exceeded`, naming the layer that found the deadline passed.
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        Problem::new(StatusCode::GATEWAY_TIMEOUT, "deadline exceeded")
            .kind("deadline-exceeded")
            .detail(self.to_string())
            .extension("deadline", self.name())
    }
}

/// The problem for a [`DeadlineExpired`] anywhere in `error`'s chain, or
/// `None`.
#[must_use]
pub fn deadline_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    crate::cause_ref::<DeadlineExpired>(error).map(DeadlineExpired::to_problem)
}

/// The problem for a rejection anywhere in `error`'s chain (an open breaker,
/// a full bulkhead, a rate limit), or `None` when `error` is not a rejection.
#[must_use]
pub fn rejection_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    Some(match rejection(error)? {
        Rejection::CircuitOpen(open) => open.to_problem(),
        Rejection::BulkheadFull(full) => full.to_problem(),
        Rejection::RateLimited(limited) => limited.to_problem(),
    })
}

/// The problem response for a rejection anywhere in `error`'s chain, or `None`
/// when `error` is not a rejection.
///
/// For axum, in a `HandleErrorLayer`:
///
/// ```
/// use palisade_core::{BoxError, CircuitOpen, http::rejection_response};
/// use std::time::Duration;
///
/// let err: BoxError = CircuitOpen::new("orders", Some(Duration::from_millis(1500))).into();
/// let res: http::Response<String> = rejection_response(&*err).expect("a rejection");
/// assert_eq!(res.status(), 503);
/// assert_eq!(res.headers()["retry-after"], "2");
/// assert_eq!(res.headers()["x-palisade-circuit-breaker"], "orders");
/// ```
#[must_use]
pub fn rejection_response<B: From<String>>(error: &(dyn Error + 'static)) -> Option<Response<B>> {
    rejection_problem(error).map(Problem::into_response)
}

// ===== ProblemResponse =====

/// Maps an error (anywhere in its source chain) to the problem that answers
/// it, or says it does not know the error: the signature of each crate's
/// `http::to_problem`.
pub type ToProblem = fn(&(dyn Error + 'static)) -> Option<Problem>;

/// Answers errors with `application/problem+json` responses, so a stack's
/// error type becomes [`Infallible`], as an axum route wants.
///
/// Each error is offered to the mappers added with
/// [`map_errors`](Self::map_errors), in the order added, then to
/// [`rejection_problem`] (an open breaker or a full bulkhead anywhere in the
/// chain answers `503`, with `Retry-After` when known; a rate limit `429`),
/// then to [`deadline_problem`] (an expired [`Deadline`](crate::Deadline)
/// answers `504`). An error nobody
/// claims becomes a `500` whose body does not reveal it; it is logged at
/// `warn`. An error from the inner service's `poll_ready` is answered on the
/// next call, so the service stays usable.
///
/// Put it above the whole stack (or directly above the layers whose errors it
/// answers). The facade's `palisade::http::problem_responses()` returns one
/// that knows every enabled pattern's errors.
///
/// ```
/// use palisade_core::{BoxError, CircuitOpen, http::{Problem, ProblemResponseLayer}};
/// use http::StatusCode;
/// use std::error::Error;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// #[derive(Debug)]
/// struct Teapot;
/// impl std::fmt::Display for Teapot {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("teapot") }
/// }
/// impl Error for Teapot {}
///
/// fn teapot(error: &(dyn Error + 'static)) -> Option<Problem> {
///     palisade_core::is_caused_by::<Teapot>(error)
///         .then(|| Problem::new(StatusCode::IM_A_TEAPOT, "short and stout"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(ProblemResponseLayer::new().map_errors(teapot))
///     .service(service_fn(|n: u32| async move {
///         match n {
///             0 => Err::<http::Response<String>, BoxError>(Teapot.into()),
///             1 => Err(CircuitOpen::new("orders", None).into()),
///             _ => Err("boom".into()),
///         }
///     }));
/// assert_eq!(svc.clone().oneshot(0).await.unwrap().status(), 418);
/// assert_eq!(svc.clone().oneshot(1).await.unwrap().status(), 503);
/// assert_eq!(svc.clone().oneshot(2).await.unwrap().status(), 500);
/// # }
/// ```
#[derive(Clone)]
pub struct ProblemResponseLayer {
    mappers: Arc<[ToProblem]>,
}

impl ProblemResponseLayer {
    /// Answers rejections with `503` and any other error with `500`.
    #[must_use]
    pub fn new() -> Self {
        Self {
            mappers: Arc::from(Vec::new()),
        }
    }

    /// Also answers the errors `mapper` knows, tried before the rejections
    /// and in the order added (so a more specific mapping wins).
    #[must_use]
    pub fn map_errors(self, mapper: ToProblem) -> Self {
        let mut mappers = self.mappers.to_vec();
        mappers.push(mapper);
        Self {
            mappers: Arc::from(mappers),
        }
    }

    /// The problem answering `error`: the first mapper that knows it, else a
    /// rejection's problem, else `500 Internal Server Error`.
    #[must_use]
    pub fn problem_for(&self, error: &(dyn Error + 'static)) -> Problem {
        problem_for(&self.mappers, error)
    }
}

fn problem_for(mappers: &[ToProblem], error: &(dyn Error + 'static)) -> Problem {
    mappers
        .iter()
        .find_map(|map| map(error))
        .or_else(|| rejection_problem(error))
        .or_else(|| deadline_problem(error))
        .unwrap_or_else(|| {
            tracing::warn!(error = %error, "request failed; answering 500");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").kind("internal")
        })
}

impl Default for ProblemResponseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ProblemResponseLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProblemResponseLayer")
            .field("mappers", &self.mappers.len())
            .finish()
    }
}

impl<S> Layer<S> for ProblemResponseLayer {
    type Service = ProblemResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemResponse {
            inner,
            mappers: Arc::clone(&self.mappers),
            ready_error: None,
        }
    }
}

/// The service of [`ProblemResponseLayer`].
pub struct ProblemResponse<S> {
    inner: S,
    mappers: Arc<[ToProblem]>,
    ready_error: Option<BoxError>,
}

// A clone does not carry a pending `poll_ready` error.
crate::inner_service! {
    ProblemResponse<S> {
        inner: S,
        clone: { share: [mappers], reset: [ready_error = None] },
    }
}

impl<S: fmt::Debug> fmt::Debug for ProblemResponse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProblemResponse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, Req, B> Service<Req> for ProblemResponse<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: From<String>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ProblemFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none()
            && let Err(error) = ready!(self.inner.poll_ready(cx))
        {
            self.ready_error = Some(error.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let mappers = Arc::clone(&self.mappers);
        let state = match self.ready_error.take() {
            Some(error) => ProblemState::Failed { error: Some(error) },
            None => ProblemState::Called {
                future: self.inner.call(req),
            },
        };
        ProblemFuture { state, mappers }
    }
}

pin_project! {
    #[project = ProblemStateProj]
    enum ProblemState<F> {
        Called { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

pin_project! {
    /// Response future of [`ProblemResponse`].
    pub struct ProblemFuture<F> {
        #[pin]
        state: ProblemState<F>,
        mappers: Arc<[ToProblem]>,
    }
}

impl<F> fmt::Debug for ProblemFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProblemFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ProblemFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: From<String>,
{
    type Output = Result<Response<B>, Infallible>;

    /// # Panics
    ///
    /// When polled again after it completed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error: BoxError = match this.state.project() {
            ProblemStateProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(res) => return Poll::Ready(Ok(res)),
                Err(error) => error.into(),
            },
            ProblemStateProj::Failed { error } => {
                error.take().expect("ProblemFuture polled after completion")
            }
        };
        Poll::Ready(Ok(problem_for(this.mappers, &*error).into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn status_set_bounds() {
        let set = StatusSet::empty().with(100).with(999).with(50).with(1000);
        assert!(set.contains(StatusCode::CONTINUE));
        assert!(set.contains(StatusCode::from_u16(999).unwrap()));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![100, 999]);
        let set = set.without(100);
        assert!(!set.contains(StatusCode::CONTINUE));
        let all = StatusSet::empty().with_range(0, 2000);
        assert_eq!(all.iter().count(), 900);
    }

    #[test]
    fn presets() {
        let s = StatusClassifier::server_errors();
        for code in 100..=999u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = if (500..=599).contains(&code) {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_eq!(s.classify_status(status), expected, "{code}");
        }
        let t = StatusClassifier::transient();
        let failures: Vec<u16> = t.failure_set().iter().collect();
        assert_eq!(failures, vec![429, 502, 503, 504]);
        assert_eq!(StatusClassifier::none().failure_set().iter().count(), 0);
        let custom = StatusClassifier::none()
            .failures(400..=403)
            .failure(StatusCode::IM_A_TEAPOT)
            .not_failure(StatusCode::UNAUTHORIZED);
        assert_eq!(
            custom.failure_set().iter().collect::<Vec<_>>(),
            vec![400, 402, 403, 418]
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let p = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(p("0"), Some(Duration::ZERO));
        assert_eq!(p(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            p("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(p("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(p("-5"), None);
        assert_eq!(p("1.5"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("99999999999999999999999"), None);
        assert_eq!(p("tomorrow"), None);
        let bad = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert_eq!(parse_retry_after(&bad, now), None);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_value(Duration::ZERO), "0");
        assert_eq!(retry_after_value(Duration::from_secs(2)), "2");
        assert_eq!(retry_after_value(Duration::from_millis(1001)), "2");
        assert_eq!(retry_after_value(Duration::from_nanos(1)), "1");
    }

    #[test]
    fn bulkhead_rejection_response() {
        let err: BoxError = BulkheadFull::new("reviews").with_partition("t1").into();
        let res: Response<String> = rejection_response(&*err).unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[BULKHEAD_HEADER], "reviews");
        assert!(res.headers().get(RETRY_AFTER).is_none());
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["type"], "urn:palisade:problem:bulkhead-full");
        assert_eq!(body["partition"], "t1");
        assert_eq!(body["status"], 503);
    }

    #[test]
    fn rate_limit_rejection_response() {
        let err: BoxError = RateLimited::new("api", Some(Duration::from_millis(1200)))
            .with_class("free")
            .into();
        let res: Response<String> = rejection_response(&*err).unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RATE_LIMIT_HEADER], "api");
        assert_eq!(res.headers()[RETRY_AFTER], "2");
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["type"], "urn:palisade:problem:rate-limited");
        assert_eq!(body["class"], "free");
        assert_eq!(body["retry_after_ms"], 1200);
        assert_eq!(body["status"], 429);
    }

    #[test]
    fn non_rejections_and_odd_names() {
        let err: BoxError = "boom".into();
        assert!(rejection_response::<String>(&*err).is_none());
        // A name that cannot be a header value still gives a response.
        let err: BoxError = CircuitOpen::new("bad\nname", None).into();
        let res: Response<String> = rejection_response(&*err).unwrap();
        assert!(res.headers().get(CIRCUIT_BREAKER_HEADER).is_none());
        assert!(res.headers().get(RETRY_AFTER).is_none());
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["circuit_breaker"], "bad\nname");
    }

    #[test]
    fn an_expired_deadline_is_a_504() {
        let err: BoxError = DeadlineExpired::new("edge").into();
        let problem = ProblemResponseLayer::new().problem_for(&*err);
        assert_eq!(problem.status(), StatusCode::GATEWAY_TIMEOUT);
        let body: serde_json::Value = serde_json::from_str(&problem.body()).unwrap();
        assert_eq!(body["type"], "urn:palisade:problem:deadline-exceeded");
        assert_eq!(body["deadline"], "edge");
        let other: BoxError = "boom".into();
        assert!(deadline_problem(&*other).is_none());
    }

    #[test]
    fn problem_extensions_do_not_override_standard_members() {
        let p = Problem::new(StatusCode::BAD_GATEWAY, "t").extension("status", 1);
        let body: serde_json::Value = serde_json::from_str(&p.body()).unwrap();
        assert_eq!(body["status"], 502);
        assert_eq!(body["type"], "about:blank");
    }

    mod problem_response {
        use super::*;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tower::{ServiceExt, service_fn};

        fn never(_: &(dyn Error + 'static)) -> Option<Problem> {
            None
        }

        fn teapot(error: &(dyn Error + 'static)) -> Option<Problem> {
            (error.to_string() == "teapot").then(|| Problem::new(StatusCode::IM_A_TEAPOT, "teapot"))
        }

        fn shadow_rejections(error: &(dyn Error + 'static)) -> Option<Problem> {
            crate::is_rejection(error).then(|| Problem::new(StatusCode::TOO_MANY_REQUESTS, "mine"))
        }

        #[tokio::test]
        async fn mappers_first_in_order_then_rejections_then_500() {
            let layer = ProblemResponseLayer::new()
                .map_errors(never)
                .map_errors(teapot);
            let svc = layer.layer(service_fn(|e: &'static str| async move {
                match e {
                    "open" => Err::<Response<String>, BoxError>(
                        CircuitOpen::new("x", Some(Duration::from_secs(2))).into(),
                    ),
                    other => Err(other.into()),
                }
            }));
            let res = svc.clone().oneshot("teapot").await.unwrap();
            assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
            let res = svc.clone().oneshot("open").await.unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()[RETRY_AFTER], "2");
            let res = svc.clone().oneshot("secret detail").await.unwrap();
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!res.body().contains("secret"), "a 500 reveals nothing");

            // A mapper added by the user wins over the built-in rejection mapping.
            let svc = ProblemResponseLayer::new()
                .map_errors(shadow_rejections)
                .layer(service_fn(|()| async {
                    Err::<Response<String>, BoxError>(BulkheadFull::new("b").into())
                }));
            assert_eq!(
                svc.oneshot(()).await.unwrap().status(),
                StatusCode::TOO_MANY_REQUESTS
            );
        }

        #[derive(Clone)]
        struct FailsReadyOnce(Arc<AtomicBool>);

        impl Service<()> for FailsReadyOnce {
            type Response = Response<String>;
            type Error = BoxError;
            type Future = std::future::Ready<Result<Response<String>, BoxError>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                if self.0.swap(false, Ordering::SeqCst) {
                    Poll::Ready(Err(BulkheadFull::new("ready").into()))
                } else {
                    Poll::Ready(Ok(()))
                }
            }

            fn call(&mut self, (): ()) -> Self::Future {
                std::future::ready(Ok(Response::new("ok".to_owned())))
            }
        }

        #[tokio::test]
        async fn a_poll_ready_error_is_answered_once_then_the_service_works() {
            let mut svc =
                ProblemResponseLayer::new().layer(FailsReadyOnce(Arc::new(AtomicBool::new(true))));
            let res = svc.ready().await.unwrap().call(()).await.unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()[BULKHEAD_HEADER], "ready");
            let res = svc.ready().await.unwrap().call(()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }

    proptest! {
        #[test]
        fn delta_seconds_round_trip(secs in 0u64..=u64::from(u32::MAX)) {
            let now = SystemTime::UNIX_EPOCH;
            let v = retry_after_value(Duration::from_secs(secs));
            prop_assert_eq!(parse_retry_after(&v, now), Some(Duration::from_secs(secs)));
        }

        #[test]
        fn never_panics_on_arbitrary_values(bytes in proptest::collection::vec(32u8..127, 0..40)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let _ = parse_retry_after(&v, SystemTime::now());
            }
        }
    }
}
