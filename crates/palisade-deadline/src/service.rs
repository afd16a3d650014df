//! [`DeadlineService`]: the service a [`DeadlineLayer`](crate::DeadlineLayer)
//! builds.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use http::header::CONTENT_TYPE;
use palisade_core::grpc::GRPC_TIMEOUT;
use palisade_core::stripe::Striped;
use palisade_core::{BoxError, Deadline, DeadlineExpired};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::shared::Shared;
use crate::state::{
    grpc_timeout_value, parse_grpc_timeout, parse_timeout_ms, resolve, timeout_ms_value,
};

/// Gives each request its [`Deadline`], writes what is left onto it, and
/// fails the call with [`DeadlineExpired`] when it passes. Built by a
/// [`DeadlineLayer`](crate::DeadlineLayer); see the [crate docs](crate).
///
/// Named `DeadlineService`, not `Deadline`: that name is the deadline
/// itself, [`palisade_core::Deadline`].
pub struct DeadlineService<S> {
    inner: S,
    shared: Arc<Striped<Shared>>,
}

// ===== impl DeadlineService =====

impl<S> DeadlineService<S> {
    pub(crate) const fn new(inner: S, shared: Arc<Striped<Shared>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for DeadlineService<S> {
    /// Clones the inner service and shares the layer's state. The layer
    /// reserves nothing in `poll_ready`, so there is no readiness to reset.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for DeadlineService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineService")
            .field("inner", &self.inner)
            .field("layer", self.shared.get())
            .finish()
    }
}

/// `true` for a gRPC request (`content-type: application/grpc...`).
#[inline]
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = self.shared.get();
        let settings = &shared.settings;
        let now = Instant::now();
        let carried = Deadline::of(&req);
        let announced = if settings.read_headers {
            let headers = req.headers();
            let offset = settings.header_offset;
            [
                headers.get(GRPC_TIMEOUT).and_then(parse_grpc_timeout),
                headers.get(&shared.header).and_then(parse_timeout_ms),
            ]
            .map(|left| left.map(|left| left.saturating_sub(offset)))
        } else {
            [None, None]
        };
        let Some(deadline) = resolve(now, carried, announced, settings.budget) else {
            // No deadline from anywhere: the call goes through untouched.
            return ResponseFuture::plain(self.inner.call(req));
        };
        let left = deadline.remaining_at(now);
        shared.metrics.budget.record(left.as_secs_f64());
        if left.is_zero() && settings.enforce {
            return ResponseFuture::expired(expired_on_arrival(shared));
        }
        if carried != Some(deadline) {
            deadline.set_on(&mut req);
        }
        if settings.write_headers {
            if is_grpc(&req) {
                req.headers_mut()
                    .insert(GRPC_TIMEOUT, grpc_timeout_value(left));
            } else {
                req.headers_mut()
                    .insert(shared.header.clone(), timeout_ms_value(left));
            }
        }
        let future = self.inner.call(req);
        if settings.enforce {
            // This thread's reference to the state: calls on other cores do
            // not bounce one reference count.
            ResponseFuture::enforced(future, deadline.instant(), left, self.shared.stripe())
        } else {
            ResponseFuture::plain(future)
        }
    }
}

#[cold]
#[inline(never)]
fn expired_on_arrival(shared: &Shared) -> DeadlineExpired {
    shared.expired(Duration::ZERO, true);
    DeadlineExpired::new(Arc::clone(&shared.name)).with_budget(Duration::ZERO)
}
