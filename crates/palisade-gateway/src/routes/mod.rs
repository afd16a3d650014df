//! The gateway's service: its own endpoints, the proxy route table, and the
//! middleware around them.
//!
//! | route | what |
//! |---|---|
//! | `ANY {prefix}`, `ANY {prefix}/{*path}` | one pair per `[[routes]]` entry: proxied to its upstream |
//! | `GET /api/dashboard/user/{id}` | the aggregator of `[aggregator]`, when configured |
//! | `/api/accounts/...` | the bank accounts, event-sourced (`routes/accounts.rs`) |
//! | `POST /api/orders` | places a demo order and publishes `orders.placed` (`[pubsub]`) |
//! | `GET /healthz` | liveness: `200 ok` while the process serves |
//! | `GET /readyz` | readiness: `200 ready`, `503` once shutdown began (through the readiness grace, while still serving) |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /dashboard`, `GET /dashboard/events` | the live dashboard and its event stream |
//! | `/admin/...` | the admin API (bearer token) |
//!
//! # The request path
//!
//! [`App`] is the service hyper calls. For every request, in order: the
//! request id (the client's `x-request-id`, or 16 random hex digits), the
//! access log line at `INFO` when the `[log] access_log` setting picks the
//! request (off by default: [`crate::logs`]), the body limit (`413` up front for a
//! `Content-Length` over it; the body is cut at the limit otherwise, and its
//! errors are marked as the client's: [`proxy::ClientBody`]), a panic
//! catcher (a panic becomes a `500` problem; the connection survives), the
//! request's deadline (`[deadline]`: the caller's `x-palisade-timeout-ms` or
//! `grpc-timeout`, or the configured budget, carried with the request for
//! every layer below; `504` when it passes: `routes/deadline.rs`), then the
//! rate limit of `[rate_limit]` on `/api` and the paths under it (a refusal is
//! the crate's `429`, logged and with its request id like any answer; see
//! [`crate::rate_limit`]), then the route: a proxy prefix (the longest that matches, as the path is
//! written) goes straight to its upstream's stack (a path that any reading
//! of it would turn into a climb, `..`, `..;`, `%2e%2e`, `..%2F`, a
//! backslash, is refused with `400` first: [`palisade::path::check_path`]);
//! everything else goes to an axum `Router`. The response gets the request id.
//!
//! The proxy routes are matched by prefix before axum's router on purpose:
//! they need no path parameters, and skipping the router's per-request work
//! (method router and route clones, the wildcard parameter, boxed bodies and
//! futures) is a measured share of a proxied request's cost
//! (`docs/benchmarks/gateway.md`). For the same reason the request id and
//! body limit are done here rather than with tower-http's layers, which
//! store request ids in extensions and box bodies.
//!
//! Every [`App`] built by [`app`] has its own HTTP client and its own stack
//! per upstream over it (sharing the upstreams' layers, so their state): the
//! gateway builds one per worker thread.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::StatusCode;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use palisade::BoxError;
use tower::{Service, ServiceExt};
use tracing::Level;

mod accounts;
mod aggregator;
mod deadline;
mod health;
mod orders;
mod table;

use self::table::{ProxyRoute, proxy, proxy_table};
use crate::logs::{ACCESS_TARGET, AccessLog};
use crate::proxy::errors::problem;
use crate::proxy::{self, HttpClient};
use crate::rate_limit::ApiKey;
use crate::sharding::UpstreamRoute;
use crate::state::AppState;
use palisade::rate_limit::http::HttpRateLimitLayer;
use tower::Layer as _;

pub use crate::shared::X_REQUEST_ID;

/// A new request id: 16 random hex digits.
///
/// The digits are written into a per-thread buffer that the ids share (one
/// allocation per 256 ids, not one per id).
#[must_use]
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const LEN: usize = 16;
    thread_local! {
        static IDS: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
    }
    let n = fastrand::u64(..);
    let mut digits = [0u8; LEN];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[usize::try_from((n >> (60 - 4 * i)) & 0xf).unwrap_or(0)];
    }
    let id: Bytes = IDS.with(|ids| {
        let mut buf = ids.borrow_mut();
        if buf.capacity() < LEN {
            *buf = BytesMut::with_capacity(LEN * 256);
        }
        buf.extend_from_slice(&digits);
        buf.split_to(LEN).freeze()
    });
    HeaderValue::from_maybe_shared(id)
        .unwrap_or_else(|_| HeaderValue::from_static("0000000000000000"))
}

/// The axum router of everything but the proxy routes: the gateway's own
/// endpoints, the admin API, the dashboard, and the aggregator over `stacks`.
fn router(state: &AppState, stacks: &std::collections::BTreeMap<&str, UpstreamRoute>) -> Router {
    let router = Router::new()
        .merge(health::routes())
        .merge(crate::dashboard::routes())
        .merge(aggregator::routes(state, stacks))
        .merge(accounts::routes())
        .merge(orders::routes())
        .nest("/admin", crate::admin::routes(state));
    router.fallback(not_found).with_state(state.clone())
}

async fn not_found(req: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// What a panic while handling a request answers: a `500` problem. The
/// connection survives.
fn panic_response() -> Response {
    tracing::error!("a handler panicked");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
        "the gateway failed to handle this request",
    )
}

struct Shared {
    proxies: Box<[ProxyRoute]>,
    router: Router,
    body_limit: usize,
    access_log: AccessLog,
    deadline: palisade::deadline::DeadlineLayer,
    rate_limit: Option<HttpRateLimitLayer<ApiKey>>,
}

/// The gateway's service for one connection (see the [module docs](self)):
/// request id, access log, body limit, panic catcher, then a proxy route or
/// the router. Cloning it is two reference-count increments.
#[derive(Clone)]
pub struct App {
    shared: Arc<Shared>,
    client: Option<HeaderValue>,
}

impl App {
    /// The service for requests from a client at `addr`: proxied requests
    /// get its IP in `X-Forwarded-For`.
    #[must_use]
    pub fn for_client(&self, addr: SocketAddr) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            client: Some(proxy::forwarded_for(&addr)),
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field(
                "proxy_prefixes",
                &self
                    .shared
                    .proxies
                    .iter()
                    .map(|p| &*p.prefix)
                    .collect::<Vec<_>>(),
            )
            .field("body_limit", &self.shared.body_limit)
            .field("access_log", &self.shared.access_log)
            .finish_non_exhaustive()
    }
}

impl<B> Service<http::Request<B>> for App
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let client = self.client.clone();
        let request_id = match req.headers().get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                req.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        let log = match shared.access_log {
            AccessLog::Off => false,
            AccessLog::All => true,
            AccessLog::Sampled(fraction) => fastrand::f64() < fraction,
        };
        if log {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            Box::pin(async move {
                let start = tokio::time::Instant::now();
                let res = handle(&shared, req, client.as_ref(), request_id.clone()).await;
                tracing::info!(
                    target: ACCESS_TARGET,
                    method = %method,
                    path = %path,
                    status = res.status().as_u16(),
                    latency_ms = start.elapsed().as_secs_f64() * 1000.0,
                    request_id = request_id.to_str().unwrap_or(""),
                    "finished processing request"
                );
                Ok(res)
            })
        } else {
            Box::pin(async move { Ok(handle(&shared, req, client.as_ref(), request_id).await) })
        }
    }
}

/// Body limit, panic catcher, route; the request id on the response.
async fn handle<B>(
    shared: &Shared,
    req: http::Request<B>,
    client: Option<&HeaderValue>,
    request_id: HeaderValue,
) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limit = shared.body_limit;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut res = if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        let mut res = proxy::errors::body_too_large(Some(limit)).into_response();
        // Closing a connection with unread data resets it, and the client
        // may lose the answer: read (and drop) a body that is not much over
        // the limit first, as nginx's lingering close does; close after a
        // larger one.
        if declared > (limit as u64).saturating_add(DRAIN_BYTES)
            || !drain(req.into_body(), DRAIN_BYTES + limit as u64).await
        {
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        res
    } else {
        let req = req.map(|body| Body::new(proxy::ClientBody::new(body, limit)));
        let routed = std::panic::AssertUnwindSafe(deadline::within(&shared.deadline, req, |req| {
            route(shared, req, client, &request_id)
        }))
        .catch_unwind()
        .await;
        routed.unwrap_or_else(|_| panic_response())
    };
    if !res.headers().contains_key(X_REQUEST_ID) {
        res.headers_mut().insert(X_REQUEST_ID, request_id);
    }
    res
}

/// How far over the body limit a declared body is still read (and
/// dropped) before answering `413`, so the connection is not reset.
const DRAIN_BYTES: u64 = 1024 * 1024;

/// Reads and drops `body`, at most `max` bytes and for at most a second;
/// `true` if it ended within both.
async fn drain<B>(body: B, max: u64) -> bool
where
    B: http_body::Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let read_all = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > max {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(1), read_all)
        .await
        .unwrap_or(false)
}

/// The rate limit on `/api` (when configured), then [`dispatch`]. The
/// client-IP key reads the connection's address, which the gateway forwards
/// in `X-Forwarded-For` (`client`).
async fn route(
    shared: &Shared,
    mut req: Request,
    client: Option<&HeaderValue>,
    request_id: &HeaderValue,
) -> Response {
    if let Some(limit) = &shared.rate_limit
        && crate::rate_limit::covers(req.uri().path())
    {
        if let Some(addr) = crate::rate_limit::client_addr(client) {
            req.extensions_mut().insert(addr);
        }
        let next = tower::service_fn(move |req: Request| async move {
            Ok::<_, Infallible>(dispatch(shared, req, client, request_id).await)
        });
        return match limit.layer(next).oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
    }
    dispatch(shared, req, client, request_id).await
}

/// A proxy route, or the router.
async fn dispatch(
    shared: &Shared,
    req: Request,
    client: Option<&HeaderValue>,
    request_id: &HeaderValue,
) -> Response {
    let path = req.uri().path();
    if let Some(route) = shared.proxies.iter().find(|r| r.matches(path)) {
        return proxy(route, req, client, request_id).await;
    }
    match shared.router.clone().oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

/// The gateway's service for `state`, with an HTTP client of its own for
/// the upstream stacks (see the [module docs](self)).
///
/// The access log (`[log] access_log`) is at `INFO`: when nothing at `INFO`
/// would be written at the time the service is built, it is off.
pub fn app(state: &AppState) -> App {
    let client: HttpClient = proxy::http_client();
    let stacks: std::collections::BTreeMap<&str, UpstreamRoute> = state
        .upstreams()
        .map(|up| {
            (
                up.name(),
                tower::util::Either::Left(up.stack(client.clone())),
            )
        })
        .chain(
            state
                .sharded_upstreams()
                .map(|up| (up.name(), tower::util::Either::Right(up.router()))),
        )
        .collect();
    let shared = Shared {
        proxies: proxy_table(state, &stacks),
        router: router(state, &stacks),
        body_limit: state.inner.body_limit,
        access_log: if tracing::level_filters::LevelFilter::current() >= Level::INFO {
            state.inner.access_log
        } else {
            AccessLog::Off
        },
        deadline: state.inner.deadline.clone(),
        rate_limit: state.rate_limit().map(|r| r.layer().clone()),
    };
    App {
        shared: Arc::new(shared),
        client: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let ids: Vec<HeaderValue> = (0..600).map(|_| new_request_id()).collect();
        for id in &ids {
            let s = id.to_str().unwrap();
            assert_eq!(s.len(), 16);
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let distinct: std::collections::HashSet<&HeaderValue> = ids.iter().collect();
        assert!(distinct.len() > 590, "ids repeat: {}", distinct.len());
    }
}
