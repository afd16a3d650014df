//! Errors from an upstream's stack, as `application/problem+json` responses.
//!
//! | cause (anywhere in the error's source chain) | status | problem `type` |
//! |---|---|---|
//! | `CircuitOpen` (a breaker refused) | 503 + `Retry-After`, `x-palisade-circuit-breaker` | `urn:palisade:problem:circuit-open` |
//! | `BulkheadFull` (a bulkhead refused) | 503, `x-palisade-bulkhead` | `urn:palisade:problem:bulkhead-full` |
//! | tower's `Elapsed` (the upstream's timeout) | 504 | `urn:palisade:problem:timeout` |
//! | a request body over the limit | 413 | `urn:palisade:problem:body-too-large` |
//! | connecting failed (refused, unreachable) | 502 | `urn:palisade:problem:upstream-unreachable` |
//! | any other upstream error (reset, malformed response) | 502 | `urn:palisade:problem:upstream-error` |

use std::error::Error;

use axum::body::Body;
use http::{Response, StatusCode};
use http_body_util::LengthLimitError;
use palisade_core::cause_ref;
use palisade_core::http::{Problem, rejection_response};
use tower::timeout::error::Elapsed;

/// The response for `err`, raised by the stack of `upstream`.
#[must_use]
pub fn error_response(
    upstream: &str,
    timeout_ms: u128,
    err: &(dyn Error + 'static),
) -> Response<Body> {
    if let Some(res) = rejection_response::<Body>(err) {
        return res;
    }
    let problem = if cause_ref::<Elapsed>(err).is_some() {
        Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            .kind("timeout")
            .detail(format!(
                "`{upstream}` did not answer within {timeout_ms} ms"
            ))
    } else if cause_ref::<LengthLimitError>(err).is_some() {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            .kind("body-too-large")
            .detail("the request body is larger than the gateway accepts")
    } else if cause_ref::<crate::pool::ConnectError>(err).is_some() {
        Problem::new(StatusCode::BAD_GATEWAY, "upstream unreachable")
            .kind("upstream-unreachable")
            .detail(format!("cannot connect to `{upstream}`: {}", chain(err)))
    } else {
        Problem::new(StatusCode::BAD_GATEWAY, "upstream error")
            .kind("upstream-error")
            .detail(format!("`{upstream}` failed: {}", chain(err)))
    };
    problem.extension("upstream", upstream).into_response()
}

/// `err` and its causes, joined with `: `.
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// A problem response with no upstream involved (404, 400, 403, ...).
#[must_use]
pub fn problem(
    status: StatusCode,
    title: &'static str,
    detail: impl Into<String>,
) -> Response<Body> {
    Problem::new(status, title).detail(detail).into_response()
}
