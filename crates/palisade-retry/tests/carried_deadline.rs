//! The deadline a request carries (`palisade_core::Deadline`, set by a
//! deadline layer above) bounds the retries: no attempt starts that the
//! deadline cannot fit, and a per-attempt timeout is cut to what is left.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Empty;
use palisade_core::{BoxError, Deadline, DeadlineExpired, cause_ref, is_caused_by};
use palisade_retry::http::RetryBody;
use palisade_retry::{Backoff, DeadlineExceeded, Jitter, NoTimeToRetry, RetryLayer};
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

type Body = Empty<bytes::Bytes>;

fn get_with_deadline(left: Option<Duration>) -> Request<Body> {
    let mut req = Request::get("/").body(Empty::new()).unwrap();
    if let Some(left) = left {
        Deadline::after(left).set_on(&mut req);
    }
    req
}

#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset")
    }
}
impl std::error::Error for Reset {}

/// A backend that fails every attempt after `latency`, counting attempts.
fn failing(
    latency: Duration,
) -> (
    Arc<AtomicU32>,
    impl tower::Service<
        Request<RetryBody<Body>>,
        Response = Response<()>,
        Error = BoxError,
        Future: Send,
    > + Clone,
) {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    let svc = service_fn(move |_: Request<RetryBody<Body>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            sleep(latency).await;
            Err::<Response<()>, BoxError>(Reset.into())
        }
    });
    (attempts, svc)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_stop_when_the_next_attempt_cannot_fit_and_the_error_says_so() {
    let layer = RetryLayer::http_builder("inventory")
        .max_attempts(5)
        .backoff(Backoff::fixed(60 * MS))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let (attempts, backend) = failing(Duration::ZERO);
    let start = Instant::now();
    let err = layer
        .layer(backend)
        .oneshot(get_with_deadline(Some(100 * MS)))
        .await
        .unwrap_err();
    // Attempts at 0 and 60 ms; a third would start at 120 ms, past 100 ms.
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), 60 * MS);
    let stopped = cause_ref::<NoTimeToRetry>(&*err).expect("the error says why");
    assert_eq!(stopped.attempts(), 2);
    assert_eq!(stopped.left(), 40 * MS);
    assert!(is_caused_by::<Reset>(&*err), "the last error is its source");
    assert_eq!(
        err.to_string(),
        "not retried: the deadline leaves 40ms, too little for another attempt after 2 attempts: connection reset"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_carried_deadline_every_attempt_is_made() {
    let layer = RetryLayer::http_builder("inventory")
        .max_attempts(3)
        .backoff(Backoff::fixed(60 * MS))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let (attempts, backend) = failing(Duration::ZERO);
    let err = layer
        .layer(backend)
        .oneshot(get_with_deadline(None))
        .await
        .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(err.is::<Reset>(), "the last error as it came: {err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_attempt_timeout_is_cut_to_what_is_left_of_the_deadline() {
    let layer = RetryLayer::http_builder("inventory")
        .max_attempts(3)
        .attempt_timeout(Duration::from_secs(1))
        .no_budget()
        .build()
        .unwrap();
    let (attempts, backend) = failing(Duration::from_secs(10));
    let start = Instant::now();
    let err = layer
        .layer(backend)
        .oneshot(get_with_deadline(Some(300 * MS)))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), 300 * MS);
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    let expired = cause_ref::<DeadlineExpired>(&*err).expect("the caller's deadline passed");
    assert_eq!(expired.name(), "inventory");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_layers_own_deadline_wins_when_it_is_earlier() {
    let layer = RetryLayer::http_builder("inventory")
        .deadline(100 * MS)
        .no_budget()
        .build()
        .unwrap();
    let (_, backend) = failing(Duration::from_secs(10));
    let err = layer
        .layer(backend)
        .oneshot(get_with_deadline(Some(Duration::from_secs(5))))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_attempt_carries_what_is_left() {
    let layer = RetryLayer::http_builder("inventory")
        .max_attempts(3)
        .backoff(Backoff::fixed(50 * MS))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let backend = service_fn(move |req: Request<RetryBody<Body>>| {
        sink.lock()
            .unwrap()
            .push(Deadline::of(&req).map(|d| d.remaining()));
        async { Err::<Response<()>, BoxError>(Reset.into()) }
    });
    let _ = layer
        .layer(backend)
        .oneshot(get_with_deadline(Some(Duration::from_secs(1))))
        .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [Some(Duration::from_secs(1)), Some(950 * MS), Some(900 * MS)]
    );
}
