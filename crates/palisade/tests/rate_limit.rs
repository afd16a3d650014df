//! The rate limiter through the facade: `ServiceBuilderExt`, its refusals
//! under retry, and `problem_responses()`.
#![cfg(all(feature = "rate-limit", feature = "retry", feature = "http"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use palisade::rate_limit::{Key, Rate, RateLimitLayer};
use palisade::retry::{Backoff, RetryLayer};
use palisade::{RateLimited, ServiceBuilderExt, is_caused_by};
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_limit_below_retry_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .retries(
            RetryLayer::builder("quota")
                .max_attempts(5)
                .backoff(Backoff::fixed(Duration::from_millis(1)))
                .no_budget()
                .build()
                .unwrap(),
        )
        .rate_limiter(
            RateLimitLayer::builder("quota")
                .rate(Rate::per_hour(1))
                .burst(1)
                .build()
                .unwrap(),
        )
        .service(service_fn(move |_: ()| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("flaky") }
        }));
    // The first attempt is admitted and fails; the retry is refused by the
    // limiter, and a refusal is never retried.
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(is_caused_by::<RateLimited>(&*err), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn problem_responses_know_the_rate_limiter_and_the_http_layer_adds_its_fields() {
    let limit = RateLimitLayer::builder("api")
        .rate(Rate::per_minute(1))
        .burst(1)
        .key_by(|req: &Request<Body>| {
            req.headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(Key::text)
        })
        .build()
        .unwrap();
    // The plain layer under `problem_responses()`: 429 with Retry-After.
    let plain: Router = Router::new().route("/", get(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(palisade::http::problem_responses())
            .rate_limiter(limit.clone()),
    );
    let req = || {
        Request::get("/")
            .header("x-api-key", "k")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        plain.clone().oneshot(req()).await.unwrap().status(),
        StatusCode::OK
    );
    let res = plain.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "60");
    // The HTTP form of the same limiter (one state): the IETF fields too.
    let with_fields = ServiceBuilder::new()
        .http_rate_limiter(limit.http_layer())
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    let res = with_fields.oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["ratelimit"], r#""default";r=0;t=60"#);
}
