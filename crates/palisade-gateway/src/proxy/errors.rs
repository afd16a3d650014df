//! Errors from an upstream's stack, as `application/problem+json` responses.
//!
//! The crates' own mappings come first: a rejection anywhere in the chain
//! is answered by `palisade::http::rejection_problem` (what
//! `rejection_response` sends), the retry layer's errors by
//! `palisade::retry::http::to_problem`; the gateway maps what only it knows
//! about (tower's `Elapsed` with the upstream's timeouts, the body limit, the
//! client's errors). Every body carries an `upstream` member.
//!
//! | cause (anywhere in the error's source chain) | status | problem `type` | by |
//! |---|---|---|---|
//! | `CircuitOpen` (a breaker refused) | 503 + `Retry-After`, `x-palisade-circuit-breaker` | `urn:palisade:problem:circuit-open` | `rejection_problem` |
//! | `BulkheadFull` (a bulkhead refused) | 503, `x-palisade-bulkhead` | `urn:palisade:problem:bulkhead-full` | `rejection_problem` |
//! | retry's `DeadlineExceeded` | 504 | `urn:palisade:problem:deadline-exceeded` | the retry crate |
//! | `DeadlineExpired` from the upstream's overall timeout, when its own `timeout_ms` was the shorter | 504 | `urn:palisade:problem:timeout` | here |
//! | `DeadlineExpired` otherwise (the request's deadline: the caller's header, `[deadline] budget`) | 504 | `urn:palisade:problem:deadline-exceeded` | the deadline crate |
//! | retry's `AttemptTimedOut` | 504 | `urn:palisade:problem:attempt-timeout` | the retry crate |
//! | the shard router's `KeyError` (a sharded upstream's request without a usable key) | 400 | `urn:palisade:problem:shard-key` | the shard crate |
//! | the shard router's `ShardNotReady` | 503 | `urn:palisade:problem:shard-not-ready` | the shard crate |
//! | tower's `Elapsed` (the overall or the per-attempt timeout) | 504 | `urn:palisade:problem:timeout` | here |
//! | a request body over the limit | 413 | `urn:palisade:problem:body-too-large` | here |
//! | a request body cut short or malformed by the client | 400 | `urn:palisade:problem:bad-request-body` | here |
//! | connecting failed (refused, unreachable, connect timeout) | 502 | `urn:palisade:problem:upstream-unreachable` | here |
//! | any other upstream error (reset, malformed response) | 502 | `urn:palisade:problem:upstream-error` | here |

use std::error::Error;

use axum::body::Body;
use http::{Response, StatusCode};
use palisade::http::{Problem, rejection_problem};
use palisade::{DeadlineExpired, cause_ref};
use tower::timeout::error::Elapsed;

use crate::proxy::{ClientFault, client_fault};

/// The response for `err`, raised by the stack of `upstream`, whose
/// timeouts are `timeout_ms` (overall) and `attempt_timeout_ms`.
#[must_use]
pub fn error_response(
    upstream: &str,
    timeout_ms: u128,
    attempt_timeout_ms: u128,
    err: &(dyn Error + 'static),
) -> Response<Body> {
    let known = rejection_problem(err)
        .or_else(|| palisade::retry::http::to_problem(err))
        .or_else(|| palisade::shard::http::to_problem(err));
    let expired = cause_ref::<DeadlineExpired>(err);
    // The upstream's own timeout, when it was shorter than what the request
    // had left: its budget on arrival was all of `timeout_ms`.
    let own_timeout = expired.is_some_and(|e| {
        e.name() == upstream && e.budget().is_some_and(|b| b.as_millis() >= timeout_ms)
    });
    let problem = if let Some(problem) = known {
        problem
    } else if let Some(expired) = expired.filter(|_| !own_timeout) {
        expired.to_problem()
    } else if own_timeout || cause_ref::<Elapsed>(err).is_some() {
        let detail = if attempt_timeout_ms < timeout_ms {
            format!(
                "`{upstream}` did not answer in time (each attempt {attempt_timeout_ms} ms, in all {timeout_ms} ms)"
            )
        } else {
            format!("`{upstream}` did not answer within {timeout_ms} ms")
        };
        Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            .kind("timeout")
            .detail(detail)
    } else if let Some(fault) = client_fault(err) {
        match fault {
            ClientFault::BodyTooLarge => body_too_large(None),
            ClientFault::BadBody => Problem::new(StatusCode::BAD_REQUEST, "bad request body")
                .kind("bad-request-body")
                .detail("the request body ended before it was complete, or was malformed"),
        }
    } else if cause_ref::<hyper_util::client::legacy::Error>(err).is_some_and(|e| e.is_connect()) {
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

/// The `504` problem+json response for a request whose deadline passed
/// before the gateway answered it (`urn:palisade:problem:deadline-exceeded`,
/// naming the deadline layer), raised around a whole route; any other error
/// (none is expected there) is a `500` problem.
#[must_use]
pub fn deadline_response(err: &(dyn Error + 'static)) -> Response<Body> {
    cause_ref::<DeadlineExpired>(err).map_or_else(
        || {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                format!("the request failed: {}", chain(err)),
            )
        },
        |expired| expired.to_problem().into_response(),
    )
}

/// The `413` problem for a request body over the gateway's limit (`limit`
/// bytes, when the caller knows it), whether its `Content-Length` said so up
/// front or it crossed the limit while streaming:
/// `urn:palisade:problem:body-too-large`.
#[must_use]
pub fn body_too_large(limit: Option<usize>) -> Problem {
    let detail = match limit {
        Some(limit) => {
            format!("the request body is larger than the {limit} bytes the gateway accepts")
        }
        None => "the request body is larger than the gateway accepts".to_owned(),
    };
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        .kind("body-too-large")
        .detail(detail)
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
