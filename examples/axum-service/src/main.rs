//! Run with: cargo run -p example-axum-service
//!
//! A plain axum service, as a user would start with Palisade: a catalogue
//! of items whose prices come from a "pricing" dependency that fails now
//! and then. Two stacks, both built with the facade's `ServiceBuilderExt`:
//!
//! - **Around its own routes** (`route_layer`): problem+json answers for
//!   every layer's errors, a circuit breaker that opens when the handlers
//!   keep failing (5xx), a timeout, and a bulkhead that bounds the requests
//!   in flight.
//! - **Around its outbound calls** to pricing: retries with a budget, a
//!   circuit breaker (retries stop when it opens), a per-attempt timeout and
//!   a bulkhead, in the order of `docs/ARCHITECTURE.md`.
//!
//! The walk-through it prints at start-up (a test replays it, step by step,
//! and checks every status):
//!
//! ```text
//! curl -i http://127.0.0.1:3000/items/7                # 200: pricing fails every third call; a retry hides it
//! curl -i -X POST http://127.0.0.1:3000/pricing/down   # 200: pricing fails every call from now on
//! curl -i http://127.0.0.1:3000/items/7                # 502: all 3 attempts failed; pricing's breaker is still counting (it judges after 6 calls)
//! curl -i http://127.0.0.1:3000/items/7                # 503 + Retry-After: the breaker opened during this call's retries and refused the last attempt
//! curl -i http://127.0.0.1:3000/items/7                # 503 + Retry-After at once: pricing is not called until the breaker's 5 s wait is over
//! curl -i http://127.0.0.1:3000/items/abc              # 400 problem+json: the client's mistake, a success for the route's own breaker
//! curl -i -X POST http://127.0.0.1:3000/pricing/up     # 200: pricing answers again; its breaker is reset
//! curl -i http://127.0.0.1:3000/items/7                # 200
//! ```
//!
//! Which call first gets the `503` depends on what pricing's breaker has
//! already seen: it opens on the attempt that brings its window to 6 calls
//! with half of them failed, which can be inside the very first call after
//! `/pricing/down` when earlier calls had already failed some attempts
//! (three item calls before it are enough). Until then a call whose three
//! attempts all failed is a `502`; from then on, `503` without calling
//! pricing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use palisade::bulkhead::BulkheadLayer;
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use palisade::http::{Problem, StatusClassifier, rejection_response};
use palisade::retry::{Backoff, RetryLayer};
use palisade::{BoxError, ConfigError, ServiceBuilderExt};
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The pricing dependency as this service calls it: an item id in, a price
/// in cents out, through its resilience stack.
type Pricing = BoxCloneSyncService<u64, u64, BoxError>;

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    pricing: Pricing,
    pricing_breaker: CircuitBreakerHandle,
    pricing_down: Arc<AtomicBool>,
}

/// The stand-in for a remote pricing service: every third call fails (a
/// flaky dependency), every call fails while `down` is set.
fn pricing_backend(
    down: Arc<AtomicBool>,
) -> impl tower::Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + Sync
{
    let calls = Arc::new(AtomicU64::new(0));
    service_fn(move |item: u64| {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        let down = down.load(Ordering::Relaxed);
        async move {
            if down || n % 3 == 2 {
                Err(BoxError::from(format!("pricing failed for item {item}")))
            } else {
                Ok(1_000 + item * 25)
            }
        }
    })
}

/// The outbound stack, outermost first: retry (3 attempts, with its budget),
/// circuit breaker, per-attempt timeout, bulkhead.
fn pricing_stack(down: Arc<AtomicBool>) -> Result<(Pricing, CircuitBreakerHandle), ConfigError> {
    let breaker = CircuitBreakerLayer::builder("pricing")
        .count_window(20)
        .minimum_calls(6)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(5))
        .build()?;
    let handle = breaker.handle();
    let stack = ServiceBuilder::new()
        .retries(
            RetryLayer::builder("pricing")
                .max_attempts(3)
                .backoff(Backoff::exponential(
                    Duration::from_millis(10),
                    2.0,
                    Duration::from_millis(100),
                ))
                .build()?,
        )
        .circuit_breaker(breaker)
        .timeout(Duration::from_millis(500))
        .bulkhead(
            BulkheadLayer::builder("pricing")
                .max_concurrent_calls(32)
                .build()?,
        )
        .service(pricing_backend(down));
    Ok((BoxCloneSyncService::new(stack), handle))
}

/// One step of the walk-through: the request, and the status it gets.
struct Step {
    method: &'static str,
    path: &'static str,
    status: u16,
    note: &'static str,
}

/// The walk-through `main` prints (and the module docs show): what to try,
/// in order, and what each call answers. A test replays it.
const WALKTHROUGH: [Step; 8] = [
    Step {
        method: "GET",
        path: "/items/7",
        status: 200,
        note: "pricing fails every third call; a retry hides it",
    },
    Step {
        method: "POST",
        path: "/pricing/down",
        status: 200,
        note: "pricing fails every call from now on",
    },
    Step {
        method: "GET",
        path: "/items/7",
        status: 502,
        note: "all 3 attempts failed; pricing's breaker is still counting (it judges after 6 calls)",
    },
    Step {
        method: "GET",
        path: "/items/7",
        status: 503,
        note: "+ Retry-After: the breaker opened during this call's retries and refused the last attempt",
    },
    Step {
        method: "GET",
        path: "/items/7",
        status: 503,
        note: "+ Retry-After at once: pricing is not called until the breaker's 5 s wait is over",
    },
    Step {
        method: "GET",
        path: "/items/abc",
        status: 400,
        note: "problem+json: the client's mistake, a success for the route's own breaker",
    },
    Step {
        method: "POST",
        path: "/pricing/up",
        status: 200,
        note: "pricing answers again; its breaker is reset",
    },
    Step {
        method: "GET",
        path: "/items/7",
        status: 200,
        note: "",
    },
];

impl Step {
    /// The step as a `curl` line with its expected answer, as printed.
    fn line(&self, addr: SocketAddr) -> String {
        let method = if self.method == "GET" {
            String::new()
        } else {
            format!("-X {} ", self.method)
        };
        let curl = format!("curl -i {method}http://{addr}{}", self.path);
        let answer = match (self.status, self.note) {
            (status, "") => status.to_string(),
            (status, note) if note.starts_with('+') || note.starts_with("problem") => {
                format!("{status} {note}")
            }
            (status, note) => format!("{status}: {note}"),
        };
        format!("{curl:<52} # {answer}")
    }
}

/// `GET /items/{id}`: the item's price from pricing. An id that is not a
/// number is the client's mistake: a problem+json `400` (axum's own
/// rejection would be a `text/plain` one).
async fn item(State(state): State<AppState>, Path(raw): Path<String>) -> Response {
    let Ok(id) = raw.parse::<u64>() else {
        return Problem::new(StatusCode::BAD_REQUEST, "bad item id")
            .kind("bad-item-id")
            .detail(format!("item id `{raw}` is not a whole number"))
            .into_response();
    };
    match state.pricing.clone().oneshot(id).await {
        Ok(cents) => Json(json!({ "id": id, "price_cents": cents })).into_response(),
        // An open breaker or a full bulkhead: 503 (+ Retry-After), as
        // palisade's HTTP vocabulary answers it.
        Err(err) => rejection_response(&*err).unwrap_or_else(|| {
            Problem::new(StatusCode::BAD_GATEWAY, "pricing failed")
                .kind("pricing-failed")
                .detail(err.to_string())
                .into_response()
        }),
    }
}

async fn pricing_down(State(state): State<AppState>) -> Json<Value> {
    state.pricing_down.store(true, Ordering::Relaxed);
    Json(json!({ "pricing": "down" }))
}

async fn pricing_up(State(state): State<AppState>) -> Json<Value> {
    state.pricing_down.store(false, Ordering::Relaxed);
    state.pricing_breaker.reset();
    Json(json!({ "pricing": "up" }))
}

/// The service: its routes, with the inbound stack on the item route; and
/// the handle of that stack's breaker (what an admin endpoint or a test
/// reads).
fn app() -> Result<(Router, CircuitBreakerHandle), ConfigError> {
    let down = Arc::new(AtomicBool::new(false));
    let (pricing, pricing_breaker) = pricing_stack(Arc::clone(&down))?;
    let state = AppState {
        pricing,
        pricing_breaker,
        pricing_down: down,
    };
    // The inbound stack: a breaker over this route's own answers (5xx fail;
    // a client's 4xx, such as a bad id, is a success), a timeout, a
    // bulkhead; every error answered as problem+json.
    let items_breaker = CircuitBreakerLayer::builder("items")
        .count_window(50)
        .minimum_calls(20)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(10))
        .classifier(StatusClassifier::server_errors())
        .build()?;
    let items_handle = items_breaker.handle();
    let inbound = ServiceBuilder::new()
        .layer(palisade::http::problem_responses())
        .circuit_breaker(items_breaker)
        .timeout(Duration::from_secs(2))
        .bulkhead(
            BulkheadLayer::builder("items")
                .max_concurrent_calls(256)
                .max_wait(Duration::from_millis(50))
                .build()?,
        );
    let router = Router::new()
        .route("/items/{id}", get(item))
        .route_layer(inbound)
        .route("/pricing/down", post(pricing_down))
        .route("/pricing/up", post(pricing_up))
        .with_state(state);
    Ok((router, items_handle))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}; try, in order:\n");
    for step in &WALKTHROUGH {
        println!("  {}", step.line(addr));
    }
    println!();
    let (app, _items_breaker) = app()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;

    /// The walk-through, replayed on a fresh service: every step answers
    /// the status it is printed with.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_walkthrough_answers_as_printed() {
        let (app, _) = app().unwrap();
        for (i, step) in WALKTHROUGH.iter().enumerate() {
            let res = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(step.method)
                        .uri(step.path)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&bytes);
            assert_eq!(
                status.as_u16(),
                step.status,
                "step {i} ({} {}): {body}",
                step.method,
                step.path
            );
            if status.is_client_error() || status.is_server_error() {
                assert_eq!(
                    headers["content-type"], "application/problem+json",
                    "step {i}: {body}"
                );
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(headers.contains_key("retry-after"), "step {i}");
                assert!(
                    body.contains("urn:palisade:problem:circuit-open"),
                    "step {i}: {body}"
                );
            }
        }
    }

    /// What `main` prints is what the module docs show.
    #[test]
    fn the_printed_walkthrough_is_the_documented_one() {
        let source = include_str!("main.rs");
        let addr = SocketAddr::from(([127, 0, 0, 1], 3000));
        for step in &WALKTHROUGH {
            let line = format!("//! {}", step.line(addr));
            assert!(source.contains(&line), "not in the module docs:\n{line}");
        }
    }

    /// The breaker can open inside the first call after the outage: three
    /// item calls have already failed one attempt, so the second failed
    /// attempt of the next call brings the window to 6 calls, half failed,
    /// and the third attempt is refused: `503` at once, no `502` first.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_breaker_can_open_during_the_first_call_after_the_outage() {
        let (app, _) = app().unwrap();
        for id in 1..=3 {
            assert_eq!(
                call(&app, "GET", &format!("/items/{id}")).await.0,
                StatusCode::OK
            );
        }
        assert_eq!(call(&app, "POST", "/pricing/down").await.0, StatusCode::OK);
        let (status, body, retry_after) = call(&app, "GET", "/items/1").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["type"], "urn:palisade:problem:circuit-open");
        assert!(retry_after.is_some());
    }

    async fn call(app: &Router, method: &str, path: &str) -> (StatusCode, Value, Option<String>) {
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            retry_after,
        )
    }

    // In-process services only: the retries' backoff runs on tokio's paused
    // clock, which jumps ahead whenever every task waits on a timer.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn retries_hide_a_flaky_dependency_and_its_breaker_opens_when_it_is_down() {
        let (app, _) = app().unwrap();
        // Every third pricing call fails; retries make every item answer.
        for id in 1..=12 {
            let (status, body, _) = call(&app, "GET", &format!("/items/{id}")).await;
            assert_eq!(status, StatusCode::OK, "item {id}: {body}");
            assert_eq!(body["price_cents"], 1_000 + id * 25);
        }

        // Pricing down: 502 while the breaker counts, then 503 + Retry-After
        // at once when it is open (and retries stop adding load).
        assert_eq!(call(&app, "POST", "/pricing/down").await.0, StatusCode::OK);
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(call(&app, "GET", "/items/1").await);
        }
        assert_eq!(
            statuses[0].0,
            StatusCode::BAD_GATEWAY,
            "{:?}",
            statuses[0].1
        );
        let (status, body, retry_after) = statuses.last().unwrap().clone();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["type"], "urn:palisade:problem:circuit-open");
        assert!(retry_after.is_some());

        // Back up: the breaker is reset and items answer again.
        assert_eq!(call(&app, "POST", "/pricing/up").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/items/2").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_bad_id_is_a_client_error_not_a_breaker_failure() {
        let (app, items_breaker) = app().unwrap();
        // More bad ids than the breaker needs to judge (20 calls) at a rate
        // that would open it (50 %) if they counted as failures.
        for _ in 0..25 {
            let (status, body, _) = call(&app, "GET", "/items/not-a-number").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            // A problem+json body like every other error, not axum's
            // text/plain rejection.
            assert_eq!(body["type"], "urn:palisade:problem:bad-item-id", "{body}");
            assert_eq!(body["status"], 400);
        }
        let seen = items_breaker.snapshot();
        assert_eq!(seen.calls, 25, "every bad id went through the breaker");
        assert_eq!(seen.failed_calls, 0, "none counted as a failure");
        assert_eq!(seen.state, palisade::circuit_breaker::State::Closed);
        // The route still answers.
        let (status, body, _) = call(&app, "GET", "/items/3").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
