//! `backpressure(true)`: the permit is reserved in `poll_ready`.

mod support;

use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use support::{Probe, full};
use tokio::task::JoinSet;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_is_pending_while_full_and_woken_by_a_release() {
    let probe = Probe::sleeping(|_| Duration::from_millis(100));
    let layer = BulkheadLayer::builder("bp")
        .max_concurrent_calls(1)
        .backpressure(true)
        .build()
        .unwrap();
    let svc = layer.layer(probe.clone());
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(1));
    assert_pending!(first.poll());
    assert_eq!(probe.inside(), 1);

    let mut second = svc.clone();
    let mut task = tokio_test::task::spawn(());
    assert_pending!(task.enter(|cx, _| second.poll_ready(cx)));
    assert!(!task.is_woken());
    advance(Duration::from_millis(100)).await;
    assert_eq!(assert_ready!(first.poll()).unwrap(), 1);
    assert!(
        task.is_woken(),
        "the released permit wakes the pending poll_ready"
    );
    assert_ready_ok!(task.enter(|cx, _| second.poll_ready(cx)));
    let mut call = tokio_test::task::spawn(second.call(2));
    assert_pending!(call.poll());
    advance(Duration::from_millis(100)).await;
    assert_eq!(assert_ready!(call.poll()).unwrap(), 2);
    assert_eq!(layer.handle().in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_max_wait_poll_ready_is_ready_and_the_call_fails_fast() {
    let probe = Probe::sleeping(|_| Duration::from_secs(10));
    let layer = BulkheadLayer::builder("bp-wait")
        .max_concurrent_calls(1)
        .backpressure(true)
        .max_wait(Duration::from_millis(30))
        .build()
        .unwrap();
    let svc = layer.layer(probe.clone());
    let _first = tokio::spawn(svc.clone().oneshot(1));
    tokio::task::yield_now().await;

    let mut second = svc.clone();
    let mut task = tokio_test::task::spawn(());
    assert_pending!(task.enter(|cx, _| second.poll_ready(cx)));
    advance(Duration::from_millis(30)).await;
    assert!(task.is_woken(), "the deadline wakes the pending poll_ready");
    // Never an error from poll_ready (Buffer would treat it as fatal).
    assert_ready_ok!(task.enter(|cx, _| second.poll_ready(cx)));
    let err = second.call(2).await.unwrap_err();
    assert_eq!(full(&err).waited(), Some(Duration::from_millis(30)));
    assert_eq!(
        probe.calls(),
        1,
        "the refused call never reached the inner service"
    );
    // The next poll_ready starts a fresh wait.
    assert_pending!(task.enter(|cx, _| second.poll_ready(cx)));
    assert_eq!(layer.handle().queued(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn never_more_than_n_inside_with_backpressure() {
    const N: usize = 5;
    let probe = Probe::sleeping(|i| Duration::from_millis(1 + i % 3));
    let layer = BulkheadLayer::builder("bp-load")
        .max_concurrent_calls(N)
        .backpressure(true)
        .build()
        .unwrap();
    let svc = layer.layer(probe.clone());
    let mut tasks = JoinSet::new();
    for i in 0..2_000u64 {
        tasks.spawn(svc.clone().oneshot(i));
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(probe.max(), N);
    assert_eq!(probe.calls(), 2_000);
    assert_eq!(layer.handle().in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
#[should_panic(expected = "bulkhead `call` before `poll_ready` returned `Ready`")]
async fn call_without_poll_ready_panics_like_tower() {
    let layer = BulkheadLayer::builder("bp-misuse")
        .backpressure(true)
        .build()
        .unwrap();
    let mut svc = layer.layer(Probe::yielding(0));
    drop(svc.call(1));
}
