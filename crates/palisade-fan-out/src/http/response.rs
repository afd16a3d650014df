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
use crate::merge::{JsonMerge, Merge};
use crate::state::Gathered;

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
/// | required branch's request could not be built from the incoming one (reason `request`) | 400 | `false` | `no-store` | problem+json |
/// | required branch answered a 4xx (reason `status`) | the same 4xx (but 407, 408, 421: 502; 429: 503) | `false` | `no-store` | problem+json |
/// | required branch failed otherwise (5xx, invalid answer, transport error) | 502 | `false` | `no-store` | problem+json |
/// | deadline before a required branch answered | 504 | `false` | `no-store` | problem+json |
/// | nothing succeeded | 502 (504 if every branch timed out) | `false` | `no-store` | problem+json |
///
/// The problem body carries `fan_out`, the failing `branch` (when one), and an
/// `errors` object in the same shape as a partial answer's.
///
/// A required branch that fails because of the incoming request answers a
/// 4xx, as a single backend would: the branch's request could not be built
/// from it (a missing or invalid path parameter, a path parameter of `.` or
/// `..`), or the branch answered a client error about it (`404` for an
/// unknown id, `400` for a malformed one). Four client errors are about the
/// gateway's own exchange with the backend, not the client's request, and
/// stay the gateway's problem: `407` (a proxy on the way wants the
/// gateway's credentials), `408` (the backend gave up waiting for the
/// gateway's request) and `421` (the gateway's connection reached the
/// wrong server) answer `502`; `429` (the backend is limiting the
/// gateway's rate) answers `503`, as the backend is overloaded for every
/// client, not refusing this one.
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

/// The status of a gather whose required branch failed with `cause` (see
/// [`JsonResponse`]).
fn branch_status(cause: &BranchError) -> StatusCode {
    match cause.kind() {
        BranchErrorKind::Timeout | BranchErrorKind::Deadline => StatusCode::GATEWAY_TIMEOUT,
        BranchErrorKind::Rejected => StatusCode::SERVICE_UNAVAILABLE,
        BranchErrorKind::Request => StatusCode::BAD_REQUEST,
        BranchErrorKind::Status => cause
            .status()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .map_or(StatusCode::BAD_GATEWAY, answered_status),
        BranchErrorKind::InvalidResponse | BranchErrorKind::Failed => StatusCode::BAD_GATEWAY,
    }
}

/// The gather's status for a required branch that answered `status`: a
/// client error about the request passes through; the rest is the
/// gateway's problem with the backend.
fn answered_status(status: StatusCode) -> StatusCode {
    match status {
        StatusCode::TOO_MANY_REQUESTS => StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::PROXY_AUTHENTICATION_REQUIRED
        | StatusCode::REQUEST_TIMEOUT
        | StatusCode::MISDIRECTED_REQUEST => StatusCode::BAD_GATEWAY,
        s if s.is_client_error() => s,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn required_problem(error: &RequiredBranchFailed, json: &JsonMerge) -> Problem {
    let cause = error.cause();
    let mut errors = Map::new();
    errors.insert(error.branch().to_owned(), json.account_entry(cause, false));
    let mut problem = Problem::new(branch_status(cause), "required branch failed")
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
