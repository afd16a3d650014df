//! HTTP integration (feature `http`): answer a rejection with
//! `503 Service Unavailable` instead of an error.
//!
//! [`HttpCircuitBreaker`] is the same breaker as
//! [`CircuitBreaker`](crate::CircuitBreaker), for services that return
//! `http::Response`s. A rejected call is answered with the problem+json
//! response of [`CircuitOpen::to_problem`]: status 503, `Retry-After` (whole
//! seconds, rounded up) when the breaker knows when it will probe, and an
//! `x-palisade-circuit-breaker` header naming it. The service's error type is
//! the inner one, so an axum app whose handlers are infallible stays
//! `Infallible`:
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use palisade_circuit_breaker::CircuitBreakerLayer;
//! use palisade_core::http::StatusClassifier;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::builder("orders")
//!     .classifier(StatusClassifier::server_errors())
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "ok" }))
//!     .layer(breaker.http_layer());
//!
//! handle.force_open();
//! let res = app.oneshot(Request::get("/orders").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["x-palisade-circuit-breaker"], "orders");
//! # }
//! ```
//!
//! With the plain [`CircuitBreakerLayer`], whose
//! error is a `BoxError`, axum needs a `HandleErrorLayer` above it;
//! `palisade_core::http::rejection_response` turns a rejection anywhere in the
//! error's chain into the same 503:
//!
//! ```
//! use axum::{BoxError, Router, body::Body, error_handling::HandleErrorLayer, routing::get};
//! use http::{Request, Response, StatusCode};
//! use palisade_circuit_breaker::CircuitBreakerLayer;
//! use palisade_core::http::rejection_response;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! async fn handle_error(err: BoxError) -> Response<Body> {
//!     rejection_response(&*err).unwrap_or_else(|| {
//!         let mut res = Response::new(Body::from(err.to_string()));
//!         *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
//!         res
//!     })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::builder("orders").build().unwrap();
//! let handle = breaker.handle();
//! let app: Router = Router::new().route("/orders", get(|| async { "ok" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(handle_error))
//!         .layer(breaker),
//! );
//! handle.open_for(std::time::Duration::from_millis(1_500));
//! let res = app.oneshot(Request::get("/orders").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "2");
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use palisade_core::{CircuitOpen, Classify, ErrorsAsFailures};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::future::Kind;
use crate::handle::CircuitBreakerHandle;
use crate::layer::CircuitBreakerLayer;
use crate::service::Gate;

/// Applies a circuit breaker that answers rejections with a 503 response;
/// built by [`CircuitBreakerLayer::http_layer`]. Shares the breaker of the
/// layer it came from.
pub struct HttpCircuitBreakerLayer<C = ErrorsAsFailures> {
    layer: CircuitBreakerLayer<C>,
}

impl<C> CircuitBreakerLayer<C> {
    /// The same breaker as an HTTP layer that answers a rejection with a
    /// `503 Service Unavailable` response instead of an error, so the
    /// service's error type is unchanged (feature `http`).
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn http_layer(&self) -> HttpCircuitBreakerLayer<C> {
        HttpCircuitBreakerLayer::new(self.clone())
    }
}

impl<C> HttpCircuitBreakerLayer<C> {
    /// The HTTP form of `layer` (same breaker).
    pub fn new(layer: CircuitBreakerLayer<C>) -> Self {
        Self { layer }
    }

    /// A handle to read and control the breaker.
    #[must_use]
    pub fn handle(&self) -> CircuitBreakerHandle {
        self.layer.handle()
    }
}

impl<C> Clone for HttpCircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer.clone(),
        }
    }
}

impl<C> fmt::Debug for HttpCircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCircuitBreakerLayer")
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, C> Layer<S> for HttpCircuitBreakerLayer<C> {
    type Service = HttpCircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpCircuitBreaker {
            inner,
            gate: Gate::new(std::sync::Arc::clone(self.layer.shared())),
        }
    }
}

/// A circuit breaker over an HTTP service that answers a rejected call with
/// `503 Service Unavailable` (problem+json, `Retry-After`) and leaves the
/// inner error type unchanged. Otherwise identical to
/// [`CircuitBreaker`](crate::CircuitBreaker).
pub struct HttpCircuitBreaker<S, C = ErrorsAsFailures> {
    inner: S,
    gate: Gate<C>,
}

impl<S, C> HttpCircuitBreaker<S, C> {
    /// A handle to read and control the breaker.
    #[must_use]
    pub fn handle(&self) -> CircuitBreakerHandle {
        self.gate.handle()
    }
}

// Shares the breaker, not readiness.
palisade_core::inner_service! {
    HttpCircuitBreaker<S, C> {
        inner: S,
        clone: { share: [gate] },
    }
}

impl<S: fmt::Debug, C> fmt::Debug for HttpCircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCircuitBreaker")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, C, Req, B> Service<Req> for HttpCircuitBreaker<S, C>
where
    S: Service<Req, Response = Response<B>>,
    B: From<String>,
    C: Classify<Response<B>, S::Error>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.gate.poll_ready(&mut self.inner, cx)
    }

    /// # Panics
    ///
    /// If called without a successful `poll_ready` first.
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            kind: self.gate.call(&mut self.inner, req),
        }
    }
}

pin_project! {
    /// The response future of [`HttpCircuitBreaker`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

impl<F, B, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().kind.poll_call(cx)) {
            Ok(result) => result,
            Err(open) => Ok(rejection(&open)),
        })
    }
}

fn rejection<B: From<String>>(open: &CircuitOpen) -> Response<B> {
    open.to_problem().into_response()
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
