//! The adaptive limit shrinks under injected latency and recovers after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade_bulkhead::limiter::{Aimd, Gradient};
use palisade_bulkhead::{AdaptiveLimit, BulkheadEvent, BulkheadHandle, BulkheadLayer, LimitCause};
use palisade_core::Outcome;
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt, service_fn};

/// A downstream whose latency (ms) and failure flag the test sets.
#[derive(Clone, Default)]
struct Downstream {
    latency_ms: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

/// Runs `clients` callers in a loop until stopped; a refused caller backs
/// off 5 ms.
fn load(
    layer: &BulkheadLayer<
        palisade_bulkhead::Unpartitioned,
        impl Fn(&Result<u64, String>) -> Outcome + Clone + Send + Sync + 'static,
    >,
    downstream: &Downstream,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> JoinSet<()> {
    let d = downstream.clone();
    let svc = layer.layer(service_fn(move |_: u64| {
        let latency = Duration::from_millis(d.latency_ms.load(Ordering::Relaxed));
        let failing = d.failing.load(Ordering::Relaxed);
        async move {
            tokio::time::sleep(latency).await;
            if failing {
                Err("downstream failed".to_owned())
            } else {
                Ok(0u64)
            }
        }
    }));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let svc = svc.clone();
        let stop = Arc::clone(stop);
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if svc.clone().oneshot(0).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
    }
    tasks
}

/// Watches the limit for `period`; returns (min, max, last).
async fn watch(handle: &BulkheadHandle, period: Duration) -> (usize, usize, usize) {
    let (mut lo, mut hi) = (usize::MAX, 0);
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    while waited < period {
        tokio::time::sleep(step).await;
        waited += step;
        let limit = handle.limit();
        lo = lo.min(limit);
        hi = hi.max(limit);
    }
    (lo, hi, handle.limit())
}

fn classify(result: &Result<u64, String>) -> Outcome {
    if result.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

async fn shrinks_and_recovers(limit: AdaptiveLimit, max: usize) {
    let changes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&changes);
    let layer = BulkheadLayer::builder("adaptive")
        .adaptive(limit)
        .classifier(classify)
        .max_wait(Duration::from_secs(1))
        .on_event(move |e| {
            if matches!(
                e,
                BulkheadEvent::LimitChanged {
                    cause: LimitCause::Adaptive,
                    ..
                }
            ) {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(handle.limit(), 20);
    let downstream = Downstream::default();
    downstream.latency_ms.store(10, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = load(&layer, &downstream, 2 * max, &stop);

    // Healthy: the limit climbs to its maximum.
    let (_, _, healthy) = watch(&handle, Duration::from_secs(3)).await;
    assert_eq!(healthy, max, "healthy downstream: limit at max");

    // Latency ×10: the limit shrinks well below where it started.
    downstream.latency_ms.store(100, Ordering::Relaxed);
    let (slowest, _, _) = watch(&handle, Duration::from_secs(3)).await;
    assert!(
        slowest <= 10,
        "under 10x latency the limit fell only to {slowest}"
    );

    // Latency back to normal: the limit recovers.
    downstream.latency_ms.store(10, Ordering::Relaxed);
    let (_, _, recovered) = watch(&handle, Duration::from_secs(5)).await;
    assert!(
        recovered >= max * 9 / 10,
        "after recovery the limit is only {recovered}"
    );

    // Failures shrink it too.
    downstream.failing.store(true, Ordering::Relaxed);
    let (lowest, _, _) = watch(&handle, Duration::from_secs(2)).await;
    assert!(lowest <= 10, "failures left the limit at {lowest}");
    eprintln!(
        "{}: healthy {healthy}, under latency down to {slowest}, recovered to {recovered}, under failures down to {lowest}",
        handle.snapshot().limit_mode
    );

    stop.store(true, Ordering::Relaxed);
    downstream.failing.store(false, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}
    assert!(changes.load(Ordering::Relaxed) > 10);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient_limit_shrinks_under_latency_and_recovers() {
    shrinks_and_recovers(
        Gradient::new()
            .initial_limit(20)
            .min_limit(2)
            .max_limit(60)
            .into(),
        60,
    )
    .await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn aimd_limit_shrinks_under_latency_and_recovers() {
    shrinks_and_recovers(
        Aimd::new()
            .initial_limit(20)
            .min_limit(2)
            .max_limit(60)
            .latency_threshold(Duration::from_millis(50))
            .into(),
        60,
    )
    .await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_handle_sets_the_adaptive_limit_within_its_bounds() {
    let layer = BulkheadLayer::builder("adaptive-handle")
        .adaptive(Aimd::new().min_limit(5).max_limit(50))
        .build()
        .unwrap();
    let handle = layer.handle();
    assert!(handle.is_adaptive());
    assert_eq!(handle.set_limit(1_000).unwrap(), 50);
    assert_eq!(handle.set_limit(1).unwrap(), 5);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.limit_mode, "aimd");
    assert_eq!(snapshot.limit_bounds, Some((5, 50)));
    assert_eq!(snapshot.limit, 5);
}
