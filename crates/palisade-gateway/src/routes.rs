//! The gateway's router: its own endpoints, the proxy route table, and the
//! middleware around them.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness: `200 ok` while the process serves |
//! | `GET /readyz` | readiness: `200 ready`, `503` once shutdown began |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /dashboard`, `GET /dashboard/events` | the live dashboard and its event stream |
//! | `/admin/...` | the admin API (bearer token) |
//! | `GET /api/dashboard/user/{id}` | the aggregator of `[aggregator]`, when configured |
//! | `ANY {prefix}`, `ANY {prefix}/{*path}` | one pair per `[[routes]]` entry: proxied to its upstream |
//!
//! Every call to [`app`] builds its own HTTP client and its own stack per
//! upstream over it (sharing the upstreams' layers, so their state): the
//! gateway calls it once per worker thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, get_service};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderName, StatusCode};
use palisade::fan_out::http::ParseJsonLayer;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::errors::{error_response, problem};
use crate::proxy::{self, HttpClient};
use crate::state::AppState;
use crate::upstream::UpstreamService;

/// The request id header, generated when absent, logged, sent upstream and
/// returned.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Generates request ids: 16 random hex digits.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = fastrand::u64(..);
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[usize::try_from((n >> (60 - 4 * i)) & 0xf).unwrap_or(0)];
        }
        HeaderValue::from_bytes(&digits).ok().map(RequestId::new)
    }
}

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
struct ProxyRoute {
    prefix_len: usize,
    upstream: Arc<str>,
    timeout_ms: u128,
    attempt_timeout_ms: u128,
    service: UpstreamService,
    metrics: RouteMetrics,
}

async fn proxy_handler(State(route): State<Arc<ProxyRoute>>, req: Request) -> Response {
    let start = tokio::time::Instant::now();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let req = proxy::upstream_request(req, route.prefix_len, client);
    let request_id = req.headers().get(X_REQUEST_ID).cloned();
    let res = match route.service.clone().oneshot(req).await {
        Ok(res) => proxy::client_response(res),
        Err(err) => {
            let res = error_response(
                &route.upstream,
                route.timeout_ms,
                route.attempt_timeout_ms,
                &*err,
            );
            tracing::warn!(
                upstream = &*route.upstream,
                status = res.status().as_u16(),
                request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
                error = %err,
                "upstream call failed"
            );
            res
        }
    };
    route.metrics.record(res.status(), start.elapsed());
    res
}

/// Adds the routes of `state`'s route table to `router`, each over a stack
/// built on `client`: for each `[[routes]]` entry, `{prefix}` and
/// `{prefix}/{*path}` on every method; and the aggregator's
/// `GET /api/dashboard/user/{id}` when `[aggregator]` is configured.
fn route_table(
    mut router: Router<AppState>,
    state: &AppState,
    client: &HttpClient,
) -> Router<AppState> {
    let stacks: std::collections::BTreeMap<&str, UpstreamService> = state
        .upstreams()
        .map(|up| (up.name(), up.stack(client.clone())))
        .collect();
    for route in &state.inner.routes {
        let (Some(upstream), Some(service)) = (
            state.upstream(&route.upstream),
            stacks.get(route.upstream.as_str()),
        ) else {
            // Validation guarantees the upstream exists.
            tracing::error!(prefix = %route.prefix, upstream = %route.upstream, "route names a missing upstream; skipped");
            continue;
        };
        let entry = Arc::new(ProxyRoute {
            prefix_len: route.prefix.len(),
            upstream: Arc::from(upstream.name()),
            timeout_ms: upstream.config().timeout.as_millis(),
            attempt_timeout_ms: upstream.config().attempt_timeout.as_millis(),
            service: service.clone(),
            metrics: RouteMetrics::new(&route.upstream),
        });
        let handler = any(proxy_handler).with_state(entry);
        router = router
            .route(&route.prefix, handler.clone())
            .route(&format!("{}/{{*path}}", route.prefix), handler);
    }
    if let Some(config) = &state.inner.aggregator {
        let built = crate::aggregator::build(config, |branch| {
            let service = stacks
                .get(branch.upstream.as_str())
                .cloned()
                .unwrap_or_else(|| missing_upstream(&branch.upstream));
            let base = state
                .upstream(&branch.upstream)
                .map_or_else(String::new, |up| up.base().to_string());
            (ParseJsonLayer::new().layer(service), base)
        });
        match built {
            Ok(aggregator) => {
                router = router.route(crate::config::AGGREGATOR_ROUTE, get_service(aggregator));
            }
            // Validation builds the same fan-out: not for a loaded config.
            Err(err) => {
                tracing::error!(%err, "the aggregator does not build; its route is not served")
            }
        }
    }
    router
}

/// A stand-in for an upstream that does not exist (validation makes sure
/// every branch names one): every call fails.
fn missing_upstream(name: &str) -> UpstreamService {
    let message: Arc<str> = Arc::from(format!("no upstream named `{name}`"));
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |_: http::Request<Body>| {
        let message = Arc::clone(&message);
        async move { Err::<Response, palisade::BoxError>(message.to_string().into()) }
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.lifecycle().is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.inner.prometheus.render();
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

type PanicHandler = fn(Box<dyn std::any::Any + Send>) -> Response;

/// What a panicking handler answers: a `500` problem. The connection
/// survives.
fn panic_response(_panic: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("a handler panicked");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
        "the gateway failed to handle this request",
    )
}

/// The gateway's whole router for `state`, with an HTTP client of its own
/// for the upstream stacks (see the [module docs](self)).
///
/// Middleware, outermost first: panic catcher (a belt: a handler panic
/// becomes a 500, the connection survives), request id (kept from the
/// client's `x-request-id` or generated), trace span and access log at
/// `INFO` with the request id (left out when the log level is below `INFO`
/// at the time the router is built), request id copied onto the response,
/// body limit (413).
pub fn app(state: AppState) -> Router {
    let body_limit = state.inner.body_limit;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .nest("/admin", crate::admin::routes(&state));
    let client = proxy::http_client();
    let router = route_table(router, &state, &client)
        .fallback(not_found)
        .with_state(state);

    // The access log is at INFO: when nothing at INFO would be written, the
    // trace layer is left out instead of building a disabled span per request.
    let log_requests = tracing::level_filters::LevelFilter::current() >= Level::INFO;
    if log_requests {
        let trace = TraceLayer::new_for_http()
            .make_span_with(|req: &http::Request<Body>| {
                let id = req
                    .headers()
                    .get(X_REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            })
            .on_request(())
            .on_response(DefaultOnResponse::new().level(Level::INFO));
        router.layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(panic_response as PanicHandler))
                .layer(SetRequestIdLayer::new(X_REQUEST_ID, RandomRequestId))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
                .layer(RequestBodyLimitLayer::new(body_limit)),
        )
    } else {
        router.layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(panic_response as PanicHandler))
                .layer(SetRequestIdLayer::new(X_REQUEST_ID, RandomRequestId))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
                .layer(RequestBodyLimitLayer::new(body_limit)),
        )
    }
}
