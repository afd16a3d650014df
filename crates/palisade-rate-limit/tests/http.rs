//! The HTTP form: `429` with `Retry-After` and the IETF fields, `400` for an
//! unusable key, the fields on admitted responses, axum's `ConnectInfo`,
//! and no panic on any header.
#![cfg(all(feature = "http", feature = "axum"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use palisade_rate_limit::http::{client_ip, header, route};
use palisade_rate_limit::{KeyExtractorExt, Limit, MissingKey, Rate, RateLimitLayer};
use proptest::prelude::*;
use tokio::time::advance;
use tower::ServiceExt;

fn app(
    layer: &RateLimitLayer<
        impl palisade_rate_limit::KeyExtractor<Request<Body>> + Clone + Send + Sync + 'static,
    >,
) -> Router {
    Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(layer.http_layer())
}

fn get_with(uri: &str, headers: &[(&str, &[u8])], peer: Option<&str>) -> Request<Body> {
    let mut req = Request::get(uri);
    for (name, value) in headers {
        req = req.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    }
    req
}

async fn body_json(res: Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refusals_are_429_with_consistent_fields_and_admitted_calls_carry_them() {
    let layer = RateLimitLayer::builder("api")
        .rate(Rate::per_second(2)) // 500 ms
        .burst(3)
        .tier("paid", Limit::new(Rate::per_minute(600), 20))
        .key_tier("key-paid", "paid")
        .key(header("x-api-key").or(client_ip().class("anonymous")))
        .tier("anonymous", Limit::new(Rate::per_second(1), 1))
        .build()
        .unwrap();
    let app = app(&layer);
    let call = |key: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(get_with(
                "/orders/1",
                &[("x-api-key", key.as_bytes())],
                None,
            ))
            .await
            .unwrap()
        }
    };
    let res = call("k1").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""default";q=2;w=1;palisade-burst=3"#
    );
    assert_eq!(res.headers()["ratelimit"], r#""default";r=2;t=1"#);
    call("k1").await;
    let res = call("k1").await;
    assert_eq!(res.headers()["ratelimit"], r#""default";r=0;t=1"#);
    // Over: 429, Retry-After equal to `t` (500 ms rounded up), the problem.
    let res = call("k1").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["ratelimit"], r#""default";r=0;t=1"#);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""default";q=2;w=1;palisade-burst=3"#
    );
    assert_eq!(res.headers()["x-palisade-rate-limit"], "api");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = body_json(res).await;
    assert_eq!(body["type"], "urn:palisade:problem:rate-limited");
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"][0], "default");
    assert_eq!(body["retry_after_ms"], 500);
    // Half a slot later: still refused, 250 ms to go (rounded up to 1 s).
    advance(Duration::from_millis(250)).await;
    assert_eq!(
        call("k1").await.headers()["ratelimit"],
        r#""default";r=0;t=1"#
    );
    advance(Duration::from_millis(250)).await;
    assert_eq!(call("k1").await.status(), StatusCode::OK);
    // Whole again: no `t`.
    advance(Duration::from_secs(60)).await;
    let res = call("k1").await;
    assert_eq!(res.headers()["ratelimit"], r#""default";r=2;t=1"#);
    // A paid key: its own policy, the key is never echoed.
    let res = call("key-paid").await;
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""paid";q=600;w=60;palisade-burst=20"#
    );
    assert_eq!(res.headers()["ratelimit"], r#""paid";r=19;t=1"#);
    // No key header: the client's address, in the anonymous tier.
    let res = app
        .clone()
        .oneshot(get_with("/orders/2", &[], Some("192.0.2.7:5555")))
        .await
        .unwrap();
    assert_eq!(res.headers()["ratelimit"], r#""anonymous";r=0;t=1"#);
    let res = app
        .clone()
        .oneshot(get_with("/orders/2", &[], Some("192.0.2.7:6666")))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "same address, another port"
    );
    let res = app
        .clone()
        .oneshot(get_with("/orders/2", &[], Some("192.0.2.8:5555")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "another address");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unusable_keys_are_400_and_missing_addresses_follow_the_setting() {
    let layer = RateLimitLayer::builder("edge")
        .rate(Rate::per_hour(1))
        .burst(2)
        .key(header("x-api-key").or(client_ip()))
        .build()
        .unwrap();
    let app = app(&layer);
    let huge = vec![b'k'; 8 * 1024];
    for value in [&huge[..], b"caf\xc3\xa9", b"two words", b""] {
        let res = app
            .clone()
            .oneshot(get_with("/orders/1", &[("x-api-key", value)], None))
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(&value[..value.len().min(20)])
        );
        assert_eq!(res.headers()["x-palisade-rate-limit"], "edge");
        let body = body_json(res).await;
        assert_eq!(body["type"], "urn:palisade:problem:invalid-rate-limit-key");
    }
    // No key and no address: the shared key (two calls, then 429).
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let res = app
            .clone()
            .oneshot(get_with("/orders/1", &[], None))
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
    }
    assert_eq!(layer.handle().snapshot().invalid_keys, 4);

    // Refused instead, when the setting says so.
    let strict = RateLimitLayer::builder("strict")
        .missing_key(MissingKey::Reject)
        .key(client_ip())
        .build()
        .unwrap();
    let res = app_for(&strict)
        .oneshot(get_with("/orders/1", &[], None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(res).await["reason"], "missing");
}

fn app_for(layer: &RateLimitLayer<palisade_rate_limit::http::ClientIp>) -> Router {
    app(layer)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn routes_are_keys_and_fields_can_be_kept_for_refusals() {
    let layer = RateLimitLayer::builder("per-route")
        .rate(Rate::per_hour(1))
        .burst(1)
        .headers(false)
        .key(route())
        .build()
        .unwrap();
    let app = app(&layer);
    let res = app
        .clone()
        .oneshot(get_with("/orders/1", &[], None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("ratelimit").is_none(), "headers(false)");
    // Another id, the same route: refused, and the refusal has the fields.
    let res = app
        .clone()
        .oneshot(get_with("/orders/2", &[], None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("ratelimit").is_some());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_plain_layer_under_problem_responses_answers_the_same_statuses() {
    use palisade_core::http::ProblemResponseLayer;
    let layer = RateLimitLayer::builder("plain")
        .rate(Rate::per_hour(1))
        .burst(1)
        .key(header("x-api-key"))
        .build()
        .unwrap();
    let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
        tower::ServiceBuilder::new()
            .layer(ProblemResponseLayer::new().map_errors(palisade_rate_limit::http::to_problem))
            .layer(layer),
    );
    let req = |v: &[u8]| get_with("/", &[("x-api-key", v)], None);
    assert_eq!(
        app.clone().oneshot(req(b"a")).await.unwrap().status(),
        StatusCode::OK
    );
    let res = app.clone().oneshot(req(b"a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "3600");
    assert_eq!(
        app.clone().oneshot(req(b"\x80bad")).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever bytes a client puts in the key and address headers, the
    /// answer is 200, 429 or 400.
    #[test]
    fn no_header_value_makes_it_panic(
        key in proptest::collection::vec(any::<u8>(), 0..600),
        xff in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let status = rt.block_on(async {
            let layer = RateLimitLayer::builder("fuzz")
                .key(header("x-api-key").or(client_ip().from_header(http::HeaderName::from_static("x-forwarded-for"))))
                .build()
                .unwrap();
            let mut req = Request::get("/orders/1");
            if let Ok(v) = http::HeaderValue::from_bytes(&key) {
                req = req.header("x-api-key", v);
            }
            if let Ok(v) = http::HeaderValue::from_bytes(&xff) {
                req = req.header("x-forwarded-for", v);
            }
            app(&layer).oneshot(req.body(Body::empty()).unwrap()).await.unwrap().status()
        });
        prop_assert!(
            [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_REQUEST].contains(&status),
            "{}", status
        );
    }
}
