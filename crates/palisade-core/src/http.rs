//! HTTP vocabulary (feature `http`): status classification, `Retry-After`,
//! and `application/problem+json` responses for rejections.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};

use crate::classify::{Classify, Outcome};
use crate::reject::{BulkheadFull, CircuitOpen, Rejection, rejection};

/// Names the breaker that rejected a call, on a `503` answered for it.
pub const CIRCUIT_BREAKER_HEADER: HeaderName =
    HeaderName::from_static("x-palisade-circuit-breaker");
/// Names the bulkhead that rejected a call, on a `503` answered for it.
pub const BULKHEAD_HEADER: HeaderName = HeaderName::from_static("x-palisade-bulkhead");
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
/// garbage, absurdly large) gives `None`: the caller falls back to its own
/// delay.
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
    let problem = match rejection(error)? {
        Rejection::CircuitOpen(open) => open.to_problem(),
        Rejection::BulkheadFull(full) => full.to_problem(),
    };
    Some(problem.into_response())
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
        let err: crate::BoxError = BulkheadFull::new("reviews").with_partition("t1").into();
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
    fn non_rejections_and_odd_names() {
        let err: crate::BoxError = "boom".into();
        assert!(rejection_response::<String>(&*err).is_none());
        // A name that cannot be a header value still gives a response.
        let err: crate::BoxError = CircuitOpen::new("bad\nname", None).into();
        let res: Response<String> = rejection_response(&*err).unwrap();
        assert!(res.headers().get(CIRCUIT_BREAKER_HEADER).is_none());
        assert!(res.headers().get(RETRY_AFTER).is_none());
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["circuit_breaker"], "bad\nname");
    }

    #[test]
    fn problem_extensions_do_not_override_standard_members() {
        let p = Problem::new(StatusCode::BAD_GATEWAY, "t").extension("status", 1);
        let body: serde_json::Value = serde_json::from_str(&p.body()).unwrap();
        assert_eq!(body["status"], 502);
        assert_eq!(body["type"], "about:blank");
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
