//! The limit holds: never more than N calls inside the inner service.

mod support;

use std::borrow::Cow;
use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use support::{Probe, full, settle};
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn never_more_than_n_inside_with_10_000_concurrent_tasks() {
    const N: usize = 16;
    let probe = Probe::sleeping(|i| Duration::from_millis(1 + i % 7));
    let layer = BulkheadLayer::builder("limit")
        .max_concurrent_calls(N)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());

    let mut tasks = JoinSet::new();
    for i in 0..10_000u64 {
        tasks.spawn(svc.clone().oneshot(i));
    }
    // Yielding keeps the paused clock still: no call completes meanwhile.
    while handle.in_flight() + handle.queued() < 10_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.in_flight(), N);
    assert_eq!(handle.queued(), 10_000 - N);

    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 10_000);
    assert_eq!(probe.max(), N, "the limit was reached and never passed");
    assert_eq!(probe.calls(), 10_000);
    assert_eq!(
        (handle.in_flight(), handle.queued(), handle.rejected()),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_n_inside_across_threads() {
    const N: usize = 8;
    // No timers: the inner call yields a few times, so tasks interleave on
    // both worker threads.
    let probe = Probe::yielding(3);
    let layer = BulkheadLayer::builder("threads")
        .max_concurrent_calls(N)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());

    let mut tasks = JoinSet::new();
    for i in 0..10_000u64 {
        tasks.spawn(svc.clone().oneshot(i));
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert!(probe.max() <= N, "saw {} inside at once", probe.max());
    assert_eq!(probe.calls(), 10_000);
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_under_contention_leave_the_pool_consistent() {
    // max_wait zero: most calls are refused; whatever happens, nothing leaks.
    const N: usize = 4;
    let probe = Probe::yielding(2);
    let layer = BulkheadLayer::builder("contention")
        .max_concurrent_calls(N)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let mut tasks = JoinSet::new();
    for i in 0..10_000u64 {
        tasks.spawn(svc.clone().oneshot(i));
    }
    let (mut ok, mut refused) = (0u64, 0u64);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            Err(err) => {
                assert_eq!(full(&err).waited(), None, "refused at once");
                refused += 1;
            }
        }
    }
    assert!(probe.max() <= N);
    assert_eq!(ok + refused, 10_000);
    assert_eq!(handle.rejected(), refused);
    assert_eq!(handle.snapshot().pools[0].available, N);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_layer_call_and_clone_shares_one_limit() {
    let probe = Probe::sleeping(|_| Duration::from_secs(1));
    let layer = BulkheadLayer::builder("shared")
        .max_concurrent_calls(2)
        .build()
        .unwrap();
    // As axum does: `layer()` once per route, clones per request.
    let route_a = layer.layer(probe.clone());
    let route_b = layer.clone().layer(probe.clone());
    let a = tokio::spawn(route_a.clone().oneshot(1));
    let b = tokio::spawn(route_b.clone().oneshot(2));
    settle().await;
    let err = route_b.clone().oneshot(3).await.unwrap_err();
    assert_eq!(full(&err).name(), "shared");
    let err = route_a.oneshot(4).await.unwrap_err();
    assert_eq!(full(&err).partition(), None);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(probe.max(), 2);
    assert_eq!(layer.handle().rejected(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn partitioned_limits_hold_per_key_with_10_000_tasks() {
    const N: usize = 4;
    let probe = Probe::sleeping(|i| Duration::from_millis(1 + i % 5));
    let layer = BulkheadLayer::builder("per-key")
        .max_concurrent_calls(N)
        .max_wait(Duration::MAX)
        .partition_by(|i: &u64| Some(Cow::Owned(format!("k{}", i % 10))))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let mut tasks = JoinSet::new();
    for i in 0..10_000u64 {
        tasks.spawn(svc.clone().oneshot(i));
    }
    while handle.in_flight() + handle.queued() < 10_000 {
        tokio::task::yield_now().await;
    }
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.partitions, 10);
    for pool in &snapshot.pools[2..] {
        assert_eq!(pool.in_flight, N, "{:?}", pool.partition);
        assert_eq!(pool.queued, 1000 - N);
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(probe.max(), 10 * N);
    assert_eq!(probe.calls(), 10_000);
}
