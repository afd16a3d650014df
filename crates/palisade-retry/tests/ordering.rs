//! The stack the crate docs recommend, with a circuit breaker from
//! `palisade-circuit-breaker` below the retry layer: the per-attempt timeout
//! belongs *inside* the breaker, so that a downstream that hangs opens it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitOpen, State};
use palisade_core::{BoxError, cause_ref};
use palisade_retry::{AttemptTimedOut, Backoff, Jitter, RetryLayer};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

const MS: Duration = Duration::from_millis(1);

type Reply = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

/// A downstream that never answers; counts the attempts that reach it.
fn hung() -> (
    impl tower::Service<u32, Response = u32, Error = BoxError, Future = Reply> + Clone,
    Arc<AtomicUsize>,
) {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reached);
    let svc = tower::service_fn(move |_: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending()) as Reply
    });
    (svc, reached)
}

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder("hung")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn retry() -> palisade_retry::RetryBuilder {
    RetryLayer::builder("hung")
        .max_attempts(3)
        .backoff(Backoff::fixed(MS * 10))
        .jitter(Jitter::None)
        .no_budget()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_downstream_opens_the_breaker_when_the_timeout_sits_inside_it() {
    let breaker = breaker();
    let handle = breaker.handle();
    let (downstream, reached) = hung();
    let svc = ServiceBuilder::new()
        .layer(retry().build().unwrap())
        .layer(breaker)
        .timeout(MS * 100) // per attempt, inside the breaker
        .service(downstream);

    // First call: three attempts, each cut off after 100 ms and counted as a
    // failure by the breaker (3 of 3: below the minimum of 4).
    let start = Instant::now();
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert!(
        err.is::<tower::timeout::error::Elapsed>(),
        "the last attempt's timeout: {err}"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), MS * (100 + 10 + 100 + 10 + 100));
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failed_calls), (3, 3));
    assert_eq!(handle.state(), State::Closed);

    // Second call: its first attempt is the fourth failure, and opens the
    // breaker; the retry then meets `CircuitOpen` and stops at once.
    let start = Instant::now();
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
    assert!(cause_ref::<CircuitOpen>(&*err).is_some(), "{err}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        4,
        "no attempt past the trip"
    );
    assert_eq!(start.elapsed(), MS * (100 + 10), "one timeout, one backoff");

    // While open, calls fail at once without reaching the downstream.
    let start = Instant::now();
    let err = svc.oneshot(3).await.unwrap_err();
    assert!(cause_ref::<CircuitOpen>(&*err).is_some(), "{err}");
    assert_eq!(reached.load(Ordering::SeqCst), 4);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_only_the_retry_layers_attempt_timeout_the_breaker_counts_nothing() {
    // The stack the docs warn against: `attempt_timeout` is part of the retry
    // layer, outside the breaker. Each timed-out attempt drops the breaker's
    // future, and a dropped call records nothing.
    let breaker = breaker();
    let handle = breaker.handle();
    let (downstream, reached) = hung();
    let svc = ServiceBuilder::new()
        .layer(retry().attempt_timeout(MS * 100).build().unwrap())
        .layer(breaker)
        .service(downstream);
    for n in 0..5 {
        let err = svc.clone().oneshot(n).await.unwrap_err();
        assert!(cause_ref::<AttemptTimedOut>(&*err).is_some(), "{err}");
    }
    // Fifteen hung attempts reached the downstream; the breaker saw none.
    assert_eq!(reached.load(Ordering::SeqCst), 15);
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().calls, 0);
}
