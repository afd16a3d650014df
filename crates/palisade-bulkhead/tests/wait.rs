//! Bounded, fair waiting: the wait timeout, FIFO order, the queue bound.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::{BulkheadEvent, BulkheadLayer, RejectReason};
use support::{Probe, Recorder, full, settle};
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready};
use tower::{Layer, ServiceExt};
use tower_test::mock;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_waits_at_most_max_wait_then_is_refused() {
    let (inner, mut backend) = mock::pair::<u64, u64>();
    let layer = BulkheadLayer::builder("waits")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(50))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(inner);

    let first = tokio::spawn(svc.clone().oneshot(1));
    let (req, reply) = backend.next_request().await.unwrap();
    assert_eq!(req, 1);

    let started = Instant::now();
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    assert_pending!(second.poll());
    assert_eq!(handle.queued(), 1);
    advance(Duration::from_millis(49)).await;
    assert_pending!(second.poll());
    advance(Duration::from_millis(1)).await;
    assert!(second.is_woken(), "the deadline wakes the waiting call");
    let err = assert_ready!(second.poll()).unwrap_err();
    let full = full(&err);
    assert_eq!(full.name(), "waits");
    assert_eq!(full.waited(), Some(Duration::from_millis(50)));
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!((handle.queued(), handle.rejected()), (0, 1));

    reply.send_response(10);
    assert_eq!(first.await.unwrap().unwrap(), 10);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiting_call_is_admitted_when_a_permit_frees_up() {
    let (inner, mut backend) = mock::pair::<u64, u64>();
    let layer = BulkheadLayer::builder("admits")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let first = tokio::spawn(svc.clone().oneshot(1));
    let (_, reply) = backend.next_request().await.unwrap();
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    assert_pending!(second.poll());
    advance(Duration::from_millis(300)).await;
    reply.send_response(1);
    first.await.unwrap().unwrap();
    assert!(second.is_woken(), "the released permit wakes the waiter");
    assert_pending!(second.poll()); // admitted: now waiting on the backend
    let (req, reply) = backend.next_request().await.unwrap();
    assert_eq!(req, 2);
    reply.send_response(2);
    assert_eq!(assert_ready!(second.poll()).unwrap(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn zero_max_wait_refuses_at_once() {
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("now")
        .max_concurrent_calls(1)
        .build()
        .unwrap();
    let svc = layer.layer(probe);
    let _first = tokio::spawn(svc.clone().oneshot(1));
    settle().await;
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    let err = assert_ready!(second.poll()).unwrap_err();
    assert_eq!(full(&err).waited(), None);
    assert_eq!(err.to_string(), "bulkhead `now` is full");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_admitted_in_fifo_order() {
    let gate = Probe::sleeping(|_| Duration::from_millis(10));
    let recorder = Recorder::default();
    let layer = BulkheadLayer::builder("fifo")
        .max_concurrent_calls(1)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let blocker = layer.layer(gate);
    let svc = layer.layer(recorder.clone());

    let held = tokio::spawn(blocker.oneshot(0));
    settle().await;
    let mut waiters = Vec::new();
    for i in 1..=50u64 {
        waiters.push(tokio::spawn(svc.clone().oneshot(i)));
        // Each waiter joins the queue before the next is spawned.
        settle().await;
    }
    assert_eq!(layer.handle().queued(), 50);
    held.await.unwrap().unwrap();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_queue_is_bounded() {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reasons);
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("bounded")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(10))
        .max_queue(2)
        .on_event(move |e| {
            if let BulkheadEvent::Rejected { reason, waited, .. } = e {
                seen.lock().unwrap().push((*reason, *waited));
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe);
    let mut calls: Vec<_> = (0..3)
        .map(|i| tokio_test::task::spawn(svc.clone().oneshot(i)))
        .collect();
    for call in &mut calls {
        assert_pending!(call.poll());
    }
    assert_eq!((handle.in_flight(), handle.queued()), (1, 2));
    let mut fourth = tokio_test::task::spawn(svc.clone().oneshot(3));
    let err = assert_ready!(fourth.poll()).unwrap_err();
    assert_eq!(
        full(&err).waited(),
        None,
        "refused at once, not after waiting"
    );
    assert_eq!(
        *reasons.lock().unwrap(),
        vec![(RejectReason::QueueFull, None)]
    );

    // The bound changes at runtime; waiters already queued keep their place.
    handle.set_max_queue(Some(0)).unwrap();
    let mut fifth = tokio_test::task::spawn(svc.clone().oneshot(4));
    assert!(assert_ready!(fifth.poll()).is_err());
    assert_eq!(handle.queued(), 2);
    handle.set_max_queue(None).unwrap();
    let mut sixth = tokio_test::task::spawn(svc.oneshot(5));
    assert_pending!(sixth.poll());
    assert_eq!(handle.queued(), 3);
    drop((calls, sixth));
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_wait_changes_at_runtime() {
    let probe = Probe::sleeping(|_| Duration::from_secs(60));
    let layer = BulkheadLayer::builder("retuned")
        .max_concurrent_calls(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe);
    let _held = tokio::spawn(svc.clone().oneshot(0));
    settle().await;
    handle.set_max_wait(Duration::from_millis(20));
    assert_eq!(handle.max_wait(), Duration::from_millis(20));
    let started = Instant::now();
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(full(&err).waited(), Some(Duration::from_millis(20)));
    assert_eq!(started.elapsed(), Duration::from_millis(20));
    handle.set_max_wait(Duration::ZERO);
    let err = svc.oneshot(2).await.unwrap_err();
    assert_eq!(full(&err).waited(), None);
}
