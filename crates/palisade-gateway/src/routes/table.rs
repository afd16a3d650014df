//! The proxy's route table: one entry per `[[routes]]` prefix, matched by
//! [`App`](crate::App) before axum's router, and the one place a proxied
//! request's outcome is recorded (metrics and the failure log).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use http::header::HeaderValue;
use tower::ServiceExt;

use crate::logs::{FailureLog, FailureReason};
use crate::proxy::errors::error_response;
use crate::sharding::UpstreamRoute;
use crate::state::AppState;

/// Prometheus handles of one proxy route, resolved once.
struct RouteMetrics {
    by_class: [metrics::Counter; 5],
    duration: metrics::Histogram,
}

impl RouteMetrics {
    fn new(upstream: &str) -> Self {
        let counter = |class: &'static str| metrics::counter!("palisade_gateway_requests_total", "upstream" => upstream.to_owned(), "status" => class);
        Self {
            by_class: [
                counter("1xx"),
                counter("2xx"),
                counter("3xx"),
                counter("4xx"),
                counter("5xx"),
            ],
            duration: metrics::histogram!("palisade_gateway_request_duration_seconds", "upstream" => upstream.to_owned()),
        }
    }

    fn record(&self, status: StatusCode, took: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].increment(1);
        self.duration.record(took.as_secs_f64());
    }
}

/// One entry of the route table: a prefix and the stack of the upstream it
/// forwards to.
pub(crate) struct ProxyRoute {
    pub(crate) prefix: Box<str>,
    upstream: Arc<str>,
    timeout_ms: u128,
    attempt_timeout_ms: u128,
    service: UpstreamRoute,
    metrics: RouteMetrics,
    failures: Arc<FailureLog>,
}

impl ProxyRoute {
    /// `true` if `path` is the prefix or under it (`{prefix}/...`).
    pub(crate) fn matches(&self, path: &str) -> bool {
        path.strip_prefix(&*self.prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Sends `req` to `route`'s upstream and answers with its response (hop-by-hop
/// headers dropped) or the problem for its stack's error. The one place a
/// proxied request's status and duration are recorded.
pub(crate) async fn proxy(
    route: &ProxyRoute,
    req: Request,
    client: Option<&HeaderValue>,
    request_id: &HeaderValue,
) -> Response {
    let start = tokio::time::Instant::now();
    let res = forward(route, req, client, request_id).await;
    route.metrics.record(res.status(), start.elapsed());
    res
}

/// [`proxy`] without the recording: the path check, then the upstream's
/// stack.
async fn forward(
    route: &ProxyRoute,
    req: Request,
    client: Option<&HeaderValue>,
    request_id: &HeaderValue,
) -> Response {
    if let Err(reason) = palisade::path::check_path(req.uri().path()) {
        return palisade::http::Problem::new(StatusCode::BAD_REQUEST, "bad request path")
            .kind(reason.as_str())
            .detail(format!(
                "{reason}; the gateway does not forward paths that could climb out of the route"
            ))
            .into_response();
    }
    let req = crate::proxy::upstream_request(req, route.prefix.len(), client);
    match route.service.clone().oneshot(req).await {
        Ok(res) => crate::proxy::client_response(res),
        Err(err) => {
            let res = error_response(
                &route.upstream,
                route.timeout_ms,
                route.attempt_timeout_ms,
                &*err,
            );
            if crate::proxy::is_client_fault(&*err) {
                tracing::debug!(
                    upstream = &*route.upstream,
                    status = res.status().as_u16(),
                    request_id = request_id.to_str().unwrap_or(""),
                    error = %err,
                    "the client's request body failed; not held against the upstream"
                );
            } else {
                // At most one line per upstream and reason per second: under
                // an outage every call fails (or is refused) alike, and the
                // metrics count them all.
                let reason = FailureReason::of(&*err);
                if let Some(suppressed) = route.failures.admit(reason) {
                    tracing::warn!(
                        upstream = &*route.upstream,
                        reason = reason.as_str(),
                        status = res.status().as_u16(),
                        request_id = request_id.to_str().unwrap_or(""),
                        error = %err,
                        suppressed,
                        "upstream call failed"
                    );
                }
            }
            res
        }
    }
}

/// The proxy routes of `state` over `stacks`, longest prefix first.
pub(crate) fn proxy_table(
    state: &AppState,
    stacks: &std::collections::BTreeMap<&str, UpstreamRoute>,
) -> Box<[ProxyRoute]> {
    let mut table: Vec<ProxyRoute> = Vec::new();
    for route in &state.inner.routes {
        // A plain upstream, or a sharded one (its router).
        let upstream = state
            .upstream(&route.upstream)
            .map(|up| (up.config(), up.failure_log()))
            .or_else(|| {
                state
                    .sharded_upstream(&route.upstream)
                    .map(|up| (up.config(), up.failure_log()))
            });
        let (Some((config, failures)), Some(service)) =
            (upstream, stacks.get(route.upstream.as_str()))
        else {
            // Validation guarantees the upstream exists.
            tracing::error!(prefix = %route.prefix, upstream = %route.upstream, "route names a missing upstream; skipped");
            continue;
        };
        table.push(ProxyRoute {
            prefix: route.prefix.as_str().into(),
            upstream: Arc::from(route.upstream.as_str()),
            timeout_ms: config.timeout.as_millis(),
            attempt_timeout_ms: config.attempt_timeout.as_millis(),
            service: service.clone(),
            metrics: RouteMetrics::new(&route.upstream),
            failures: Arc::clone(failures),
        });
    }
    table.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    table.into_boxed_slice()
}
