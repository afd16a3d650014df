//! The aggregator's route (the aggregator feature, [`crate::aggregator`], over
//! the proxy's upstream stacks): `GET /api/dashboard/user/{id}`, a fan-out over
//! the upstreams' stacks, each branch with a fallback under its
//! `[aggregator.branches.fallback]` answering for it when it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get_service;
use palisade::BoxError;
use palisade::fan_out::http::ParseJsonLayer;
use tower::util::Either;
use tower::{Layer, Service};

use crate::aggregator::fallback::{self, Marked};
use crate::aggregator::{Gathered, Timed};
use crate::sharding::UpstreamRoute;
use crate::state::AppState;

/// The aggregator's route over the upstreams' `stacks`, when the config has
/// an aggregator (an empty router otherwise).
pub(crate) fn routes(state: &AppState, stacks: &BTreeMap<&str, UpstreamRoute>) -> Router<AppState> {
    if let Some(config) = &state.inner.aggregator {
        let built = crate::aggregator::build(config, |branch| {
            let service = stacks.get(branch.upstream.as_str()).cloned();
            // A sharded upstream has no base of its own: each shard sends
            // the request to its own address (`sharding::ShardMember`).
            let base = state.upstream(&branch.upstream).map_or_else(
                || "http://sharded.invalid".to_owned(),
                |up| up.base().to_string(),
            );
            // Branch names are unique (validated).
            let index = config
                .branches
                .iter()
                .position(|b| b.name == branch.name)
                .unwrap_or(usize::MAX);
            let stack = AggregatorBranch(service);
            let fallback = branch.fallback.as_ref().and_then(|config| {
                fallback::layer(&branch.name, config, state.fallbacks())
                    .inspect_err(|err| {
                        tracing::error!(branch = %branch.name, %err, "the branch's fallback does not build; the branch has none");
                    })
                    .ok()
            });
            let guarded = match fallback {
                Some(fallback) => Either::Left(fallback.layer(stack)),
                None => Either::Right(stack),
            };
            let json = ParseJsonLayer::new().layer(Marked::new(guarded, index));
            (Timed::new(json, index), base)
        });
        match built {
            Ok(aggregator) => {
                state.fan_outs().register(aggregator.handle());
                let timed = Gathered::new(aggregator, config, Arc::clone(&state.inner.waterfall));
                return Router::new().route(crate::config::AGGREGATOR_ROUTE, get_service(timed));
            }
            // The config checks what the builder checks: not for a loaded config.
            Err(err) => {
                tracing::error!(%err, "the aggregator does not build; its route is not served")
            }
        }
    }
    Router::new()
}

/// An aggregator branch's service: its upstream's stack, or, for an
/// upstream that does not exist (validation makes sure every branch names
/// one), a service whose every call fails.
#[derive(Clone)]
struct AggregatorBranch(Option<UpstreamRoute>);

impl Service<Request> for AggregatorBranch {
    type Response = Response;
    type Error = BoxError;
    type Future = futures_util::future::Either<
        <UpstreamRoute as Service<Request>>::Future,
        std::future::Ready<Result<Response, BoxError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.0 {
            Some(stack) => stack.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match &mut self.0 {
            Some(stack) => futures_util::future::Either::Left(stack.call(req)),
            None => futures_util::future::Either::Right(std::future::ready(Err(
                "the branch's upstream does not exist".into(),
            ))),
        }
    }
}
