//! HTTP integration (feature `http`): keys from requests, and
//! [`HttpRateLimit`], which answers a refusal with a response and tells
//! clients their limits in the IETF `RateLimit-Policy` and `RateLimit`
//! fields.
//!
//! # Keys
//!
//! - [`header`]`(name)`: a header's value, such as an API key. Absent: no
//!   key. Empty or not visible ASCII: an unusable key (400).
//! - [`client_ip`]`()`: the client's address, from axum's
//!   `ConnectInfo<SocketAddr>` (feature `axum`), a `SocketAddr` or `IpAddr`
//!   request extension (what a hyper server can insert), or, behind a proxy,
//!   a header you name ([`ClientIp::from_header`]). IPv6 clients are keyed
//!   by their /64 network unless told otherwise.
//! - [`path`]`()`, [`path_prefix`]`(n)`, and with the `axum` feature
//!   `route()` (the route template, `MatchedPath`).
//!
//! # Fields
//!
//! Following draft-ietf-httpapi-ratelimit-headers (revision 10 and later),
//! for the key's tier `free` of 10/s with a burst of 20:
//!
//! ```text
//! RateLimit-Policy: "free";q=10;w=1;palisade-burst=20
//! RateLimit: "free";r=7;t=1
//! ```
//!
//! `q` calls per `w` seconds is the sustained rate (the window is the
//! rate's period rounded up to whole seconds); `palisade-burst` is how many
//! calls may come at once. `r` is how many calls the key could make now and
//! `t` the seconds (rounded up) until it may make one more (absent when its
//! allowance is whole). A refusal answers `429 Too Many Requests` with the
//! same fields, `Retry-After` (equal to `t`), `x-palisade-rate-limit` naming
//! the limiter and a problem+json body (`violated-policies` names the tier).
//! The fields never carry the key (`pk`): keys can be secrets.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use palisade_rate_limit::{Rate, RateLimitLayer, http::header};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let limit = RateLimitLayer::builder("api")
//!     .rate(Rate::per_second(1))
//!     .burst(2)
//!     .key(header("x-api-key"))
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(limit.http_layer());
//! let req = || Request::get("/").header("x-api-key", "k1").body(Body::empty()).unwrap();
//!
//! let first = app.clone().oneshot(req()).await.unwrap();
//! assert_eq!(first.headers()["ratelimit-policy"], r#""default";q=1;w=1;palisade-burst=2"#);
//! assert_eq!(first.headers()["ratelimit"], r#""default";r=1;t=1"#);
//! app.clone().oneshot(req()).await.unwrap();
//! let refused = app.clone().oneshot(req()).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! assert_eq!(refused.headers()["ratelimit"], r#""default";r=0;t=1"#);
//! # }
//! ```

use std::error::Error;
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use palisade_core::http::{Problem, RATE_LIMIT_HEADER, retry_after_value};
use palisade_core::{RateLimited, cause_ref};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{InvalidKey, KeyProblem, Unavailable};
use crate::future::Core;
use crate::handle::RateLimitHandle;
use crate::key::{Key, KeyExtractor, KeyResult};
use crate::layer::RateLimitLayer;
use crate::settings::Limit;
use crate::shared::{Admission, Info, LimitsCache, Refusal, Shared};

/// The `RateLimit-Policy` field's name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` field's name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

// ===== Keys =====

/// Keys by a header's value (an API key, a tenant id); see [`header`].
#[derive(Clone, Debug)]
pub struct HeaderKey(HeaderName);

/// Keys by the value of the header `name`.
///
/// # Panics
///
/// If `name` is not a valid lowercase header name; use [`HeaderKey::new`]
/// with a parsed [`HeaderName`] to handle that case.
#[must_use]
pub fn header(name: &'static str) -> HeaderKey {
    HeaderKey(HeaderName::from_static(name))
}

impl HeaderKey {
    /// Keys by the value of the header `name`.
    #[must_use]
    pub const fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl<B> KeyExtractor<Request<B>> for HeaderKey {
    #[inline]
    fn extract<'r>(&'r self, req: &'r Request<B>) -> KeyResult<'r> {
        let Some(value) = req.headers().get(&self.0) else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return Err(KeyProblem::Empty);
        }
        if !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(KeyProblem::Malformed);
        }
        Ok(Some(Key::bytes(bytes)))
    }
}

impl crate::key::KeyExtractorExt for HeaderKey {}
impl crate::key::KeyExtractorExt for ClientIp {}
impl crate::key::KeyExtractorExt for PathKey {}
#[cfg(feature = "axum")]
impl crate::key::KeyExtractorExt for RouteKey {}

/// Keys by the client's IP address; see [`client_ip`].
#[derive(Clone, Debug)]
pub struct ClientIp {
    header: Option<HeaderName>,
    trusted_proxies: usize,
    ipv6_prefix: u8,
}

/// Keys by the client's IP address: from axum's `ConnectInfo<SocketAddr>`
/// (feature `axum`), else a `SocketAddr` or an `IpAddr` request extension.
/// No address: no key (see [`MissingKey`](crate::MissingKey)).
///
/// Behind a reverse proxy every request comes from the proxy: name the
/// header it sets with [`from_header`](ClientIp::from_header). Never trust
/// such a header without a proxy that sets it: any client can send it.
#[must_use]
pub const fn client_ip() -> ClientIp {
    ClientIp {
        header: None,
        trusted_proxies: 0,
        ipv6_prefix: 64,
    }
}

impl ClientIp {
    /// Reads the address from the header `name` (`x-forwarded-for`,
    /// `x-real-ip`) instead of the connection: the last address of its last
    /// line, the one your proxy appended (see
    /// [`trusted_proxies`](Self::trusted_proxies)). A value that holds no IP
    /// address is an unusable key (400); no header, no key.
    #[must_use]
    pub fn from_header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// With `from_header`, the number of proxies of yours that each append
    /// an address after your outermost one: the address used is the
    /// `n + 1`-th from the right (default 0: the last).
    #[must_use]
    pub const fn trusted_proxies(mut self, n: usize) -> Self {
        self.trusted_proxies = n;
        self
    }

    /// IPv6 clients are keyed by their first `bits` bits (default 64: a
    /// client usually holds a whole /64; 128 keys each address). Clamped to
    /// 1..=128.
    #[must_use]
    pub const fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = if bits == 0 {
            1
        } else if bits > 128 {
            128
        } else {
            bits
        };
        self
    }

    fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr.to_canonical() {
            IpAddr::V6(v6) if self.ipv6_prefix < 128 => {
                let bits = u128::from(v6) & (u128::MAX << (128 - u32::from(self.ipv6_prefix)));
                IpAddr::V6(bits.into())
            }
            other => other,
        }
    }

    fn read_header<B>(&self, name: &HeaderName, req: &Request<B>) -> KeyResult<'static> {
        let Some(value) = req.headers().get_all(name).iter().next_back() else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| KeyProblem::Malformed)?;
        let item = text
            .rsplit(',')
            .nth(self.trusted_proxies)
            .map(str::trim)
            .ok_or(KeyProblem::Malformed)?;
        let addr = item
            .parse::<IpAddr>()
            .or_else(|_| item.parse::<SocketAddr>().map(|s| s.ip()))
            .map_err(|_| KeyProblem::Malformed)?;
        Ok(Some(Key::ip(self.mask(addr))))
    }
}

impl<B> KeyExtractor<Request<B>> for ClientIp {
    #[inline]
    fn extract<'r>(&'r self, req: &'r Request<B>) -> KeyResult<'r> {
        if let Some(name) = &self.header {
            return self.read_header(name, req);
        }
        let ext = req.extensions();
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) =
            ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Ok(Some(Key::ip(self.mask(addr.ip()))));
        }
        let addr = ext
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .or_else(|| ext.get::<IpAddr>().copied());
        Ok(addr.map(|a| Key::ip(self.mask(a))))
    }
}

/// Keys by the request path, or its first segments; see [`path`] and
/// [`path_prefix`].
#[derive(Clone, Copy, Debug)]
pub struct PathKey {
    segments: Option<usize>,
}

/// Keys by the whole path (without the query). Paths with ids make one key
/// per id: prefer [`path_prefix`] or `route()` (feature `axum`).
#[must_use]
pub const fn path() -> PathKey {
    PathKey { segments: None }
}

/// Keys by the first `segments` segments of the path: `path_prefix(2)` keys
/// `/api/orders/123?x=1` as `/api/orders`.
#[must_use]
pub const fn path_prefix(segments: usize) -> PathKey {
    PathKey {
        segments: Some(segments),
    }
}

impl<B> KeyExtractor<Request<B>> for PathKey {
    #[inline]
    fn extract<'r>(&'r self, req: &'r Request<B>) -> KeyResult<'r> {
        let path = req.uri().path();
        let Some(segments) = self.segments.filter(|s| *s > 0) else {
            return Ok(Some(Key::text(path)));
        };
        let mut seen = 0;
        for (i, byte) in path.bytes().enumerate().skip(1) {
            if byte == b'/' {
                seen += 1;
                if seen == segments {
                    return Ok(Some(Key::text(&path[..i])));
                }
            }
        }
        Ok(Some(Key::text(path)))
    }
}

/// Keys by the matched route's template (axum's `MatchedPath`,
/// `/users/{id}`), or the path outside a router; see [`route`].
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteKey;

/// Keys by the matched route (feature `axum`): one allowance per route, not
/// per id in the path.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[must_use]
pub const fn route() -> RouteKey {
    RouteKey
}

#[cfg(feature = "axum")]
impl<B> KeyExtractor<Request<B>> for RouteKey {
    #[inline]
    fn extract<'r>(&'r self, req: &'r Request<B>) -> KeyResult<'r> {
        match req.extensions().get::<axum::extract::MatchedPath>() {
            Some(matched) => Ok(Some(Key::text(matched.as_str()))),
            None => Ok(Some(Key::text(req.uri().path()))),
        }
    }
}

// ===== Fields =====

/// The `RateLimit-Policy` value of a tier.
fn policy_value(name: &str, limit: Limit) -> String {
    let per = limit.rate.per().as_nanos();
    let window = per.div_ceil(1_000_000_000).max(1);
    let quota = u128::from(limit.rate.count()) * window * 1_000_000_000 / per;
    format!(
        "\"{name}\";q={quota};w={window};palisade-burst={}",
        limit.burst
    )
}

/// Whole seconds, rounded up.
fn seconds(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

/// The two fields for a decision.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    policy: HeaderValue,
    limit: HeaderValue,
}

impl Fields {
    fn new(shared: &Shared, info: &Info) -> Option<Self> {
        let limits = shared.limits();
        let tier = limits.tiers.get(info.tier as usize)?;
        let quota = info.quota();
        let mut limit = format!("\"{}\";r={}", tier.name, quota.remaining);
        if quota.reset > 0 {
            let _ = write!(limit, ";t={}", seconds(quota.reset));
        }
        Some(Self {
            policy: HeaderValue::try_from(policy_value(&tier.name, tier.limit)).ok()?,
            limit: HeaderValue::try_from(limit).ok()?,
        })
    }

    fn apply(self, headers: &mut http::HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy);
        headers.insert(RATELIMIT, self.limit);
    }
}

// ===== Problems =====

fn limited_problem(error: &RateLimited, fields: Option<Fields>) -> Problem {
    let mut problem = error.to_problem();
    if let Some(class) = error.class() {
        problem = problem.extension("violated-policies", vec![class.to_owned()]);
    }
    if let Some(fields) = fields {
        problem = problem
            .header(RATELIMIT_POLICY, fields.policy)
            .header(RATELIMIT, fields.limit);
    }
    problem
}

fn name_header(problem: Problem, name: &str) -> Problem {
    match HeaderValue::from_str(name) {
        Ok(value) => problem.header(RATE_LIMIT_HEADER, value),
        Err(_) => problem,
    }
}

impl InvalidKey {
    /// This refusal as a `400 Bad Request` problem naming the limiter.
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        let problem = Problem::new(StatusCode::BAD_REQUEST, "unusable rate limit key")
            .kind("invalid-rate-limit-key")
            .detail(self.to_string())
            .extension("rate_limit", self.name())
            .extension("reason", self.problem().as_str());
        name_header(problem, self.name())
    }
}

impl Unavailable {
    /// This refusal as a `503 Service Unavailable` problem naming the
    /// limiter, with `Retry-After` when its backend's breaker knows when it
    /// tries again. The backend's error is not revealed.
    #[must_use]
    pub fn to_problem(&self) -> Problem {
        let limited = self.rejection();
        let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "rate limiter unavailable")
            .kind("rate-limit-unavailable")
            .detail(format!(
                "rate limiter `{}` cannot reach its backend",
                limited.name()
            ))
            .extension("rate_limit", limited.name());
        if let Some(after) = limited.retry_after() {
            problem = problem.header(http::header::RETRY_AFTER, retry_after_value(after));
        }
        name_header(problem, limited.name())
    }
}

/// The problem answering this crate's errors anywhere in `error`'s chain: an
/// unusable key (400), a limiter failing closed (503), a refusal (429 with
/// `Retry-After`; without the `RateLimit` fields, which only the
/// [`HttpRateLimit`] service knows). For
/// `palisade_core::http::ProblemResponseLayer::map_errors`.
#[must_use]
pub fn to_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    if let Some(invalid) = cause_ref::<InvalidKey>(error) {
        return Some(invalid.to_problem());
    }
    if let Some(unavailable) = cause_ref::<Unavailable>(error) {
        return Some(unavailable.to_problem());
    }
    cause_ref::<RateLimited>(error).map(|limited| limited_problem(limited, None))
}

fn refusal_response<B: From<String>>(refusal: Refusal, fields: Option<Fields>) -> Response<B> {
    match refusal {
        Refusal::Limited { error, .. } => limited_problem(&error, fields),
        Refusal::Invalid(error) => error.to_problem(),
        Refusal::Unavailable(error) => error.to_problem(),
    }
    .into_response()
}

// ===== The layer and service =====

/// Applies a rate limiter that answers refusals with responses; built by
/// [`RateLimitLayer::http_layer`]. Shares the limiter of the layer it came
/// from.
pub struct HttpRateLimitLayer<K> {
    layer: RateLimitLayer<K>,
}

impl<K> RateLimitLayer<K> {
    /// The same limiter as an HTTP layer that answers a refusal with a
    /// response (`429` with `Retry-After` and the IETF `RateLimit` fields,
    /// `400` for an unusable key, `503` when failing closed) instead of an
    /// error, and adds the fields to admitted responses (feature `http`).
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn http_layer(&self) -> HttpRateLimitLayer<K>
    where
        K: Clone,
    {
        HttpRateLimitLayer::new(self.clone())
    }
}

impl<K> HttpRateLimitLayer<K> {
    /// The HTTP form of `layer` (same limiter).
    pub const fn new(layer: RateLimitLayer<K>) -> Self {
        Self { layer }
    }

    /// A handle to read and change the limiter.
    #[must_use]
    pub fn handle(&self) -> RateLimitHandle {
        self.layer.handle()
    }
}

impl<K: Clone> Clone for HttpRateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer.clone(),
        }
    }
}

impl<K> fmt::Debug for HttpRateLimitLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRateLimitLayer")
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, K: Clone> Layer<S> for HttpRateLimitLayer<K> {
    type Service = HttpRateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Arc::clone(self.layer.shared());
        HttpRateLimit {
            inner,
            limits: shared.limits_cache(),
            shared,
            key: self.layer.key().clone(),
        }
    }
}

/// A rate limiter over an HTTP service that answers refusals with responses
/// (`429`, `400`, `503`, problem+json) and adds the `RateLimit` fields to
/// admitted responses; its error type is the inner service's, so an axum app
/// stays `Infallible`. Otherwise the same as [`RateLimit`](crate::RateLimit).
pub struct HttpRateLimit<S, K> {
    inner: S,
    shared: Arc<Shared>,
    limits: LimitsCache,
    key: K,
}

impl<S, K> HttpRateLimit<S, K> {
    /// A handle to read and change the limiter.
    #[must_use]
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(Arc::clone(&self.shared))
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the limiter, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K: Clone> Clone for HttpRateLimit<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            limits: self.shared.limits_cache(),
            key: self.key.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for HttpRateLimit<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRateLimit")
            .field("name", &self.shared.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for HttpRateLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor<Request<ReqBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let limits = self.limits.load();
        let admission = self
            .shared
            .admit(limits, self.key.extract(&req), K::UNKEYED);
        let want = self.shared.fixed.headers;
        let fields = match &admission {
            Admission::Now(info) | Admission::Wait { info, .. } if want => {
                Fields::new(&self.shared, info)
            }
            Admission::Refused(Refusal::Limited { info, .. }) => Fields::new(&self.shared, info),
            _ => None,
        };
        ResponseFuture {
            core: Core::start(admission, &mut self.inner, req),
            fields,
            want,
        }
    }
}

pin_project! {
    /// Response future of [`HttpRateLimit`].
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        core: Core<S, Req, Box<Refusal>>,
        fields: Option<Fields>,
        want: bool,
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

impl<S, Req, B> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    B: From<String>,
{
    type Output = Result<Response<B>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = ready!(this.core.as_mut().poll_core(cx));
        let core = this.core.as_ref().get_ref();
        // After a remote decision the fields are computed now.
        let late = |info: Option<&Info>| {
            let (shared, info) = match info {
                Some(info) => (core.remote_shared()?, info),
                None => core.remote_info()?,
            };
            Fields::new(shared, info)
        };
        Poll::Ready(match result {
            Ok(Ok(mut res)) => {
                if *this.want
                    && let Some(fields) = this.fields.take().or_else(|| late(None))
                {
                    fields.apply(res.headers_mut());
                }
                Ok(res)
            }
            Ok(Err(error)) => Err(error),
            Err(refusal) => {
                let fields = this.fields.take().or_else(|| match &*refusal {
                    Refusal::Limited { info, .. } => late(Some(info)),
                    _ => None,
                });
                Ok(refusal_response(*refusal, fields))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Rate;
    use std::time::Duration;

    fn req() -> http::request::Builder {
        Request::builder().uri("/api/orders/7?x=1")
    }

    #[test]
    fn policy_values() {
        let p = |rate, burst| policy_value("t", Limit::new(rate, burst));
        assert_eq!(
            p(Rate::per_second(10), 20),
            r#""t";q=10;w=1;palisade-burst=20"#
        );
        assert_eq!(
            p(Rate::per_minute(100), 5),
            r#""t";q=100;w=60;palisade-burst=5"#
        );
        assert_eq!(
            p(Rate::new(10, Duration::from_millis(100)), 1),
            r#""t";q=100;w=1;palisade-burst=1"#
        );
        assert_eq!(
            p(Rate::new(3, Duration::from_millis(1500)), 3),
            r#""t";q=4;w=2;palisade-burst=3"#
        );
    }

    #[test]
    fn header_keys_refuse_unusable_values() {
        let k = header("x-api-key");
        let r = req().header("x-api-key", "abc").body(()).unwrap();
        assert_eq!(k.extract(&r), Ok(Some(Key::text("abc"))));
        assert_eq!(k.extract(&req().body(()).unwrap()), Ok(None));
        let r = req().header("x-api-key", "").body(()).unwrap();
        assert_eq!(k.extract(&r), Err(KeyProblem::Empty));
        for bad in [&b"a b"[..], b"a\tb", b"\xffabc"] {
            let r = req()
                .header("x-api-key", HeaderValue::from_bytes(bad).unwrap())
                .body(())
                .unwrap();
            assert_eq!(k.extract(&r), Err(KeyProblem::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn client_ip_from_extensions_and_headers() {
        let ip = client_ip();
        let mut r = req().body(()).unwrap();
        assert_eq!(ip.extract(&r), Ok(None));
        r.extensions_mut()
            .insert("10.0.0.9:4000".parse::<SocketAddr>().unwrap());
        assert_eq!(ip.extract(&r).unwrap().unwrap().to_string(), "10.0.0.9");
        // IPv6 by /64 unless told otherwise.
        let mut r = req().body(()).unwrap();
        r.extensions_mut()
            .insert("2001:db8:1:2:3:4:5:6".parse::<IpAddr>().unwrap());
        assert_eq!(
            ip.extract(&r).unwrap().unwrap().to_string(),
            "2001:db8:1:2::"
        );
        assert_eq!(
            client_ip()
                .ipv6_prefix(128)
                .extract(&r)
                .unwrap()
                .unwrap()
                .to_string(),
            "2001:db8:1:2:3:4:5:6"
        );
        let xff = client_ip().from_header(HeaderName::from_static("x-forwarded-for"));
        let r = req()
            .header("x-forwarded-for", "1.1.1.1, 2.2.2.2")
            .header("x-forwarded-for", "3.3.3.3 , 4.4.4.4:80")
            .body(())
            .unwrap();
        assert_eq!(xff.extract(&r).unwrap().unwrap().to_string(), "4.4.4.4");
        assert_eq!(
            xff.clone()
                .trusted_proxies(1)
                .extract(&r)
                .unwrap()
                .unwrap()
                .to_string(),
            "3.3.3.3"
        );
        assert_eq!(
            xff.clone().trusted_proxies(5).extract(&r),
            Err(KeyProblem::Malformed)
        );
        let bad = req()
            .header("x-forwarded-for", "nonsense")
            .body(())
            .unwrap();
        assert_eq!(xff.extract(&bad), Err(KeyProblem::Malformed));
        assert_eq!(xff.extract(&req().body(()).unwrap()), Ok(None));
    }

    #[test]
    fn path_keys() {
        let r = req().body(()).unwrap();
        assert_eq!(
            path().extract(&r).unwrap().unwrap().to_string(),
            "/api/orders/7"
        );
        assert_eq!(
            path_prefix(1).extract(&r).unwrap().unwrap().to_string(),
            "/api"
        );
        assert_eq!(
            path_prefix(2).extract(&r).unwrap().unwrap().to_string(),
            "/api/orders"
        );
        assert_eq!(
            path_prefix(9).extract(&r).unwrap().unwrap().to_string(),
            "/api/orders/7"
        );
    }

    #[test]
    fn problems_for_each_error() {
        let invalid: palisade_core::BoxError = InvalidKey::new("api", KeyProblem::TooLong).into();
        let p = to_problem(&*invalid).unwrap();
        assert_eq!(p.status(), StatusCode::BAD_REQUEST);
        let res: Response<String> = p.into_response();
        assert_eq!(res.headers()[RATE_LIMIT_HEADER], "api");
        assert!(res.body().contains("too_long"));
        let limited =
            RateLimited::new("api", Some(Duration::from_millis(1_500))).with_class("free");
        let unavailable: palisade_core::BoxError = Unavailable::new(limited.clone(), None).into();
        let res: Response<String> = to_problem(&*unavailable).unwrap().into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "2");
        let limited: palisade_core::BoxError = limited.into();
        let res: Response<String> = to_problem(&*limited).unwrap().into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["violated-policies"][0], "free");
        let other: palisade_core::BoxError = "x".into();
        assert!(to_problem(&*other).is_none());
    }
}
