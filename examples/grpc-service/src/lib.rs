//! A tonic gRPC service and its client, with Palisade stacks on both sides.
//!
//! The service is an inventory: `Reserve(order_id, sku, quantity)`. Its
//! stacks sit where tonic meets tower, on `http::Request` / `http::Response`,
//! so every layer works for every method:
//!
//! ```text
//! client                                            server
//! ──────                                            ──────
//! client_status_responses  errors → gRPC statuses   status_responses     errors → gRPC statuses
//! deadline (1 s budget)    writes grpc-timeout  ──▶ deadline             reads grpc-timeout, enforces it
//! UnaryBodyLayer           a replayable body        bulkhead (32)        UNAVAILABLE when full
//! retry                    UNAVAILABLE, 3 attempts  tonic routes
//! circuit breaker          server-side codes fail
//! tonic Channel
//! ```
//!
//! - An expired deadline is `DEADLINE_EXCEEDED`: the server answers it when
//!   the client's `grpc-timeout` passes, dropping the handler's work.
//! - The breaker counts `UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED`... as
//!   failures, not `INVALID_ARGUMENT`; once open, calls fail at once with
//!   `UNAVAILABLE` and an `x-palisade-circuit-breaker` metadata entry, and
//!   the retry does not retry them.
//! - Retries are for `UNAVAILABLE` only (the server did not process the
//!   call), and only for calls marked idempotent with an `idempotency-key`
//!   (a `Reserve` is, by its order id).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use palisade::bulkhead::{BulkheadHandle, BulkheadLayer};
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use palisade::deadline::{DeadlineHandle, DeadlineLayer};
use palisade::grpc::{GrpcClassifier, GrpcStatusLayer};
use palisade::retry::http::RetryBody;
use palisade::retry::{Backoff, RetryLayer};
use palisade::{BoxError, ConfigError, ServiceBuilderExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tower::layer::util::{Identity, Stack};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};

/// The generated messages, server and client.
pub mod proto {
    // Generated code: the workspace's lints are for code written here.
    #![allow(
        missing_docs,
        missing_debug_implementations,
        unreachable_pub,
        unused_qualifications,
        rust_2018_idioms,
        clippy::all,
        clippy::pedantic
    )]
    tonic::include_proto!("inventory.v1");
}

use proto::inventory_client::InventoryClient;
use proto::inventory_server::{Inventory, InventoryServer};
use proto::{ReserveReply, ReserveRequest};

// ===== the service =====

/// How the service behaves, switched at run time (the demo's "outage").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers every call.
    Normal = 0,
    /// Answers every call with `UNAVAILABLE`, as a service shedding load or
    /// restarting does.
    Unavailable = 1,
    /// Never answers: only a deadline ends the call.
    Hang = 2,
}

/// The service's state, shared with whoever controls it.
#[derive(Debug, Default)]
pub struct Control {
    mode: AtomicU8,
    calls: AtomicUsize,
    arrived: tokio::sync::Notify,
    stock: Mutex<HashMap<String, u32>>,
    reservations: Mutex<HashMap<String, ReserveReply>>,
}

impl Control {
    /// Switches how the service behaves.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Unavailable,
            2 => Mode::Hang,
            _ => Mode::Normal,
        }
    }

    /// Calls that reached the handler.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls have reached the handler.
    pub async fn reached(&self, n: usize) {
        loop {
            let arrived = self.arrived.notified();
            if self.calls() >= n {
                return;
            }
            arrived.await;
        }
    }
}

/// The inventory: 100 of every sku to start with.
#[derive(Clone, Debug)]
pub struct InventoryService {
    control: Arc<Control>,
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn reserve(
        &self,
        request: Request<ReserveRequest>,
    ) -> Result<Response<ReserveReply>, Status> {
        self.control.calls.fetch_add(1, Ordering::SeqCst);
        self.control.arrived.notify_waiters();
        match self.control.mode() {
            Mode::Normal => {}
            Mode::Unavailable => return Err(Status::unavailable("inventory is restarting")),
            Mode::Hang => std::future::pending::<()>().await,
        }
        let req = request.into_inner();
        if req.quantity == 0 || req.sku.is_empty() || req.order_id.is_empty() {
            return Err(Status::invalid_argument(
                "order_id, sku and a quantity above 0 are required",
            ));
        }
        let mut reservations = self
            .control
            .reservations
            .lock()
            .map_err(|_| Status::internal("state poisoned"))?;
        if let Some(reply) = reservations.get(&req.order_id) {
            return Ok(Response::new(reply.clone()));
        }
        let mut stock = self
            .control
            .stock
            .lock()
            .map_err(|_| Status::internal("state poisoned"))?;
        let left = stock.entry(req.sku.clone()).or_insert(100);
        if *left < req.quantity {
            return Err(Status::failed_precondition(format!(
                "only {left} of {} left",
                req.sku
            )));
        }
        *left -= req.quantity;
        let reply = ReserveReply {
            reservation_id: format!("rsv-{}", req.order_id),
            remaining: *left,
        };
        reservations.insert(req.order_id, reply.clone());
        Ok(Response::new(reply))
    }
}

/// The handles of the server's layers, for tests and dashboards.
#[derive(Clone, Debug)]
pub struct ServerHandles {
    /// The server's deadline layer: expiries it answered.
    pub deadline: DeadlineHandle,
    /// The server's bulkhead.
    pub bulkhead: BulkheadHandle,
}

/// The layers of [`server_stack`], as `ServiceBuilder::into_inner` nests
/// them (innermost first).
pub type ServerStack = Stack<BulkheadLayer, Stack<DeadlineLayer, Stack<GrpcStatusLayer, Identity>>>;

/// The server's settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// The most a call may take, whatever the caller asks (default 2 s).
    pub budget: Duration,
    /// Time kept back from the caller's `grpc-timeout` (default 5 ms): room
    /// for the answer's trip back, and for this stack to answer
    /// `DEADLINE_EXCEEDED` before tonic's own timer answers `CANCELLED`.
    pub header_offset: Duration,
    /// Calls in flight at most (default 32); more are refused.
    pub max_concurrent_calls: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(2),
            header_offset: Duration::from_millis(5),
            max_concurrent_calls: 32,
        }
    }
}

/// The server's stack, outermost first: every error becomes a gRPC status;
/// the caller's `grpc-timeout` is read and enforced (less
/// `settings.header_offset`, at most `settings.budget`); at most
/// `settings.max_concurrent_calls` calls in flight, more are refused with
/// `UNAVAILABLE`.
///
/// # Errors
///
/// A [`ConfigError`] if a layer's settings are invalid.
pub fn server_stack(settings: ServerSettings) -> Result<(ServerStack, ServerHandles), ConfigError> {
    let deadline = DeadlineLayer::builder("inventory-server")
        .budget(settings.budget)
        .header_offset(settings.header_offset)
        .build()?;
    let bulkhead = BulkheadLayer::builder("inventory-server")
        .max_concurrent_calls(settings.max_concurrent_calls)
        .build()?;
    let handles = ServerHandles {
        deadline: deadline.handle(),
        bulkhead: bulkhead.handle(),
    };
    let stack = ServiceBuilder::new()
        .layer(palisade::grpc::status_responses())
        .deadline(deadline)
        .bulkhead(bulkhead)
        .into_inner();
    Ok((stack, handles))
}

/// Serves the inventory on `listener` until `shutdown` completes.
///
/// # Errors
///
/// A layer's [`ConfigError`], or tonic's transport error.
pub async fn serve(
    listener: TcpListener,
    control: Arc<Control>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    let (stack, _handles) = server_stack(ServerSettings::default())?;
    serve_with(listener, control, stack, shutdown).await
}

/// Serves the inventory on `listener` behind `stack` until `shutdown`
/// completes.
///
/// # Errors
///
/// tonic's transport error.
pub async fn serve_with<L>(
    listener: TcpListener,
    control: Arc<Control>,
    stack: L,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    L: Layer<tonic::service::Routes> + Clone,
    L::Service: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<http::Request<Body>>>::Future: Send + 'static,
{
    Server::builder()
        .layer(stack)
        .add_service(InventoryServer::new(InventoryService { control }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

// ===== the client =====

/// The client's stack, as the generated client sees it: one boxed service
/// (boxed once, at the edge).
pub type ClientStack = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// A client of the inventory, and the handles of its layers.
#[derive(Clone, Debug)]
pub struct Client {
    /// The generated client over the Palisade stack.
    pub inventory: InventoryClient<ClientStack>,
    /// The breaker in front of the server.
    pub breaker: CircuitBreakerHandle,
    /// The client's deadline layer.
    pub deadline: DeadlineHandle,
}

/// The client's settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientSettings {
    /// The most a call may take, retries included (default 1 s).
    pub budget: Duration,
    /// The breaker's window, in calls (default 10).
    pub breaker_window: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(1),
            breaker_window: 10,
        }
    }
}

/// A client of the inventory at `addr`, with its stack, outermost first:
/// its layers' errors become gRPC statuses (tonic would read them as
/// `UNKNOWN`); a deadline of `settings.budget`, written as `grpc-timeout`;
/// unary bodies made replayable; up to 3 attempts on `UNAVAILABLE`; a
/// breaker counting the server-side codes as failures.
///
/// # Errors
///
/// A layer's [`ConfigError`], or an invalid address.
pub fn client(addr: SocketAddr, settings: ClientSettings) -> Result<Client, BoxError> {
    let channel: Channel = Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let deadline = DeadlineLayer::builder("inventory")
        .budget(settings.budget)
        .build()?;
    let breaker = CircuitBreakerLayer::builder("inventory")
        .classifier(GrpcClassifier::server_errors())
        .count_window(settings.breaker_window)
        .minimum_calls(settings.breaker_window / 2)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(30))
        .build()?;
    let handles = (deadline.handle(), breaker.handle());
    let retry = RetryLayer::http_builder("inventory")
        .classifier(GrpcClassifier::transient())
        .retry_non_idempotent(true)
        .max_attempts(3)
        .backoff(Backoff::exponential(
            Duration::from_millis(10),
            2.0,
            Duration::from_millis(100),
        ))
        .build()?;
    let stack = ServiceBuilder::new()
        .layer(palisade::grpc::client_status_responses())
        .deadline(deadline)
        .layer(UnaryBodyLayer)
        .retries(retry)
        .circuit_breaker(breaker)
        .map_request(|req: http::Request<RetryBody<Full<Bytes>>>| req.map(Body::new))
        .service(channel);
    Ok(Client {
        inventory: InventoryClient::new(BoxCloneSyncService::new(stack)),
        deadline: handles.0,
        breaker: handles.1,
    })
}

/// A `Reserve` request marked idempotent (`idempotency-key` = its order id),
/// so the retry layer may replay it.
///
/// # Panics
///
/// Never for order ids that are valid header values; others are sent
/// without the key (and are not retried).
#[must_use]
pub fn reserve_request(order_id: &str, sku: &str, quantity: u32) -> Request<ReserveRequest> {
    let mut request = Request::new(ReserveRequest {
        order_id: order_id.to_owned(),
        sku: sku.to_owned(),
        quantity,
    });
    if let Ok(key) = order_id.parse() {
        request.metadata_mut().insert("idempotency-key", key);
    }
    request
}

// ===== UnaryBodyLayer =====

/// Buffers a request's encoded body into one of known length, so that the
/// retry layer below can replay it.
///
/// The retry layer replays bodies whose size hint says they fit its buffer;
/// tonic's message encoder announces no length, so without this a gRPC call
/// would be sent once and never retried. A unary call's body is one encoded
/// message, ready at once: this costs one copy of a few bytes and one boxed
/// future per call (an example may box; a library layer would not).
/// Streaming calls should not go through it.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnaryBodyLayer;

impl<S> Layer<S> for UnaryBodyLayer {
    type Service = UnaryBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnaryBody { inner }
    }
}

/// The service of [`UnaryBodyLayer`].
#[derive(Clone, Debug)]
pub struct UnaryBody<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for UnaryBody<S>
where
    S: Service<http::Request<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The ready service goes with the call (see tower's "be careful when
        // cloning inner services").
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let req = http::Request::from_parts(parts, Full::new(bytes));
            ready.call(req).await.map_err(Into::into)
        })
    }
}
