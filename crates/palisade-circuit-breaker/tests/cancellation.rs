//! Readiness, drop and cancellation: nothing reserved by `poll_ready` leaks,
//! and a breaker is never stuck half-open.

mod support;

use std::task::Poll;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitOpen, State};
use palisade_test_util::DropProbe;
use support::{Step, backend, call, count, rejected};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

fn half_open_layer(permits: u32) -> CircuitBreakerLayer {
    let layer = CircuitBreakerLayer::builder("cancel")
        .count_window(4)
        .permitted_calls_in_half_open(permits)
        .build()
        .unwrap();
    layer.handle().half_open();
    layer
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn service_dropped_after_poll_ready_gives_the_permit_back() {
    let layer = half_open_layer(1);
    let handle = layer.handle();
    let (backend, calls) = backend();

    let mut first = layer.layer(backend.clone());
    first.ready().await.unwrap();
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);
    // The only permit is held: another caller is rejected.
    let r = call(&mut layer.layer(backend.clone()), Step::Ok).await;
    assert!(rejected(&r));
    drop(first);
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 0);
    // The permit is back: the next caller probes, and closes the breaker.
    call(&mut layer.layer(backend), Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(count(&calls), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn into_inner_after_poll_ready_gives_the_permit_back() {
    let layer = half_open_layer(1);
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    svc.ready().await.unwrap();
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);
    let _inner = svc.into_inner();
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn future_dropped_mid_call_gives_the_permit_back_and_records_nothing() {
    let layer = half_open_layer(1);
    let handle = layer.handle();
    let probe = DropProbe::new();
    let token_source = probe.clone();
    let inner = tower::service_fn(move |()| {
        let token = token_source.token();
        async move {
            let _token = token;
            std::future::pending::<Result<(), std::io::Error>>().await
        }
    });
    let mut svc = layer.layer(inner);
    let fut = svc.ready().await.unwrap().call(());
    let mut fut = tokio_test::task::spawn(fut);
    assert_pending!(fut.poll());
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);
    drop(fut);
    assert!(probe.dropped(), "the inner future was dropped");
    let snap = handle.snapshot();
    assert_eq!(snap.state, State::HalfOpen);
    let probes = snap.half_open.unwrap();
    assert_eq!((probes.in_flight, probes.completed), (0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelled_probes_never_leave_the_breaker_stuck() {
    let layer = half_open_layer(3);
    let handle = layer.handle();
    let (backend, calls) = backend();
    let svc = layer.layer(backend);
    // Many rounds of probes that hang and are cancelled by a timeout.
    for _ in 0..10 {
        let s = tower::timeout::Timeout::new(svc.clone(), Duration::from_millis(10));
        let mut handles = Vec::new();
        for _ in 0..3 {
            let mut s = s.clone();
            handles.push(tokio::spawn(async move {
                s.ready().await?.call(Step::Hang).await
            }));
        }
        for h in handles {
            assert!(h.await.unwrap().is_err(), "timed out");
        }
        assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 0);
    }
    assert_eq!(count(&calls), 30);
    // Still half-open, with every permit available.
    for _ in 0..2 {
        call(&mut svc.clone(), Step::Ok).await.unwrap();
    }
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn closed_future_dropped_mid_call_records_nothing() {
    let layer = CircuitBreakerLayer::builder("cancel")
        .count_window(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    let fut = svc
        .ready()
        .await
        .unwrap()
        .call(Step::FailAfter(Duration::from_secs(1)));
    drop(fut);
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.snapshot().calls, 1);
    assert_eq!(handle.snapshot().failed_calls, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn repeated_poll_ready_reserves_once() {
    let layer = half_open_layer(2);
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = tokio_test::task::spawn(layer.layer(backend));
    for _ in 0..5 {
        assert_ready_ok!(svc.enter(|cx, mut s| s.as_mut().get_mut().poll_ready(cx)));
    }
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clone_does_not_copy_a_reservation() {
    let layer = half_open_layer(1);
    let handle = layer.handle();
    let (backend, calls) = backend();
    let mut svc = layer.layer(backend);
    svc.ready().await.unwrap();
    let mut clone = svc.clone();
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);
    // The clone must take its own permit, and there is none left.
    let r = call(&mut clone, Step::Ok).await;
    assert!(rejected(&r));
    svc.call(Step::Ok).await.unwrap();
    assert_eq!(count(&calls), 1);
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
#[should_panic(expected = "poll_ready")]
async fn call_without_poll_ready_panics() {
    let layer = CircuitBreakerLayer::builder("p").build().unwrap();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    drop(svc.call(Step::Ok));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn open_breaker_does_not_poll_the_inner_service() {
    let layer = CircuitBreakerLayer::builder("mock").build().unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<(), (), _>(layer);

    // Closed: the inner service's readiness passes through.
    inner.allow(0);
    assert_pending!(svc.poll_ready());
    // Open: ready at once, the inner service stays unpolled, the call fails
    // from its future.
    handle.force_open();
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert!(matches!(inner.poll_request(), Poll::Pending));
    // Closed again: waits for the inner service, which wakes the task.
    handle.reset();
    assert_pending!(svc.poll_ready());
    inner.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(());
    let (_, send) = inner.next_request().await.unwrap();
    send.send_response(());
    fut.await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_half_open_permit_is_kept_while_the_inner_service_is_pending() {
    let layer = half_open_layer(1);
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<(), (), _>(layer);
    inner.allow(0);
    assert_pending!(svc.poll_ready());
    assert_pending!(svc.poll_ready());
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);
    drop(svc);
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn readiness_taken_before_a_trip_is_rechecked_at_call() {
    let layer = CircuitBreakerLayer::builder("recheck").build().unwrap();
    let handle = layer.handle();
    let (backend, calls) = backend();
    let mut ready: Vec<_> = Vec::new();
    for _ in 0..10 {
        let mut svc = layer.layer(backend.clone());
        svc.ready().await.unwrap();
        ready.push(svc);
    }
    handle.force_open();
    for mut svc in ready {
        let r = svc.call(Step::Ok).await;
        assert!(rejected(&r));
    }
    assert_eq!(count(&calls), 0, "no call reached the backend while open");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_buffer_survives_rejections() {
    let layer = CircuitBreakerLayer::builder("buffered").build().unwrap();
    let handle = layer.handle();
    let (backend, calls) = backend();
    let svc = tower::buffer::Buffer::new(layer.layer(backend), 8);
    handle.force_open();
    for _ in 0..20 {
        let r = svc.clone().oneshot(Step::Ok).await;
        let err = r.unwrap_err();
        assert!(palisade_core::is_caused_by::<CircuitOpen>(&*err), "{err}");
    }
    handle.reset();
    assert_eq!(svc.clone().oneshot(Step::Ok).await.unwrap(), "ok");
    assert_eq!(count(&calls), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rejection_future_fails_once() {
    let layer = CircuitBreakerLayer::builder("once").build().unwrap();
    layer.handle().force_open();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    svc.ready().await.unwrap();
    let mut fut = tokio_test::task::spawn(svc.call(Step::Ok));
    let out = assert_ready!(fut.poll());
    assert!(out.unwrap_err().is::<CircuitOpen>());
}
