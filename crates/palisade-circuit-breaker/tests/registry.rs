//! The registry: one breaker per name, listed with its figures.

mod support;

use palisade_circuit_breaker::{
    CircuitBreakerHandle, CircuitBreakerLayer, Outcome, Registry, SlidingWindow, State,
};
use support::{Step, backend, call};
use tower::Layer;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_registry_shares_one_breaker_per_name() {
    let registry = Registry::<CircuitBreakerHandle>::new();
    let first = CircuitBreakerLayer::builder("orders")
        .count_window(2)
        .registry(&registry)
        .build()
        .unwrap();
    // The second builder's settings are validated but the first breaker stays.
    let second = CircuitBreakerLayer::builder("orders")
        .count_window(50)
        .classifier(
            |_: &Result<support::Reply, palisade_circuit_breaker::BoxError>| Outcome::Ignored,
        )
        .registry(&registry)
        .build()
        .unwrap();
    assert!(first.handle().same_as(&second.handle()));
    assert_eq!(
        second.handle().config().sliding_window,
        SlidingWindow::Count(2)
    );
    assert!(
        CircuitBreakerLayer::builder("orders")
            .count_window(0)
            .registry(&registry)
            .build()
            .is_err()
    );
    CircuitBreakerLayer::builder("users")
        .registry(&registry)
        .build()
        .unwrap();
    assert_eq!(registry.names(), vec!["orders", "users"]);
    assert_eq!(registry.len(), 2);

    // Failures through the first layer open the breaker for both.
    let (backend, _) = backend();
    let mut a = first.layer(backend.clone());
    let mut b = second.layer(backend);
    // The second layer's classifier ignores everything: nothing recorded.
    let _ = call(&mut b, Step::Fail).await;
    assert_eq!(registry.get("orders").unwrap().snapshot().calls, 0);
    let _ = call(&mut a, Step::Fail).await;
    let _ = call(&mut a, Step::Fail).await;
    assert!(support::rejected(&call(&mut b, Step::Ok).await));

    let snapshots = registry.snapshots();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(&*snapshots[0].name, "orders");
    assert_eq!(snapshots[0].state, State::Open);
    assert_eq!(snapshots[0].failed_calls, 2);
    assert_eq!(snapshots[0].not_permitted_calls, 1);
    assert_eq!(snapshots[1].state, State::Closed);
}

#[test]
fn register_get_remove() {
    let registry = Registry::<CircuitBreakerHandle>::new();
    assert!(registry.is_empty());
    let layer = CircuitBreakerLayer::builder("payments").build().unwrap();
    assert!(registry.register(layer.handle()).is_none());
    let handle = registry.get("payments").unwrap();
    assert!(handle.same_as(&layer.handle()));
    // Control through the registry reaches the layer's breaker.
    handle.metrics_only();
    assert_eq!(layer.handle().state(), State::MetricsOnly);
    // A clone of the registry sees the same entries.
    let clone = registry.clone();
    assert_eq!(clone.handles().len(), 1);
    assert!(clone.remove("payments").is_some());
    assert!(registry.get("payments").is_none());
    assert_eq!(registry.len(), 0);
}

#[test]
fn snapshot_fields() {
    let layer = CircuitBreakerLayer::builder("snap")
        .count_window(10)
        .permitted_calls_in_half_open(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let s = handle.snapshot();
    assert_eq!(&*s.name, "snap");
    assert_eq!(s.state, State::Closed);
    assert_eq!((s.calls, s.failed_calls, s.slow_calls), (0, 0, 0));
    assert_eq!((s.failure_rate, s.slow_call_rate), (0.0, 0.0));
    assert!(!s.minimum_calls_reached);
    assert_eq!(s.next_probe_in, None);
    assert_eq!(s.half_open, None);
    assert_eq!(s.config.minimum_calls, 10);
    handle.half_open();
    let probes = handle.snapshot().half_open.unwrap();
    assert_eq!(probes.permitted, 4);
    assert_eq!(
        (
            probes.in_flight,
            probes.completed,
            probes.failed,
            probes.slow
        ),
        (0, 0, 0, 0)
    );
}
