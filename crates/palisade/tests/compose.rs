//! Palisade's layers composed the way the docs recommend, and state sharing
//! under axum, where `Router::layer` calls `layer()` once per route and every
//! request runs on a clone.
#![cfg(all(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "bulkhead",
    feature = "http"
))]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use palisade::bulkhead::BulkheadLayer;
use palisade::bulkhead::http::ProblemResponseLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::http::StatusClassifier;
use palisade::retry::{Backoff, RetryLayer};
use palisade::{BulkheadFull, CircuitOpen, ServiceBuilderExt, is_caused_by};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn get_req(path: &str) -> Request<Body> {
    Request::get(path)
        .body(Body::empty())
        .expect("a valid request")
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_stop_at_once_when_the_breaker_opens() {
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder("inventory")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let counted = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .retries(
            RetryLayer::builder("inventory")
                .max_attempts(10)
                .backoff(Backoff::fixed(Duration::from_millis(5)))
                .no_budget()
                .build()
                .unwrap(),
        )
        .circuit_breaker(breaker)
        .service(service_fn(move |_: ()| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("down") }
        }));

    // One request: four failed attempts trip the breaker; the fifth attempt
    // is refused, and a refusal is never retried, so the request ends there
    // instead of spending its ten attempts.
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(&*err), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(handle.state().as_str(), "open");

    // Later requests are refused at once: no attempt reaches the dependency.
    for _ in 0..20 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(is_caused_by::<CircuitOpen>(&*err));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_breaker_guards_every_axum_route_it_is_layered_on() {
    let breaker = CircuitBreakerLayer::builder("shop")
        .classifier(StatusClassifier::server_errors())
        .count_window(5)
        .minimum_calls(5)
        .failure_rate_threshold(100.0)
        .build()
        .unwrap();
    let handle = breaker.handle();
    // `Router::layer` builds one service per route: both must share the breaker.
    let app: Router = Router::new()
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/fine", get(|| async { "ok" }))
        .layer(breaker.http_layer());

    let res = app.clone().oneshot(get_req("/fine")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for _ in 0..4 {
        let res = app.clone().oneshot(get_req("/broken")).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    // One 200 and four 500s is 80%: still closed. One more 500 evicts the
    // 200 and fills the window of five with failures.
    assert_eq!(handle.state().as_str(), "closed");
    let res = app.clone().oneshot(get_req("/broken")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(handle.state().as_str(), "open");

    // The other route is refused by the same breaker, with Retry-After.
    let res = app.clone().oneshot(get_req("/fine")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-palisade-circuit-breaker"], "shop");
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_bulkhead_limit_holds_across_axum_routes_and_request_clones() {
    let bulkhead = BulkheadLayer::builder("backend")
        .max_concurrent_calls(2)
        .build()
        .unwrap();
    let handle = bulkhead.handle();
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        "done"
    };
    let app: Router = Router::new()
        .route("/a", get(slow))
        .route("/b", get(slow))
        .layer(
            ServiceBuilder::new()
                .layer(ProblemResponseLayer::new())
                .bulkhead(bulkhead),
        );

    let first = tokio::spawn(app.clone().oneshot(get_req("/a")));
    let second = tokio::spawn(app.clone().oneshot(get_req("/b")));
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 2);

    // A third call on either route finds the one pool full.
    let res = app.clone().oneshot(get_req("/a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-palisade-bulkhead"], "backend");

    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(handle.in_flight(), 0);
    let res = app.clone().oneshot(get_req("/b")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_bulkhead_below_the_breaker_is_neither_retried_nor_a_breaker_failure() {
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder("db")
        .count_window(2)
        .minimum_calls(2)
        .classifier(|r: &Result<(), palisade::BoxError>| match r {
            Err(e) if palisade::is_rejection(&**e) => palisade::Outcome::Ignored,
            Err(_) => palisade::Outcome::Failure,
            Ok(()) => palisade::Outcome::Success,
        })
        .build()
        .unwrap();
    let handle = breaker.handle();
    let counted = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .retries(
            RetryLayer::builder("db")
                .max_attempts(5)
                .backoff(Backoff::fixed(Duration::from_millis(1)))
                .build()
                .unwrap(),
        )
        .circuit_breaker(breaker)
        .bulkhead(
            BulkheadLayer::builder("db")
                .max_concurrent_calls(1)
                .build()
                .unwrap(),
        )
        .service(service_fn(move |_: ()| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<(), Infallible>(())
            }
        }));

    let busy = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    for _ in 0..4 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(is_caused_by::<BulkheadFull>(&*err), "{err}");
    }
    // Each refused request made one attempt (never retried) and the breaker,
    // told that rejections say nothing about the dependency, stayed closed.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(handle.state().as_str(), "closed");
    busy.await.unwrap().unwrap();
}
