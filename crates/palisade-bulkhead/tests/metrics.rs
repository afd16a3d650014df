//! Metrics, with `MetricsCapture` entered before the layer is built.

mod support;

use std::borrow::Cow;
use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use palisade_bulkhead::limiter::Aimd;
use palisade_test_util::MetricsCapture;
use support::{Probe, settle};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready};
use tower::{Layer, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pool_metrics_are_labelled_by_name() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = BulkheadLayer::builder("orders")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(10))
        .max_queue(1)
        .build()
        .unwrap();
    let name = [("name", "orders")];
    assert_eq!(capture.gauge("palisade_bulkhead_limit", &name), Some(1.0));
    let svc = layer.layer(Probe::sleeping(|_| Duration::from_millis(100)));

    let mut first = tokio_test::task::spawn(svc.clone().oneshot(1));
    assert_pending!(first.poll());
    assert_eq!(
        capture.gauge("palisade_bulkhead_in_flight", &name),
        Some(1.0)
    );
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    assert_pending!(second.poll());
    assert_eq!(capture.gauge("palisade_bulkhead_queued", &name), Some(1.0));
    let mut third = tokio_test::task::spawn(svc.clone().oneshot(3));
    assert!(assert_ready!(third.poll()).is_err());
    let queue_full = [("name", "orders"), ("reason", "queue_full")];
    assert_eq!(
        capture.counter("palisade_bulkhead_rejected_total", &queue_full),
        1
    );

    advance(Duration::from_millis(10)).await;
    assert!(assert_ready!(second.poll()).is_err());
    let timeout = [("name", "orders"), ("reason", "timeout")];
    assert_eq!(
        capture.counter("palisade_bulkhead_rejected_total", &timeout),
        1
    );
    assert_eq!(capture.gauge("palisade_bulkhead_queued", &name), Some(0.0));
    assert_eq!(
        capture.histogram("palisade_bulkhead_wait_seconds", &name),
        vec![0.01]
    );

    advance(Duration::from_millis(90)).await;
    assert_eq!(assert_ready!(first.poll()).unwrap(), 1);
    assert_eq!(
        capture.gauge("palisade_bulkhead_in_flight", &name),
        Some(0.0)
    );

    let mut fourth = tokio_test::task::spawn(svc.clone().oneshot(4));
    assert_pending!(fourth.poll());
    let mut fifth = tokio_test::task::spawn(svc.clone().oneshot(5));
    assert_pending!(fifth.poll());
    advance(Duration::from_millis(100)).await;
    assert!(assert_ready!(fourth.poll()).is_ok());
    assert!(fifth.is_woken());
    assert_pending!(fifth.poll());
    // An admitted waiter records its wait (zero here: admitted as the
    // permit came back, at the same instant of paused time).
    assert_eq!(
        capture
            .histogram("palisade_bulkhead_wait_seconds", &name)
            .len(),
        2
    );
    let full = [("name", "orders"), ("reason", "full")];
    assert_eq!(
        capture.counter("palisade_bulkhead_rejected_total", &full),
        0
    );

    layer.handle().set_limit(3).unwrap();
    assert_eq!(capture.gauge("palisade_bulkhead_limit", &name), Some(3.0));
    assert_eq!(
        capture.counter("palisade_bulkhead_rejected_total", &name),
        2
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn partition_pools_carry_a_partition_label() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = BulkheadLayer::builder("tenants")
        .max_concurrent_calls(1)
        .partition_by(|k: &&'static str| Some(Cow::Borrowed(*k)))
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|k: &'static str| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::convert::Infallible>(k)
    }));
    let _a = tokio::spawn(svc.clone().oneshot("a"));
    let _b = tokio::spawn(svc.clone().oneshot("b"));
    settle().await;
    assert!(svc.clone().oneshot("a").await.is_err());
    let a = [("name", "tenants"), ("partition", "a")];
    let b = [("name", "tenants"), ("partition", "b")];
    assert_eq!(capture.gauge("palisade_bulkhead_in_flight", &a), Some(1.0));
    assert_eq!(capture.gauge("palisade_bulkhead_in_flight", &b), Some(1.0));
    assert_eq!(capture.gauge("palisade_bulkhead_limit", &a), Some(1.0));
    assert_eq!(capture.counter("palisade_bulkhead_rejected_total", &a), 1);
    assert_eq!(capture.counter("palisade_bulkhead_rejected_total", &b), 0);
    assert_eq!(
        capture.gauge("palisade_bulkhead_partitions", &[("name", "tenants")]),
        Some(2.0)
    );
    assert_eq!(
        capture.gauge(
            "palisade_bulkhead_limit",
            &[("name", "tenants"), ("partition", "(overflow)")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_partition_labels_pools_add_up_under_the_name() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = BulkheadLayer::builder("unlabelled")
        .partition_by(|k: &&'static str| Some(Cow::Borrowed(*k)))
        .partition_metrics(false)
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|k: &'static str| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::convert::Infallible>(k)
    }));
    let _a = tokio::spawn(svc.clone().oneshot("a"));
    let _b = tokio::spawn(svc.clone().oneshot("b"));
    settle().await;
    assert_eq!(
        capture.gauge("palisade_bulkhead_in_flight", &[("name", "unlabelled")]),
        Some(2.0)
    );
    assert!(
        capture
            .gauge("palisade_bulkhead_in_flight", &[("partition", "a")])
            .is_none(),
        "no partition label"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_adaptive_limit_is_a_gauge() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = BulkheadLayer::builder("adaptive")
        .adaptive(Aimd::new().initial_limit(4).max_limit(10))
        .build()
        .unwrap();
    let name = [("name", "adaptive")];
    assert_eq!(capture.gauge("palisade_bulkhead_limit", &name), Some(4.0));
    let svc = layer.layer(Probe::sleeping(|_| Duration::from_millis(1)));
    // Four calls start with 1, 2, 3 and 4 in flight: the last three found
    // the pool at least half used, so their fast successes add one each.
    let calls: Vec<_> = (0..4)
        .map(|i| tokio::spawn(svc.clone().oneshot(i)))
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(capture.gauge("palisade_bulkhead_limit", &name), Some(7.0));
    assert_eq!(layer.handle().limit(), 7);
}
