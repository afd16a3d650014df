//! HTTP: 5xx trip the breaker, 4xx do not, and a rejection is a 503 with
//! `Retry-After` (feature `http`).
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use palisade_circuit_breaker::{CircuitBreakerLayer, State};
use palisade_core::http::StatusClassifier;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

fn req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn assert_infallible<S: Service<Request<Body>, Error = Infallible>>(_: &S) {}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn server_errors_open_and_rejections_are_503_with_retry_after() {
    let breaker = CircuitBreakerLayer::builder("catalog")
        .count_window(4)
        .wait_in_open(Duration::from_millis(2_500))
        .permitted_calls_in_half_open(1)
        .classifier(StatusClassifier::server_errors())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let app = Router::new()
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/fine", get(|| async { "fine" }))
        .layer(breaker.http_layer());
    assert_infallible(&app);

    // Client errors say nothing about the server's health.
    for _ in 0..10 {
        let res = app.clone().oneshot(req("/missing")).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().failed_calls, 0);

    for _ in 0..2 {
        let res = app.clone().oneshot(req("/broken")).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(handle.state(), State::Open);

    let res = app.clone().oneshot(req("/fine")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "3", "2.5 s rounded up");
    assert_eq!(res.headers()["x-palisade-circuit-breaker"], "catalog");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "urn:palisade:problem:circuit-open");
    assert_eq!(body["circuit_breaker"], "catalog");
    assert_eq!(body["retry_after_ms"], 2_500);

    advance(Duration::from_millis(2_500)).await;
    let res = app.clone().oneshot(req("/fine")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn forced_open_answers_without_retry_after() {
    let breaker = CircuitBreakerLayer::builder("ops").build().unwrap();
    let svc = breaker
        .http_layer()
        .layer(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        }));
    breaker.handle().force_open();
    let res = svc.oneshot(req("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("retry-after").is_none());
}
