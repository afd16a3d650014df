//! The in-process demo backends: six small e-commerce services (user, order,
//! product, review, reward, notification), each a real HTTP server (axum on
//! hyper) on its own loopback port, each behind a [`ChaosLayer`] with its
//! own handle.
//!
//! | service | routes |
//! |---|---|
//! | user | `GET /users?limit&offset`, `GET /users/{id}` |
//! | order | `GET /users/{id}/orders`, `GET /orders/{id}` |
//! | product | `GET /products?limit&offset`, `GET /products/{id}`, `GET /users/{id}/recommendations` |
//! | review | `GET /products/{id}/reviews`, `GET /users/{id}/reviews` |
//! | reward | `GET /users/{id}/rewards` |
//! | notification | `GET /users/{id}/notifications` |
//!
//! A service may run on several backends: the user service runs as three
//! shards (`user-0` to `user-2`, `service = "user"`), each serving the same
//! deterministic data. Every answer carries `x-demo-backend: <backend>`
//! ([`DEMO_BACKEND_HEADER`]), so a client sees which backend served it.
//!
//! Every service also answers `GET /health`. Data is deterministic: users
//! 1 to 1000, products 1 to 500; other ids get `404`, non-numeric ids `400`,
//! both as problem+json.

mod data;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use palisade::Registry;
use palisade::chaos::{ChaosHandle, ChaosLayer, InjectedFault, Injector};
use palisade::http::Problem;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::DemoConfig;
use crate::shared::StartError;

/// Answers an injected fault the way a struggling service would: `503` for
/// an outage, `500` for a rate-based error, with a problem+json body naming
/// the chaos layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoFault;

impl Injector<Response, Infallible> for DemoFault {
    fn inject(&self, fault: &InjectedFault) -> Result<Response, Infallible> {
        let status = if fault.is_outage() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let injector = palisade::chaos::http::InjectStatus::new(status);
        Injector::<http::Response<Body>, Infallible>::inject(&injector, fault)
    }
}

#[derive(Clone)]
struct Ctx {
    service: &'static str,
    latency: Duration,
}

impl Ctx {
    async fn work(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

fn problem(status: StatusCode, title: &'static str, detail: String) -> Response {
    Problem::new(status, title)
        .detail(detail)
        .into_response::<Body>()
}

/// The id in `raw`, or the `400` answer for it.
fn parse_id(raw: &str, what: &str) -> Result<u64, Box<Response>> {
    raw.parse::<u64>().map_err(|_| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "bad id",
            format!("{what} id `{raw}` is not a positive integer"),
        ))
    })
}

fn found(what: &str, id: u64, value: Option<Value>) -> Response {
    match value {
        Some(v) => axum::Json(v).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "not found",
            format!("no {what} with id {id}"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<u64>,
    offset: Option<u64>,
}

fn page(total: u64, page: &Page, item: fn(u64) -> Value) -> Response {
    let limit = page.limit.unwrap_or(20).min(100);
    let offset = page.offset.unwrap_or(0).min(total);
    let items: Vec<Value> = (offset + 1..=total.min(offset + limit)).map(item).collect();
    axum::Json(json!({ "items": items, "total": total, "limit": limit, "offset": offset }))
        .into_response()
}

/// A handler over a user id.
macro_rules! by_user {
    ($f:expr) => {
        get(
            |State(ctx): State<Ctx>, Path(raw): Path<String>| async move {
                ctx.work().await;
                match parse_id(&raw, "user") {
                    Ok(id) => found("user", id, data::user_exists(id).then(|| $f(id))),
                    Err(res) => *res,
                }
            },
        )
    };
}

/// A handler over a product id.
macro_rules! by_product {
    ($f:expr) => {
        get(
            |State(ctx): State<Ctx>, Path(raw): Path<String>| async move {
                ctx.work().await;
                match parse_id(&raw, "product") {
                    Ok(id) => found("product", id, data::product_exists(id).then(|| $f(id))),
                    Err(res) => *res,
                }
            },
        )
    };
}

/// The routes of demo service `service` (one of
/// [`DEMO_SERVICES`](crate::config::DEMO_SERVICES)), without chaos.
pub fn service_router(service: &'static str, latency: Duration) -> Router {
    let ctx = Ctx { service, latency };
    let router = Router::new().route(
        "/health",
        get(|State(ctx): State<Ctx>| async move {
            axum::Json(json!({ "status": "ok", "service": ctx.service }))
        }),
    );
    let router = match service {
        "user" => router
            .route(
                "/users",
                get(|State(ctx): State<Ctx>, q: Query<Page>| async move {
                    ctx.work().await;
                    page(data::USERS, &q, data::user)
                }),
            )
            .route("/users/{id}", by_user!(data::user)),
        "order" => router
            .route("/users/{id}/orders", by_user!(data::orders_of))
            .route(
                "/orders/{id}",
                get(
                    |State(ctx): State<Ctx>, Path(raw): Path<String>| async move {
                        ctx.work().await;
                        match parse_id(&raw, "order") {
                            Ok(id) => found("order", id, data::order_by_id(id)),
                            Err(res) => *res,
                        }
                    },
                ),
            ),
        "product" => router
            .route(
                "/products",
                get(|State(ctx): State<Ctx>, q: Query<Page>| async move {
                    ctx.work().await;
                    page(data::PRODUCTS, &q, data::product)
                }),
            )
            .route("/products/{id}", by_product!(data::product))
            .route(
                "/users/{id}/recommendations",
                by_user!(data::recommendations),
            ),
        "review" => router
            .route("/products/{id}/reviews", by_product!(data::reviews_for))
            .route("/users/{id}/reviews", by_user!(data::reviews_by)),
        "reward" => router.route("/users/{id}/rewards", by_user!(data::rewards)),
        "notification" => router.route("/users/{id}/notifications", by_user!(data::notifications)),
        _ => router,
    };
    router
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "not found",
                "no such route on this demo service".to_owned(),
            )
        })
        .with_state(ctx)
}

/// The header every demo answer carries (injected faults included): the
/// backend that answered (`user-1`), so a client sees which shard served it.
pub const DEMO_BACKEND_HEADER: http::HeaderName = http::HeaderName::from_static("x-demo-backend");

/// One running demo backend.
#[derive(Debug)]
pub struct DemoBackend {
    /// The service's name.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its chaos layer's handle.
    pub chaos: ChaosHandle,
}

/// The running demo backends.
#[derive(Debug)]
pub struct DemoBackends {
    backends: BTreeMap<String, DemoBackend>,
    chaos: Registry<ChaosHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DemoBackends {
    /// Binds every backend of `config` and starts serving.
    ///
    /// # Errors
    ///
    /// A backend's address cannot be bound (in use, not local).
    pub async fn start(config: &DemoConfig) -> Result<Self, StartError> {
        let (stop, _) = watch::channel(false);
        let chaos = Registry::new();
        let mut backends = BTreeMap::new();
        let mut tasks = Vec::new();
        for (i, (name, cfg)) in config.backends.iter().enumerate() {
            let service: &'static str = crate::config::DEMO_SERVICES
                .iter()
                .find(|s| **s == cfg.service.as_str())
                .copied()
                .ok_or_else(|| StartError::Other(format!("unknown demo service `{name}`")))?;
            let listener = TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| StartError::bind(format!("demo backend `{name}`"), cfg.listen, &e))?;
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::bind(format!("demo backend `{name}`"), cfg.listen, &e))?;
            let layer = ChaosLayer::builder(format!("demo-{name}"))
                .seed(config.seed.wrapping_add(i as u64))
                .build()
                .map_err(|e| StartError::Other(e.to_string()))?
                .with_injector(DemoFault);
            let handle = layer.handle();
            chaos.insert(name, handle.clone());
            let backend = http::HeaderValue::from_str(name).map_err(|_| {
                StartError::Other(format!("demo backend name `{name}` is not a header value"))
            })?;
            let app = service_router(service, cfg.latency).layer(layer).layer(
                axum::middleware::map_response(move |mut res: Response| {
                    res.headers_mut()
                        .insert(DEMO_BACKEND_HEADER, backend.clone());
                    std::future::ready(res)
                }),
            );
            let mut stopped = stop.subscribe();
            let name_owned = name.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(err) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(backend = %name_owned, %err, "demo backend stopped");
                }
            }));
            tracing::info!(backend = %name, %addr, latency_ms = cfg.latency.as_millis(), "demo backend listening");
            backends.insert(
                name.clone(),
                DemoBackend {
                    name: name.clone(),
                    addr,
                    chaos: handle,
                },
            );
        }
        Ok(Self {
            backends,
            chaos,
            stop,
            tasks,
        })
    }

    /// The backend called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&DemoBackend> {
        self.backends.get(name)
    }

    /// Every backend, by name.
    pub fn iter(&self) -> impl Iterator<Item = &DemoBackend> {
        self.backends.values()
    }

    /// The chaos handles, by backend name.
    #[must_use]
    pub fn chaos(&self) -> &Registry<ChaosHandle> {
        &self.chaos
    }

    /// Stops accepting, lets in-flight requests finish (up to `deadline`),
    /// and returns.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("demo backends did not stop within the drain deadline");
        }
    }
}
