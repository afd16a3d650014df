//! The headers a deadline travels in, and the `504` for one that passed.
//!
//! | header | direction | value |
//! |---|---|---|
//! | `grpc-timeout` | read; written on gRPC requests | the gRPC specification's: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), e.g. `250m` |
//! | `x-palisade-timeout-ms` ([`TIMEOUT_HEADER`], configurable) | read; written on other requests | whole milliseconds left, e.g. `250` |
//!
//! Both say how long the caller still waits, relative to when the request
//! is received, so no clocks need to agree. A layer writes what is left,
//! rounded down, so the next service is never told it has more time than it
//! has. A malformed value is ignored.
//!
//! An expired deadline is [`DeadlineExpired`], a `504 Gateway Timeout`
//! problem (`DeadlineExpired::to_problem`, and built into
//! `palisade_core::http::ProblemResponseLayer`) and `DEADLINE_EXCEEDED` over
//! gRPC (built into `palisade_core::grpc::GrpcStatusLayer`).

use std::error::Error;

use http::{HeaderName, Response};
use palisade_core::DeadlineExpired;
use palisade_core::http::Problem;

pub use crate::state::{
    grpc_timeout_value, parse_grpc_timeout, parse_timeout_ms, timeout_ms_value,
};
pub use palisade_core::grpc::GRPC_TIMEOUT;

/// The HTTP header a deadline travels in by default: the whole milliseconds
/// the caller still waits.
pub const TIMEOUT_HEADER: HeaderName = HeaderName::from_static(crate::settings::TIMEOUT_HEADER);

/// The problem for an expired deadline anywhere in `error`'s chain: `504`,
/// kind `deadline-exceeded`. A `ToProblem` mapper.
#[must_use]
pub fn to_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    palisade_core::cause_ref::<DeadlineExpired>(error).map(DeadlineExpired::to_problem)
}

/// The `504` problem response for an expired deadline anywhere in `error`'s
/// chain, or `None`: for axum's `HandleErrorLayer`.
///
/// ```
/// use palisade_core::{BoxError, DeadlineExpired};
///
/// let err: BoxError = DeadlineExpired::new("edge").into();
/// let res: http::Response<String> = palisade_deadline::http::error_response(&*err).unwrap();
/// assert_eq!(res.status(), 504);
/// ```
#[must_use]
pub fn error_response<B: From<String>>(error: &(dyn Error + 'static)) -> Option<Response<B>> {
    to_problem(error).map(Problem::into_response)
}
