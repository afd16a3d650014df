//! Readiness before every attempt, and what dropping things does.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use palisade_retry::{Backoff, DeadlineExceeded, Jitter, RetryLayer};
use palisade_test_util::DropProbe;
use support::{backend, boom};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn layer(max_attempts: u32) -> RetryLayer {
    RetryLayer::builder("ready")
        .max_attempts(max_attempts)
        .backoff(Backoff::none())
        .no_budget()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_retry_waits_for_readiness() {
    // The mock panics if it is called without a `poll_ready` that said Ready.
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer(3));
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    send.send_error(boom());

    // The retry needs the inner service ready again: no capacity, no call.
    assert_pending!(fut.poll());
    assert!(
        handle.poll_request().is_pending(),
        "no attempt without readiness"
    );

    handle.allow(1);
    assert!(fut.is_woken(), "capacity wakes the call");
    assert_pending!(fut.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1, "the same request, replayed");
    send.send_response(10);
    assert_eq!(assert_ready_ok!(fut.poll()), 10);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_readiness_error_ends_the_call() {
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer(3));
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(boom());
    handle.send_error("inner service failed");
    let err = assert_ready_err!(fut.poll());
    assert_eq!(err.to_string(), "inner service failed");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_deadline_bounds_the_wait_for_readiness() {
    let layer = RetryLayer::builder("stuck")
        .max_attempts(3)
        .backoff(Backoff::none())
        .deadline(Duration::from_millis(400))
        .no_budget()
        .build()
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(boom());
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(399)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = assert_ready_err!(fut.poll());
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_during_backoff_stops_all_attempts() {
    let layer = RetryLayer::builder("cancel")
        .max_attempts(10)
        .backoff(Backoff::fixed(Duration::from_secs(1)))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, BoxError>(boom()));
    let calls = inner.calls.clone();
    let mut svc = layer.layer(inner);
    let mut fut = task::spawn(svc.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_pending!(fut.poll());
    assert_eq!(calls.count(), 2, "two attempts so far");
    drop(fut);
    tokio::time::advance(Duration::from_secs(60)).await;
    support::settle().await;
    assert_eq!(calls.count(), 2, "nothing after the drop");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_mid_attempt_drops_the_attempt() {
    let probe = DropProbe::new();
    let calls = support::Calls::new();
    let (p, c) = (probe.clone(), calls.clone());
    let inner = service_fn(move |_: u32| {
        let token = p.token();
        c.record();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            token.defuse();
            Err::<u32, BoxError>(boom())
        }
    });
    let mut svc = layer(5).layer(inner);
    let mut fut = task::spawn(svc.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    drop(fut);
    assert_eq!(
        probe.count(),
        1,
        "the in-flight attempt was dropped with the call"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    support::settle().await;
    assert_eq!(calls.count(), 1);
}

/// A service that holds a shared marker: once every copy is gone, the
/// marker's count is back to one.
#[derive(Clone)]
struct Holder {
    _marker: Arc<()>,
}

impl Service<u32> for Holder {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        std::future::ready(if req == 0 { Err(boom()) } else { Ok(req) })
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn services_and_futures_leave_nothing_behind() {
    let marker = Arc::new(());
    let layer = layer(3);
    let mut svc = layer.layer(Holder {
        _marker: Arc::clone(&marker),
    });
    // Ready, then dropped before `call`.
    let mut ready = svc.clone();
    std::future::poll_fn(|cx| ready.poll_ready(cx))
        .await
        .unwrap();
    drop(ready);
    // Completed calls, a failing one included.
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert!(svc.ready().await.unwrap().call(0).await.is_err());
    // A call dropped before it was polled.
    drop(svc.ready().await.unwrap().call(0));
    drop(svc);
    drop(layer);
    assert_eq!(Arc::strong_count(&marker), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_outliving_its_service_and_layer_still_retries() {
    // `oneshot` drops the service right after `call`: the response future
    // must own what it needs to retry.
    let inner = backend(|n, req: u32| if n < 3 { Err(boom()) } else { Ok(req) });
    let calls = inner.calls.clone();
    let svc = layer(5).layer(inner);
    assert_eq!(svc.oneshot(9).await.unwrap(), 9);
    assert_eq!(calls.count(), 3);
}
