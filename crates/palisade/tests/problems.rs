//! `palisade::http::problem_responses()` answers every enabled pattern's
//! errors, wherever they sit in the chain.
#![cfg(all(feature = "retry", feature = "fan-out", feature = "http"))]

use std::time::Duration;

use http::{Response, StatusCode};
use palisade::retry::{AttemptTimedOut, DeadlineExceeded};
use palisade::{BoxError, BulkheadFull, CircuitOpen};
use tower::{Layer, ServiceExt, service_fn};

async fn answer(error: BoxError) -> Response<String> {
    let mut error = Some(error);
    let svc = palisade::http::problem_responses().layer(service_fn(move |()| {
        let error = error.take().expect("one call");
        async move { Err::<Response<String>, BoxError>(error) }
    }));
    svc.oneshot(()).await.expect("infallible")
}

fn body(res: &Response<String>) -> serde_json::Value {
    serde_json::from_str(res.body()).expect("problem+json")
}

#[tokio::test]
async fn every_pattern_error_gets_its_status() {
    let res = answer(DeadlineExceeded::new(3, Duration::from_secs(2)).into()).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body(&res)["type"], "urn:palisade:problem:deadline-exceeded");

    let res = answer(AttemptTimedOut::new(1, Duration::from_millis(300)).into()).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);

    let res = answer(tower::timeout::error::Elapsed::new().into()).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body(&res)["type"], "urn:palisade:problem:timeout");

    let res = answer(CircuitOpen::new("orders", Some(Duration::from_secs(4))).into()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "4");

    let res = answer(BulkheadFull::new("reviews").into()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-palisade-bulkhead"], "reviews");

    let res = answer("database password is hunter2".into()).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!res.body().contains("hunter2"));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fan_out_failure_names_its_branch_even_when_a_rejection_caused_it() {
    use palisade::fan_out::{Branch, FanOut};

    // The required branch is refused by its breaker: the answer is the
    // fan-out's 503 naming the branch (with the breaker's Retry-After), not a
    // bare breaker rejection.
    let branch = |name: &'static str, open: bool| {
        let svc = service_fn(move |(): ()| async move {
            if open {
                Err::<serde_json::Value, BoxError>(
                    CircuitOpen::new("user", Some(Duration::from_secs(9))).into(),
                )
            } else {
                Ok(serde_json::json!({ "ok": name }))
            }
        });
        Branch::new(name, svc, |(): &()| ())
    };
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", true).required())
        .branch(branch("order", false))
        .build()
        .unwrap();
    let error = fan_out.oneshot(()).await.unwrap_err();
    let res = answer(error).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "9");
    assert_eq!(res.headers()["x-palisade-completed"], "false");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(body(&res)["branch"], "user");
}

#[cfg(feature = "shard")]
#[tokio::test]
async fn a_request_without_a_shard_key_is_a_400() {
    let res = answer(palisade::shard::KeyError::missing("no header `x-user-id`").into()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(&res)["type"], "urn:palisade:problem:shard-key");
    assert_eq!(body(&res)["reason"], "missing");
}
