//! The HTTP cache in an axum app: a route layer, errors answered as
//! problem+json so the app stays `Infallible`.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use palisade_cache::CacheLayer;
use palisade_core::http::ProblemResponseLayer;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_route_behind_the_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let cache = CacheLayer::http_builder("products").build().unwrap();
    let handle = cache.handle();
    let app: Router = Router::new()
        .route(
            "/products/{id}",
            get(move |axum::extract::Path(id): axum::extract::Path<u32>| {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [("cache-control", "max-age=30")],
                        format!("product {id}, call {n}"),
                    )
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ProblemResponseLayer::new())
                .layer(cache),
        );

    for _ in 0..3 {
        let response = app
            .clone()
            .oneshot(Request::get("/products/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "product 7, call 1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(handle.invalidate("/products/7"), 1);
    let response = app
        .oneshot(Request::get("/products/7").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-palisade-cache"], "miss");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
