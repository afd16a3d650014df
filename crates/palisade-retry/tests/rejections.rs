//! Rejections (an open breaker, a full bulkhead further down) are never
//! retried, however they are wrapped and whatever the classifier says.

mod support;

use std::time::Duration;

use palisade_core::{BoxError, BulkheadFull, CircuitOpen, Outcome, is_caused_by};
use palisade_retry::{Backoff, RetryEvent, RetryLayer, StopReason};
use support::{Wrapped, backend};
use tower::{Layer, ServiceExt};

fn layer() -> RetryLayer {
    RetryLayer::builder("orders")
        .max_attempts(5)
        .backoff(Backoff::none())
        .no_budget()
        .build()
        .unwrap()
}

fn open() -> BoxError {
    CircuitOpen::new("payments", Some(Duration::from_secs(5))).into()
}

fn wrap(inner: BoxError) -> BoxError {
    Box::new(Wrapped(inner))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_retry_through_an_open_breaker() {
    let inner = backend(|_, _: u32| Err::<u32, _>(open()));
    let calls = inner.calls.clone();
    let err = layer().layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(calls.count(), 1, "one attempt, no retry");
    assert!(
        is_caused_by::<CircuitOpen>(&*err),
        "the rejection is returned: {err}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_retry_through_an_open_breaker_wrapped_twice() {
    let inner = backend(|_, _: u32| Err::<u32, _>(wrap(wrap(open()))));
    let calls = inner.calls.clone();
    let err = layer().layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(calls.count(), 1);
    assert!(err.is::<Wrapped>(), "the error comes back as it was");
    assert!(is_caused_by::<CircuitOpen>(&*err));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_retry_through_a_full_bulkhead() {
    let inner = backend(|_, _: u32| Err::<u32, _>(wrap(BulkheadFull::new("db").into())));
    let calls = inner.calls.clone();
    let err = layer().layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(calls.count(), 1);
    assert!(is_caused_by::<BulkheadFull>(&*err));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_breaker_opening_mid_call_stops_the_retries() {
    // Two plain failures, then the breaker further down opens.
    let inner =
        backend(|n, _: u32| Err::<u32, BoxError>(if n <= 2 { "timeout".into() } else { open() }));
    let calls = inner.calls.clone();
    let err = layer().layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(
        calls.count(),
        3,
        "retried until the breaker opened, then stopped"
    );
    assert!(is_caused_by::<CircuitOpen>(&*err));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_classifier_cannot_make_a_rejection_retryable() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&events);
    let layer = RetryLayer::builder("eager")
        .max_attempts(5)
        .backoff(Backoff::none())
        .no_budget()
        .classifier(|_: &Result<u32, BoxError>| Outcome::Failure)
        .on_event(move |e: &RetryEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, _>(open()));
    let calls = inner.calls.clone();
    let _ = layer.layer(inner).oneshot(1).await;
    assert_eq!(calls.count(), 1);
    assert!(matches!(
        events.lock().unwrap().as_slice(),
        [RetryEvent::Stopped {
            attempts: 1,
            reason: StopReason::Rejected,
            ..
        }]
    ));
}
