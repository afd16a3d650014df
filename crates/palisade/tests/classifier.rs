//! One classifier value serves every layer: the circuit breaker, retry and
//! the bulkhead each classify the `Result<S::Response, S::Error>` of the
//! service directly below them, before boxing its error.
#![cfg(all(feature = "circuit-breaker", feature = "retry", feature = "bulkhead"))]

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use palisade::bulkhead::BulkheadLayer;
use palisade::bulkhead::limiter::Aimd;
use palisade::circuit_breaker::{CircuitBreakerLayer, State};
use palisade::retry::{Backoff, RetryLayer};
use palisade::{Outcome, is_caused_by};
use tower::{Layer, Service, ServiceExt, service_fn};

/// The backend's own error type: not a `BoxError`.
#[derive(Debug, PartialEq, Eq)]
enum BackendError {
    /// The caller asked for something that is not there: no sign of ill
    /// health.
    NotFound,
    /// The backend is down.
    Down,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Down => "down",
        })
    }
}

impl Error for BackendError {}

/// What the test asks the backend to answer.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    Fail(&'static str),
}

/// A backend answering as asked, counting its calls.
fn backend(
    calls: &Arc<AtomicUsize>,
) -> impl Service<
    Answer,
    Response = u16,
    Error = BackendError,
    Future = std::future::Ready<Result<u16, BackendError>>,
> + Clone {
    let calls = Arc::clone(calls);
    service_fn(move |answer: Answer| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(match answer {
            Answer::Status(status) => Ok(status),
            Answer::Fail("not found") => Err(BackendError::NotFound),
            Answer::Fail(_) => Err(BackendError::Down),
        })
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_closure_classifies_for_the_breaker_retry_and_the_bulkhead() {
    // One value, written once against the backend's own `Result`.
    let classify = |result: &Result<u16, BackendError>| match result {
        Ok(503) => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(BackendError::NotFound) => Outcome::Ignored,
        Err(BackendError::Down) => Outcome::Failure,
    };

    // Retry: a 503 answer is retried; "not found" is not.
    let calls = Arc::new(AtomicUsize::new(0));
    let retry = RetryLayer::builder("catalog")
        .max_attempts(3)
        .backoff(Backoff::none())
        .no_budget()
        .classifier(classify)
        .build()
        .unwrap()
        .layer(backend(&calls));
    assert_eq!(
        retry.clone().oneshot(Answer::Status(503)).await.unwrap(),
        503
    );
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3, "a 503 is retried");
    let err = retry
        .clone()
        .oneshot(Answer::Fail("not found"))
        .await
        .unwrap_err();
    assert!(is_caused_by::<BackendError>(&*err));
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1, "not found is not");
    let _ = retry.clone().oneshot(Answer::Fail("down")).await;
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3, "down is retried");

    // Circuit breaker: "not found" is not recorded; 503s open it.
    let breaker = CircuitBreakerLayer::builder("catalog")
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(100.0)
        .classifier(classify)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let svc = breaker.layer(backend(&calls));
    for _ in 0..4 {
        let _ = svc.clone().oneshot(Answer::Fail("not found")).await;
    }
    assert_eq!(handle.snapshot().calls, 0, "ignored calls are not recorded");
    assert_eq!(handle.state(), State::Closed);
    for _ in 0..2 {
        let _ = svc.clone().oneshot(Answer::Status(503)).await;
    }
    assert_eq!(handle.state(), State::Open, "two 503s of two open it");

    // Bulkhead: its adaptive limit backs off on failures, not on ignores.
    let bulkhead = BulkheadLayer::builder("catalog")
        .adaptive(
            Aimd::new()
                .initial_limit(16)
                .min_limit(1)
                .max_limit(16)
                .decrease_factor(0.5),
        )
        .classifier(classify)
        .build()
        .unwrap();
    let handle = bulkhead.handle();
    let svc = bulkhead.layer(backend(&calls));
    let _ = svc.clone().oneshot(Answer::Fail("not found")).await;
    assert_eq!(handle.limit(), 16, "an ignored outcome leaves the limit");
    let _ = svc.clone().oneshot(Answer::Status(200)).await;
    assert_eq!(handle.limit(), 16);
    let _ = svc.clone().oneshot(Answer::Status(503)).await;
    assert_eq!(handle.limit(), 8, "a 503 halves it");
    let _ = svc.clone().oneshot(Answer::Fail("down")).await;
    assert_eq!(handle.limit(), 4, "so does an error");
}
