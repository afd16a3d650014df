//! HTTP integration (feature `http`): build each branch's request from the
//! incoming one, read each branch's answer as JSON, answer the gather as a
//! JSON response that says whether it is complete.
//!
//! - [`Route`] and [`Target`]: `/api/dashboard/user/{id}` in,
//!   `http://orders:8080/users/{id}/orders` out, with the method and chosen
//!   headers forwarded ([`Branch::http`](crate::Branch::http)). Placeholders
//!   are checked against the route when the fan-out is built; a request whose
//!   parameters are missing fails its branch with reason `request`.
//! - [`ParseJson`] / [`ParseJsonLayer`]: a branch stack's HTTP response as a
//!   [`serde_json::Value`]: non-2xx is an [`UnexpectedStatus`], a body that is
//!   not JSON an [`InvalidJson`], a body over the limit (1 MiB by default) a
//!   [`BodyTooLarge`]. Never a panic.
//! - [`JsonResponse`]: the merge. `200` with `content-type: application/json`
//!   and [`COMPLETED_HEADER`] `true`, or `false` plus `Cache-Control:
//!   no-store` and an `errors` object when something is missing; a
//!   problem+json answer when the gather failed: `502`/`503`/`504` for the
//!   backends' failures, a `4xx` when a required branch failed because of
//!   the incoming request (see [`JsonResponse`]). Never an error, so
//!   the fan-out is an axum route as it is.
//! - [`error_response`]: the same failure responses for other merges.
//!
//! # Example
//!
//! The gateway's dashboard: six services behind one client, user and order
//! required, the rest optional; the reward service is down.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http::{header, Request, Response, StatusCode};
//! use palisade_fan_out::http::{JsonResponse, ParseJsonLayer, Route, COMPLETED_HEADER};
//! use palisade_fan_out::{Branch, FanOut};
//! use serde_json::{json, Value};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Stand-in for the HTTP client (hyper-util's in a gateway).
//! let client = service_fn(|request: Request<String>| async move {
//!     let path = request.uri().path().to_owned();
//!     let (status, body) = if path.ends_with("/rewards") {
//!         (503, String::new())
//!     } else {
//!         (200, json!({ "path": path }).to_string())
//!     };
//!     let response = Response::builder()
//!         .status(status)
//!         .header(header::CONTENT_TYPE, "application/json")
//!         .body(body)
//!         .unwrap();
//!     Ok::<_, Infallible>(response)
//! });
//!
//! let route = Route::new("/api/dashboard/user/{id}")?;
//! let mut dashboard = FanOut::builder("dashboard").deadline(Duration::from_millis(500));
//! for (name, path, required) in [
//!     ("user", "/users/{id}", true),
//!     ("order", "/users/{id}/orders", true),
//!     ("product", "/users/{id}/products", false),
//!     ("review", "/users/{id}/reviews", false),
//!     ("reward", "/users/{id}/rewards", false),
//!     ("notification", "/users/{id}/notifications", false),
//! ] {
//!     let target = route
//!         .target("http://backend.internal:8080", path)?
//!         .forward_header(header::AUTHORIZATION);
//!     // In a gateway, each branch's own stack goes here, under ParseJson:
//!     // retry, circuit breaker, per-attempt timeout, bulkhead, client.
//!     let stack = ParseJsonLayer::new().limit(256 * 1024).layer(client);
//!     let mut branch = Branch::http(name, stack, target).timeout(Duration::from_millis(250));
//!     if required {
//!         branch = branch.required();
//!     }
//!     dashboard = dashboard.branch(branch);
//! }
//! // For axum: `JsonResponse::<axum::body::Body>`, then
//! // `Router::new().route_service(route.pattern(), dashboard)`.
//! let dashboard = dashboard.merge(JsonResponse::<String>::keyed()).build()?;
//!
//! let request = Request::get("/api/dashboard/user/12345")
//!     .header(header::AUTHORIZATION, "Bearer t")
//!     .body(())?;
//! let response = dashboard.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()[COMPLETED_HEADER], "false");
//! assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
//! let body: Value = serde_json::from_str(response.body())?;
//! assert_eq!(body["order"], json!({ "path": "/users/12345/orders" }));
//! assert_eq!(
//!     body["errors"]["reward"],
//!     json!({ "reason": "status", "status": 503, "message": "answered status 503", "fallback": false })
//! );
//! # Ok(())
//! # }
//! ```

use http::HeaderName;

mod json;
mod response;
mod template;

pub use crate::error::{BodyTooLarge, InvalidJson, RequestError, UnexpectedStatus};
pub use json::{DEFAULT_BODY_LIMIT, ParseJson, ParseJsonFuture, ParseJsonLayer};
pub use response::{JsonResponse, error_response, to_problem};
pub use template::{Route, Target};

/// `x-palisade-completed`: `true` when every branch answered, `false` when
/// the answer is partial (some branch missing or on its fallback) or failed.
pub const COMPLETED_HEADER: HeaderName = HeaderName::from_static("x-palisade-completed");

/// Reads the [`Deadline`](palisade_core::Deadline) an HTTP request carries
/// in its extensions: pass it to
/// [`FanOutBuilder::carried_deadline`](crate::FanOutBuilder::carried_deadline)
/// so that a gather ends when the caller's deadline passes.
#[must_use]
pub fn request_deadline<B>(request: &::http::Request<B>) -> Option<palisade_core::Deadline> {
    palisade_core::Deadline::of(request)
}
