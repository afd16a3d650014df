//! The fan-out as an axum route, as the gateway mounts
//! `GET /api/dashboard/user/{id}`: infallible, `Clone + Send + Sync`, answering
//! axum's body type.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use palisade_fan_out::http::{COMPLETED_HEADER, JsonResponse, ParseJsonLayer, Route};
use palisade_fan_out::{Branch, FanOut};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn mounts_as_an_axum_route_and_answers_partially() {
    // One backend type for every branch; it answers by path, and the reward
    // service is down.
    let backend = service_fn(|request: Request<String>| async move {
        let path = request.uri().path().to_owned();
        if path.ends_with("/rewards") {
            let mut down = Response::new(String::new());
            *down.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok::<_, Infallible>(down);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut ok = Response::new(json!({ "path": path }).to_string());
        ok.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(ok)
    });
    let route = Route::new("/api/dashboard/user/{id}").unwrap();
    let mut builder = FanOut::builder("dashboard").deadline(Duration::from_millis(500));
    for (name, required) in [
        ("user", true),
        ("order", true),
        ("product", false),
        ("review", false),
        ("reward", false),
        ("notification", false),
    ] {
        let target = route
            .target("http://backend.test", &format!("/users/{{id}}/{name}s"))
            .unwrap();
        let stack = ParseJsonLayer::new().layer(backend);
        let mut branch = Branch::http(name, stack, target).timeout(Duration::from_millis(200));
        if required {
            branch = branch.required();
        }
        builder = builder.branch(branch);
    }
    let fan_out = builder
        .merge(JsonResponse::<Body>::keyed())
        .build()
        .unwrap();

    let app = Router::new().route_service(route.pattern(), fan_out);
    let response = app
        .oneshot(
            Request::get("/api/dashboard/user/42")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["user"], json!({"path": "/users/42/users"}));
    assert_eq!(
        body["notification"],
        json!({"path": "/users/42/notifications"})
    );
    assert_eq!(body["errors"]["reward"]["status"], 503);
}
