//! `GET /api/dashboard/user/{id}`: one user's dashboard gathered from the
//! branches of `[aggregator]` with `palisade-fan-out`.
//!
//! Each branch calls its upstream's own stack (overall timeout, retry,
//! circuit breaker, per-attempt timeout, bulkhead, client) under a
//! [`ParseJsonLayer`](palisade::fan_out::http::ParseJsonLayer), so one
//! failing backend trips only its own breaker. The answer is
//! [`JsonResponse::keyed`]: `200` with one key per branch, `x-palisade-completed:
//! false` and an `errors` object when an optional branch is missing, a
//! problem+json `502`/`503`/`504` when a required one failed or the
//! deadline passed with it pending.

use axum::body::Body;
use http::Request;
use palisade::fan_out::http::{JsonResponse, Route};
use palisade::fan_out::{Branch, FanOut};
use palisade::{BoxError, ConfigError};
use serde_json::Value;
use tower::Service;

use crate::config::{AGGREGATOR_ROUTE, AggregatorConfig, BranchConfig};
use crate::routes::X_REQUEST_ID;

/// The aggregator's service: an axum route as it is (`Infallible`, `Clone +
/// Send + Sync`).
pub type Aggregator<S> = FanOut<S, Request<Body>, Request<Body>, JsonResponse<Body>>;

/// Builds the aggregator of `config`; `branch` gives each branch's service
/// (answering JSON, e.g. an upstream stack under `ParseJsonLayer`) and the
/// base URL its path is under (the upstream's `url`).
///
/// The branch requests are `GET`s with the incoming `x-request-id`, built
/// from the route's `{id}` and the branch's `path` template.
///
/// # Errors
///
/// The fan-out builder's or a target template's [`ConfigError`] (the config
/// checks them at load time, so a loaded config builds).
pub fn build<S>(
    config: &AggregatorConfig,
    mut branch: impl FnMut(&BranchConfig) -> (S, String),
) -> Result<Aggregator<S>, ConfigError>
where
    S: Service<Request<Body>, Response = Value> + Clone,
    S::Error: Into<BoxError>,
{
    let route = Route::new(AGGREGATOR_ROUTE)?;
    let mut builder = FanOut::builder("dashboard");
    if let Some(deadline) = config.deadline {
        builder = builder.deadline(deadline);
    }
    if let Some(max) = config.max_in_flight {
        builder = builder.max_in_flight(max);
    }
    for b in &config.branches {
        let (service, base) = branch(b);
        let target = route
            .target(&base, &b.path)?
            .method(http::Method::GET)
            .forward_header(X_REQUEST_ID);
        let mut fan_branch = Branch::http(b.name.clone(), service, target);
        if let Some(timeout) = b.timeout {
            fan_branch = fan_branch.timeout(timeout);
        }
        if b.required {
            fan_branch = fan_branch.required();
        }
        builder = builder.branch(fan_branch);
    }
    builder.merge(JsonResponse::<Body>::keyed()).build()
}
