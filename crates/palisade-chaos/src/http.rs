//! HTTP integration (feature `http`): inject a status response instead of an
//! error.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use palisade_core::http::Problem;

use crate::error::InjectedFault;
use crate::inject::Injector;

/// Names the chaos layer that answered an injected response.
pub const CHAOS_HEADER: HeaderName = HeaderName::from_static("x-palisade-chaos");

/// Answers an injected failure with an HTTP response: the status (500 by
/// default), an `application/problem+json` body of kind `chaos-fault` or
/// `chaos-outage`, and an `x-palisade-chaos` header naming the layer.
///
/// The service's error type is untouched (axum's `Infallible` stays), and
/// the response counts as a failure for any classifier that fails on the
/// status, so breakers and retries above react as they would to a real one.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use palisade_chaos::{ChaosLayer, http::InjectStatus};
/// use std::convert::Infallible;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let chaos = ChaosLayer::builder("users").seed(1).error_rate(1.0).build().unwrap()
///     .with_injector(InjectStatus::new(StatusCode::SERVICE_UNAVAILABLE));
/// let svc = ServiceBuilder::new().layer(chaos).service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// });
/// let res = svc.oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(res.headers()["x-palisade-chaos"], "users");
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectStatus {
    status: StatusCode,
}

impl InjectStatus {
    /// Injected failures answer with `status`.
    #[must_use]
    pub const fn new(status: StatusCode) -> Self {
        Self { status }
    }

    /// The status injected failures answer with.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.status
    }
}

impl Default for InjectStatus {
    /// `500 Internal Server Error`.
    fn default() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl<B, E> Injector<Response<B>, E> for InjectStatus
where
    B: From<String>,
{
    fn inject(&self, fault: &InjectedFault) -> Result<Response<B>, E> {
        let (kind, title) = if fault.is_outage() {
            ("chaos-outage", "outage injected")
        } else {
            ("chaos-fault", "fault injected")
        };
        let mut problem = Problem::new(self.status, title)
            .kind(kind)
            .detail(fault.to_string())
            .extension("chaos", fault.name());
        if let Ok(name) = HeaderValue::from_str(fault.name()) {
            problem = problem.header(CHAOS_HEADER, name);
        }
        Ok(problem.into_response())
    }
}
