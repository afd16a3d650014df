//! HTTP vocabulary (feature `http`): palisade-core's [`http`](palisade_core::http)
//! module, plus [`problem_responses`], one layer that answers every enabled
//! pattern's errors.

pub use palisade_core::http::*;

use std::error::Error;

/// A [`ProblemResponseLayer`] that knows the errors of every pattern enabled
/// in this build, so an axum stack of Palisade layers keeps `Infallible`:
///
/// | error (anywhere in the chain) | status |
/// |---|---|
/// | fan-out: required branch failed, deadline, nothing succeeded (feature `fan-out`) | 400 or the branch's 4xx when the request was at fault, else 502 / 503 / 504, naming the branch |
/// | retry: deadline exceeded, attempt timed out (feature `retry`) | 504 |
/// | shard: no usable key (feature `shard`) | 400 |
/// | shard: the key's shard not ready in time (feature `shard`) | 503 |
/// | tower's `timeout::error::Elapsed` | 504 |
/// | open breaker ([`CircuitOpen`](crate::CircuitOpen)) | 503 + `Retry-After` |
/// | full bulkhead ([`BulkheadFull`](crate::BulkheadFull)) | 503 |
/// | rate limit ([`RateLimited`](crate::RateLimited)) | 429 + `Retry-After` (the `RateLimit` fields come from the rate limiter's `http_layer`) |
/// | rate limit: unusable key, limiter failing closed (feature `rate-limit`) | 400, 503 |
/// | expired deadline ([`DeadlineExpired`](crate::DeadlineExpired)) | 504 |
/// | anything else | 500, revealing nothing (logged at `warn`) |
///
/// Add your own mappings with [`ProblemResponseLayer::map_errors`]; they are
/// tried after these.
///
/// ```
/// # #[cfg(feature = "circuit-breaker")]
/// # {
/// use axum::{Router, body::Body, routing::get};
/// use palisade::ServiceBuilderExt;
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = CircuitBreakerLayer::builder("orders").build().unwrap();
/// let handle = breaker.handle();
/// let app: Router = Router::new().route("/orders", get(|| async { "ok" })).layer(
///     ServiceBuilder::new()
///         .layer(palisade::http::problem_responses())
///         .circuit_breaker(breaker)
///         .timeout(std::time::Duration::from_secs(2)),
/// );
/// handle.force_open();
/// let res = app.oneshot(http::Request::get("/orders").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 503);
/// # }
/// # }
/// ```
#[must_use]
pub fn problem_responses() -> ProblemResponseLayer {
    let layer = ProblemResponseLayer::new();
    #[cfg(feature = "fan-out")]
    let layer = layer.map_errors(palisade_fan_out::http::to_problem);
    #[cfg(feature = "retry")]
    let layer = layer.map_errors(palisade_retry::http::to_problem);
    #[cfg(feature = "shard")]
    let layer = layer.map_errors(palisade_shard::http::to_problem);
    #[cfg(feature = "rate-limit")]
    let layer = layer.map_errors(palisade_rate_limit::http::to_problem);
    layer.map_errors(timeout_problem)
}

fn timeout_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    palisade_core::is_caused_by::<tower::timeout::error::Elapsed>(error).then(|| {
        Problem::new(::http::StatusCode::GATEWAY_TIMEOUT, "timed out")
            .kind("timeout")
            .detail(error.to_string())
    })
}
