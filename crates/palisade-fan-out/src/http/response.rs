//! [`JsonResponse`]: the JSON merges as an HTTP response; failed gathers as
//! problem+json responses.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use palisade_core::http::{Problem, retry_after_value};
use palisade_core::{ConfigError, cause_ref, rejection};
use serde_json::{Map, Value};

use crate::error::{
    BranchError, BranchErrorKind, DeadlineElapsed, GatherError, NothingSucceeded,
    RequiredBranchFailed,
};
use crate::gather::Gathered;
use crate::merge::{JsonMerge, Merge};

use super::COMPLETED_HEADER;

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const FALSE: HeaderValue = HeaderValue::from_static("false");

/// Answers a gather over HTTP: `200` with the merged JSON, or a
/// problem+json response when the gather failed. Never an error, so the
/// fan-out's error type is [`Infallible`] (an axum route as it is).
///
/// | gather | status | `x-palisade-completed` | `cache-control` | body |
/// |---|---|---|---|---|
/// | every branch answered | 200 | `true` | (not set) | merged JSON |
/// | some missing or on fallback | 200 | `false` | `no-store` | merged JSON + `errors` |
/// | required branch timed out | 504 | `false` | `no-store` | problem+json |
/// | required branch rejected (breaker, bulkhead) | 503 (+ `Retry-After`) | `false` | `no-store` | problem+json |
/// | required branch failed otherwise | 502 | `false` | `no-store` | problem+json |
/// | deadline before a required branch answered | 504 | `false` | `no-store` | problem+json |
/// | nothing succeeded | 502 (504 if every branch timed out) | `false` | `no-store` | problem+json |
///
/// The problem body carries `fan_out`, the failing `branch` (when one), and an
/// `errors` object in the same shape as a partial answer's.
///
/// `B` is the response body type: anything `From<String>` (`String`,
/// `axum::body::Body`, `http_body_util::Full<Bytes>`).
pub struct JsonResponse<B = String> {
    json: JsonMerge,
    _body: PhantomData<fn() -> B>,
}

impl<B> JsonResponse<B> {
    /// Answers with `json`'s object.
    #[must_use]
    pub const fn new(json: JsonMerge) -> Self {
        Self {
            json,
            _body: PhantomData,
        }
    }

    /// One key per branch ([`JsonMerge::keyed`]).
    #[must_use]
    pub const fn keyed() -> Self {
        Self::new(JsonMerge::keyed())
    }

    /// Every branch's fields in one object ([`JsonMerge::flatten`]).
    #[must_use]
    pub const fn flatten() -> Self {
        Self::new(JsonMerge::flatten())
    }

    /// The JSON merge.
    #[must_use]
    pub const fn json(&self) -> &JsonMerge {
        &self.json
    }
}

impl<B> Default for JsonResponse<B> {
    fn default() -> Self {
        Self::keyed()
    }
}

impl<B> Clone for JsonResponse<B> {
    fn clone(&self) -> Self {
        Self::new(self.json.clone())
    }
}

impl<B> fmt::Debug for JsonResponse<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonResponse")
            .field("json", &self.json)
            .finish()
    }
}

impl<T, B> Merge<T> for JsonResponse<B>
where
    T: Into<Value>,
    B: From<String>,
{
    type Response = Response<B>;
    type Error = Infallible;

    fn merge(&self, gathered: Gathered<'_, T>) -> Result<Response<B>, Infallible> {
        let complete = gathered.is_complete();
        let value = self.json.to_value(gathered);
        let Ok(body) = serde_json::to_string(&value) else {
            let problem = Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the merged answer",
            )
            .kind("fan-out-encoding");
            return Ok(incomplete(problem.into_response()));
        };
        let mut response = Response::new(B::from(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if complete {
            headers.insert(COMPLETED_HEADER, TRUE);
            Ok(response)
        } else {
            Ok(incomplete(response))
        }
    }

    fn fail(&self, error: GatherError) -> Result<Response<B>, Infallible> {
        let problem = match &error {
            GatherError::RequiredBranchFailed(e) => required_problem(e, &self.json),
            GatherError::DeadlineElapsed(e) => deadline_problem(e, &self.json),
            GatherError::NothingSucceeded(e) => nothing_problem(e, &self.json),
        };
        Ok(incomplete(problem.into_response()))
    }

    fn check(&self, branches: &[&str]) -> Result<(), ConfigError> {
        self.json.check_names(branches)
    }
}

/// Marks a response incomplete: `x-palisade-completed: false` and
/// `cache-control: no-store`, so no cache keeps it.
fn incomplete<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    headers.insert(COMPLETED_HEADER, FALSE);
    headers.insert(CACHE_CONTROL, NO_STORE);
    response
}

fn branch_status(kind: BranchErrorKind) -> StatusCode {
    if kind.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else if kind == BranchErrorKind::Rejected {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    }
}

fn required_problem(error: &RequiredBranchFailed, json: &JsonMerge) -> Problem {
    let cause = error.cause();
    let mut errors = Map::new();
    errors.insert(error.branch().to_owned(), json.account_entry(cause, false));
    let mut problem = Problem::new(branch_status(cause.kind()), "required branch failed")
        .kind("required-branch-failed")
        .detail(format!(
            "required branch `{}` of fan-out `{}` failed: {}",
            error.branch(),
            error.fan_out(),
            cause.account_message(false)
        ))
        .extension("fan_out", error.fan_out())
        .extension("branch", error.branch())
        .extension("reason", cause.kind().as_str())
        .extension("errors", Value::Object(errors));
    if let Some(after) = rejection(cause).and_then(|r| r.retry_after()) {
        problem = problem.header(RETRY_AFTER, retry_after_value(after));
    }
    problem
}

fn deadline_problem(error: &DeadlineElapsed, json: &JsonMerge) -> Problem {
    let mut errors = Map::new();
    for name in error.pending() {
        errors.insert(
            name.to_owned(),
            json.account_entry(&BranchError::deadline(), false),
        );
    }
    Problem::new(StatusCode::GATEWAY_TIMEOUT, "fan-out deadline elapsed")
        .kind("deadline-elapsed")
        .detail(error.to_string())
        .extension("fan_out", error.fan_out())
        .extension(
            "deadline_ms",
            u64::try_from(error.deadline().as_millis()).unwrap_or(u64::MAX),
        )
        .extension("pending", error.pending().collect::<Vec<_>>())
        .extension("errors", Value::Object(errors))
}

fn nothing_problem(error: &NothingSucceeded, json: &JsonMerge) -> Problem {
    let mut errors = Map::new();
    let mut all_timeouts = true;
    for (name, err) in error.errors() {
        all_timeouts &= err.kind().is_timeout();
        errors.insert(name.to_owned(), json.account_entry(err, false));
    }
    let status = if all_timeouts && !errors.is_empty() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    Problem::new(status, "no branch succeeded")
        .kind("nothing-succeeded")
        .detail(error.to_string())
        .extension("fan_out", error.fan_out())
        .extension("errors", Value::Object(errors))
}

/// The problem+json response for a fan-out failure anywhere in `error`'s
/// chain, or `None` when `error` is not one: for fan-outs with another merge,
/// in an axum `HandleErrorLayer`. Same statuses and headers as
/// [`JsonResponse`].
///
/// ```
/// use palisade_fan_out::http::error_response;
/// use palisade_core::BoxError;
///
/// let other: BoxError = "not a fan-out error".into();
/// assert!(error_response::<String>(&*other).is_none());
/// ```
#[must_use]
pub fn error_response<B: From<String>>(error: &(dyn Error + 'static)) -> Option<Response<B>> {
    to_problem(error).map(Problem::into_response)
}

/// The problem for a fan-out failure anywhere in `error`'s chain (status and
/// headers as [`error_response`]), or `None` when `error` is not one. A
/// [`ToProblem`](palisade_core::http::ToProblem) mapper for palisade-core's
/// `ProblemResponseLayer`; it claims a fan-out failure before a rejection
/// inside it would be, so the answer names the branch.
#[must_use]
pub fn to_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    let json = JsonMerge::keyed();
    let problem = if let Some(e) = cause_ref::<RequiredBranchFailed>(error) {
        required_problem(e, &json)
    } else if let Some(e) = cause_ref::<DeadlineElapsed>(error) {
        deadline_problem(e, &json)
    } else if let Some(e) = cause_ref::<NothingSucceeded>(error) {
        nothing_problem(e, &json)
    } else {
        return None;
    };
    Some(
        problem
            .header(COMPLETED_HEADER, FALSE)
            .header(CACHE_CONTROL, NO_STORE),
    )
}
