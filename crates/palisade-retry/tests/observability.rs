//! Metrics, listener events and tracing events.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::{BoxError, CircuitOpen};
use palisade_retry::{Backoff, RetryEvent, RetryLayer, RetryReason, StopReason};
use palisade_test_util::MetricsCapture;
use support::{backend, boom};
use tower::{Layer, Service, ServiceExt};

const NAME: (&str, &str) = ("name", "orders");

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_count_requests_attempts_retries_and_outcomes() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = RetryLayer::builder("orders")
        .max_attempts(3)
        .backoff(Backoff::none())
        .attempt_timeout(Duration::from_millis(50))
        .retry_ratio(0.0)
        .min_retries_per_sec(4)
        .build()
        .unwrap();
    // Request value picks the behaviour: 0 fails twice then succeeds, 1 always
    // fails, 2 succeeds at once, 3 hangs (times out) then succeeds, 4 is
    // rejected by a breaker.
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::<u32, u32>::new()));
    let a = Arc::clone(&attempts);
    let inner = tower::service_fn(move |req: u32| {
        let n = {
            let mut attempts = a.lock().unwrap();
            let n = attempts.entry(req).or_default();
            *n += 1;
            *n
        };
        async move {
            match (req, n) {
                (0, 1 | 2) | (1, _) => Err::<u32, BoxError>(boom()),
                (3, 1) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(req)
                }
                (4, _) => Err(CircuitOpen::new("db", None).into()),
                _ => Ok(req),
            }
        }
    });
    let mut svc = layer.layer(inner);
    for req in [0, 1, 2, 3, 4] {
        let _ = svc.ready().await.unwrap().call(req).await;
    }
    // The floor allowed 4 retries this second: 2 for request 0, 2 for
    // request 1; request 3's timeout finds the budget spent.
    let counter = |name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![NAME];
        all.extend_from_slice(labels);
        capture.counter(name, &all)
    };
    assert_eq!(counter("palisade_retry_requests_total", &[]), 5);
    assert_eq!(counter("palisade_retry_attempts_total", &[]), 5 + 4);
    assert_eq!(
        counter("palisade_retry_retries_total", &[("reason", "error")]),
        4
    );
    assert_eq!(
        counter("palisade_retry_retries_total", &[("reason", "timeout")]),
        0
    );
    assert_eq!(counter("palisade_retry_budget_exhausted_total", &[]), 1);
    assert_eq!(
        counter(
            "palisade_retry_calls_total",
            &[("outcome", "success_with_retry")]
        ),
        1
    );
    assert_eq!(
        counter(
            "palisade_retry_calls_total",
            &[("outcome", "failed_with_retry")]
        ),
        1
    );
    assert_eq!(
        counter(
            "palisade_retry_calls_total",
            &[("outcome", "success_without_retry")]
        ),
        1
    );
    assert_eq!(
        counter(
            "palisade_retry_calls_total",
            &[("outcome", "failed_without_retry")]
        ),
        2
    );

    // A new second, a new floor: the timeout is retried.
    tokio::time::advance(Duration::from_secs(1)).await;
    attempts.lock().unwrap().remove(&3);
    let _ = svc.ready().await.unwrap().call(3).await;
    assert_eq!(
        counter("palisade_retry_retries_total", &[("reason", "timeout")]),
        1
    );
    assert_eq!(
        counter(
            "palisade_retry_calls_total",
            &[("outcome", "success_with_retry")]
        ),
        2
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn listeners_hear_retries_stops_and_recoveries() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let layer = RetryLayer::builder("orders")
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::from_millis(20)))
        .jitter(palisade_retry::Jitter::None)
        .no_budget()
        .on_event(move |e: &RetryEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let inner = backend(|n, req: u32| {
        if req == 1 && n % 2 == 0 {
            Ok(req)
        } else {
            Err(boom())
        }
    });
    let mut svc = layer.layer(inner);
    let _ = svc.ready().await.unwrap().call(1).await;
    let _ = svc.ready().await.unwrap().call(2).await;
    let events = events.lock().unwrap();
    let name: Arc<str> = Arc::from("orders");
    assert_eq!(
        *events,
        vec![
            RetryEvent::Retry {
                name: name.clone(),
                attempt: 2,
                reason: RetryReason::Error,
                delay: Duration::from_millis(20),
                retry_after: false,
            },
            RetryEvent::Recovered {
                name: name.clone(),
                attempts: 2
            },
            RetryEvent::Retry {
                name: name.clone(),
                attempt: 2,
                reason: RetryReason::Error,
                delay: Duration::from_millis(20),
                retry_after: false,
            },
            RetryEvent::Stopped {
                name,
                attempts: 2,
                reason: StopReason::MaxAttempts
            },
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_does_not_break_the_call() {
    let layer = RetryLayer::builder("orders")
        .backoff(Backoff::none())
        .no_budget()
        .on_event(|_: &RetryEvent| panic!("listener bug"))
        .build()
        .unwrap();
    let inner = backend(|n, req: u32| if n == 1 { Err(boom()) } else { Ok(req) });
    assert_eq!(layer.layer(inner).oneshot(3).await.unwrap(), 3);
}
