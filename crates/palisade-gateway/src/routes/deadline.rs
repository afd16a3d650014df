//! The deadline every route gives a request (`[deadline]`,
//! palisade-deadline's layer around the whole route).
//!
//! The layer reads the caller's deadline from the request
//! (`x-palisade-timeout-ms`, or the header `[deadline] header` names, and
//! `grpc-timeout`), takes the earlier of it and the configured `budget`, and
//! carries it with the request as a [`Deadline`](palisade::Deadline): the
//! proxy's upstream stacks cut their overall timeout to what is left and
//! write it onto each attempt, the aggregator ends its gather with it. When
//! it passes before the route answers, the route's work is dropped and the
//! answer is a `504` problem (`urn:palisade:problem:deadline-exceeded`,
//! [`deadline_response`]). It covers the time to the response's headers,
//! not the streaming of its body (the dashboard's event stream runs on).

use std::convert::Infallible;
use std::future::Future;

use axum::extract::Request;
use axum::response::Response;
use futures_util::FutureExt;
use palisade::deadline::DeadlineLayer;
use tower::{Layer, ServiceExt};

use crate::proxy::errors::deadline_response;

/// Answers `req` with `route`, within the deadline `layer` gives it.
pub(super) async fn within<F, Fut>(layer: &DeadlineLayer, req: Request, mut route: F) -> Response
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let routed = layer.layer(tower::service_fn(move |req| {
        route(req).map(Ok::<Response, Infallible>)
    }));
    match routed.oneshot(req).await {
        Ok(res) => res,
        Err(err) => deadline_response(&*err),
    }
}
