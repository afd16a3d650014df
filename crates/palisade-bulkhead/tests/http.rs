//! HTTP: keys over requests, and rejections answered as 503 problem+json.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use palisade_bulkhead::BulkheadLayer;
use palisade_bulkhead::http::{ProblemResponseLayer, authority, header, path_prefix};
use palisade_core::BoxError;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

fn slow()
-> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    service_fn(|req: Request<String>| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Response::new(req.uri().path().to_owned()))
    })
}

fn req(tenant: &str, path: &str) -> Request<String> {
    Request::builder()
        .uri(path)
        .header("x-tenant", tenant)
        .header("host", format!("{tenant}.local"))
        .body(String::new())
        .unwrap()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_tenant_gets_503_with_the_bulkhead_header_and_others_get_through() {
    let bulkhead = BulkheadLayer::builder("tenants")
        .max_concurrent_calls(1)
        .partition(header("x-tenant"))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(ProblemResponseLayer::new())
        .layer(bulkhead.clone())
        .service(slow());
    let busy = tokio::spawn(svc.clone().oneshot(req("acme", "/a")));
    settle().await;

    let res = svc.clone().oneshot(req("acme", "/b")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-palisade-bulkhead"], "tenants");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // The body is compact JSON text (checked as text: no JSON parser needed).
    let body = res.body();
    assert!(body.contains("\"partition\":\"acme\""), "{body}");
    assert!(
        body.contains("\"type\":\"urn:palisade:problem:bulkhead-full\""),
        "{body}"
    );

    let other = tokio::spawn(svc.clone().oneshot(req("globex", "/c")));
    let ok = other.await.unwrap().unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.body(), "/c");
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(bulkhead.handle().partition_count(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn path_and_authority_keys_partition_requests() {
    let by_path = BulkheadLayer::builder("routes")
        .max_concurrent_calls(1)
        .partition(path_prefix(1))
        .build()
        .unwrap();
    let svc = by_path.layer(slow());
    let _busy = tokio::spawn(svc.clone().oneshot(req("a", "/orders/1")));
    settle().await;
    assert!(
        svc.clone().oneshot(req("b", "/orders/2")).await.is_err(),
        "same route"
    );
    let other = tokio::spawn(svc.clone().oneshot(req("c", "/users/9")));
    settle().await;
    assert_eq!(by_path.handle().partition("/users").unwrap().in_flight, 1);
    drop(other);

    let by_host = BulkheadLayer::builder("hosts")
        .max_concurrent_calls(1)
        .partition(authority())
        .build()
        .unwrap();
    let svc = by_host.layer(slow());
    let _busy = tokio::spawn(svc.clone().oneshot(req("a", "/x")));
    settle().await;
    assert!(svc.clone().oneshot(req("a", "/y")).await.is_err());
    assert!(by_host.handle().partition("a.local").is_some());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn other_errors_become_a_500_that_reveals_nothing() {
    let failing = service_fn(|_: Request<String>| async {
        Err::<Response<String>, BoxError>("database password is hunter2".into())
    });
    let svc = ServiceBuilder::new()
        .layer(ProblemResponseLayer::new())
        .layer(BulkheadLayer::builder("errors").build().unwrap())
        .service(failing);
    let res = svc.oneshot(req("a", "/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!res.body().contains("hunter2"));
    assert!(res.headers().get("x-palisade-bulkhead").is_none());
}

#[derive(Clone)]
struct NeverReady;
impl tower::Service<Request<String>> for NeverReady {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<String>, BoxError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Err("backend gone".into()))
    }
    fn call(&mut self, _: Request<String>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_poll_ready_error_is_answered_on_the_next_call() {
    let svc = ServiceBuilder::new()
        .layer(ProblemResponseLayer::new())
        .layer(BulkheadLayer::builder("not-ready").build().unwrap())
        .service(NeverReady);
    let res = svc.oneshot(req("a", "/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
