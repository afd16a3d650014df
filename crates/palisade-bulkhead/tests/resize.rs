//! Runtime resize through the handle, with calls in flight.

mod support;

use std::time::Duration;

use palisade_bulkhead::{BulkheadEvent, BulkheadLayer, LimitCause};
use support::{Probe, full, settle};
use tokio::task::JoinSet;
use tokio::time::advance;
use tower::{Layer, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn raising_the_limit_admits_waiters_at_once() {
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("grow")
        .max_concurrent_calls(2)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let mut calls = JoinSet::new();
    for i in 0..5 {
        calls.spawn(svc.clone().oneshot(i));
    }
    settle().await;
    assert_eq!((probe.inside(), handle.queued()), (2, 3));
    assert_eq!(handle.set_limit(5).unwrap(), 5);
    settle().await;
    assert_eq!(
        (probe.inside(), handle.queued()),
        (5, 0),
        "no waiting for a release"
    );
    advance(Duration::from_secs(1)).await;
    while let Some(r) = calls.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(probe.max(), 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn lowering_the_limit_lets_calls_in_flight_finish_and_holds_the_new_limit() {
    let probe = Probe::sleeping(|i| Duration::from_millis(100 * (i + 1)));
    let layer = BulkheadLayer::builder("shrink")
        .max_concurrent_calls(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let mut in_flight = JoinSet::new();
    for i in 0..4 {
        in_flight.spawn(svc.clone().oneshot(i));
    }
    settle().await;
    assert_eq!(probe.inside(), 4);
    handle.set_limit(2).unwrap();
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.pools[0].limit, snapshot.in_flight),
        (2, 4),
        "nothing revoked"
    );

    // Still at or above the new limit: refused.
    assert!(svc.clone().oneshot(10).await.is_err());
    advance(Duration::from_millis(100)).await; // call 0 done: 3 in flight
    settle().await;
    assert!(svc.clone().oneshot(11).await.is_err());
    advance(Duration::from_millis(100)).await; // call 1 done: 2 in flight
    settle().await;
    let err = svc.clone().oneshot(12).await.unwrap_err();
    assert_eq!(full(&err).name(), "shrink");
    advance(Duration::from_millis(100)).await; // call 2 done: 1 in flight
    settle().await;
    // Under the new limit: admitted, and only one.
    let admitted = tokio::spawn(svc.clone().oneshot(0));
    settle().await;
    assert!(svc.clone().oneshot(13).await.is_err());
    assert_eq!(probe.inside(), 2);
    while let Some(r) = in_flight.join_next().await {
        r.unwrap().unwrap(); // every call in flight completed normally
    }
    admitted.await.unwrap().unwrap();
    assert_eq!(handle.snapshot().pools[0].available, 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn resizing_under_load_never_exceeds_the_limit_once_paid_back() {
    let probe = Probe::sleeping(|i| Duration::from_millis(1 + i % 4));
    let layer = BulkheadLayer::builder("churn")
        .max_concurrent_calls(8)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let mut calls = JoinSet::new();
    for i in 0..3_000u64 {
        calls.spawn(svc.clone().oneshot(i));
    }
    for limit in [3, 12, 1, 6, 2, 9] {
        handle.set_limit(limit).unwrap();
        // Let the debt be paid, then check the limit holds.
        advance(Duration::from_millis(5)).await;
        settle().await;
        probe
            .max
            .store(probe.inside(), std::sync::atomic::Ordering::SeqCst);
        for _ in 0..20 {
            advance(Duration::from_millis(1)).await;
            settle().await;
        }
        assert!(probe.max() <= limit, "limit {limit}, saw {}", probe.max());
    }
    handle.set_limit(50).unwrap();
    while let Some(r) = calls.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(probe.calls(), 3_000);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_limit_change_is_an_event_and_bad_limits_are_refused() {
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&changes);
    let layer = BulkheadLayer::builder("evented")
        .max_concurrent_calls(3)
        .on_event(move |e| {
            if let BulkheadEvent::LimitChanged {
                from, to, cause, ..
            } = e
            {
                seen.lock().unwrap().push((*from, *to, *cause));
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    handle.set_limit(7).unwrap();
    handle.set_limit(7).unwrap(); // no change, no event
    assert_eq!(
        handle.set_limit(0).unwrap_err().field(),
        "max_concurrent_calls"
    );
    assert_eq!(
        handle.set_limit(usize::MAX).unwrap_err().field(),
        "max_concurrent_calls"
    );
    assert_eq!(
        handle.set_partition_limit("x", 1).unwrap_err().field(),
        "partition"
    );
    assert_eq!(*changes.lock().unwrap(), vec![(3, 7, LimitCause::Handle)]);
    assert_eq!(handle.limit(), 7);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn listeners_may_call_back_into_the_handle() {
    use palisade_bulkhead::BulkheadHandle;
    use palisade_bulkhead::limiter::Aimd;
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    let handle_cell: Arc<OnceLock<BulkheadHandle>> = Arc::default();
    let calls_back = Arc::new(AtomicUsize::new(0));
    let (cell, counter) = (Arc::clone(&handle_cell), Arc::clone(&calls_back));
    let layer = BulkheadLayer::builder("reentrant")
        .adaptive(Aimd::new().initial_limit(2).max_limit(4))
        .partition_by(|k: &u64| Some(Cow::Owned(format!("k{k}"))))
        .partition_idle_timeout(Duration::from_secs(1))
        .on_event(move |_| {
            // Every kind of event: the handle must be usable from here.
            let handle = cell.get().expect("set before any call");
            let snapshot = handle.snapshot();
            // The pool that emitted the event (its limiter, its queue).
            let _ = handle.set_partition_limit("k1", snapshot.limit);
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    handle_cell.set(layer.handle()).unwrap();
    let svc = layer.layer(Probe::sleeping(|_| Duration::from_millis(1)));
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(1)))
        .collect();
    for call in calls {
        let _ = call.await.unwrap(); // the third is refused: a Rejected event
    }
    for _ in 0..3 {
        advance(Duration::from_secs(1)).await;
        layer.handle().sweep_if_due(); // a PartitionReclaimed event
    }
    assert_eq!(layer.handle().partition_count(), 0);
    assert!(
        calls_back.load(Ordering::SeqCst) >= 4,
        "created, limit changed, rejected, reclaimed"
    );
}
