//! gRPC vocabulary (feature `grpc`): palisade-core's [`grpc`](palisade_core::grpc)
//! module, plus [`status_responses`] and [`client_status_responses`], one
//! layer that answers every enabled pattern's errors with gRPC statuses.

pub use palisade_core::grpc::*;

use std::error::Error;

/// A [`GrpcStatusLayer`] for a tonic server's stack that knows the errors of
/// every pattern enabled in this build, so the stack's error type is
/// `Infallible`, as `tonic::transport::Server::add_service` wants:
///
/// | error (anywhere in the chain) | status |
/// |---|---|
/// | expired deadline ([`DeadlineExpired`](crate::DeadlineExpired)) | `DEADLINE_EXCEEDED` |
/// | retry: deadline exceeded, attempt timed out (feature `retry`) | `DEADLINE_EXCEEDED` |
/// | tower's `timeout::error::Elapsed` | `DEADLINE_EXCEEDED` |
/// | fan-out: by its HTTP status: 504 `DEADLINE_EXCEEDED`, 502/503 `UNAVAILABLE`, 4xx `FAILED_PRECONDITION` (feature `fan-out`) | as said |
/// | open breaker, full bulkhead | `UNAVAILABLE`, with `x-palisade-*` and `grpc-retry-pushback-ms` |
/// | rate limited | `RESOURCE_EXHAUSTED` |
/// | anything else | `UNKNOWN`, revealing nothing (logged at `warn`) |
///
/// Put it outermost. Add your own mappings with
/// [`GrpcStatusLayer::map_errors`].
#[must_use]
pub fn status_responses() -> GrpcStatusLayer {
    with_mappers(GrpcStatusLayer::server())
}

/// The same mappings for a tonic client's stack (under the generated
/// client): an error no mapping knows is `UNAVAILABLE` with its message, as
/// tonic reports its channel's transport errors. Without it, tonic reads
/// every layer's error as `UNKNOWN`.
#[must_use]
pub fn client_status_responses() -> GrpcStatusLayer {
    with_mappers(GrpcStatusLayer::client())
}

fn with_mappers(layer: GrpcStatusLayer) -> GrpcStatusLayer {
    #[cfg(feature = "fan-out")]
    let layer = layer.map_errors(fan_out_status);
    #[cfg(feature = "retry")]
    let layer = layer.map_errors(retry_status);
    layer.map_errors(timeout_status)
}

fn timeout_status(error: &(dyn Error + 'static)) -> Option<GrpcStatus> {
    palisade_core::is_caused_by::<tower::timeout::error::Elapsed>(error)
        .then(|| GrpcStatus::new(GrpcCode::DeadlineExceeded, error.to_string()))
}

#[cfg(feature = "retry")]
fn retry_status(error: &(dyn Error + 'static)) -> Option<GrpcStatus> {
    use palisade_retry::{AttemptTimedOut, DeadlineExceeded};
    let timed_out = palisade_core::is_caused_by::<DeadlineExceeded>(error)
        || palisade_core::is_caused_by::<AttemptTimedOut>(error);
    timed_out.then(|| GrpcStatus::new(GrpcCode::DeadlineExceeded, error.to_string()))
}

#[cfg(feature = "fan-out")]
fn fan_out_status(error: &(dyn Error + 'static)) -> Option<GrpcStatus> {
    let problem = palisade_fan_out::http::to_problem(error)?;
    let code = match problem.status().as_u16() {
        504 => GrpcCode::DeadlineExceeded,
        502 | 503 => GrpcCode::Unavailable,
        400..=499 => GrpcCode::FailedPrecondition,
        _ => GrpcCode::Internal,
    };
    Some(GrpcStatus::new(code, error.to_string()))
}
