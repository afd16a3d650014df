//! Cancellation and drops release permits: nothing leaks.

mod support;

use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use palisade_test_util::DropProbe;
use support::{Probe, settle};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_running_call_releases_its_permit() {
    let (inner, mut backend) = mock::pair::<u64, u64>();
    let layer = BulkheadLayer::builder("running")
        .max_concurrent_calls(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(inner);
    let call = tokio::spawn(svc.clone().oneshot(1));
    let (_, reply) = backend.next_request().await.unwrap();
    assert_eq!(handle.in_flight(), 1);
    call.abort();
    let _ = call.await;
    assert_eq!(handle.in_flight(), 0);
    drop(reply);
    // The permit is really back: another call gets in.
    let next = tokio::spawn(svc.oneshot(2));
    let (req, reply) = backend.next_request().await.unwrap();
    assert_eq!(req, 2);
    reply.send_response(2);
    assert_eq!(next.await.unwrap().unwrap(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_inner_future_is_dropped_with_the_response_future() {
    let probe = DropProbe::new();
    let p = probe.clone();
    let inner = tower::service_fn(move |_: u64| {
        let token = p.token();
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            token.defuse();
            Ok::<_, std::convert::Infallible>(0u64)
        }
    });
    let layer = BulkheadLayer::builder("dropped")
        .max_concurrent_calls(1)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    svc.ready().await.unwrap();
    let mut fut = tokio_test::task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    assert_eq!(layer.handle().in_flight(), 1);
    drop(fut);
    assert!(probe.dropped());
    assert_eq!(layer.handle().in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_waiting_call_leaves_the_queue() {
    let (inner, mut backend) = mock::pair::<u64, u64>();
    let layer = BulkheadLayer::builder("waiting")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(inner);
    let first = tokio::spawn(svc.clone().oneshot(1));
    let (_, reply) = backend.next_request().await.unwrap();
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    let mut third = tokio_test::task::spawn(svc.clone().oneshot(3));
    assert_pending!(second.poll());
    assert_pending!(third.poll());
    assert_eq!(handle.queued(), 2);
    drop(second);
    assert_eq!(handle.queued(), 1);
    // The permit skips the cancelled call and goes to the third.
    reply.send_response(1);
    first.await.unwrap().unwrap();
    assert!(third.is_woken());
    assert_pending!(third.poll());
    let (req, reply) = backend.next_request().await.unwrap();
    assert_eq!(req, 3);
    reply.send_response(3);
    assert_eq!(assert_ready!(third.poll()).unwrap(), 3);
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_dropped_after_its_permit_was_handed_over_passes_it_on() {
    let (inner, mut backend) = mock::pair::<u64, u64>();
    let layer = BulkheadLayer::builder("handed-over")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(inner);
    let first = tokio::spawn(svc.clone().oneshot(1));
    let (_, reply) = backend.next_request().await.unwrap();
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    let mut third = tokio_test::task::spawn(svc.clone().oneshot(3));
    assert_pending!(second.poll());
    assert_pending!(third.poll());
    reply.send_response(1);
    first.await.unwrap().unwrap();
    // The permit is the second call's now, but it never runs.
    assert!(second.is_woken());
    assert_eq!(handle.in_flight(), 1);
    drop(second);
    assert!(third.is_woken());
    assert_pending!(third.poll());
    let (req, reply) = backend.next_request().await.unwrap();
    assert_eq!(req, 3);
    reply.send_response(3);
    assert_eq!(assert_ready!(third.poll()).unwrap(), 3);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timed_out_waiter_holds_nothing() {
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("timed-out")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let first = tokio::spawn(svc.clone().oneshot(1));
    settle().await;
    for i in 0..100 {
        assert!(svc.clone().oneshot(i).await.is_err());
    }
    assert_eq!(handle.queued(), 0);
    first.await.unwrap().unwrap();
    assert_eq!(handle.snapshot().pools[0].available, 1);
    assert_eq!(handle.rejected(), 100);
}

// ----- backpressure mode: permits reserved in poll_ready -----

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_service_releases_its_reservation() {
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("reserved")
        .max_concurrent_calls(1)
        .backpressure(true)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut a = layer.layer(probe.clone());
    let mut b = layer.layer(probe);
    let mut ready_a = tokio_test::task::spawn(());
    assert_ready_ok!(ready_a.enter(|cx, _| a.poll_ready(cx)));
    assert_eq!(handle.in_flight(), 1, "poll_ready reserved the permit");
    // Polling again does not reserve twice.
    assert_ready_ok!(ready_a.enter(|cx, _| a.poll_ready(cx)));
    assert_eq!(handle.in_flight(), 1);

    let mut ready_b = tokio_test::task::spawn(());
    assert!(ready_b.enter(|cx, _| b.poll_ready(cx)).is_pending());
    assert_eq!(handle.queued(), 1);
    drop(a);
    assert!(
        ready_b.is_woken(),
        "the released reservation wakes the waiting service"
    );
    assert_ready_ok!(ready_b.enter(|cx, _| b.poll_ready(cx)));
    assert_eq!((handle.in_flight(), handle.queued()), (1, 0));
    drop(b);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clone_does_not_copy_a_reservation() {
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("clone")
        .max_concurrent_calls(1)
        .backpressure(true)
        .build()
        .unwrap();
    let mut a = layer.layer(probe);
    let mut task = tokio_test::task::spawn(());
    assert_ready_ok!(task.enter(|cx, _| a.poll_ready(cx)));
    let mut b = a.clone();
    assert!(
        task.enter(|cx, _| b.poll_ready(cx)).is_pending(),
        "the clone has no permit"
    );
    drop(b);
    assert_eq!(layer.handle().queued(), 0, "the clone's wait was abandoned");
    let fut = a.call(1);
    drop(fut);
    assert_eq!(layer.handle().in_flight(), 0);
}
