//! HTTP keys: a request without a usable key gets a `400` problem (or the
//! default shard), whatever its bytes, and never a panic.
#![cfg(feature = "http")]

use http::{Request, Response};
use palisade_core::BoxError;
use palisade_core::http::ProblemResponseLayer;
use palisade_shard::http::{Header, PathParam};
use palisade_shard::{KeyError, KeyErrorKind, KeyFormat, Shard, ShardRouter};
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt};

type HttpRouter<K> =
    ShardRouter<tower::util::BoxCloneSyncService<Request<String>, Response<String>, BoxError>, K>;

fn http_shard(
    name: &'static str,
) -> tower::util::BoxCloneSyncService<Request<String>, Response<String>, BoxError> {
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |_: Request<String>| async move {
        Ok::<_, BoxError>(Response::new(name.to_owned()))
    }))
}

fn http_router<K>(key: K, default: Option<&str>) -> HttpRouter<K> {
    let builder = ShardRouter::builder("users")
        .shard(Shard::new("users-0", http_shard("users-0")))
        .shard(Shard::new("users-1", http_shard("users-1")))
        .key(key);
    let builder = match default {
        Some(d) => builder.default_shard(d),
        None => builder,
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn a_request_without_a_usable_key_is_a_400_problem() {
    let router = http_router(
        Header::new("x-user-id").unwrap().format(KeyFormat::Digits),
        None,
    );
    let app = ServiceBuilder::new()
        .layer(ProblemResponseLayer::new().map_errors(palisade_shard::http::to_problem))
        .service(router.clone());
    let cases = [
        (None, "missing"),
        (Some("abc"), "malformed"),
        (Some(""), "malformed"),
        (Some("1".repeat(300).leak()), "malformed"),
    ];
    for (value, reason) in cases {
        let mut req = Request::get("/users").body(String::new()).unwrap();
        if let Some(v) = &value {
            req.headers_mut().insert("x-user-id", v.parse().unwrap());
        }
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 400, "{value:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["type"], "urn:palisade:problem:shard-key");
        assert_eq!(body["reason"], reason);
        assert_eq!(body["router"], "users");
    }
    let ok = Request::get("/")
        .header("x-user-id", "42")
        .body(String::new())
        .unwrap();
    assert_eq!(app.clone().oneshot(ok).await.unwrap().status(), 200);
    let snapshot = router.handle().snapshot();
    assert_eq!((snapshot.key_missing, snapshot.key_malformed), (1, 3));
    // The error itself, without the problem layer.
    let err = router
        .oneshot(Request::get("/").body(String::new()).unwrap())
        .await
        .unwrap_err();
    let key = err.downcast_ref::<KeyError>().unwrap();
    assert_eq!(key.kind(), KeyErrorKind::Missing);
    assert_eq!(
        key.to_string(),
        "shard key missing for `users`: no header `x-user-id`"
    );
}

#[tokio::test]
async fn the_default_shard_serves_requests_without_a_key() {
    let router = http_router(
        PathParam::new("/users/{id}", "id").unwrap(),
        Some("users-1"),
    );
    for path in ["/orders", "/users/a%zz", "/users/"] {
        let res = router
            .clone()
            .oneshot(Request::get(path).body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.body(), "users-1", "{path}");
    }
    assert_eq!(router.handle().snapshot().defaulted, 3);
}

proptest! {
    /// Whatever the path or header bytes, the router answers (a shard or a
    /// key error): it never panics.
    #[test]
    fn any_input_is_answered_without_a_panic(path in "/[a-z%0-9/]{0,40}", header in proptest::collection::vec(any::<u8>(), 0..300)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let by_path = http_router(PathParam::new("/users/{id}", "id").unwrap(), None);
            let _ = by_path.oneshot(Request::get(path.as_str()).body(String::new()).unwrap()).await;
            if let Ok(value) = http::HeaderValue::from_bytes(&header) {
                let by_header = http_router(Header::new("x-user-id").unwrap(), None);
                let req = Request::get("/").header("x-user-id", value).body(String::new()).unwrap();
                let _ = by_header.oneshot(req).await;
            }
        });
    }
}
