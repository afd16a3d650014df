//! The retry budget, through the layer, against a backend that always fails.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_retry::{Backoff, RetryBudget, RetryLayer};
use support::{backend, boom};
use tower::{Layer, Service, ServiceExt};

/// Sends `rate` requests per second for `seconds` through one service of a
/// layer with the given budget, against an always-failing backend that
/// answers at once. Returns (requests, attempts).
async fn storm(ratio: f64, floor: u32, rate: u64, seconds: u64) -> (u64, u64) {
    let layer = RetryLayer::builder("storm")
        .max_attempts(10)
        .backoff(Backoff::none())
        .retry_ratio(ratio)
        .min_retries_per_sec(floor)
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, _>(boom()));
    let calls = inner.calls.clone();
    let mut svc = layer.layer(inner);
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let requests = rate * seconds;
    for _ in 0..requests {
        let result = svc.ready().await.unwrap().call(1).await;
        assert!(result.is_err());
        tokio::time::sleep(gap).await;
    }
    (requests, calls.count() as u64)
}

fn check(ratio: f64, floor: u32, rate: u64, seconds: u64, requests: u64, attempts: u64) {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let by_ratio = (requests as f64 * ratio).floor() as u64;
    // The bound: attempts <= requests × (1 + fraction) + floor ×
    // seconds. The run starts as the budget is built (paused time), so its
    // requests fall in exactly `seconds` seconds of the budget's clock, and
    // each of them adds its floor once. (A run of `seconds` that started
    // mid-second would touch `seconds + 1` of them: the budget's docs say so.)
    let bound = requests + by_ratio + u64::from(floor) * seconds;
    assert!(
        attempts <= bound,
        "ratio {ratio}: {attempts} attempts for {requests} requests, bound {bound}"
    );
    eprintln!("ratio {ratio}: {requests} requests, {attempts} attempts, bound {bound}");
    // And the budget is not stricter than it says: steady traffic earns
    // nearly all of it.
    let retries = attempts - requests;
    let earned = by_ratio + u64::from(floor) * seconds;
    assert!(
        retries * 100 >= earned * 85,
        "ratio {ratio}: only {retries} retries of the {earned} earned at {rate}/s"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn twenty_percent_plus_floor() {
    let (requests, attempts) = storm(0.2, 10, 200, 30).await;
    check(0.2, 10, 200, 30, requests, attempts);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn sixty_percent_is_sixty_percent() {
    // tower's TpsBudget lets 0.6 behave as 100 % (tower#857).
    let (requests, attempts) = storm(0.6, 10, 200, 30).await;
    check(0.6, 10, 200, 30, requests, attempts);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_percent_is_one_percent() {
    let (requests, attempts) = storm(0.01, 0, 500, 30).await;
    check(0.01, 0, 500, 30, requests, attempts);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_floor_alone_bounds_a_quiet_client() {
    // 2 requests a second earn almost nothing by ratio; the floor of 3 a
    // second is what lets them retry.
    let (requests, attempts) = storm(0.2, 3, 2, 20).await;
    let retries = attempts - requests;
    eprintln!("quiet client: {requests} requests, {retries} retries");
    assert!(retries <= 3 * 21 + 8, "{retries}");
    // The bound: 20 % of 40 requests, plus 3 a second for 20 s.
    assert!(retries <= 8 + 3 * 20, "{retries}");
    assert!(retries >= 2 * 20, "quiet clients still retry: {retries}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exhausted_budget_returns_the_last_outcome_at_once() {
    let layer = RetryLayer::builder("spent")
        .max_attempts(5)
        .backoff(Backoff::fixed(Duration::from_secs(1)))
        .retry_ratio(0.0)
        .min_retries_per_sec(0)
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, _>("backend down".into()));
    let calls = inner.calls.clone();
    let start = tokio::time::Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    assert_eq!(calls.count(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO, "no backoff was waited");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_service_and_clone_of_a_layer_shares_one_budget() {
    let layer = RetryLayer::builder("shared")
        .max_attempts(10)
        .backoff(Backoff::none())
        .retry_ratio(0.0)
        .min_retries_per_sec(4)
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, _>(boom()));
    let calls = inner.calls.clone();
    // Two `layer()` calls (as axum makes per route) and a clone of each.
    let a = layer.layer(inner.clone());
    let b = layer.clone().layer(inner);
    for svc in [a.clone(), a, b.clone(), b] {
        let _ = svc.oneshot(1).await;
    }
    // Four calls, four floor retries in this second between all of them.
    assert_eq!(calls.count(), 4 + 4);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_budget_can_be_shared_between_layers() {
    let budget = Arc::new(
        RetryBudget::builder()
            .retry_ratio(0.0)
            .min_retries_per_sec(2)
            .build()
            .unwrap(),
    );
    let build = |name: &'static str| {
        RetryLayer::builder(name)
            .max_attempts(10)
            .backoff(Backoff::none())
            .budget(Arc::clone(&budget))
            .build()
            .unwrap()
    };
    let (first, second) = (build("first"), build("second"));
    assert!(Arc::ptr_eq(first.budget().unwrap(), &budget));
    let inner = backend(|_, _: u32| Err::<u32, _>(boom()));
    let calls = inner.calls.clone();
    let _ = first.layer(inner.clone()).oneshot(1).await;
    let _ = second.layer(inner).oneshot(1).await;
    assert_eq!(
        calls.count(),
        2 + 2,
        "two retries in this second between both layers"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_budget_only_max_attempts_bounds_retries() {
    let layer = RetryLayer::builder("unbounded")
        .max_attempts(3)
        .backoff(Backoff::none())
        .no_budget()
        .build()
        .unwrap();
    assert!(layer.budget().is_none());
    let inner = backend(|_, _: u32| Err::<u32, _>(boom()));
    let calls = inner.calls.clone();
    let mut svc = layer.layer(inner);
    for _ in 0..100 {
        let _ = svc.ready().await.unwrap().call(1).await;
    }
    assert_eq!(calls.count(), 300);
}
