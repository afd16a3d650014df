//! The overall deadline and the per-attempt timeout.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_retry::{
    AttemptTimedOut, Backoff, DeadlineExceeded, Jitter, RetryEvent, RetryLayer, RetryReason,
};
use palisade_test_util::DropProbe;
use support::{backend, boom};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_backoff_runs_past_the_deadline() {
    let layer = RetryLayer::builder("deadline")
        .max_attempts(10)
        .backoff(Backoff::fixed(MS * 300))
        .jitter(Jitter::None)
        .deadline(MS * 1000)
        .no_budget()
        .build()
        .unwrap();
    let inner = backend(|n, _: u32| Err::<u32, BoxError>(format!("failure {n}").into()));
    let calls = inner.calls.clone();
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    // Attempts at 0, 300, 600, 900; a fifth would start at 1200.
    assert_eq!(calls.millis(), vec![0, 300, 600, 900]);
    assert_eq!(
        err.to_string(),
        "failure 4",
        "the last outcome, not a deadline error"
    );
    assert_eq!(
        start.elapsed(),
        MS * 900,
        "returned at once, no wait past the deadline"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_attempt_in_flight_at_the_deadline_is_dropped() {
    let probe = DropProbe::new();
    let attempts = Arc::new(Mutex::new(0));
    let (p, a) = (probe.clone(), Arc::clone(&attempts));
    let inner = service_fn(move |_: u32| {
        let token = p.token();
        *a.lock().unwrap() += 1;
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            token.defuse();
            Ok::<u32, BoxError>(1)
        }
    });
    let layer = RetryLayer::builder("slow")
        .deadline(MS * 500)
        .build()
        .unwrap();
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 500);
    let deadline = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("a deadline error");
    assert_eq!((deadline.attempts(), deadline.deadline()), (1, MS * 500));
    assert_eq!(probe.count(), 1, "the attempt's future was dropped");
    assert_eq!(*attempts.lock().unwrap(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_attempts_time_out_and_are_retried() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let layer = RetryLayer::builder("per-attempt")
        .max_attempts(5)
        .backoff(Backoff::none())
        .attempt_timeout(MS * 100)
        .no_budget()
        .on_event(move |e: &RetryEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    // The first two attempts hang for a second, the third answers in 10 ms.
    let calls = support::Calls::new();
    let c = calls.clone();
    let inner = service_fn(move |req: u32| {
        let n = c.record();
        async move {
            tokio::time::sleep(if n <= 2 {
                Duration::from_secs(1)
            } else {
                MS * 10
            })
            .await;
            Ok::<u32, BoxError>(req)
        }
    });
    let start = Instant::now();
    assert_eq!(layer.layer(inner).oneshot(7).await.unwrap(), 7);
    assert_eq!(calls.millis(), vec![0, 100, 200]);
    assert_eq!(start.elapsed(), MS * 210);
    let reasons: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RetryEvent::Retry { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![RetryReason::Timeout, RetryReason::Timeout]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_last_timeout_is_returned_as_attempt_timed_out() {
    let layer = RetryLayer::builder("hang")
        .max_attempts(2)
        .backoff(Backoff::none())
        .attempt_timeout(MS * 100)
        .no_budget()
        .build()
        .unwrap();
    let inner =
        backend(|_, req: u32| Ok::<u32, BoxError>(req)).with_latency(Duration::from_secs(10));
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    let timeout = err
        .downcast_ref::<AttemptTimedOut>()
        .expect("an attempt timeout");
    assert_eq!((timeout.attempt(), timeout.after()), (2, MS * 100));
    assert_eq!(start.elapsed(), MS * 200);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeouts_may_be_left_unretried() {
    // The classifier judges the inner service's results; the layer's own
    // attempt timeout has its own switch.
    let layer = RetryLayer::builder("no-timeout-retry")
        .max_attempts(3)
        .attempt_timeout(MS * 50)
        .no_budget()
        .retry_on_attempt_timeout(false)
        .build()
        .unwrap();
    let inner =
        backend(|_, req: u32| Ok::<u32, BoxError>(req)).with_latency(Duration::from_secs(1));
    let calls = inner.calls.clone();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(err.is::<AttemptTimedOut>());
    assert_eq!(calls.count(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_deadline_cuts_an_attempt_timeout_short() {
    let layer = RetryLayer::builder("both")
        .max_attempts(5)
        .attempt_timeout(Duration::from_secs(1))
        .deadline(MS * 300)
        .no_budget()
        .build()
        .unwrap();
    let inner =
        backend(|_, req: u32| Ok::<u32, BoxError>(req)).with_latency(Duration::from_secs(5));
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), MS * 300);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timed_calls_that_succeed_at_once_are_not_slowed() {
    let layer = RetryLayer::builder("timed")
        .attempt_timeout(MS * 100)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let inner = backend(|_, req: u32| Ok::<u32, BoxError>(req + 1));
    let start = Instant::now();
    assert_eq!(layer.layer(inner).oneshot(1).await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::ZERO);
    let failing = backend(|_, _: u32| Err::<u32, BoxError>(boom()));
    let layer = RetryLayer::builder("timed-failing")
        .max_attempts(2)
        .backoff(Backoff::fixed(MS * 10))
        .jitter(Jitter::None)
        .attempt_timeout(MS * 100)
        .no_budget()
        .build()
        .unwrap();
    let calls = failing.calls.clone();
    assert!(layer.layer(failing).oneshot(1).await.is_err());
    assert_eq!(calls.millis(), vec![0, 10]);
}
